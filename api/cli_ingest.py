"""`groundswell sources ...` and `groundswell sync`: configure sources and run the ingest flow."""

from __future__ import annotations

import json
from typing import Any

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.cli_common import console, fail, print_json, runtime, summary_table
from ingest.errors import ConfigError
from ingest.registry import KINDS, validate_options
from ingest.state import get_cursors
from models.tables import Feedback, RejectedRecord, Source

sources_app = typer.Typer(help="Configured feedback sources.", no_args_is_help=True)


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--option {pair!r} is not key=value (e.g. --option path=exports/)")
        options[key.strip()] = value.strip()
    return options


@sources_app.command("add")
def sources_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Unique name of the source, e.g. zendesk-eu."),
    kind: str = typer.Option(..., "--kind", help=f"One of: {', '.join(KINDS)}."),
    option: list[str] = typer.Option([], "--option", "-o", help="key=value, repeatable (no secrets)."),
) -> None:
    """Add a source; its token comes from the GROUNDSWELL_<KIND>_TOKEN setting, never from an option."""
    from models import migrate

    rt = runtime(ctx)
    name = name.strip()
    if not name or len(name) > 100:
        fail("NAME must have 1 to 100 characters")
    try:
        options = validate_options(kind, _parse_options(option), source=name)
    except ConfigError as exc:
        fail(str(exc))
    migrate.upgrade(rt.engine)
    try:
        with rt.sessions.begin() as session:
            session.add(Source(name=name, kind=kind, config=options))
    except IntegrityError:
        fail(f"a source named {name!r} already exists")
    console.print(f"added {kind} source {name!r}")


@sources_app.command("list")
def sources_list(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Sources with their kind, last sync, cursor, items stored and records rejected."""
    from models import migrate

    rt = runtime(ctx)
    migrate.upgrade(rt.engine)
    with rt.sessions() as session:
        items = dict(session.execute(
            select(Feedback.source_id, func.count()).group_by(Feedback.source_id)).tuples().all())
        rejected = dict(session.execute(
            select(RejectedRecord.source_id, func.count()).group_by(RejectedRecord.source_id)).tuples().all())
        rows: list[dict[str, Any]] = []
        for source in session.scalars(select(Source).order_by(Source.name)):
            rows.append({
                "name": source.name, "kind": source.kind, "enabled": source.enabled,
                "items": int(items.get(source.id, 0)), "rejected": int(rejected.get(source.id, 0)),
                "last_sync_at": source.last_sync_at.isoformat() if source.last_sync_at else None,
                "last_sync_status": source.last_sync_status, "last_sync_error": source.last_sync_error,
                "cursor": get_cursors(session, source.id), "options": source.config,
            })
    if as_json:
        print_json(rows)
        return
    console.print(summary_table("sources", [
        {"name": r["name"], "kind": r["kind"], "items": r["items"], "rejected": r["rejected"],
         "last sync": r["last_sync_at"] or "never", "status": r["last_sync_status"] or "-",
         "cursor": _short(r["cursor"])} for r in rows
    ]))


def _short(cursor: dict[str, Any], limit: int = 60) -> str:
    if not cursor:
        return "-"
    text = json.dumps(cursor, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _reason(summary: dict[str, Any]) -> str:
    source, error = str(summary["source"]), str(summary.get("error") or summary.get("status"))
    return error if error.startswith(f"{source}:") else f"{source}: {error}"


def sync(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Source to sync."),
    all_sources: bool = typer.Option(False, "--all", help="Sync every enabled source."),
    as_json: bool = typer.Option(False, "--json", help="Print the summaries as JSON."),
) -> None:
    """Run the ingest flow; exits non-zero when a source failed (after the others ran)."""
    from flows.ingest import ingest_all
    from models import migrate

    if bool(name) == all_sources:
        fail("give a source NAME or --all")
    rt = runtime(ctx)
    migrate.upgrade(rt.engine)
    try:
        summaries = ingest_all(names=[name] if name else None, settings=rt.settings)
    except ConfigError as exc:
        fail(str(exc))
    if as_json:
        print_json(summaries)
    else:
        console.print(summary_table("sync", [
            {"source": s.get("source"), "status": s.get("status"), "inserted": s.get("inserted", 0),
             "updated": s.get("updated", 0), "unchanged": s.get("unchanged", 0), "rejected": s.get("rejected", 0),
             "accounts created": s.get("accounts_created", 0)}
            for s in summaries
        ]))
    failed = [s for s in summaries if s.get("status") != "ok"]
    if failed:
        # Each reason in full on its own lines: a table cell would cut it to the terminal's width.
        reasons = "".join(f"\n  {_reason(s)}" for s in failed)
        fail(f"{len(failed)} source(s) failed:{reasons}")
    if not summaries:
        console.print("no source to sync: add one with `groundswell sources add`")


def register(app: typer.Typer) -> None:
    app.add_typer(sources_app, name="sources")
    app.command("sync")(sync)
