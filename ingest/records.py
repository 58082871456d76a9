"""Plain records that connectors yield and the upsert path stores.

Connectors never touch ORM objects: they turn vendor payloads into these records (or rejections),
and :mod:`ingest.upsert` writes them idempotently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

FEEDBACK_KINDS = ("ticket", "chat", "call_note", "field_note", "review", "survey")
LIFECYCLES = ("customer", "prospect", "churned", "unknown")


@dataclass(slots=True)
class AccountRef:
    """How a feedback item names its account; matched by external id, then domain, then name."""

    name: str | None = None
    domain: str | None = None
    external_id: str | None = None  # id in the source's system, e.g. a Zendesk organization id
    system: str | None = None  # which system external_id belongs to: zendesk, salesforce, hubspot...


@dataclass(slots=True)
class AccountRecord:
    """An account with its commercial facts, from a CRM or an accounts file."""

    name: str
    domain: str | None = None
    segment: str | None = None
    arr: float | None = None
    lifecycle: str | None = None
    open_pipeline: float | None = None
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FeedbackRecord:
    """One piece of feedback as read from a source, before cleaning."""

    external_id: str
    text: str
    occurred_at: dt.datetime
    kind: str = "ticket"
    title: str | None = None
    account: AccountRef | None = None
    author_role: str | None = None  # customer, agent, sales, ...
    submitted_by: str | None = None
    url: str | None = None
    tags: list[str] = field(default_factory=list)
    deal_stage: str | None = None
    deal_amount: float | None = None
    is_html: bool = False


@dataclass(slots=True)
class Rejection:
    """A record that could not be taken, kept with its raw payload and the reason."""

    record_key: str
    payload: str
    reason: str


def payload_text(payload: Any, limit: int = 200_000) -> str:
    """Render a raw payload for storage in rejected_record, whatever its type."""
    import json

    if isinstance(payload, bytes):
        text = payload.decode("utf-8", errors="backslashreplace")
    elif isinstance(payload, str):
        text = payload
    else:
        try:
            text = json.dumps(payload, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(payload)
    return text[:limit]


def not_an_object(payload: Any, what: str) -> Rejection:
    """The rejection of a list entry that should be a JSON object (keyed by its content, so a re-read is one row)."""
    import hashlib

    text = payload_text(payload)
    digest = hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    return Rejection(f"(not an object):{digest}", text, f"{what} is not a JSON object")


def has_surrogates(text: str) -> bool:
    """True when ``text`` holds lone surrogates (undecodable bytes smuggled in by a decoder or a JSON escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
