"""Hostile input on every parser: file rows (CSV, JSONL), vendor payloads, API bodies. Property-based with
hypothesis, plus the named cases: a 1 MB text, a 10k-item batch, control characters, mixed encodings, emoji,
right-to-left text, empty strings. Nothing may crash a sync or give a 500; every row is stored or rejected.

(Schema fuzzing of the whole API lives in tests/api/test_fuzz.py.)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from ingest.registry import build_connector
from ingest.sync import SyncResult, sync_source
from models.settings import Settings
from models.tables import Feedback, RejectedRecord, Source
from pipeline.embedding import HashingEmbedder
from tests.api.factories import make_key
from tests.ingest.conftest import SleepRecorder, add_source

FAST = hsettings(max_examples=12, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NASTY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300) | st.sampled_from([
    "", " ", "\t\r\n", "\x00", "nul\x00inside", "\x1b[31mred\x1b[0m", "\u202eevil.exe\u202c", "שלום עולם، مرحبا",
    "😀🔥👍🏽 emoji only", "\ufeffBOM first", "a\u0301\u0300\u0302" * 20, "\u200b\u200c\u200d", "'; DROP TABLE x; --",
    "<script>alert(1)</script>", "%s%n%x", "\\x00", "Ω≈ç√∫˜µ≤≥÷", "𝕳𝖊𝖑𝖑𝖔",
])
counter = itertools.count()


def sync_file(sessions: sessionmaker[Session], settings: Settings, path: Path, **options: str) -> SyncResult:
    name = f"file-{next(counter)}"
    add_source(sessions, name, "file", {"path": str(path), **options})
    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == name)).one()
    return sync_source(sessions, name, build_connector(source, settings))


def counts(sessions: sessionmaker[Session], name: str) -> tuple[int, int]:
    with sessions() as session:
        source_id = session.scalar(select(Source.id).where(Source.name == name))
        return (session.scalar(select(func.count(Feedback.id)).where(Feedback.source_id == source_id)) or 0,
                session.scalar(select(func.count(RejectedRecord.id)).where(RejectedRecord.source_id == source_id))
                or 0)


def assert_clean_texts(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for text in session.scalars(select(Feedback.text)):
            assert text.strip() and "\x00" not in text
            text.encode("utf-8")  # no lone surrogates stored


# -- files --------------------------------------------------------------------------------------------------
@FAST
@given(rows=st.lists(st.tuples(NASTY_TEXT, NASTY_TEXT, st.sampled_from(["2026-01-05", "yesterday", "", "2026-13-45"])),
                     min_size=1, max_size=8),
       junk=st.lists(st.binary(max_size=60), max_size=3))
def test_csv_rows_are_stored_or_rejected_never_crash(sessions: sessionmaker[Session], settings: Settings,
                                                     tmp_path_factory: pytest.TempPathFactory,
                                                     rows: list[tuple[str, str, str]], junk: list[bytes]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["external_id", "text", "occurred_at"])
    for i, (key, text, date) in enumerate(rows):
        writer.writerow([f"{i}-{key}"[:200], text, date])
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    path.write_bytes(out.getvalue().encode("utf-8", "surrogatepass") + b"\n".join(junk) + b"\n")
    result = sync_file(sessions, settings, path)
    assert result.status == "ok"
    stored, rejected = counts(sessions, result.source)
    assert result.stats.stored + result.stats.rejected >= len(rows)  # every written row is accounted for
    assert (stored, rejected) == (result.stats.stored, result.stats.rejected)
    assert_clean_texts(sessions)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NASTY_TEXT, inner, max_size=3), max_leaves=8)


@FAST
@given(objects=st.lists(st.fixed_dictionaries({}, optional={
    "external_id": JSON_VALUES, "text": NASTY_TEXT | JSON_VALUES, "occurred_at": JSON_VALUES,
    "account_name": JSON_VALUES, "kind": JSON_VALUES, "title": JSON_VALUES}), min_size=1, max_size=6),
       junk=st.lists(st.binary(max_size=60) | NASTY_TEXT.map(lambda t: t.encode("utf-8")), max_size=3))
def test_jsonl_lines_are_stored_or_rejected_never_crash(sessions: sessionmaker[Session], settings: Settings,
                                                        tmp_path_factory: pytest.TempPathFactory,
                                                        objects: list[dict[str, Any]], junk: list[bytes]) -> None:
    lines = [json.dumps(o).encode() for o in objects] + [j.replace(b"\n", b" ") for j in junk]
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = sync_file(sessions, settings, path)
    assert result.status == "ok"
    stored, rejected = counts(sessions, result.source)
    non_blank = sum(1 for line in lines if line.strip())
    # Every non-blank line is accounted for: stored, or rejected with its payload (repeated ids collapse).
    assert 0 < stored + rejected <= non_blank
    assert result.stats.stored + result.stats.rejected == non_blank
    assert_clean_texts(sessions)


def test_named_hostile_rows_in_a_csv(sessions: sessionmaker[Session], settings: Settings, tmp_path: Path) -> None:
    header = b"external_id,text,occurred_at\n"
    rows = {
        "emoji": "😀 the export button 🔥 crashes 👍🏽".encode(),
        "rtl": "\u05d4\u05d9\u05d9\u05e6\u05d5\u05d0 \u05e0\u05db\u05e9\u05dc \u202e export".encode(),
        "control": b"export\x07 fails\x1b[0m with\x0b tabs\x0c",
        "latin1": "caf\xe9 cr\xe8me: l'export \xe9choue".encode("latin-1"),
        "empty": b"",
        "spaces": b"   ",
        "nul": b"nul \x00 inside",
    }
    body = b"".join(k.encode() + b',"' + v.replace(b'"', b'""') + b'",2026-01-05T10:00:00Z\n' for k, v in rows.items())
    path = tmp_path / "mixed.csv"
    path.write_bytes(header + body)
    result = sync_file(sessions, settings, path)
    assert result.status == "ok"
    with sessions() as session:
        stored = dict(session.execute(select(Feedback.external_id, Feedback.text)).tuples().all())
        rejected = {r.record_key.rsplit(":", 1)[-1]: r for r in session.scalars(select(RejectedRecord))}
    assert "😀" in stored["emoji"] and "🔥" in stored["emoji"]
    assert "\u05d4\u05d9\u05d9\u05e6\u05d5\u05d0" in stored["rtl"]
    assert "export" in stored["control"] and "\x1b" not in stored["control"] and "\x07" not in stored["control"]
    lines = {k: str(n) for n, k in enumerate(rows, start=2)}
    # The file reader rejects by file:line; the writer, after reading, by external id.
    assert set(rejected) == {lines["latin1"], lines["empty"], lines["spaces"], "nul"}
    assert "utf-8" in rejected[lines["latin1"]].reason.lower() or "undecodable" in rejected[lines["latin1"]].reason
    assert "caf" in rejected[lines["latin1"]].payload  # the raw row is kept, readable
    assert_clean_texts(sessions)


def test_ten_thousand_rows_through_the_ingest_path(sessions: sessionmaker[Session], settings: Settings,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps({"external_id": f"r{i}", "text": f"row {i}: exports fail 😀 שלום",
                                          "occurred_at": "2026-01-05T10:00:00Z"}) for i in range(10_000)) + "\n",
                    encoding="utf-8")
    result = sync_file(sessions, settings, path, page_size="2500")
    assert result.status == "ok" and result.stats.inserted == 10_000 and result.pages >= 4
    assert counts(sessions, result.source) == (10_000, 0)


# -- vendor payloads ------------------------------------------------------------------------------------------
TICKETS = st.fixed_dictionaries({"id": st.integers(1, 10**9) | NASTY_TEXT | st.none()}, optional={
    "subject": JSON_VALUES, "description": NASTY_TEXT | JSON_VALUES, "created_at": JSON_VALUES,
    "updated_at": JSON_VALUES, "status": st.sampled_from(["open", "solved", "deleted"]) | JSON_VALUES,
    "requester_id": JSON_VALUES, "organization_id": JSON_VALUES, "tags": JSON_VALUES, "via": JSON_VALUES,
}) | JSON_VALUES
CONVERSATIONS = st.fixed_dictionaries({"id": st.integers(1, 10**9) | NASTY_TEXT | st.none()}, optional={
    "created_at": JSON_VALUES, "updated_at": JSON_VALUES, "source": JSON_VALUES, "contacts": JSON_VALUES,
    "company": JSON_VALUES, "conversation_parts": JSON_VALUES, "title": JSON_VALUES,
}) | JSON_VALUES


def vendor_sync(sessions: sessionmaker[Session], settings: Settings, kind: str, options: dict[str, str],
                handle: Any) -> SyncResult:
    name = f"{kind}-{next(counter)}"
    add_source(sessions, name, kind, options)
    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == name)).one()
    configured = settings.model_copy(update={f"{kind}_token": SecretStr("token")})
    connector = build_connector(source, configured, transport=httpx.MockTransport(handle), sleep=SleepRecorder())
    return sync_source(sessions, name, connector)


@FAST
@given(tickets=st.lists(TICKETS, min_size=1, max_size=5), comments=st.lists(JSON_VALUES, max_size=3))
def test_zendesk_payloads_are_stored_or_rejected(sessions: sessionmaker[Session], settings: Settings,
                                                 tickets: list[Any], comments: list[Any]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/comments.json"):
            return httpx.Response(200, json={"comments": comments, "next_page": None})
        return httpx.Response(200, json={"tickets": tickets, "after_cursor": "c1", "end_of_stream": True,
                                         "users": [], "organizations": []})

    result = vendor_sync(sessions, settings, "zendesk", {"base_url": "https://z.example.com", "email": "a@b.co"},
                         handle)
    assert result.status == "ok"
    live = [t for t in tickets if not (isinstance(t, dict) and t.get("status") == "deleted")]
    assert result.stats.stored + result.stats.rejected >= min(1, len(live))
    assert_clean_texts(sessions)


@FAST
@given(conversations=st.lists(CONVERSATIONS, min_size=1, max_size=5))
def test_intercom_payloads_are_stored_or_rejected(sessions: sessionmaker[Session], settings: Settings,
                                                  conversations: list[Any]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/conversations/") and request.method == "GET":
            ident = request.url.path.rsplit("/", 1)[1]
            found = next((c for c in conversations if isinstance(c, dict) and str(c.get("id")) == ident), {})
            return httpx.Response(200, json=found)
        if request.url.path.startswith("/companies"):
            return httpx.Response(200, json={"data": [], "pages": {}})
        return httpx.Response(200, json={"conversations": conversations, "pages": {}})

    result = vendor_sync(sessions, settings, "intercom", {}, handle)
    assert result.status == "ok"
    assert result.stats.stored + result.stats.rejected >= 1
    assert_clean_texts(sessions)


HUBSPOT_OBJECTS = st.fixed_dictionaries({"id": st.integers(1, 10**9) | NASTY_TEXT | st.none()}, optional={
    "properties": st.fixed_dictionaries({}, optional={
        "hs_note_body": NASTY_TEXT | JSON_VALUES, "hs_timestamp": JSON_VALUES, "hs_lastmodifieddate": JSON_VALUES,
        "name": JSON_VALUES, "domain": JSON_VALUES, "annualrevenue": JSON_VALUES, "numberofemployees": JSON_VALUES,
        "lifecyclestage": JSON_VALUES, "hubspot_owner_id": JSON_VALUES,
    }) | JSON_VALUES,
    "createdAt": JSON_VALUES, "updatedAt": JSON_VALUES, "archived": JSON_VALUES,
}) | JSON_VALUES


@FAST
@given(notes=st.lists(HUBSPOT_OBJECTS, min_size=1, max_size=5), companies=st.lists(HUBSPOT_OBJECTS, max_size=3),
       links=st.lists(JSON_VALUES, max_size=3))
def test_hubspot_payloads_are_stored_or_rejected(sessions: sessionmaker[Session], settings: Settings,
                                                 notes: list[Any], companies: list[Any], links: list[Any]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/associations/notes/companies/batch/read"):
            return httpx.Response(200, json={"results": links})
        if path.endswith("/companies/batch/read"):
            return httpx.Response(200, json={"results": companies})
        if path.endswith("/companies/search"):
            return httpx.Response(200, json={"results": companies, "paging": {}})
        return httpx.Response(200, json={"results": notes, "paging": {}})

    result = vendor_sync(sessions, settings, "hubspot", {}, handle)
    assert result.status == "ok", result.error
    assert_clean_texts(sessions)


SALESFORCE_RECORDS = st.fixed_dictionaries({"Id": NASTY_TEXT | JSON_VALUES}, optional={
    "Body": NASTY_TEXT | JSON_VALUES, "Description": NASTY_TEXT | JSON_VALUES, "CreatedDate": JSON_VALUES,
    "SystemModstamp": JSON_VALUES, "CreatedById": JSON_VALUES, "ParentId": JSON_VALUES, "AccountId": JSON_VALUES,
    "Title": JSON_VALUES, "Subject": JSON_VALUES, "Name": JSON_VALUES, "Website": JSON_VALUES, "Type": JSON_VALUES,
    "NumberOfEmployees": JSON_VALUES, "Amount": JSON_VALUES, "IsClosed": JSON_VALUES, "IsWon": JSON_VALUES,
}) | JSON_VALUES


@FAST
@given(records=st.lists(SALESFORCE_RECORDS, min_size=1, max_size=5))
def test_salesforce_payloads_are_stored_or_rejected(sessions: sessionmaker[Session], settings: Settings,
                                                    records: list[Any]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"records": records, "done": True, "totalSize": len(records)})

    result = vendor_sync(sessions, settings, "salesforce",
                         {"instance_url": "https://sf.example.com", "notes": "Note:Body:ParentId:Title"}, handle)
    assert result.status == "ok", result.error
    assert_clean_texts(sessions)


# -- API bodies ---------------------------------------------------------------------------------------------
@pytest.fixture
def api(settings: Settings, engine: Any, sessions: sessionmaker[Session]) -> tuple[TestClient, dict[str, str]]:
    with sessions.begin() as session:
        keys = {role: make_key(session, role) for role in ("sales", "ingest")}
    app: FastAPI = create_app(settings, embedder=HashingEmbedder(), note_rate=(1000.0, 100_000))
    return TestClient(app, raise_server_exceptions=False), keys


NOTE_BODIES = st.fixed_dictionaries({}, optional={
    "text": NASTY_TEXT | JSON_VALUES, "account_name": NASTY_TEXT | JSON_VALUES, "account_domain": JSON_VALUES,
    "deal_stage": JSON_VALUES, "deal_amount": JSON_VALUES | st.floats(), "tags": JSON_VALUES,
    "extra": JSON_VALUES,
}) | JSON_VALUES


@FAST
@given(body=NOTE_BODIES, idem=st.none() | NASTY_TEXT.filter(lambda t: t.isprintable() and t.isascii()))
def test_field_note_bodies_never_get_a_500(api: tuple[TestClient, dict[str, str]], body: Any,
                                           idem: str | None) -> None:
    client, keys = api
    headers = {"Authorization": f"Bearer {keys['sales']}"}
    if idem:
        headers["Idempotency-Key"] = idem
    response = client.post("/v1/feedback", json=body, headers=headers)
    assert response.status_code in (201, 413, 422), (response.status_code, response.text[:300])
    if response.status_code == 422:
        assert response.json()["detail"]  # says what to fix


BATCH_ITEMS = st.fixed_dictionaries({"external_id": NASTY_TEXT | JSON_VALUES, "text": NASTY_TEXT | JSON_VALUES},
                                    optional={"occurred_at": st.sampled_from(["2026-01-05T10:00:00Z", "2026-01-05",
                                                                              "soon", ""]) | JSON_VALUES,
                                              "kind": st.sampled_from(["ticket", "chat", "tweet"]) | JSON_VALUES,
                                              "account_name": NASTY_TEXT, "url": NASTY_TEXT, "tags": JSON_VALUES})


@FAST
@given(items=st.lists(BATCH_ITEMS, max_size=6), source=NASTY_TEXT | st.sampled_from(["api", "partner-feed"]))
def test_batch_bodies_never_get_a_500(api: tuple[TestClient, dict[str, str]], items: list[Any], source: str) -> None:
    client, keys = api
    response = client.post("/v1/feedback/batch", json={"source": source, "items": items},
                           headers={"Authorization": f"Bearer {keys['ingest']}"})
    assert response.status_code in (200, 413, 422), (response.status_code, response.text[:300])
    if response.status_code == 200:
        out = response.json()
        assert out["inserted"] + out["updated"] + out["unchanged"] + out["rejected"] >= 1


def test_a_one_megabyte_text_gets_a_clear_4xx(api: tuple[TestClient, dict[str, str]],
                                              sessions: sessionmaker[Session]) -> None:
    client, keys = api
    big = "export fails " * (1_048_576 // 13)
    note = client.post("/v1/feedback", json={"text": big, "account_name": "Acme"},
                       headers={"Authorization": f"Bearer {keys['sales']}"})
    assert note.status_code in (413, 422) and "text" in note.text, note.text[:300]
    batch = client.post("/v1/feedback/batch", json={"items": [{"external_id": "big", "text": big,
                                                               "occurred_at": "2026-01-05T10:00:00Z"}]},
                        headers={"Authorization": f"Bearer {keys['ingest']}"})
    assert batch.status_code in (413, 422), batch.text[:300]
    assert "limit" in batch.text or "characters" in batch.text or "at most" in batch.text
    with sessions() as session:
        assert session.scalar(select(func.count(Feedback.id))) == 0


def test_a_ten_thousand_item_batch_names_the_limit(api: tuple[TestClient, dict[str, str]],
                                                   sessions: sessionmaker[Session]) -> None:
    client, keys = api
    items = [{"external_id": f"x{i}", "text": "export", "occurred_at": "2026-01-05T10:00:00Z"} for i in range(10_000)]
    response = client.post("/v1/feedback/batch", json={"items": items},
                           headers={"Authorization": f"Bearer {keys['ingest']}"})
    assert response.status_code in (413, 422), response.text[:300]
    assert "1000" in response.text.replace(",", "") or "1 000" in response.text
    with sessions() as session:
        assert session.scalar(select(func.count(Feedback.id))) == 0
