"""The one write path for feedback: clean, validate, link to accounts and upsert by (source, external id).

Connectors, the file loader, the demo generator and the field-note API all store through
:class:`FeedbackWriter`, so every item gets the same cleaning, redaction and quarantine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Insert, Text, case, cast, column, or_, select, table, text
from sqlalchemy.orm import Session

from ingest.accounts import AccountResolver
from ingest.cleaning import clean_text, content_hash
from ingest.records import FEEDBACK_KINDS, FeedbackRecord, Rejection, has_surrogates, payload_text
from models.db import insert_for
from models.tables import Feedback, RejectedRecord, Source, utcnow

log = logging.getLogger(__name__)

# The feedback columns a write sets, in the order of the rows COPYed on PostgreSQL.
WRITTEN_COLUMNS = (
    "source_id", "external_id", "kind", "title", "text", "raw_text", "content_hash", "url", "account_id",
    "author_role", "submitted_by", "occurred_at", "ingested_at", "updated_at", "tags", "deal_stage", "deal_amount",
    "needs_analysis", "flags", "competitors",
)
# What a new read of a stored record overwrites; updated_at and needs_analysis follow the content hash.
UPDATED_COLUMNS = (
    "kind", "title", "text", "raw_text", "content_hash", "url", "account_id", "author_role", "submitted_by",
    "occurred_at", "tags", "deal_stage", "deal_amount",
)
# PostgreSQL json has no equality: compared as text, and COPYed as JSON text.
JSON_COLUMNS = frozenset({"tags", "flags", "competitors"})
# A page is staged here (PostgreSQL): one per connection, emptied by each write and at commit.
PAGE_TABLE = "feedback_page"
CREATE_PAGE_TABLE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {PAGE_TABLE} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(WRITTEN_COLUMNS)} FROM {Feedback.__tablename__} WITH NO DATA"
)


@dataclass
class WriteStats:
    """What a write did, added up over pages."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    accounts_created: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: WriteStats) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.accounts_created += other.accounts_created
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n

    @property
    def stored(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "accounts_created": self.accounts_created,
        }


