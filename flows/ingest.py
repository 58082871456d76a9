"""The ingest flow: one task per source, retried on I/O errors; a failing source never stops the others."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from flows.embedding import embed_arrivals
from ingest.errors import ConfigError, SourceUnavailable
from ingest.registry import KINDS, build_connector
from ingest.sync import SyncFailed, sync_source
from models.db import engine_from_settings, make_session_factory
from models.settings import Settings
from models.tables import Source

log = logging.getLogger(__name__)

# Worth another try: the vendor or the database may be back in a minute.
IO_ERRORS: tuple[type[BaseException], ...] = (SourceUnavailable, httpx.TransportError, OperationalError, OSError)


class SourceSyncError(Exception):
    """A source's sync failed; carries its summary (picklable, so Prefect can keep it as the task result)."""

    def __init__(self, summary: dict[str, Any], retryable: bool) -> None:
        super().__init__(summary.get("error") or "sync failed")
        self.summary = summary
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return (SourceSyncError, (self.summary, self.retryable))


def retry_on_io_error(_task: Any, _task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry a failed sync only when its cause was I/O."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, SourceSyncError) and exc.retryable


@task(name="sync-source", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=retry_on_io_error,
      cache_policy=NO_CACHE)
def sync_one(source_name: str, settings: Settings) -> dict[str, Any]:
    """Sync one source and return its summary; raises SourceSyncError (with the summary) on failure."""
    factory = make_session_factory(engine_from_settings(settings))
    started = dt.datetime.now(dt.UTC)
    try:
        with factory() as session:
            source = session.scalars(select(Source).where(Source.name == source_name)).first()
            if source is None:
                raise ConfigError(f"no source named {source_name!r}")
            kind = source.kind
            connector = build_connector(source, settings)
        result = sync_source(factory, source_name, connector, redact_pii=settings.redact_pii,
                             store_raw_text=settings.store_raw_text, max_text_bytes=settings.max_text_bytes)
    except SyncFailed as exc:
        summary = exc.result.as_dict()
        raise SourceSyncError(summary, isinstance(exc.cause, IO_ERRORS)) from None
    except ConfigError as exc:
        raise SourceSyncError({"source": source_name, "kind": locals().get("kind", "?"), "status": "failed",
                               "error": str(exc)}, False) from None
    summary = result.as_dict()
    summary["seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 2)
    log.info("synced %s: %s", source_name, summary)
    return summary


def sources_to_sync(settings: Settings, names: list[str] | None) -> list[str]:
    """The sources a run covers: the named ones, or every enabled pull source (field notes are pushed).

    Raises:
        ConfigError: a named source does not exist.
    """
    factory = make_session_factory(engine_from_settings(settings))
    with factory() as session:
        rows = session.execute(select(Source.name, Source.kind, Source.enabled, Source.config)).tuples().all()
    known = {name: (kind, enabled, config or {}) for name, kind, enabled, config in rows}
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(f"no source named {', '.join(map(repr, missing))}; see `groundswell sources list`")
        return list(dict.fromkeys(names))
    return sorted(n for n, (kind, enabled, config) in known.items()
                  if enabled and kind in KINDS and not config.get("demo"))


@flow(name="ingest-all")
def ingest_all(names: list[str] | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Sync the named sources (all when None) in parallel tasks, then embed what they stored
    (``embed_on_arrival``), so search finds the new items before the next analysis.

    Returns:
        One summary per source, in order, with ``status`` ``ok`` or ``failed`` (and ``error``).
    """
    settings = settings or Settings()
    targets = sources_to_sync(settings, names)
    futures = [sync_one.with_options(task_run_name=f"sync-{name}").submit(name, settings) for name in targets]
    summaries: list[dict[str, Any]] = []
    for name, future in zip(targets, futures, strict=True):
        future.wait()
        state = future.state
        if state.is_completed():
            summaries.append(future.result())
            continue
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, SourceSyncError):
            summaries.append(exc.summary)
        else:
            summaries.append({"source": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        get_run_logger().warning("sync of %s failed: %s", name, summaries[-1].get("error"))
    if settings.embed_on_arrival and any(int(s.get("inserted") or 0) + int(s.get("updated") or 0)
                                         for s in summaries):
        try:
            get_run_logger().info("embedded %d new texts", embed_arrivals(settings))
        except Exception as exc:  # what was stored stays stored; the next analysis embeds it
            get_run_logger().warning("embedding the new items failed, the next analysis will embed them: %s: %s",
                                     type(exc).__name__, exc)
    return summaries
