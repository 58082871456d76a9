"""`groundswell analyze`, `themes` and `opportunities`."""

from __future__ import annotations

from typing import Any

import typer

from api.cli_common import console, fail, print_json, record_table, runtime, summary_table

# `--status emerging` means new or emerging themes, strongest momentum first (DESIGN: new or significantly growing).
TREND_GROUPS = {"emerging": ("new", "emerging")}
TRENDS = ("new", "emerging", "growing", "stable", "fading", "dormant")
STATES = ("active", "archived", "merged", "retired")


def register(app: typer.Typer) -> None:
    @app.command()
    def analyze(
        ctx: typer.Context,
        full: bool = typer.Option(False, "--full", help="Re-cluster everything (theme ids survive)."),
        as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    ) -> None:
        """Embed new feedback, assign it to themes, and score opportunities (the Prefect analysis flow)."""
        from flows.analysis import analyze as analyze_flow
        from models import migrate
        from pipeline.runs import AnalysisBusy

        rt = runtime(ctx)
        migrate.upgrade(rt.engine)
        try:
            result = analyze_flow(full=full)
        except AnalysisBusy as exc:
            fail(f"analysis not started: {exc}")
        except Exception as exc:
            fail(f"analysis failed: {exc}")
        if as_json:
            print_json(result)
            return
        console.print(record_table("analysis", result))

    @app.command()
    def themes(
        ctx: typer.Context,
        status: str | None = typer.Option(
            None, help="A trend (new, emerging = new or emerging strongest first, growing, stable, fading, "
            "dormant) or a state (active, archived, merged, retired)."),
        sort: str = typer.Option("score", help="score, momentum or size."),
        segment: str = typer.Option("all", help="all, or an account segment such as enterprise."),
        limit: int = typer.Option(50, min=1, help="At most this many themes."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
    ) -> None:
        """List themes with their size, accounts, trend and quotes."""
        from api.queries import list_themes, quotes_for, theme_accounts

        if sort not in ("score", "momentum", "size"):
            fail(f"--sort must be score, momentum or size, not {sort!r}")
        if status is not None and status not in (*TRENDS, *STATES):
            fail(f"--status must be one of {', '.join((*TRENDS, *STATES))}, not {status!r}")
        state, trend = ("active", None) if status is None else (
            (status, None) if status in STATES else ("active", TREND_GROUPS.get(status, (status,))))
        if status in TREND_GROUPS:
            sort = "momentum"
        with runtime(ctx).sessions() as session:
            summaries = list_themes(session, status=state, trend=trend, sort=sort, segment=segment, limit=limit)
            rows: list[dict[str, Any]] = []
            for t in summaries:
                theme_row = t.model_dump(mode="json", exclude={"weekly"})
                theme_row["status"] = t.trend or "unknown"
                theme_row["state"] = t.status
                theme_row["accounts"] = len(theme_accounts(session, t.id, limit=1_000_000))
                theme_row["quotes"] = [q.text for q in quotes_for(session, _theme(session, t.id), limit=3)]
                rows.append(theme_row)
        if as_json:
            print_json(rows)
            return
        console.print(summary_table("themes", [
            {"id": r["id"], "label": r["label"], "size": r["size"], "accounts": r["accounts"],
             "status": r["status"], "score": "" if r["score"] is None else f"{r['score']:.1f}"}
            for r in rows
        ]))

    @app.command()
    def opportunities(
        ctx: typer.Context,
        segment: str = typer.Option("all", help="all, or an account segment such as enterprise."),
        limit: int = typer.Option(10, min=1, help="At most this many."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
    ) -> None:
        """Ranked product opportunities with their score, components and rationale."""
        from api.queries import list_opportunities, quotes_for, theme_competitors

        with runtime(ctx).sessions() as session:
            rows = []
            for o in list_opportunities(session, segment=segment, limit=limit):
                row = o.model_dump(mode="json", exclude={"weekly"})
                row["quotes"] = [q.text for q in quotes_for(session, _theme(session, o.theme_id), limit=3)]
                row["competitors"] = theme_competitors(session, o.theme_id)
                rows.append(row)
        if as_json:
            print_json(rows)
            return
        console.print(summary_table(f"opportunities ({segment})", [
            {"rank": r["rank"], "theme": r["label"], "score": f"{r['score']:.1f}", "tier": r["tier"],
             "why": r["rationale"]}
            for r in rows
        ]))


def _theme(session: Any, theme_id: int) -> Any:
    from api.queries import get_theme

    return get_theme(session, theme_id)
