"""Salesforce connector against a fake REST query endpoint that understands the SOQL the connector sends."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.connectors.salesforce import SalesforceConnector
from ingest.errors import AuthError, ConfigError
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

TOKEN = "00Dxx!sf-secret"
BASE = "https://acme.my.salesforce.com"
QUERY = "/services/data/v60.0/query"
SELECT = re.compile(r"^SELECT (?P<fields>.+?) FROM (?P<obj>\w+)(?: WHERE (?P<where>.+?))?(?: ORDER BY .+)?$")


class FakeSalesforce(FakeVendor):
    batch = 2

    def __init__(self) -> None:
        super().__init__(expected_auth=f"Bearer {TOKEN}")
        self.tables: dict[str, dict[str, dict[str, Any]]] = {"Account": {}, "Opportunity": {}, "Note": {},
                                                               "Task": {}, "Field_Note__c": {}}
        self.second = 0
        self.locators: dict[str, list[dict[str, Any]]] = {}
        self.soql: list[str] = []

    def put(self, obj: str, oid: str, **fields: Any) -> None:
        self.second += 1
        stamp = f"2026-01-05T10:{self.second // 60:02d}:{self.second % 60:02d}.000+0000"
        self.tables[obj][oid] = {"attributes": {"type": obj, "url": f"/services/data/v60.0/sobjects/{obj}/{oid}"},
                                 "Id": oid, "CreatedDate": "2026-01-04T09:00:00.000+0000", "CreatedById": "005Rep",
                                 "SystemModstamp": stamp, **fields}

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == QUERY:
            soql = request.url.params["q"]
            self.soql.append(soql)
            m = SELECT.match(soql)
            assert m, soql
            rows = list(self.tables[m["obj"]].values())
            where = m["where"] or ""
            if ge := re.match(r"SystemModstamp >= (\S+)$", where):
                since = ge[1].replace("Z", "")
                rows = [r for r in rows if r["SystemModstamp"][:19] >= since[:19]]
                rows.sort(key=lambda r: r["SystemModstamp"])
            elif inn := re.match(r"(Id|AccountId) IN \((.*)\)$", where):
                wanted = {v.strip().strip("'") for v in inn[2].split(",")}
                rows = [r for r in rows if str(r.get(inn[1])) in wanted]
            fields = [f.strip() for f in m["fields"].split(",")]
            for f in fields:
                assert all(f in r for r in rows), f"INVALID_FIELD {f}"
            rows = [{"attributes": r["attributes"], **{f: r.get(f) for f in fields}} for r in rows]
            return self._batch(rows, 0)
        if path.startswith(QUERY + "/"):
            locator, offset = path.rsplit("/", 1)[1].split("-")
            return self._batch(self.locators[locator], int(offset))
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": "no such resource"}])

    def _batch(self, rows: list[dict[str, Any]], offset: int) -> httpx.Response:
        locator = f"01g{len(self.locators):04d}"
        self.locators[locator] = rows
        end = offset + self.batch
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": rows[offset:end]}
        if end < len(rows):
            body["nextRecordsUrl"] = f"{QUERY}/{locator}-{end}"
        return httpx.Response(200, json=body)


@pytest.fixture
def fake() -> FakeSalesforce:
    sf = FakeSalesforce()
    sf.put("Account", "001A", Name="Globex Corp", Website="https://www.globex.com", Type="Customer - Direct",
           NumberOfEmployees=5000, ARR__c=250000)
    sf.put("Account", "001B", Name="Initech", Website="initech.io", Type="Prospect", NumberOfEmployees=50, ARR__c=None)
    sf.put("Opportunity", "006A", AccountId="001B", Amount=40000, IsClosed=False, IsWon=False)
    sf.put("Opportunity", "006B", AccountId="001B", Amount=10000, IsClosed=False, IsWon=False)
    sf.put("Opportunity", "006C", AccountId="001A", Amount=99, IsClosed=True, IsWon=False)
    sf.put("Note", "002A", Body="Asked again for a Jira integration", ParentId="001A", Title="QBR")
    sf.put("Note", "002B", Body="Needs EU data residency", ParentId="003Contact", Title="Intro")
    sf.put("Note", "002C", Body="Happy with the API", ParentId="001B", Title="Check-in")
    sf.put("Task", "00TA", Description="Call: pricing for 500 seats is a blocker", AccountId="001B", Subject="Call")
    sf.put("Task", "00TB", Description=None, AccountId="001A", Subject="Email")
    sf.put("Field_Note__c", "a01A", Note__c="Competitor Productboard mentioned", Account__c="001A", Name="FN-1")
    return sf


OPTIONS = {"instance_url": BASE, "api_version": "60.0", "arr_field": "ARR__c",
           "notes": "Note:Body:ParentId:Title,Task:Description:AccountId:Subject,Field_Note__c:Note__c:Account__c:Name"}


def make(fake: FakeSalesforce, sleep: SleepRecorder | None = None, token: str = TOKEN) -> SalesforceConnector:
    return SalesforceConnector(source="sf", options=OPTIONS, token=token, transport=fake.transport(),
                               sleep=sleep or SleepRecorder(), max_retries=3)


@pytest.fixture
def source(sessions: sessionmaker[Session]) -> str:
    add_source(sessions, "sf", "salesforce", OPTIONS)
    return "sf"


def test_reads_note_objects_and_account_facts(sessions: sessionmaker[Session], source: str,
                                              fake: FakeSalesforce) -> None:
    result = run_ok(sessions, source, make(fake))
    assert result.stats.inserted == 5 and result.stats.rejected == 1  # the Task without description
    assert any(p.url.path.startswith(QUERY + "/") for p in fake.requests)  # nextRecordsUrl was followed
    stored = feedback_rows(sessions, source)
    assert set(stored) == {"Note:002A", "Note:002B", "Note:002C", "Task:00TA", "Field_Note__c:a01A"}
    with sessions() as session:
        globex = session.scalars(select(Account).where(Account.domain == "globex.com")).one()
        initech = session.scalars(select(Account).where(Account.domain == "initech.io")).one()
    assert (globex.arr, globex.lifecycle, globex.segment, globex.open_pipeline) == (250_000.0, "customer",
                                                                                   "enterprise", 0.0)
    assert (initech.lifecycle, initech.open_pipeline, initech.segment) == ("prospect", 50_000.0, "smb")
    assert stored["Note:002A"].account_id == globex.id and stored["Field_Note__c:a01A"].account_id == globex.id
    assert stored["Task:00TA"].account_id == initech.id and stored["Task:00TA"].title == "Call"
    assert stored["Note:002B"].account_id is None  # parent is a contact, not an account
    assert any("FROM Field_Note__c WHERE SystemModstamp >= 1970-01-01T00:00:00Z" in q for q in fake.soql)


def test_resumes_from_system_modstamp(sessions: sessionmaker[Session], source: str, fake: FakeSalesforce) -> None:
    run_ok(sessions, source, make(fake))
    fake.soql.clear()
    fake.put("Note", "002A", Body="Asked again for a Jira integration, now urgent", ParentId="001A", Title="QBR")
    fake.put("Opportunity", "006D", AccountId="001A", Amount=70000, IsClosed=False, IsWon=False)
    result = run_ok(sessions, source, make(fake))
    assert result.stats.updated == 1 and result.stats.inserted == 0
    note_query = next(q for q in fake.soql if "FROM Note " in q)
    assert "SystemModstamp >= 2026-01-05T10:00:08Z" in note_query  # the last Note stored before
    with sessions() as session:
        globex = session.scalars(select(Account).where(Account.domain == "globex.com")).one()
    assert globex.open_pipeline == 70_000.0
    assert "urgent" in feedback_rows(sessions, source)["Note:002A"].text


def test_auth_failure(sessions: sessionmaker[Session], source: str, fake: FakeSalesforce) -> None:
    with pytest.raises(SyncFailed) as info:
        sync_source(sessions, source, make(fake, token="expired"))
    assert isinstance(info.value.cause, AuthError) and f"GET {BASE}{QUERY} was refused" in str(info.value)
    assert "expired" not in str(info.value) and "SELECT" not in str(info.value)


def test_rate_limit_and_server_error_on_next_records_url(sessions: sessionmaker[Session], source: str,
                                                         fake: FakeSalesforce) -> None:
    sleep = SleepRecorder()
    fake.fail_once(QUERY + "/", 429, headers={"Retry-After": "3"})
    fake.fail_once(QUERY + "/", 500, skip=1)
    assert run_ok(sessions, source, make(fake, sleep)).stats.inserted == 5
    assert sleep.calls[0] == 3.0 and len(sleep.calls) == 2


def test_crash_and_rerun_equals_one_clean_run(sessions: sessionmaker[Session], source: str,
                                              fake: FakeSalesforce) -> None:
    assert_crash_and_rerun_equal(sessions, source, lambda: make(fake), pages_before_crash=2)
    clean = snapshot(sessions)
    wipe_synced_data(sessions)
    fake.fail_once(QUERY + "/", exception=Crash("killed"), skip=2)
    with pytest.raises(SyncFailed):
        sync_source(sessions, source, make(fake))
    run_ok(sessions, source, make(fake))
    assert snapshot(sessions) == clean


def test_bad_note_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Object:TextField"):
        SalesforceConnector(source="sf", options={"instance_url": BASE, "notes": "Note"}, token=TOKEN)
    with pytest.raises(ConfigError, match="instance_url"):
        SalesforceConnector(source="sf", options={}, token=TOKEN)
