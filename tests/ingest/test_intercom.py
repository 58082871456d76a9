"""Intercom connector against a fake of the conversation search, conversation, contact and company APIs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.connectors.intercom import IntercomConnector
from ingest.errors import AuthError
from ingest.sync import SyncFailed, sync_source
from models.tables import Account
from tests.ingest.conftest import (
    Crash,
    FakeVendor,
    SleepRecorder,
    add_source,
    assert_crash_and_rerun_equal,
    feedback_rows,
    run_ok,
    snapshot,
    wipe_synced_data,
)

TOKEN = "dG9rOmludGVyY29tLXNlY3JldA=="
T0 = 1_767_600_000


class FakeIntercom(FakeVendor):
    def __init__(self) -> None:
        super().__init__(expected_auth=f"Bearer {TOKEN}")
        self.conversations: dict[str, dict[str, Any]] = {}
        self.clock = T0
        self.contacts = {"c1": {"type": "contact", "id": "c1", "companies": {
            "type": "list", "data": [{"type": "company", "id": "co1", "url": "/companies/co1"}],
            "url": "/contacts/c1/companies", "total_count": 1, "has_more": False}},
            "c2": {"type": "contact", "id": "c2", "companies": {"type": "list", "data": [], "total_count": 0}}}
        self.companies = {"co1": {"type": "company", "id": "co1", "company_id": "acme-1", "name": "Acme Ltd",
                                  "website": "https://acme.co.uk", "monthly_spend": 1000, "plan": {"name": "Pro"}}}

    def put(self, cid: str, first: str, replies: list[tuple[str, str]], contact: str = "c1") -> None:
        self.clock += 10
        parts = [{"type": "conversation_part", "id": f"{cid}-{i}", "part_type": kind,
                  "body": f"<p>{body}</p>" if body else None,
                  "author": {"type": "admin" if kind == "note" or body.startswith("Agent") else "user", "id": "x"},
                  "created_at": self.clock} for i, (kind, body) in enumerate(replies)]
        self.conversations[cid] = {
            "type": "conversation", "id": cid, "created_at": T0 - 3600, "updated_at": self.clock,
            "source": {"type": "conversation", "delivered_as": "customer_initiated", "subject": "",
                       "body": f"<p>{first}</p>", "author": {"type": "user", "id": contact}},
            "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": contact}]},
            "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "1", "name": "billing"}]},
            "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts,
                                   "total_count": len(parts)},
        }

    def route(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Intercom-Version"] == "2.11"
        path = request.url.path
        if path == "/conversations/search":
            body = json.loads(request.content)
            q = body["query"]
            assert q["field"] == "updated_at" and q["operator"] == ">"
            rows = sorted((c for c in self.conversations.values() if c["updated_at"] > q["value"]),
                          key=lambda c: c["id"], reverse=True)  # not in updated_at order, on purpose
            per_page = body["pagination"]["per_page"]
            start = int(body["pagination"].get("starting_after") or 0)
            page = rows[start:start + per_page]
            pages: dict[str, Any] = {"type": "pages", "page": start // per_page + 1, "per_page": per_page,
                                     "total_pages": -(-len(rows) // per_page)}
            if start + per_page < len(rows):
                pages["next"] = {"page": pages["page"] + 1, "starting_after": str(start + per_page)}
            summaries = [{k: v for k, v in c.items() if k != "conversation_parts"} for c in page]
            return httpx.Response(200, json={"type": "conversation.list", "pages": pages,
                                             "total_count": len(rows), "conversations": summaries})
        if path.startswith("/conversations/"):
            return httpx.Response(200, json=self.conversations[path.rsplit("/", 1)[1]])
        if path.startswith("/contacts/"):
            return httpx.Response(200, json=self.contacts[path.rsplit("/", 1)[1]])
        if path.startswith("/companies/"):
            return httpx.Response(200, json=self.companies[path.rsplit("/", 1)[1]])
        return httpx.Response(404, json={"type": "error.list", "errors": [{"code": "not_found"}]})


@pytest.fixture
def fake() -> FakeIntercom:
    ic = FakeIntercom()
    ic.put("101", "Can we export invoices as PDF?", [("comment", "Agent: not yet"), ("comment", "Please add it"),
                                                     ("note", "internal: 3rd request"), ("close", "")])
    for i in range(2, 6):
        ic.put(f"10{i}", f"Webhook retries question {i}", [], contact="c1" if i % 2 else "c2")
    return ic


OPTIONS = {"page_size": "2"}


def make(fake: FakeIntercom, sleep: SleepRecorder | None = None, token: str = TOKEN) -> IntercomConnector:
    return IntercomConnector(source="ic", options=OPTIONS, token=token, transport=fake.transport(),
                             sleep=sleep or SleepRecorder(), max_retries=3)


@pytest.fixture
def source(sessions: sessionmaker[Session]) -> str:
    add_source(sessions, "ic", "intercom", OPTIONS)
    return "ic"


def test_pages_conversations_with_customer_parts_and_company(sessions: sessionmaker[Session], source: str,
                                                             fake: FakeIntercom) -> None:
    result = run_ok(sessions, source, make(fake))
    assert result.pages == 3 and result.stats.inserted == 5
    stored = feedback_rows(sessions, source)
    text = stored["101"].text
    assert "export invoices as PDF" in text and "Please add it" in text
    assert "Agent" not in text and "internal" not in text and "<p>" not in text
    assert stored["101"].kind == "chat" and stored["101"].tags == ["billing"]
    with sessions() as session:
        acme = session.scalars(select(Account).where(Account.domain == "acme.co.uk")).one()
    assert acme.arr == 12_000.0 and acme.external_ids == {"intercom": "co1"}
    assert stored["101"].account_id == acme.id and stored["102"].account_id is None
    assert len(fake.paths("/companies/")) == 1  # cached across conversations


def test_resumes_from_updated_at_cursor(sessions: sessionmaker[Session], source: str, fake: FakeIntercom) -> None:
    run_ok(sessions, source, make(fake))
    newest = fake.clock
    fake.requests.clear()
    fake.put("103", "Webhook retries question 3, now with a 504 error", [])
    fake.put("106", "SAML login loops", [], contact="c2")
    result = run_ok(sessions, source, make(fake))
    assert (result.stats.inserted, result.stats.updated) == (1, 1)
    first = json.loads(fake.paths("/conversations/search")[0].content)
    assert first["query"]["value"] == newest - 1
    assert "504" in feedback_rows(sessions, source)["103"].text


def test_auth_failure(sessions: sessionmaker[Session], source: str, fake: FakeIntercom) -> None:
    with pytest.raises(SyncFailed) as info:
        sync_source(sessions, source, make(fake, token="nope"))
    assert isinstance(info.value.cause, AuthError)
    assert "ic: POST https://api.intercom.io/conversations/search was refused with HTTP 401" in str(info.value)
    assert "nope" not in str(info.value)


def test_rate_limit_and_server_error(sessions: sessionmaker[Session], source: str, fake: FakeIntercom) -> None:
    sleep = SleepRecorder()
    fake.fail_once("/conversations/search", 429, headers={"Retry-After": "2"}, skip=1)
    fake.fail_once("/conversations/104", 502)
    assert run_ok(sessions, source, make(fake, sleep)).stats.inserted == 5
    assert 2.0 in sleep.calls and len(sleep.calls) == 2


def test_crash_and_rerun_equals_one_clean_run(sessions: sessionmaker[Session], source: str,
                                              fake: FakeIntercom) -> None:
    assert_crash_and_rerun_equal(sessions, source, lambda: make(fake))
    clean = snapshot(sessions)
    wipe_synced_data(sessions)
    fake.fail_once("/conversations/search", exception=Crash("killed"), skip=1)
    with pytest.raises(SyncFailed):
        sync_source(sessions, source, make(fake))
    run_ok(sessions, source, make(fake))
    assert snapshot(sessions) == clean