class FeedbackWriter:
    """Stores pages of records for one source.

    Args:
        session: an open session; the caller commits (with the cursor, in the same transaction).
        source: the source the records come from.
        redact_pii: replace PII by typed placeholders.
        store_raw_text: also keep the text as received.
        max_text_bytes: longer texts are rejected.
        preload_accounts: load every account up front (bulk writes); off for a single item.
    """

    def __init__(self, session: Session, source: Source, *, redact_pii: bool = True,
                 store_raw_text: bool = False, max_text_bytes: int = 100_000, preload_accounts: bool = True) -> None:
        self.session = session
        self.source = source
        self.redact_pii = redact_pii
        self.store_raw_text = store_raw_text
        self.max_text_bytes = max_text_bytes
        self.accounts = AccountResolver(session, preload=preload_accounts)
        self._insert = insert_for(session)

    # -- validation -------------------------------------------------------------------------
    def _row(self, rec: FeedbackRecord, now: dt.datetime) -> dict[str, Any] | Rejection:
        key = str(rec.external_id or "").strip()
        if not key:
            payload = payload_text(_record_payload(rec))
            # Key on the content, so several id-less records in one page are all kept (and a re-read is not).
            digest = hashlib.sha256(payload.encode("utf-8", "backslashreplace")).hexdigest()[:16]
            return Rejection(f"(no id):{digest}", payload, "missing external id")
        if len(key) > 255:
            return Rejection(key[:255], payload_text(_record_payload(rec)), "external id longer than 255 characters")
        if not isinstance(rec.text, str) or not rec.text.strip():
            return Rejection(key, payload_text(_record_payload(rec)), "empty text")
        size = len(rec.text.encode("utf-8", errors="surrogatepass"))
        if size > self.max_text_bytes:
            return Rejection(
                key, payload_text(_record_payload(rec), 2_000),
                f"text is {size} bytes, over the limit of {self.max_text_bytes}",
            )
        if "\x00" in rec.text or has_surrogates(rec.text):
            return Rejection(key, payload_text(_record_payload(rec)), "text contains undecodable bytes")
        if rec.kind not in FEEDBACK_KINDS:
            return Rejection(key, payload_text(_record_payload(rec)),
                             f"unknown kind {rec.kind!r} (expected one of {', '.join(FEEDBACK_KINDS)})")
        occurred = rec.occurred_at
        if not isinstance(occurred, dt.datetime):
            return Rejection(key, payload_text(_record_payload(rec)), f"bad date {occurred!r}")
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=dt.UTC)
        cleaned = clean_text(rec.text, is_html=rec.is_html, redact=self.redact_pii)
        if not cleaned.text:
            return Rejection(key, payload_text(_record_payload(rec)), "no text left after cleaning")
        title = None
        if rec.title:
            title = clean_text(rec.title, redact=self.redact_pii).text[:1000] or None
        return {
            "source_id": self.source.id,
            "external_id": key,
            "kind": rec.kind,
            "title": title,
            "text": cleaned.text,
            "raw_text": rec.text if self.store_raw_text else None,
            "content_hash": content_hash(cleaned.text),
            "url": rec.url,
            "account_id": self.accounts.resolve(rec.account),
            "author_role": rec.author_role,
            "submitted_by": rec.submitted_by,
            "occurred_at": occurred.astimezone(dt.UTC),
            "ingested_at": now,
            "updated_at": now,
            "tags": list(rec.tags or []),
            "deal_stage": rec.deal_stage,
            "deal_amount": rec.deal_amount,
            "needs_analysis": True,
            "flags": {},
            "competitors": [],
        }

    # -- writing ----------------------------------------------------------------------------
    def write(self, records: Iterable[FeedbackRecord | Rejection], *, stream: str = "default") -> WriteStats:
        """Clean, validate and upsert one page. Does not commit."""
        stats = WriteStats()
        created_before = self.accounts.created
        now = utcnow()
        rows: dict[str, dict[str, Any]] = {}
        rejections: dict[str, Rejection] = {}
        for rec in records:
            result = rec if isinstance(rec, Rejection) else self._row(rec, now)
            if isinstance(result, Rejection):
                rejections[result.record_key] = result
            else:
                rows[result["external_id"]] = result  # a record repeated in one page: the last wins
                rejections.pop(result["external_id"], None)
        if rows:
            self._upsert_rows(list(rows.values()), stats)
        if rejections:
            self._store_rejections(list(rejections.values()), stream)
            stats.rejected += len(rejections)
            for rej in rejections.values():
                reason = rej.reason.split(":", 1)[0][:80]
                stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
        stats.accounts_created = self.accounts.created - created_before
        return stats

    def _upsert_rows(self, rows: list[dict[str, Any]], stats: WriteStats) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            existing = self._stage_page(rows)
            page = table(PAGE_TABLE, *(column(name) for name in WRITTEN_COLUMNS))
            self.session.execute(self._upsert_statement().from_select(WRITTEN_COLUMNS, select(*page.c)))
        else:
            existing = self._existing_hashes([r["external_id"] for r in rows])
            stmt = self._upsert_statement()
            for start in range(0, len(rows), 1000):
                self.session.execute(stmt, rows[start:start + 1000])
        for row in rows:
            old_hash = existing.get(row["external_id"])
            if old_hash is None:
                stats.inserted += 1
            elif old_hash != row["content_hash"]:
                stats.updated += 1
            else:
                stats.unchanged += 1

    def _existing_hashes(self, keys: list[str]) -> dict[str, str]:
        """Content hash of each stored key (SQLite: at most 999 variables a statement)."""
        existing: dict[str, str] = {}
        for start in range(0, len(keys), 900):
            existing.update(self.session.execute(
                select(Feedback.external_id, Feedback.content_hash)
                .where(Feedback.source_id == self.source.id, Feedback.external_id.in_(keys[start:start + 900]))
            ).tuples().all())
        return existing

    def _stage_page(self, rows: list[dict[str, Any]]) -> dict[str, str]:
        """COPY the page into the temporary page table; the content hash of each key already stored.

        PostgreSQL only. The lookup used to be an IN list of bound keys. psycopg prepares a statement run
        five times, PostgreSQL then switches to a generic plan whose IN list it cannot hash, and with no
        statistics on feedback (a new database, or autovacuum not yet there) that plan scans every row of
        the source for each lookup: a 100,000-row sync slowed to 512 items/s. One probe of the unique index
        per staged key does not depend on statistics.
        """
        self.session.execute(text(CREATE_PAGE_TABLE))
        self.session.execute(text(f"TRUNCATE {PAGE_TABLE}"))
        cursor = self.session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(f"COPY {PAGE_TABLE} ({', '.join(WRITTEN_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(row[name]) if name in JSON_COLUMNS else row[name]
                                for name in WRITTEN_COLUMNS])
        page = table(PAGE_TABLE, column("external_id"))
        # A scalar subquery in the select list is never turned into a join, so the planner cannot pick a scan.
        old_hash = (
            select(Feedback.content_hash)
            .where(Feedback.source_id == self.source.id, Feedback.external_id == page.c.external_id)
            .scalar_subquery()
        )
        found = self.session.execute(select(page.c.external_id, old_hash)).tuples()
        return {key: hash_ for key, hash_ in found if hash_ is not None}

    def _upsert_statement(self) -> Insert:
        """INSERT ... ON CONFLICT (source, external id) DO UPDATE, skipping rows that would not change."""
        feedback = Feedback.__table__
        stmt = self._insert(feedback)
        excluded = stmt.excluded
        text_changed = feedback.c.content_hash != excluded.content_hash
        differs = [
            cast(feedback.c[name], Text).is_distinct_from(cast(excluded[name], Text)) if name in JSON_COLUMNS
            else feedback.c[name].is_distinct_from(excluded[name])
            for name in UPDATED_COLUMNS
        ]
        return stmt.on_conflict_do_update(
            index_elements=[feedback.c.source_id, feedback.c.external_id],
            set_={
                **{name: excluded[name] for name in UPDATED_COLUMNS},
                "updated_at": case((text_changed, excluded.updated_at), else_=feedback.c.updated_at),
                "needs_analysis": case((text_changed, True), else_=feedback.c.needs_analysis),
            },
            where=or_(*differs),
        )

    def _store_rejections(self, rejections: list[Rejection], stream: str) -> None:
        quarantine = RejectedRecord.__table__
        now = utcnow()
        stmt = self._insert(quarantine)
        stmt = stmt.on_conflict_do_update(
            index_elements=[quarantine.c.source_id, quarantine.c.stream, quarantine.c.record_key],
            set_={"payload": stmt.excluded.payload, "reason": stmt.excluded.reason},
        )
        self.session.execute(stmt, [
            # A quarantined payload may hold NUL, which PostgreSQL text cannot store; keep it visible, escaped.
            {"source_id": self.source.id, "stream": stream, "record_key": _no_nul(r.record_key)[:512],
             "payload": _no_nul(r.payload), "reason": _no_nul(r.reason), "created_at": now}
            for r in rejections
        ])


def _no_nul(text: str) -> str:
    return text.replace("\x00", "\\x00")



def _record_payload(rec: FeedbackRecord) -> dict[str, Any]:
    return {
        "external_id": rec.external_id,
        "text": rec.text if isinstance(rec.text, str) else repr(rec.text),
        "occurred_at": str(rec.occurred_at),
        "kind": rec.kind,
        "title": rec.title,
        "account": None if rec.account is None else {
            "name": rec.account.name, "domain": rec.account.domain, "external_id": rec.account.external_id,
        },
    }


def get_or_create_source(session: Session, *, name: str, kind: str, config: dict[str, Any] | None = None) -> Source:
    """The source called ``name``, created with ``kind`` and ``config`` when it does not exist."""
    source = session.scalars(select(Source).where(Source.name == name)).first()
    if source is None:
        source = Source(name=name, kind=kind, config=config or {})
        session.add(source)
        session.flush()
    return source
