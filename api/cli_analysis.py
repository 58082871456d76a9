"""`groundswell analyze`, `themes` and `opportunities`."""

from __future__ import annotations

import typer

from api.cli import console, fail, print_json, runtime, summary_table


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

        rt = runtime(ctx)
        migrate.upgrade(rt.engine)
        try:
            result = analyze_flow(full=full)
        except Exception as exc:
            fail(f"analysis failed: {exc}")
        if as_json:
            print_json(result)
            return
        rows = [{k: v for k, v in result.items() if k != "steps"}]
        console.print(summary_table("analysis", rows))

    @app.command()
    def themes(
        ctx: typer.Context,
        status: str | None = typer.Option(
            None, help="new, emerging (new or emerging, strongest momentum first), growing, stable, fading, "
            "dormant; or a state: active, archived, merged, retired."),
        sort: str = typer.Option("score", help="score, momentum or size."),
        limit: int = typer.Option(50, min=1, help="At most this many themes."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
    ) -> None:
        """List themes with their size, accounts, trend and quotes."""
        from api.read_models import list_themes

        if sort not in ("score", "momentum", "size"):
            fail(f"--sort must be score, momentum or size, not {sort!r}")
        with runtime(ctx).sessions() as session:
            rows = list_themes(session, status=status, sort=sort, limit=limit)
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
        from api.read_models import list_opportunities

        with runtime(ctx).sessions() as session:
            rows = list_opportunities(session, segment=segment, limit=limit)
        if as_json:
            print_json(rows)
            return
        console.print(summary_table(f"opportunities ({segment})", [
            {"rank": r["rank"], "theme": r["label"], "score": f"{r['score']:.1f}", "tier": r["tier"],
             "why": r["rationale"]}
            for r in rows
        ]))
