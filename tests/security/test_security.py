"""Security: hashed keys compared in constant time, CORS off by default, CSRF on page forms, no secret in any
log, SQL injection in every filter, rate limits on login and note submission.

(The route-table audit of role dependencies lives in tests/api/test_auth.py.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import socket
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from flows.delivery import RetryPolicy, deliver_report
from ingest.registry import build_connector
from ingest.sync import SyncFailed, sync_source
from models.settings import Settings
from models.tables import ApiKey, Base, Feedback, Source, Theme
from pipeline.embedding import HashingEmbedder
from tests.api.factories import World, make_key
from tests.ingest.conftest import SleepRecorder, add_source

ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def login(client: TestClient, key: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"api_key": key, "csrf": token}, follow_redirects=False)


# -- keys ---------------------------------------------------------------------------------------------------
def every_value(sessions: sessionmaker[Session]) -> list[str]:
    """Every stored value of every table, as text."""
    out: list[str] = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).tuples():
                out.extend(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row if v is not None)
    return out


def test_the_database_never_holds_a_raw_key(client: TestClient, auth: Any, sessions: sessionmaker[Session]) -> None:
    created = client.post("/v1/keys", json={"name": "rep", "role": "sales"}, headers=auth("admin"))
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    assert client.get("/v1/feedback", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert login(client, secret).status_code == 303  # the page login stores the key's id, not the key
    with sessions() as session:
        stored = session.scalar(select(ApiKey.key_hash).where(ApiKey.name == "rep"))
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    values = every_value(sessions)
    assert values and not [v for v in values if secret in v or secret[10:] in v]


def test_keys_and_csrf_tokens_are_compared_with_compare_digest(client: TestClient, keys: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("api.security.hmac.compare_digest", spy)
    digest = hashlib.sha256(keys["pm"].encode()).hexdigest().encode()
    assert client.get("/v1/themes", headers={"Authorization": f"Bearer {keys['pm']}"}).status_code == 200
    assert (digest, digest) in calls, "the key's digest was not compared with hmac.compare_digest"
    calls.clear()
    assert login(client, keys["pm"]).status_code == 303
    assert calls, "the CSRF token was not compared with hmac.compare_digest"
    # And nothing else compares them: with a comparison that always fails, no key and no form gets through.
    monkeypatch.setattr("api.security.hmac.compare_digest", lambda a, b: False)
    assert client.get("/v1/themes", headers={"Authorization": f"Bearer {keys['pm']}"}).status_code == 401
    client.cookies.clear()
    assert login(client, keys["pm"]).status_code == 403


# -- CORS ---------------------------------------------------------------------------------------------------
def preflight(client: TestClient, origin: str) -> httpx.Response:
    return client.options("/v1/feedback", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type"})


def test_cors_is_off_by_default(client: TestClient, auth: Any) -> None:
    assert "access-control-allow-origin" not in preflight(client, ORIGIN).headers
    read = client.get("/v1/feedback", headers={**auth("pm"), "Origin": ORIGIN})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_cors_allows_only_the_configured_origins(settings: Settings, engine: Any, keys: dict[str, str]) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": [ORIGIN]}), embedder=HashingEmbedder())
    with TestClient(app) as client:
        allowed = preflight(client, ORIGIN)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-credentials" not in allowed.headers  # bearer keys, never cookies
        assert "access-control-allow-origin" not in preflight(client, EVIL).headers
        read = client.get("/v1/feedback", headers={"Authorization": f"Bearer {keys['pm']}", "Origin": EVIL})
        assert "access-control-allow-origin" not in read.headers


# -- CSRF ---------------------------------------------------------------------------------------------------
def test_page_forms_refuse_a_missing_or_wrong_csrf_token(client: TestClient, keys: dict[str, str], world: World,
                                                         sessions: sessionmaker[Session]) -> None:
    assert login(client, keys["pm"]).status_code == 303
    form = client.get("/notes/new")
    token = csrf_of(form.text)
    note = {"text": "they need SSO before signing", "account_name": "Acme Corp", "idempotency_key": "csrf-1"}

    def notes() -> int:
        with sessions() as session:
            return session.scalar(select(func.count(Feedback.id)).where(Feedback.kind == "field_note")) or 0

    before = notes()
    for bad in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": token + "x"}):
        refused = client.post("/notes", data={**note, **bad}, follow_redirects=False)
        assert refused.status_code == 403, (bad, refused.status_code)
    theme = world.themes[0]
    renamed = client.post(f"/themes/{theme.id}/rename", data={"label": "pwned", "csrf": "forged"},
                          follow_redirects=False)
    assert renamed.status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert notes() == before
    with sessions() as session:
        assert session.get(Theme, theme.id).label_override != "pwned"  # type: ignore[union-attr]
    # A login form replayed from another session (a token minted for someone else) is refused too.
    with TestClient(client.app) as other:  # type: ignore[arg-type]
        other_token = csrf_of(other.get("/login").text)
    assert client.post("/notes", data={**note, "csrf": other_token}, follow_redirects=False).status_code == 403
    accepted = client.post("/notes", data={**note, "csrf": token}, follow_redirects=False)
    assert accepted.status_code == 303 and notes() == before + 1


# -- secrets in logs ----------------------------------------------------------------------------------------
SECRETS = {
    "zendesk_token": "zd-SeCrEt-1f2e3d4c5b6a",
    "intercom_token": "ic-SeCrEt-9a8b7c6d5e4f",
    "salesforce_token": "00Dsf!SeCrEt-77aa88bb",
    "hubspot_token": "pat-na1-SeCrEt-0099ffee",
    "smtp_password": "smtp-SeCrEt-pa55word",
}
VENDORS = {
    "zendesk": {"base_url": "https://acme.zendesk.com", "email": "ops@example.com", "page_size": "2"},
    "intercom": {"page_size": "2"},
    "salesforce": {"instance_url": "https://acme.my.salesforce.com", "api_version": "60.0"},
    "hubspot": {"base_url": "https://api.hubapi.com", "page_size": "2"},
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def forms_of(secret: str) -> set[str]:
    """A secret as it could leak: as is, and inside HTTP Basic credentials."""
    return {secret, base64.b64encode(f"ops@example.com/token:{secret}".encode()).decode()}


def test_configured_secrets_never_reach_the_logs(settings: Settings, engine: Any, sessions: sessionmaker[Session],
                                                 world: World, caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    webhook = f"http://127.0.0.1:{closed_port()}/services/T0SeCrEt/B0SeCrEt/xoxwebhookSeCrEtpath"
    configured = settings.model_copy(update={
        **{k: SecretStr(v) for k, v in SECRETS.items()},
        "slack_webhook_url": SecretStr(webhook),
        "smtp_host": "127.0.0.1", "smtp_port": closed_port(), "smtp_user": "reports", "report_to": ["pm@example.com"],
        "http_max_retries": 2,
    })
    secrets = {s for v in [*SECRETS.values(), webhook, "xoxwebhookSeCrEtpath"] for s in forms_of(v)}
    caplog.set_level(logging.DEBUG)
    seen_auth: set[str] = set()

    def vendor(status: int) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if "authorization" in request.headers:
                seen_auth.add(request.headers["authorization"])
            return httpx.Response(status, json={"error": "nope"}, headers={"Retry-After": "0"})
        return httpx.MockTransport(handle)

    failures = 0
    for kind, options in VENDORS.items():
        for status in (401, 500):
            name = f"{kind}-{status}"
            add_source(sessions, name, kind, options)
            with sessions() as session:
                source = session.scalars(select(Source).where(Source.name == name)).one()
            connector = build_connector(source, configured, transport=vendor(status), sleep=SleepRecorder())
            with pytest.raises(SyncFailed):
                sync_source(sessions, name, connector)
            failures += 1
    assert failures == 8 and len(seen_auth) >= 4, "the fake vendors never saw the credentials"
    secrets |= seen_auth | {a.partition(" ")[2] for a in seen_auth}

    outcome = deliver_report(sessions, configured, world.report.id, {"week": world.report.week, "top": [],
                                                                           "url": "http://127.0.0.1/reports/1"},
                             policy=RetryPolicy(attempts=2, backoff_s=0), sleep=lambda _s: None)
    assert outcome["slack"]["status"] == "failed" and outcome["email"]["status"] == "failed"

    with sessions.begin() as session:
        api_key = make_key(session, "pm", name="log-check")
    app: FastAPI = create_app(configured, embedder=HashingEmbedder())
    with TestClient(app, raise_server_exceptions=False) as client:
        h = {"Authorization": f"Bearer {api_key}"}
        client.get("/v1/feedback", headers=h)
        client.get("/v1/feedback", headers={"Authorization": f"Bearer {api_key}x"})
        client.post("/v1/feedback", json={"text": ""}, headers=h)
        client.get("/ready")
        login(client, api_key)
    secrets |= {api_key}

    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    out, err = capsys.readouterr()
    assert len(caplog.records) > 10, "nothing was logged: the test would prove nothing"
    assert "failed" in logged  # the failures themselves are reported
    with sessions() as session:
        errors = " ".join(e or "" for e in session.scalars(select(Source.last_sync_error)))
    for secret in secrets:
        for where, text in (("logs", logged), ("stdout", out), ("stderr", err), ("last_sync_error", errors)):
            assert secret not in text, f"a secret leaked into {where}"


# -- SQL injection ------------------------------------------------------------------------------------------
INJECTIONS = ["' OR 1=1 --", "1; DROP TABLE feedback", "1 OR 1=1", "%' OR '1'='1", '" OR ""="',
              "'; DELETE FROM api_key; --", "1) UNION SELECT key_hash FROM api_key --", "\\'; --"]
FILTERS = {
    "/v1/feedback": ["theme", "account", "source", "kind", "since", "until", "cursor", "limit"],
    "/v1/themes": ["status", "segment", "sort", "trend", "weeks", "limit"],
    "/v1/search": ["q", "theme", "account", "source", "kind", "since", "until", "limit"],
    "/v1/opportunities": ["segment", "limit"],
    "/v1/accounts": ["q", "limit"],
}


def table_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        names = set(inspect(session.connection()).get_table_names())
        return {t.name: session.scalar(select(func.count()).select_from(t)) or 0
                for t in Base.metadata.sorted_tables if t.name in names}


def items_of(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    for key in ("items", "hits", "results"):
        if isinstance(body, dict) and isinstance(body.get(key), list):
            return list(body[key])
    return []


def test_sql_injection_in_every_filter_is_inert(client: TestClient, auth: Any, world: World,
                                                sessions: sessionmaker[Session]) -> None:
    before = table_counts(sessions)
    assert before["feedback"] and before["api_key"]
    h = auth("admin")
    for path, params in FILTERS.items():
        base = {"q": "export"} if path == "/v1/search" else {}
        normal = client.get(path, params=base, headers=h)
        assert normal.status_code == 200, (path, normal.text)
        baseline = len(items_of(normal.json()))
        for param in params:
            for attack in INJECTIONS:
                response = client.get(path, params={**base, param: attack}, headers=h)
                assert response.status_code < 500, (path, param, attack, response.text[:300])
                if response.status_code == 200:
                    found = items_of(response.json())
                    assert len(found) <= max(baseline, 20), (path, param, attack)
                    if param in ("source",) or (path == "/v1/accounts" and param == "q"):
                        assert found == [], (path, param, attack)  # no source or account has that name
                else:
                    assert 400 <= response.status_code < 500
    assert table_counts(sessions) == before


# -- rate limits --------------------------------------------------------------------------------------------
def test_login_is_rate_limited_even_for_a_good_key(settings: Settings, engine: Any, keys: dict[str, str]) -> None:
    app = create_app(settings, embedder=HashingEmbedder(), login_rate=(0.001, 3))
    with TestClient(app) as client:
        codes = [login(client, "gs_wrong").status_code for _ in range(3)]
        limited = login(client, keys["pm"])
    assert codes == [401, 401, 401]
    assert limited.status_code == 429 and "Too many attempts" in limited.text


def test_note_form_is_rate_limited(settings: Settings, engine: Any, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key = make_key(session, "sales", name="fast-rep")
    app = create_app(settings, embedder=HashingEmbedder(), note_rate=(0.001, 2))
    with TestClient(app) as client:
        assert login(client, key).status_code == 303
        token = csrf_of(client.get("/notes/new").text)
        codes = [client.post("/notes", data={"text": f"note {i} about exports", "account_name": "Acme",
                                              "idempotency_key": f"rate-{i}", "csrf": token},
                             follow_redirects=False).status_code for i in range(3)]
        api = client.post("/v1/feedback", json={"text": "one more", "account_name": "Acme"},
                          headers={"Authorization": f"Bearer {key}"})
    assert codes == [303, 303, 429]
    assert api.status_code == 429 and int(api.headers["retry-after"]) >= 1
    with sessions() as session:
        assert session.scalar(select(func.count(Feedback.id)).where(Feedback.submitted_by == "fast-rep")) == 2
