"""The `groundswell` command line. Settings are read here, once, and passed down."""

from __future__ import annotations

import logging
import os

import typer

from api.cli_common import Runtime, console, fail, print_json, progress_bar, runtime, summary_table
from models.settings import Settings

app = typer.Typer(
    name="groundswell",
    help="Groundswell: customer feedback in, ranked product opportunities out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")

@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    # Prefect runs in-process here: no telemetry (there may be no network), and patience with its
    # ephemeral API server, which can take longer than its 20 s default to start on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError names the setting at fault
        fail(f"invalid settings: {exc}".replace("\n", " "))
    ctx.obj = Runtime(settings)


# -- db --------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate every table (Alembic)."""
    from models import migrate

    rt = runtime(ctx)
    try:
        migrate.upgrade(rt.engine, revision)
    except Exception as exc:
        fail(f"migration failed on {rt.engine.url.render_as_string(hide_password=True)}: {exc}")
    console.print(f"database at revision {migrate.current_revision(rt.engine)}")


@db_app.command("downgrade")
def db_downgrade(ctx: typer.Context, revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Undo migrations down to REVISION."""
    from models import migrate

    rt = runtime(ctx)
    migrate.downgrade(rt.engine, revision)
    console.print(f"database at revision {migrate.current_revision(rt.engine)}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the schema revision of the database."""
    from models import migrate

    console.print(migrate.current_revision(runtime(ctx).engine) or "empty")


# -- demo ------------------------------------------------------------------------------------
@demo_app.command("load")
def demo_load(
    ctx: typer.Context,
    weeks: int = typer.Option(16, min=4, max=260, help="Weeks of history ending at the start of this hour."),
    accounts: int = typer.Option(150, min=10, max=100_000, help="Number of accounts."),
    seed: int = typer.Option(7, help="Random seed; the same seed gives the same data."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Load generated demo feedback (tickets, chats, call notes, field notes) and accounts.

    The history ends at the start of the current hour: the generator places the current week's items by
    where ``now`` falls, so loading again within the hour changes nothing.
    """
    import datetime as dt

    from ingest.demo import generate_demo
    from ingest.demo_loader import load_demo
    from models import migrate

    rt = runtime(ctx)
    migrate.upgrade(rt.engine)
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    data = generate_demo(weeks=weeks, accounts=accounts, seed=seed, now=hour)
    with progress_bar("loading demo feedback", len(data.items)) as advance:
        results = load_demo(rt.sessions, data, redact_pii=rt.settings.redact_pii, progress=advance)
    rows = [{"source": name, **stats.as_dict()} for name, stats in results.items()]
    if as_json:
        print_json(rows)
    else:
        console.print(summary_table(f"demo data: {len(data.accounts)} accounts", rows))


# -- serve -----------------------------------------------------------------------------------
@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (each builds the app from the settings)."),
) -> None:
    """Serve the API and the web pages."""
    import uvicorn

    from api.app import create_app

    settings = runtime(ctx).settings
    if workers == 1:
        uvicorn.run(create_app(settings, warm_search=True), host=host, port=port, log_level="info")
        return
    # Several processes need an import string; each reads the same GROUNDSWELL_* environment.
    uvicorn.run("api.app:create_server_app", factory=True, workers=workers, host=host, port=port, log_level="info")


def _register_extensions() -> None:
    """Commands of later stages live in their own modules and register themselves here."""
    import importlib

    for module in ("api.cli_ingest", "api.cli_analysis", "api.cli_keys", "api.cli_reports", "api.cli_schedule"):
        importlib.import_module(module).register(app)


_register_extensions()
