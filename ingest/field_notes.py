"""Field notes: what a sales rep types after a meeting, stored through the same write path as connectors.

The API calls :func:`submit_field_note`. A client that retries a submission sends the same idempotency key
and gets the same item back, never a second one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.errors import InvalidRecord
from ingest.records import AccountRef, FeedbackRecord
from ingest.upsert import FeedbackWriter
from models.db import insert_for
from models.tables import Feedback, Source, utcnow

SOURCE_NAME = "field-notes"
SOURCE_KIND = "field_notes"
MAX_TAGS = 50


def field_note_source(session: Session) -> Source:
    """The source field notes are stored on, created once even under concurrent first calls."""
    source = session.scalars(select(Source).where(Source.name == SOURCE_NAME)).first()
    if source is not None:
        return source
    table = Source.__table__
    stmt = insert_for(session)(table).values(
        name=SOURCE_NAME, kind=SOURCE_KIND, config={}, enabled=True, created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=[table.c.name])
    session.execute(stmt)
    return session.scalars(select(Source).where(Source.name == SOURCE_NAME)).one()


def submit_field_note(session: Session, *, text: str, submitted_by: str, account_name: str | None = None,
                      account_domain: str | None = None, idempotency_key: str | None = None,
                      deal_stage: str | None = None, deal_amount: float | None = None,
                      tags: Iterable[str] = (), occurred_at: dt.datetime | None = None,
                      redact_pii: bool = True, store_raw_text: bool = False,
                      max_text_bytes: int = 100_000) -> Feedback:
    """Store a field note and return its feedback row; the caller commits.

    With an ``idempotency_key`` already used, the stored item is returned as it is.

    Raises:
        InvalidRecord: the note cannot be stored; the message names the field at fault.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRecord("field 'text' is empty: write what the customer said")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_text_bytes:
        raise InvalidRecord(f"field 'text' is {size} bytes, over the limit of {max_text_bytes}")
    if not submitted_by or not submitted_by.strip():
        raise InvalidRecord("field 'submitted_by' is empty: say who took the note")
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 200:
            raise InvalidRecord("field 'idempotency_key' must have 1 to 200 characters")
    if deal_amount is not None and (deal_amount != deal_amount or deal_amount < 0):
        raise InvalidRecord(f"field 'deal_amount' must be a non-negative number, got {deal_amount!r}")
    if occurred_at is not None and occurred_at.tzinfo is None:
        raise InvalidRecord("field 'occurred_at' must carry a time zone (e.g. 2026-01-05T10:00:00Z)")
    tag_list = [str(t).strip() for t in tags if str(t).strip()]
    if len(tag_list) > MAX_TAGS:
        raise InvalidRecord(f"field 'tags' has {len(tag_list)} tags; at most {MAX_TAGS} are allowed")

    source = field_note_source(session)
    external_id = f"key:{idempotency_key}" if idempotency_key else f"note:{uuid.uuid4().hex}"
    existing = _find(session, source.id, external_id)
    if existing is not None:
        return existing
    account = AccountRef(name=account_name, domain=account_domain) if (account_name or account_domain) else None
    record = FeedbackRecord(
        external_id=external_id, text=text, occurred_at=occurred_at or utcnow(), kind="field_note",
        account=account, author_role="sales", submitted_by=submitted_by.strip()[:255], tags=tag_list,
        deal_stage=deal_stage, deal_amount=deal_amount,
    )
    writer = FeedbackWriter(session, source, redact_pii=redact_pii, store_raw_text=store_raw_text,
                            max_text_bytes=max_text_bytes, preload_accounts=False)
    try:
        # A savepoint, so a concurrent twin that wins the insert leaves this transaction usable.
        with session.begin_nested():
            stats = writer.write([record], stream="field_notes")
    except IntegrityError:
        stats = None
    if stats is not None and stats.rejected:
        reason = next(iter(stats.reasons), "rejected")
        raise InvalidRecord(f"field 'text' cannot be stored: {reason}")
    note = _find(session, source.id, external_id)
    if note is None:  # pragma: no cover - the upsert above either stored it or a twin did
        raise InvalidRecord("the note could not be stored; retry with the same idempotency key")
    return note


def _find(session: Session, source_id: int, external_id: str) -> Feedback | None:
    return session.scalars(
        select(Feedback).where(Feedback.source_id == source_id, Feedback.external_id == external_id)
        .execution_options(populate_existing=True)
    ).first()
