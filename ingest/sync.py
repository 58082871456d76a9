"""The sync engine: reads each stream of a connector from its cursor and stores page after page.

Every page is stored in one transaction with its accounts, its records and its stream's cursor, then
committed. A sync killed anywhere leaves either the page fully stored with its cursor or nothing of it,
so a rerun continues where the last commit left off; reading a page twice only re-upserts the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.base import Connector, Page
from ingest.errors import ConfigError
from ingest.http import error_text
from ingest.state import get_cursor, save_cursor
from ingest.upsert import FeedbackWriter, WriteStats
from models.tables import Source, utcnow

log = logging.getLogger(__name__)

# Called with (stream name, page number from 1); tests use them to inject crashes.
PageHook = Callable[[str, int], None]


@dataclass
class SyncResult:
    """What one sync of one source did."""

    source: str
    kind: str
    status: str = "running"  # ok, failed
    pages: int = 0
    accounts_upserted: int = 0
    accounts_created: int = 0
    stats: WriteStats = field(default_factory=WriteStats)
    streams: dict[str, WriteStats] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "status": self.status,
            "pages": self.pages,
            **{k: v for k, v in self.stats.as_dict().items() if k != "accounts_created"},
            "accounts_upserted": self.accounts_upserted,
            "accounts_created": self.accounts_created,
            "error": self.error,
        }


class SyncFailed(Exception):
    """A sync stopped on an error; carries what was stored before it (``result``) and the cause."""

    def __init__(self, result: SyncResult, cause: BaseException) -> None:
        self.result = result
        self.cause = cause
        super().__init__(result.error or error_text(cause))


def sync_source(factory: sessionmaker[Session], source_name: str, connector: Connector, *,
                redact_pii: bool = True, store_raw_text: bool = False, max_text_bytes: int = 100_000,
                before_commit: PageHook | None = None, after_commit: PageHook | None = None) -> SyncResult:
    """Sync every stream of ``connector`` into the source called ``source_name``.

    Raises:
        ConfigError: no such source.
        SyncFailed: a stream failed; pages committed before the failure stay stored, the source is
            marked failed with the (secret-free) error, and ``.cause`` is the original exception.
    """
    session = factory()
    try:
        source = session.scalars(select(Source).where(Source.name == source_name)).first()
        if source is None:
            raise ConfigError(f"no source named {source_name!r} (add it with `groundswell sources add`)")
        result = SyncResult(source=source.name, kind=source.kind)
        source_id = source.id
        session.commit()  # end the read transaction before the first page
        try:
            _sync_streams(session, source, connector, result, redact_pii=redact_pii,
                          store_raw_text=store_raw_text, max_text_bytes=max_text_bytes,
                          before_commit=before_commit, after_commit=after_commit)
        except Exception as exc:
            session.rollback()
            result.status = "failed"
            result.error = error_text(exc)
            _mark(session, source_id, status="failed", error=result.error)
            log.warning("sync of %s failed after %d pages: %s", source_name, result.pages, result.error)
            raise SyncFailed(result, exc) from exc
        result.status = "ok"
        _mark(session, source_id, status="ok", error=None)
        return result
    finally:
        session.close()
        connector.close()


def _sync_streams(session: Session, source: Source, connector: Connector, result: SyncResult, *,
                  redact_pii: bool, store_raw_text: bool, max_text_bytes: int,
                  before_commit: PageHook | None, after_commit: PageHook | None) -> None:
    writer = FeedbackWriter(session, source, redact_pii=redact_pii, store_raw_text=store_raw_text,
                            max_text_bytes=max_text_bytes)
    created_before = writer.accounts.created
    for stream in connector.streams():
        stream_stats = result.streams.setdefault(stream.name, WriteStats())
        cursor = get_cursor(session, source.id, stream.name)
        session.commit()
        for number, page in enumerate(stream.read(cursor), start=1):
            stats = _store_page(session, writer, source.id, stream.name, page, connector.system)
            if before_commit is not None:
                before_commit(stream.name, number)
            session.commit()
            result.pages += 1
            result.accounts_upserted += len(page.accounts)
            result.stats.add(stats)
            stream_stats.add(stats)
            result.accounts_created = writer.accounts.created - created_before
            log.info("%s/%s page %d: %s", source.name, stream.name, number, stats.as_dict())
            if after_commit is not None:
                after_commit(stream.name, number)


def _store_page(session: Session, writer: FeedbackWriter, source_id: int, stream: str, page: Page,
                system: str | None) -> WriteStats:
    for account in page.accounts:
        writer.accounts.upsert(account, system=system)
    if page.accounts:
        session.flush()
    stats = writer.write(page.records, stream=stream) if page.records else WriteStats()
    save_cursor(session, source_id, stream, page.cursor)
    return stats


def _mark(session: Session, source_id: int, *, status: str, error: str | None) -> None:
    source = session.get(Source, source_id)
    if source is None:  # deleted while syncing
        return
    source.last_sync_at = utcnow()
    source.last_sync_status = status
    # The error may quote a garbage response body; PostgreSQL text cannot hold NUL.
    source.last_sync_error = error.replace("\x00", "\\x00")[:2000] if error else None
    session.commit()
