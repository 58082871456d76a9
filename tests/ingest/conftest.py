"""Helpers of the ingest tests: sources, database snapshots, a fault-injecting fake vendor base."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.base import Connector
from ingest.sync import SyncFailed, SyncResult, sync_source
from models.tables import Account, Feedback, RejectedRecord, Source, SyncState


def add_source(sessions: sessionmaker[Session], name: str, kind: str, config: dict[str, Any] | None = None) -> int:
    with sessions.begin() as session:
        source = Source(name=name, kind=kind, config=config or {})
        session.add(source)
        session.flush()
        return source.id


def snapshot(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Everything a sync writes, keyed by natural keys (ids and write times left out)."""
    with sessions() as session:
        names = dict(session.execute(select(Source.id, Source.name)).tuples().all())
        accounts = {a.id: a for a in session.scalars(select(Account))}
        feedback = sorted(
            (names[f.source_id], f.external_id, f.kind, f.title, f.text, f.content_hash, f.url,
             accounts[f.account_id].name_key if f.account_id else None, f.author_role, f.submitted_by,
             f.occurred_at.isoformat(), json.dumps(f.tags), f.deal_stage, f.deal_amount, f.needs_analysis)
            for f in session.scalars(select(Feedback))
        )
        account_rows = sorted(
            (a.name_key, a.name, a.domain, a.segment, a.arr, a.lifecycle, a.open_pipeline,
             json.dumps(a.external_ids, sort_keys=True))
            for a in accounts.values()
        )
        rejected = sorted(
            (names.get(r.source_id or 0), r.stream, r.record_key, r.payload, r.reason)
            for r in session.scalars(select(RejectedRecord))
        )
        cursors = sorted(
            (names[s.source_id], s.stream, json.dumps(s.cursor, sort_keys=True))
            for s in session.scalars(select(SyncState))
        )
    return {"feedback": feedback, "accounts": account_rows, "rejected": rejected, "cursors": cursors}


def wipe_synced_data(sessions: sessionmaker[Session]) -> None:
    """Forget everything a sync wrote, keeping the sources."""
    with sessions.begin() as session:
        for table in (Feedback, RejectedRecord, SyncState, Account):
            session.execute(delete(table))


class Crash(Exception):
    """The injected crash."""


def assert_crash_and_rerun_equal(sessions: sessionmaker[Session], source: str,
                                 make_connector: Callable[[], Connector], *, pages_before_crash: int = 1) -> None:
    """A clean sync, then each crash point followed by a rerun, must leave identical databases."""
    assert sync_source(sessions, source, make_connector()).status == "ok"
    clean = snapshot(sessions)
    assert clean["feedback"], "the clean run stored nothing: the test would prove nothing"

    def crash_at(point: str) -> Callable[[str, int], None]:
        seen = {"pages": 0}

        def hook(_stream: str, _number: int) -> None:
            seen["pages"] += 1
            if seen["pages"] == pages_before_crash + (1 if point == "before_commit" else 0):
                raise Crash(point)
        return hook

    for point in ("after_commit", "before_commit"):
        wipe_synced_data(sessions)
        with pytest.raises(SyncFailed) as info:
            sync_source(sessions, source, make_connector(), **{point: crash_at(point)})  # type: ignore[arg-type]
        assert isinstance(info.value.cause, Crash)
        partial = snapshot(sessions)
        assert partial != clean, f"crash {point} came too late to test anything"
        assert sync_source(sessions, source, make_connector()).status == "ok"
        assert snapshot(sessions) == clean, f"crash {point} then rerun differs from one clean run"


@dataclass
class Fault:
    path_part: str
    status: int | None
    headers: dict[str, str]
    skip: int
    exception: BaseException | None = None


@dataclass
class FakeVendor:
    """Base of the fake vendor APIs: records requests, answers injected faults once, checks auth."""

    expected_auth: str = ""
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def fail_once(self, path_part: str, status: int | None = None, *, headers: dict[str, str] | None = None,
                  skip: int = 0, exception: BaseException | None = None) -> None:
        """Answer ``status`` (or raise) to the (skip+1)-th request whose path contains ``path_part``."""
        self.faults.append(Fault(path_part, status, headers or {}, skip, exception))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for fault in self.faults:
            if fault.path_part in request.url.path:
                if fault.skip:
                    fault.skip -= 1
                    continue
                self.faults.remove(fault)
                if fault.exception is not None:
                    raise fault.exception
                assert fault.status is not None
                return httpx.Response(fault.status, headers=fault.headers, json={"error": "injected"})
        if request.headers.get("Authorization") != self.expected_auth:
            return httpx.Response(401, json={"error": "Couldn't authenticate you"})
        return self.route(request)

    def route(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def paths(self, part: str) -> list[httpx.Request]:
        return [r for r in self.requests if part in r.url.path]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class SleepRecorder:
    """Stands in for time.sleep: records the waits, waits for nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def run_ok(sessions: sessionmaker[Session], source: str, connector: Connector) -> SyncResult:
    result = sync_source(sessions, source, connector)
    assert result.status == "ok", result.error
    return result


def feedback_rows(sessions: sessionmaker[Session], source: str) -> dict[str, Feedback]:
    with sessions() as session:
        return {f.external_id: f for f in session.scalars(
            select(Feedback).join(Source).where(Source.name == source))}
