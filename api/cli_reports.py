"""`groundswell report`: write the weekly theme report, optionally deliver it, and print the paths."""

from __future__ import annotations

import typer

from api.cli_common import console, fail, print_json, runtime


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        ctx: typer.Context,
        week: str | None = typer.Option(None, "--week", help="ISO week such as 2026-W47; default: the last "
                                        "complete week in GROUNDSWELL_TIMEZONE."),
        deliver: bool = typer.Option(False, "--deliver", help="Send it to Slack and by e-mail where configured."),
        as_json: bool = typer.Option(False, "--json", help="Print the paths (and delivery outcomes) as JSON."),
    ) -> None:
        """Write the weekly theme report (Markdown and HTML) under the data folder and store it."""
        from flows.delivery import deliver_report
        from models import migrate
        from pipeline.report import ReportError
        from pipeline.report_data import build_weekly_report

        rt = runtime(ctx)
        migrate.upgrade(rt.engine)
        try:
            result = build_weekly_report(rt.sessions, rt.settings, week=week)
        except ReportError as exc:
            fail(str(exc))
        out = result.as_dict()
        if deliver:
            out["delivery"] = deliver_report(rt.sessions, rt.settings, result.report_id, result.summary)
        if as_json:
            print_json(out)
            return
        console.print(str(result.md_path), markup=False, highlight=False, soft_wrap=True)
        console.print(str(result.html_path), markup=False, highlight=False, soft_wrap=True)
        for channel, outcome in out.get("delivery", {}).items():
            detail = outcome.get("error") or outcome.get("reason") or ""
            console.print(f"{channel}: {outcome['status']}" + (f" ({detail})" if detail else ""), markup=False,
                          highlight=False, soft_wrap=True)
