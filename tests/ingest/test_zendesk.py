"""Zendesk connector against a fake of the cursor-based incremental ticket export."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.connectors.zendesk import ZendeskConnector
from ingest.errors import AuthError, SourceUnavailable
from ingest.sync import SyncFailed, sync_source
from models.tables import Account, Source
from tests.ingest.conftest import (
    Crash,
    FakeVendor,
    SleepRecorder,
    add_source,
    assert_crash_and_rerun_equal,
    basic,
    feedback_rows,
    run_ok,
)

TOKEN = "zd-secret-token-123"
EMAIL = "ops@example.com"
BASE = "https://acme.zendesk.com"
T0 = int(dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp())


class FakeZendesk(FakeVendor):
    """Tickets change by appending versions to a log; a cursor is a position in that log."""

    def __init__(self) -> None:
        super().__init__(expected_auth=basic(f"{EMAIL}/token", TOKEN))
        self.log: list[dict[str, Any]] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.orgs = {7: {"id": 7, "name": "Globex", "domain_names": ["globex.com"],
                         "organization_fields": {"arr": "50000", "segment": "enterprise"}}}
        self.users = {1: {"id": 1, "email": "jane@globex.com", "organization_id": 7},
                      2: {"id": 2, "email": "bob@initech.io", "organization_id": None}}

    def put_ticket(self, tid: int, subject: str, comments: list[tuple[str, bool]], requester: int = 1) -> None:
        self.comments[tid] = [{"id": tid * 100 + i, "type": "Comment", "body": body, "plain_body": body,
                               "public": public, "author_id": requester, "created_at": "2026-01-05T10:00:00Z"}
                              for i, (body, public) in enumerate(comments)]
        self.log.append({"id": tid, "subject": subject, "description": comments[0][0], "status": "open",
                         "requester_id": requester, "organization_id": self.users[requester]["organization_id"],
                         "created_at": f"2026-01-{tid % 28 + 1:02d}T09:00:00Z", "tags": ["export"],
                         "updated_at": "2026-01-05T10:00:00Z"})

    def route(self, request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, request.url.params
        if path == "/api/v2/incremental/tickets/cursor.json":
            if "cursor" in q:
                pos = int(q["cursor"].removeprefix("c"))
            else:
                assert int(q["start_time"]) == T0
                pos = 0
            size = int(q.get("per_page", 1000))
            tickets = self.log[pos:pos + size]
            end = pos + len(tickets)
            used_users = {t["requester_id"] for t in tickets}
            return httpx.Response(200, json={
                "tickets": tickets, "after_cursor": f"c{end}", "before_cursor": f"c{pos}",
                "after_url": f"{BASE}{path}?cursor=c{end}", "end_of_stream": end >= len(self.log),
                "users": [self.users[u] for u in used_users],
                "organizations": [self.orgs[o] for o in {t["organization_id"] for t in tickets} if o],
            })
        if path.startswith("/api/v2/tickets/") and path.endswith("/comments.json"):
            tid = int(path.split("/")[4])
            page = int(q.get("page", 1))
            comments = self.comments[tid][(page - 1) * 2:page * 2]
            more = page * 2 < len(self.comments[tid])
            return httpx.Response(200, json={
                "comments": comments, "count": len(self.comments[tid]),
                "next_page": f"{BASE}{path}?page={page + 1}" if more else None, "previous_page": None,
            })
        return httpx.Response(404, json={"error": "RecordNotFound"})


@pytest.fixture
def fake() -> FakeZendesk:
    zd = FakeZendesk()
    zd.put_ticket(1, "Export broken", [("CSV export times out", True), ("internal: known bug", False),
                                       ("Still broken for us, call +1 415 555 0100", True)])
    for tid in range(2, 6):
        zd.put_ticket(tid, f"Question {tid}", [(f"How do I set up SSO number {tid}?", True)],
                      requester=1 if tid % 2 else 2)
    return zd


OPTIONS = {"base_url": BASE, "email": EMAIL, "start_time": "2026-01-05T00:00:00Z", "page_size": "2"}


def make(fake: FakeZendesk, sleep: SleepRecorder | None = None, token: str = TOKEN) -> ZendeskConnector:
    return ZendeskConnector(source="zd", options=OPTIONS, token=token, transport=fake.transport(),
                            sleep=sleep or SleepRecorder(), max_retries=3)


@pytest.fixture
def source(sessions: sessionmaker[Session]) -> str:
    add_source(sessions, "zd", "zendesk", OPTIONS)
    return "zd"


def test_pages_tickets_with_public_comments_and_org_accounts(sessions: sessionmaker[Session], source: str,
                                                             fake: FakeZendesk) -> None:
    result = run_ok(sessions, source, make(fake))
    assert result.pages == 3 and result.stats.inserted == 5
    stored = feedback_rows(sessions, source)
    assert set(stored) == {"1", "2", "3", "4", "5"}
    first = stored["1"]
    assert "CSV export times out" in first.text and "Still broken" in first.text
    assert "internal" not in first.text  # private comments stay out
    assert first.title == "Export broken" and first.url == f"{BASE}/agent/tickets/1"
    with sessions() as session:
        globex = session.scalars(select(Account).where(Account.domain == "globex.com")).one()
        assert globex.external_ids == {"zendesk": "7"} and globex.arr == 50_000.0
        assert first.account_id == globex.id
        initech = session.scalars(select(Account).where(Account.domain == "initech.io")).one()
        assert stored["2"].account_id == initech.id  # no organization: linked by the requester's domain
    assert len(fake.paths("/comments.json")) == 6  # ticket 1 has two comment pages


def test_resumes_from_saved_cursor_and_updates_edited_ticket(sessions: sessionmaker[Session], source: str,
                                                             fake: FakeZendesk) -> None:
    run_ok(sessions, source, make(fake))
    fake.requests.clear()
    fake.put_ticket(3, "Question 3", [("How do I set up SSO with Okta? It fails with SAML error 42", True)])
    fake.put_ticket(6, "New", [("Dark mode please", True)])
    result = run_ok(sessions, source, make(fake))
    assert (result.stats.inserted, result.stats.updated) == (1, 1)
    first_call = fake.paths("/incremental/")[0]
    assert first_call.url.params["cursor"] == "c5" and "start_time" not in first_call.url.params
    stored = feedback_rows(sessions, source)
    assert len(stored) == 6 and "SAML error 42" in stored["3"].text and stored["3"].needs_analysis
    again = run_ok(sessions, source, make(fake))
    assert again.stats.stored == 0


def test_auth_failure_is_clear_and_secret_free(sessions: sessionmaker[Session], source: str,
                                               fake: FakeZendesk) -> None:
    with pytest.raises(SyncFailed) as info:
        sync_source(sessions, source, make(fake, token="wrong-token-xyz"))
    cause = info.value.cause
    assert isinstance(cause, AuthError) and cause.status_code == 401
    message = str(info.value)
    assert "zd:" in message and "HTTP 401" in message and "check the credentials" in message
    assert "/api/v2/incremental/tickets/cursor.json" in message
    assert "wrong-token-xyz" not in message and TOKEN not in message
    with sessions() as session:
        row = session.scalars(select(Source).where(Source.name == source)).one()
    assert row.last_sync_status == "failed" and "HTTP 401" in (row.last_sync_error or "")
    assert "wrong-token-xyz" not in (row.last_sync_error or "")


def test_rate_limit_waits_for_retry_after(sessions: sessionmaker[Session], source: str, fake: FakeZendesk) -> None:
    sleep = SleepRecorder()
    fake.fail_once("/incremental/", 429, headers={"Retry-After": "7"}, skip=1)
    result = run_ok(sessions, source, make(fake, sleep))
    assert sleep.calls == [7.0]
    assert result.stats.inserted == 5


def test_server_error_mid_stream_is_retried(sessions: sessionmaker[Session], source: str, fake: FakeZendesk) -> None:
    sleep = SleepRecorder()
    fake.fail_once("/incremental/", 500, skip=1)
    fake.fail_once("/comments.json", 503, skip=3)
    assert run_ok(sessions, source, make(fake, sleep)).stats.inserted == 5
    assert len(sleep.calls) == 2 and all(s > 0 for s in sleep.calls)


def test_backoff_jitter_stays_in_bounds_and_leaves_the_shared_random_state_alone(
        sessions: sessionmaker[Session], source: str, fake: FakeZendesk) -> None:
    import random

    sleep = SleepRecorder()
    for _ in range(3):
        fake.fail_once("/incremental/", 503, skip=1)
    random.seed(1234)
    expected = random.getstate()
    assert run_ok(sessions, source, make(fake, sleep)).stats.inserted == 5
    assert random.getstate() == expected  # a seeded caller's sequence does not move under a sync
    # backoff_s 1 doubling, each wait jittered to between half and all of it
    assert len(sleep.calls) == 3
    for attempt, waited in enumerate(sleep.calls):
        assert 0.5 * 2 ** attempt <= waited <= 2 ** attempt


def test_persistent_server_error_fails_after_retries(sessions: sessionmaker[Session], source: str,
                                                     fake: FakeZendesk) -> None:
    sleep = SleepRecorder()
    for _ in range(4):
        fake.fail_once("/incremental/", 502, skip=1)
    with pytest.raises(SyncFailed) as info:
        sync_source(sessions, source, make(fake, sleep))
    assert isinstance(info.value.cause, SourceUnavailable) and "after 4 tries" in str(info.value)
    assert info.value.result.pages == 1  # the first page stayed stored
    assert len(feedback_rows(sessions, source)) == 2


def test_crash_and_rerun_equals_one_clean_run(sessions: sessionmaker[Session], source: str,
                                              fake: FakeZendesk) -> None:
    assert_crash_and_rerun_equal(sessions, source, lambda: make(fake))
    # A crash while reading the next page (the process dies in the network call).
    clean_count = len(feedback_rows(sessions, source))
    from tests.ingest.conftest import snapshot, wipe_synced_data

    clean = snapshot(sessions)
    wipe_synced_data(sessions)
    fake.fail_once("/incremental/", exception=Crash("killed"), skip=1)
    with pytest.raises(SyncFailed):
        sync_source(sessions, source, make(fake))
    assert len(feedback_rows(sessions, source)) == 2
    run_ok(sessions, source, make(fake))
    assert snapshot(sessions) == clean and len(feedback_rows(sessions, source)) == clean_count
