"""A vendor answering garbage, truncated JSON, a 200 with an HTML error page or JSON of the wrong shape: the sync
fails with a clear error (or the record is quarantined), the source is marked failed, and nothing is stored as
feedback nor is any cursor advanced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.errors import BadResponse
from ingest.registry import build_connector
from ingest.sync import SyncFailed, sync_source
from models.settings import Settings
from models.tables import Feedback, RejectedRecord, Source, SyncState
from tests.ingest.conftest import SleepRecorder, add_source

VENDORS: dict[str, dict[str, str]] = {
    "zendesk": {"base_url": "https://acme.zendesk.com", "email": "ops@example.com", "page_size": "2"},
    "intercom": {"page_size": "2"},
    "salesforce": {"instance_url": "https://acme.my.salesforce.com", "api_version": "60.0"},
    "hubspot": {"base_url": "https://api.hubapi.com", "page_size": "2"},
}
HTML_ERROR = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
              "<body><h1>Bad Gateway</h1><p>The proxy received an invalid response.</p></body></html>")

ANSWERS: dict[str, Callable[[], httpx.Response]] = {
    "html-200": lambda: httpx.Response(200, text=HTML_ERROR, headers={"Content-Type": "text/html"}),
    "html-as-json": lambda: httpx.Response(200, text=HTML_ERROR, headers={"Content-Type": "application/json"}),
    "truncated-json": lambda: httpx.Response(
        200, content=b'{"tickets": [{"id": 1, "subject": "exp', headers={"Content-Type": "application/json"}),
    "binary-garbage": lambda: httpx.Response(200, content=bytes(range(256)) * 4,
                                             headers={"Content-Type": "application/json"}),
    "empty-body": lambda: httpx.Response(200, content=b"", headers={"Content-Type": "application/json"}),
    "json-array": lambda: httpx.Response(200, json=[1, "two", None]),
    "json-scalar": lambda: httpx.Response(200, json="ok"),
}


def settings_with_tokens(settings: Settings) -> Settings:
    from pydantic import SecretStr

    return settings.model_copy(update={f"{k}_token": SecretStr(f"{k}-token") for k in VENDORS})


def stored(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return (session.scalar(select(func.count(Feedback.id))) or 0,
                session.scalar(select(func.count(RejectedRecord.id))) or 0,
                session.scalar(select(func.count(SyncState.id))) or 0)


@pytest.mark.parametrize("kind", sorted(VENDORS))
@pytest.mark.parametrize("answer", sorted(ANSWERS))
def test_garbage_from_a_vendor_is_reported_never_stored(sessions: sessionmaker[Session], settings: Settings,
                                                        kind: str, answer: str) -> None:
    add_source(sessions, "vendor", kind, VENDORS[kind])
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return ANSWERS[answer]()

    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == "vendor")).one()
    connector = build_connector(source, settings_with_tokens(settings), transport=httpx.MockTransport(handle),
                                sleep=SleepRecorder())
    with pytest.raises(SyncFailed) as failed:
        sync_source(sessions, "vendor", connector)
    assert requests, "the connector never called the vendor"
    assert isinstance(failed.value.cause, BadResponse), repr(failed.value.cause)
    message = str(failed.value)
    assert message.startswith("vendor: ") and len(message) > 30, message  # which source, and what went wrong
    assert feedback_and_cursors(sessions) == (0, 0)
    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == "vendor")).one()
        assert source.last_sync_status == "failed" and source.last_sync_error


def feedback_and_cursors(sessions: sessionmaker[Session]) -> tuple[int, int]:
    feedback, _, cursors = stored(sessions)
    return feedback, cursors


def zendesk_page(tickets: list[Any]) -> dict[str, Any]:
    return {"tickets": tickets, "after_cursor": "c1", "end_of_stream": True, "users": [], "organizations": []}


@pytest.mark.parametrize("ticket", [
    {"id": 1},  # no text, no dates
    {"id": 2, "subject": "s", "description": None, "created_at": "2026-01-05T10:00:00Z"},
    {"id": 3, "subject": "s", "description": "export fails", "created_at": "not a date"},
    {"id": None, "subject": "s", "description": "export fails", "created_at": "2026-01-05T10:00:00Z"},
    {"id": 5, "subject": "s", "description": "\x00\x01\x02", "created_at": "2026-01-05T10:00:00Z"},
    "a string where a ticket should be",
    None,
])
def test_a_malformed_record_is_quarantined_not_stored(sessions: sessionmaker[Session], settings: Settings,
                                                      ticket: Any) -> None:
    """A well-formed page with one bad record: the record is rejected with its payload, the page goes on."""
    add_source(sessions, "zd", "zendesk", VENDORS["zendesk"])
    good = {"id": 9, "subject": "Exports", "description": "the export to excel times out", "status": "open",
            "requester_id": None, "organization_id": None, "created_at": "2026-01-05T10:00:00Z",
            "updated_at": "2026-01-05T10:00:00Z", "tags": []}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/comments.json"):
            return httpx.Response(200, json={"comments": [], "next_page": None})
        return httpx.Response(200, json=zendesk_page([ticket, good]))

    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == "zd")).one()
    connector = build_connector(source, settings_with_tokens(settings), transport=httpx.MockTransport(handle),
                                sleep=SleepRecorder())
    try:
        result = sync_source(sessions, "zd", connector)
    except SyncFailed as exc:  # refusing the whole page is acceptable too, as long as it is clear
        assert isinstance(exc.cause, BadResponse), repr(exc.cause)
        assert stored(sessions) == (0, 0, 0)
        return
    assert result.status == "ok"
    with sessions() as session:
        texts = session.scalars(select(Feedback.text)).all()
        rejected = session.scalars(select(RejectedRecord)).all()
    assert texts == ["the export to excel times out"]
    assert len(rejected) == 1 and rejected[0].reason and rejected[0].payload.strip()
