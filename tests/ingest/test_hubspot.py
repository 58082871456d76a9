"""HubSpot connector against a fake of the CRM v3 search, batch read and v4 association APIs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.connectors.hubspot import HubSpotConnector
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

TOKEN = "pat-na1-secret"
MS0 = 1_767_600_000_000  # 2026-01-05


class FakeHubSpot(FakeVendor):
    def __init__(self) -> None:
        super().__init__(expected_auth=f"Bearer {TOKEN}")
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"notes": {}, "companies": {}}
        self.links: dict[str, list[str]] = {}
        self.clock = MS0

    def put(self, kind: str, oid: str, **props: Any) -> None:
        self.clock += 1000
        self.objects[kind][oid] = {"id": oid, "properties": {**props, "hs_lastmodifieddate": str(self.clock)},
                                   "createdAt": "2026-01-05T00:00:00Z", "archived": False}

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content or b"{}")
        if path.endswith("/search"):
            kind = path.split("/")[4]
            (flt,) = body["filterGroups"][0]["filters"]
            assert flt["propertyName"] == "hs_lastmodifieddate" and flt["operator"] == "GTE"
            assert body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
            rows = sorted((o for o in self.objects[kind].values()
                           if int(o["properties"]["hs_lastmodifieddate"]) >= int(flt["value"])),
                          key=lambda o: int(o["properties"]["hs_lastmodifieddate"]))
            start = int(body.get("after", 0))
            page = rows[start:start + body["limit"]]
            result: dict[str, Any] = {"total": len(rows), "results": page}
            if start + len(page) < len(rows):
                result["paging"] = {"next": {"after": str(start + len(page)), "link": "?after=..."}}
            return httpx.Response(200, json=result)
        if path == "/crm/v4/associations/notes/companies/batch/read":
            results = [{"from": {"id": i["id"]},
                        "to": [{"toObjectId": int(c), "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 190, "label": None}]}
                               for c in self.links[i["id"]]]}
                       for i in body["inputs"] if self.links.get(i["id"])]
            return httpx.Response(207 if len(results) < len(body["inputs"]) else 200,
                                  json={"status": "COMPLETE", "results": results})
        if path == "/crm/v3/objects/companies/batch/read":
            assert "name" in body["properties"]
            results = [self.objects["companies"][i["id"]] for i in body["inputs"]
                       if i["id"] in self.objects["companies"]]
            return httpx.Response(200, json={"status": "COMPLETE", "results": results})
        return httpx.Response(404, json={"message": "not found"})


@pytest.fixture
def fake() -> FakeHubSpot:
    hs = FakeHubSpot()
    hs.put("companies", "101", name="Globex", domain="globex.com", lifecyclestage="customer", hs_arr="90000",
           numberofemployees="2500")
    hs.put("companies", "102", name="Initech", domain="initech.io", lifecyclestage="opportunity",
           numberofemployees="40")
    for i in range(1, 6):
        hs.put("notes", f"n{i}", hs_note_body=f"<p>Call {i}: they need <b>audit logs</b> for SOC2</p>",
               hs_timestamp=f"2026-01-0{i}T10:00:00.000Z", hubspot_owner_id="42")
        hs.links[f"n{i}"] = ["101"] if i % 2 else ["102"]
    return hs


OPTIONS = {"base_url": "https://api.hubapi.com", "page_size": "2"}


def make(fake: FakeHubSpot, sleep: SleepRecorder | None = None, token: str = TOKEN) -> HubSpotConnector:
    return HubSpotConnector(source="hs", options=OPTIONS, token=token, transport=fake.transport(),
                            sleep=sleep or SleepRecorder(), max_retries=3)


@pytest.fixture
def source(sessions: sessionmaker[Session]) -> str:
    add_source(sessions, "hs", "hubspot", OPTIONS)
    return "hs"


def test_pages_companies_and_notes_with_associations(sessions: sessionmaker[Session], source: str,
                                                     fake: FakeHubSpot) -> None:
    result = run_ok(sessions, source, make(fake))
    assert result.stats.inserted == 5 and result.accounts_upserted == 2
    assert len(fake.paths("/notes/search")) == 3  # 5 notes, 2 per page
    stored = feedback_rows(sessions, source)
    assert stored["n1"].text == "Call 1: they need audit logs for SOC2"  # HTML became text
    assert stored["n1"].kind == "call_note" and stored["n1"].submitted_by == "42"
    with sessions() as session:
        globex = session.scalars(select(Account).where(Account.domain == "globex.com")).one()
        initech = session.scalars(select(Account).where(Account.domain == "initech.io")).one()
    assert (globex.arr, globex.segment, globex.lifecycle) == (90_000.0, "enterprise", "customer")
    assert (initech.lifecycle, initech.segment, initech.external_ids) == ("prospect", "smb", {"hubspot": "102"})
    assert stored["n1"].account_id == globex.id and stored["n2"].account_id == initech.id


def test_resumes_from_last_modified_cursor(sessions: sessionmaker[Session], source: str, fake: FakeHubSpot) -> None:
    run_ok(sessions, source, make(fake))
    fake.requests.clear()
    fake.put("notes", "n2", hs_note_body="Call 2: audit logs AND SCIM provisioning", hs_timestamp="2026-01-02",
             hubspot_owner_id="42")
    fake.put("notes", "n9", hs_note_body="Pricing too high", hs_timestamp="2026-01-09")
    fake.links["n9"] = ["101"]
    result = run_ok(sessions, source, make(fake))
    assert (result.stats.inserted, result.stats.updated) == (1, 1)
    first = json.loads(fake.paths("/notes/search")[0].content)
    assert int(first["filterGroups"][0]["filters"][0]["value"]) == MS0 + 7000  # the last note stored before
    stored = feedback_rows(sessions, source)
    assert len(stored) == 6 and "SCIM" in stored["n2"].text
    assert run_ok(sessions, source, make(fake)).stats.inserted == 0


def test_auth_failure(sessions: sessionmaker[Session], source: str, fake: FakeHubSpot) -> None:
    with pytest.raises(SyncFailed) as info:
        sync_source(sessions, source, make(fake, token="bad-token"))
    assert isinstance(info.value.cause, AuthError)
    assert "POST https://api.hubapi.com/crm/v3/objects/companies/search was refused with HTTP 401" in str(info.value)
    assert "bad-token" not in str(info.value)


def test_rate_limit_and_server_error(sessions: sessionmaker[Session], source: str, fake: FakeHubSpot) -> None:
    sleep = SleepRecorder()
    fake.fail_once("/notes/search", 429, headers={"Retry-After": "10"}, skip=1)
    fake.fail_once("/associations/", 500, skip=1)
    assert run_ok(sessions, source, make(fake, sleep)).stats.inserted == 5
    assert sleep.calls[0] == 10.0 and len(sleep.calls) == 2


def test_crash_and_rerun_equals_one_clean_run(sessions: sessionmaker[Session], source: str,
                                              fake: FakeHubSpot) -> None:
    assert_crash_and_rerun_equal(sessions, source, lambda: make(fake), pages_before_crash=2)
    clean = snapshot(sessions)
    wipe_synced_data(sessions)
    fake.fail_once("/notes/search", exception=Crash("killed"), skip=1)
    with pytest.raises(SyncFailed):
        sync_source(sessions, source, make(fake))
    run_ok(sessions, source, make(fake))
    assert snapshot(sessions) == clean
