"""Feedback: field notes from sales reps, bulk pushes from integrations, listing and moving items."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import curation
from api.arrivals import embed_after_response
from api.deps import (
    IdPath,
    IdQuery,
    IngestDep,
    NoteWriterDep,
    Principal,
    SessionDep,
    SettingsDep,
    TransactionalRoute,
    require_role,
)
from api.errors import InvalidInput, NotFound, TooManyRequests
from api.queries import FeedbackFilters, feedback_outs, get_feedback, list_feedback
from api.schemas import BatchIn, BatchOut, FeedbackKind, FeedbackOut, FeedbackPage, FieldNoteIn, MoveIn, ThemeRef
from ingest.errors import InvalidRecord
from ingest.field_notes import submit_field_note
from models.settings import Settings
from models.tables import Feedback

_FIELD = re.compile(r"field '(\w+)'")

router = APIRouter(route_class=TransactionalRoute, prefix="/feedback", tags=["feedback"])

FeedbackReaderDep = Annotated[Principal, Depends(require_role("pm", "sales"))]
CuratorDep = Annotated[Principal, Depends(require_role("pm"))]


def store_field_note(session: Session, settings: Settings, principal: Principal, note: FieldNoteIn, *,
                     idempotency_key: str | None, limiter_state: object) -> int:
    """Validate what the schema cannot, rate-limit, and store through ingest's field-note path.

    Returns:
        The stored item's id.
    """
    if not note.has_account:
        raise InvalidInput("name the account: account_name or account_domain is required", field="body.account_name")
    size = len(note.text.encode("utf-8", errors="surrogatepass"))
    if size > settings.max_text_bytes:
        raise InvalidInput(f"text is {size} bytes, over the limit of {settings.max_text_bytes}", field="body.text")
    limiter = getattr(limiter_state, "note_limiter", None)
    if limiter is not None and not limiter.allow(f"key:{principal.key_id}"):
        raise TooManyRequests("too many notes from this key; wait a moment",
                              retry_after=limiter.retry_after(f"key:{principal.key_id}"))
    # Idempotency keys are scoped to the API key, so two clients cannot collide on (or probe) each other's.
    scoped_key = f"k{principal.key_id}:{idempotency_key}" if idempotency_key else None
    try:
        item = submit_field_note(
            session, text=note.text, account_name=note.account_name, account_domain=note.account_domain,
            submitted_by=principal.name, idempotency_key=scoped_key, deal_stage=note.deal_stage,
            deal_amount=note.deal_amount, tags=tuple(note.tags), redact_pii=settings.redact_pii,
            store_raw_text=settings.store_raw_text, max_text_bytes=settings.max_text_bytes,
        )
    except InvalidRecord as exc:
        found = _FIELD.search(str(exc))
        raise InvalidInput(str(exc), field=f"body.{found.group(1)}" if found else "body") from exc
    return item.id


@router.post("", status_code=201, response_model=FeedbackOut, summary="Submit a field note")
def create_field_note(
    note: FieldNoteIn, request: Request, background: BackgroundTasks, session: SessionDep, settings: SettingsDep,
    principal: NoteWriterDep,
    idempotency_key: Annotated[str | None, Header(max_length=150, description="Retries with the same key "
                                                 "return the first item instead of storing a second.")] = None,
) -> FeedbackOut:
    feedback_id = store_field_note(session, settings, principal, note, idempotency_key=idempotency_key,
                                   limiter_state=request.app.state)
    embed_after_response(request, background, [feedback_id])
    return feedback_outs(session, [get_feedback(session, feedback_id)])[0]


@router.post("/batch", response_model=BatchOut, summary="Push up to 1,000 items")
def create_batch(batch: BatchIn, request: Request, background: BackgroundTasks, session: SessionDep,
                 settings: SettingsDep, principal: IngestDep) -> BatchOut:
    from ingest.records import AccountRef, FeedbackRecord
    from ingest.upsert import FeedbackWriter, get_or_create_source

    source = get_or_create_source(session, name=batch.source, kind="api")
    records = [
        FeedbackRecord(
            external_id=i.external_id, text=i.text,
            occurred_at=i.occurred_at if i.occurred_at.tzinfo else i.occurred_at.replace(tzinfo=dt.UTC),
            kind=i.kind, title=i.title,
            account=AccountRef(name=i.account_name, domain=i.account_domain)
            if (i.account_name or i.account_domain) else None,
            author_role=i.author_role, submitted_by=i.submitted_by or principal.name, url=i.url, tags=i.tags,
            deal_stage=i.deal_stage, deal_amount=i.deal_amount,
        )
        for i in batch.items
    ]
    stats = FeedbackWriter(session, source, redact_pii=settings.redact_pii, store_raw_text=settings.store_raw_text,
                           max_text_bytes=settings.max_text_bytes).write(records, stream="api")
    if stats.inserted or stats.updated:
        embed_after_response(request, background, session.scalars(select(Feedback.id).where(
            Feedback.source_id == source.id, Feedback.external_id.in_([r.external_id for r in records]))).all())
    return BatchOut(source=source.name, reasons=stats.reasons, **stats.as_dict())


@router.get("", response_model=FeedbackPage, summary="List feedback, newest first")
def list_items(
    session: SessionDep, principal: FeedbackReaderDep,
    theme: IdQuery = None,
    account: IdQuery = None,
    source: Annotated[str | None, Query(max_length=100, description="Source id or name.")] = None,
    kind: FeedbackKind | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FeedbackPage:
    """Sales keys see only the notes they submitted."""
    filters = FeedbackFilters(theme=theme, account=account, source=source, kind=kind, since=since, until=until,
                              submitted_by=principal.name if principal.role == "sales" else None)
    return list_feedback(session, filters, cursor=cursor, limit=limit)


@router.get("/{feedback_id}", response_model=FeedbackOut)
def get_item(feedback_id: IdPath, session: SessionDep, principal: FeedbackReaderDep) -> FeedbackOut:
    item = get_feedback(session, feedback_id)
    if principal.role == "sales" and item.submitted_by != principal.name:
        raise NotFound(f"feedback {feedback_id} does not exist")  # no hint that others' notes exist
    return feedback_outs(session, [item])[0]


@router.post("/{feedback_id}/theme", response_model=ThemeRef, summary="Move an item to a theme (pinned)")
def move_item(feedback_id: IdPath, body: MoveIn, session: SessionDep, principal: CuratorDep) -> ThemeRef:
    assignment = curation.move_feedback(session, feedback_id, body.theme_id, by=principal.name)
    theme = curation.current_theme_of(session, feedback_id)
    assert theme is not None
    return ThemeRef(id=theme.id, label=theme.display_label, method=assignment.method,
                    similarity=assignment.similarity)
