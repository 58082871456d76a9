"""Web pages through the ASGI client: login, CSRF, role redirects, the note form and its confirmation."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.api.factories import World, assign


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _login(client: TestClient, key: str, next_url: str = "") -> Any:
    token = _csrf(client.get("/login").text)
    return client.post("/login", data={"api_key": key, "csrf": token, "next": next_url}, follow_redirects=False)


def test_login_sets_httponly_lax_cookie_and_logout_clears(client: TestClient, keys: Any, world: World) -> None:
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    response = _login(client, keys["pm"])
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "Top opportunities" in page.text and "export to excel" in page.text
    assert "<svg" in page.text  # sparklines
    assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
    client.post("/logout", data={"csrf": _csrf(page.text)})
    assert client.get("/", follow_redirects=False).status_code == 303


def test_bad_key_and_missing_csrf(client: TestClient, keys: Any) -> None:
    assert _login(client, "gs_wrong").status_code == 401
    no_csrf = client.post("/login", data={"api_key": keys["pm"]}, follow_redirects=False)
    assert no_csrf.status_code == 403


def test_login_rate_limit(settings: Any, engine: Any) -> None:
    from api.app import create_app
    from pipeline.embedding import HashingEmbedder

    app = create_app(settings, embedder=HashingEmbedder(), login_rate=(0.001, 3))
    with TestClient(app) as client:
        codes = [_login(client, "gs_wrong").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_sales_lands_on_note_form_and_sees_assignment(client: TestClient, keys: Any, world: World,
                                                      sessions: Any) -> None:
    response = _login(client, keys["sales"])
    assert response.headers["location"] == "/notes/new"
    form = client.get("/notes/new").text
    assert 'name="viewport"' in form and '<datalist id="accounts">' in form and "Acme Corp" in form
    assert client.get("/search", follow_redirects=False).status_code == 403
    bad = client.post("/notes", data={"text": "", "account_name": "", "csrf": _csrf(form)})
    assert bad.status_code == 422 and "at least 1 character" in bad.text
    no_account = client.post("/notes", data={"text": "hello", "account_name": "", "csrf": _csrf(form)})
    assert no_account.status_code == 422 and "account_name or account_domain is required" in no_account.text
    assert "hello" in no_account.text  # what the rep typed is kept
    data = {"text": "Wants Excel export for the board", "account_name": "Acme Corp", "deal_amount": "$12,000",
            "tags": "export, urgent", "idempotency_key": "form-1", "csrf": _csrf(form)}
    done = client.post("/notes", data=data, follow_redirects=False)
    assert done.status_code == 303
    url = done.headers["location"]
    assert client.post("/notes", data=data, follow_redirects=False).headers["location"] == url  # double submit
    page = client.get(url).text
    assert "Not yet assigned — check back after the next analysis" in page
    note_id = int(url.rsplit("/", 1)[1])
    with sessions.begin() as session:
        from models.tables import Feedback

        assign(session, session.get(Feedback, note_id), world.themes[0])  # type: ignore[arg-type]
    assert "It joined the theme" in client.get(url).text and "export to excel" in client.get(url).text


def test_theme_page_rename_and_merge(client: TestClient, keys: Any, world: World) -> None:
    export, sso = world.themes
    _login(client, keys["pm"])
    page = client.get(f"/themes/{export.id}").text
    assert "Weekly mentions" in page and 'class="chart"' in page and "Acme Corp" in page and "$128,000" in page
    token = _csrf(page)
    client.post(f"/themes/{export.id}/rename", data={"label": "Excel exports", "csrf": token})
    assert "Excel exports" in client.get(f"/themes/{export.id}").text
    assert client.post(f"/themes/{export.id}/rename", data={"label": "x", "csrf": "bad"}).status_code == 403
    merged = client.post(f"/themes/{sso.id}/merge", data={"into": str(export.id), "csrf": token},
                         follow_redirects=False)
    assert merged.headers["location"] == f"/themes/{export.id}"
    assert client.get("/themes/9999").status_code == 404


def test_sales_cannot_curate_from_pages(client: TestClient, keys: Any, world: World) -> None:
    _login(client, keys["sales"])
    page = client.get(f"/themes/{world.themes[0].id}").text
    assert "Rename" not in page
    response = client.post(f"/themes/{world.themes[0].id}/rename", data={"label": "x", "csrf": _csrf(page)})
    assert response.status_code == 403


def test_search_and_reports_pages(client: TestClient, keys: Any, world: World) -> None:
    _login(client, keys["pm"])
    assert "Excel export is broken" in client.get("/search", params={"q": "excel"}).text
    assert "2026-W10" in client.get("/reports").text
    view = client.get(f"/reports/{world.report.id}").text
    assert "sandbox" in view and "# Report 2026-W10" in view
    raw = client.get(f"/reports/{world.report.id}/html")
    assert "<h1>Report 2026-W10</h1>" in raw.text and "script-src 'none'" in raw.headers["content-security-policy"]


def test_cookie_session_reads_api_but_cannot_write(client: TestClient, keys: Any, world: World) -> None:
    _login(client, keys["sales"])
    assert client.get("/v1/accounts", params={"q": "glo"}).json()[0]["name"] == "Globex"
    assert client.post("/v1/feedback", json={"text": "x", "account_name": "Acme"}).status_code == 401
