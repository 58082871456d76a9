"""Every route's role boundary, 401 without or with a bad key, and an audit that no route is unguarded."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.routes.keys import create_key
from tests.api.factories import World

ALL = {"admin", "pm", "sales", "ingest"}

# (method, path, body, roles allowed). Paths use {theme}, {theme2}, {item}, {report}, {source}, {run}, {key}.
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/v1/feedback", {"text": "Need bulk edit", "account_name": "Acme Corp"}, {"admin", "pm", "sales"}),
    ("POST", "/v1/feedback/batch", {"items": [{"external_id": "b1", "text": "hello there",
                                               "occurred_at": "2026-01-05T10:00:00Z"}]}, {"admin", "ingest"}),
    ("GET", "/v1/feedback", None, {"admin", "pm", "sales"}),
    ("GET", "/v1/feedback/{item}", None, {"admin", "pm", "sales"}),  # sales: own notes only, else 404
    ("POST", "/v1/feedback/{item}/theme", {"theme_id": "{theme2}"}, {"admin", "pm"}),
    ("GET", "/v1/themes", None, {"admin", "pm", "sales"}),
    ("GET", "/v1/themes/{theme}", None, {"admin", "pm", "sales"}),
    ("PATCH", "/v1/themes/{theme}", {"label": "Excel exports"}, {"admin", "pm"}),
    ("POST", "/v1/themes/{theme}/merge", {"into": "{theme2}"}, {"admin", "pm"}),
    ("GET", "/v1/opportunities", None, {"admin", "pm", "sales"}),
    ("GET", "/v1/opportunities/{theme}", None, {"admin", "pm", "sales"}),
    ("PATCH", "/v1/opportunities/{theme}", {"decision": "planned", "note": "Q3"}, {"admin", "pm"}),
    ("GET", "/v1/search?q=excel", None, {"admin", "pm"}),
    ("GET", "/v1/reports", None, {"admin", "pm"}),
    ("GET", "/v1/reports/{report}", None, {"admin", "pm"}),
    ("POST", "/v1/reports", {"week": "2026-W10"}, {"admin", "pm"}),
    ("GET", "/v1/sources", None, {"admin", "pm"}),
    ("POST", "/v1/sources", {"name": "intercom-eu", "kind": "intercom"}, {"admin"}),
    ("POST", "/v1/sources/{source}/sync", None, {"admin", "pm"}),
    ("GET", "/v1/runs", None, {"admin", "pm"}),
    ("GET", "/v1/runs/{run}", None, {"admin", "pm"}),
    ("POST", "/v1/runs", {"kind": "incremental"}, {"admin", "pm"}),
    ("GET", "/v1/keys", None, {"admin"}),
    ("POST", "/v1/keys", {"name": "new", "role": "sales"}, {"admin"}),
    ("DELETE", "/v1/keys/{key}", None, {"admin"}),
    ("GET", "/v1/accounts?q=ac", None, {"admin", "pm", "sales"}),
]


def _fill(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        for name, n in ids.items():
            if value == "{" + name + "}":
                return n
            value = value.replace("{" + name + "}", str(n))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def test_the_table_covers_every_api_route(app: Any) -> None:
    declared = {(m, p.split("?")[0]) for m, p, _, _ in ROUTES}
    normalise = {"{feedback_id}": "{item}", "{theme_id}": "{theme}", "{report_id}": "{report}",
                 "{source_id}": "{source}", "{run_id}": "{run}", "{key_id}": "{key}"}
    actual = set()
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.route, APIRoute) and ctx.path.startswith("/v1"):
            path = ctx.path
            for old, new in normalise.items():
                path = path.replace(old, new)
            actual |= {(m, path) for m in ctx.methods}
    assert actual == declared


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_role_boundary(client: TestClient, keys: dict[str, str], world: World, sessions: Any, method: str,
                       path: str, body: dict[str, Any] | None, allowed: set[str]) -> None:
    with sessions.begin() as session:  # a key for each caller to revoke
        victim_ids = {role: create_key(session, name=f"victim-{role}", role="sales")[0].id for role in ALL}
    for role in sorted(ALL):
        ids = {"item": world.items[0].id, "theme": world.themes[0].id, "theme2": world.themes[1].id,
               "report": world.report.id, "source": world.source.id, "run": world.run.id, "key": victim_ids[role]}
        url = _fill(path, ids)
        payload = _fill(body, ids)
        if payload and path == "/v1/sources":
            payload = {**payload, "name": f"intercom-{role}"}
        response = client.request(method, url, json=payload, headers={"Authorization": f"Bearer {keys[role]}"})
        if role in allowed:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
    ids = {"item": 1, "theme": 1, "theme2": 2, "report": 1, "source": 1, "run": 1, "key": 1}
    anonymous = client.request(method, _fill(path, ids), json=_fill(body, ids))
    assert anonymous.status_code == 401
    assert anonymous.json()["status"] == 401
    bad = client.request(method, _fill(path, ids), json=_fill(body, ids), headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_every_non_public_route_has_a_role_dependency(app: Any) -> None:
    public = {"/health", "/ready", "/login", "/logout", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

    def roles_of(dependant: Any) -> set[str]:
        found: set[str] = set()
        for dep in dependant.dependencies:
            found |= set(getattr(dep.call, "allowed_roles", ()))
            found |= roles_of(dep)
        return found

    unguarded = []
    checked = 0
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.route, APIRoute) or ctx.path in public:
            continue
        checked += 1
        if not roles_of(ctx.route.dependant):
            unguarded.append(ctx.path)
    assert checked > 30  # the walk really saw the included routers
    assert unguarded == []


def test_malformed_authorization_headers(client: TestClient, keys: dict[str, str]) -> None:
    for header in ("Basic abc", "Bearer", "Bearer ", keys["pm"], f"Token {keys['pm']}"):
        response = client.get("/v1/themes", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers.get("www-authenticate") == "Bearer"


def test_revoked_key_is_refused(client: TestClient, auth: Any, keys: dict[str, str]) -> None:
    created = client.post("/v1/keys", json={"name": "temp", "role": "pm"}, headers=auth("admin"))
    assert created.status_code == 201
    secret = created.json()["key"]
    assert client.get("/v1/themes", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = client.get("/v1/keys", headers=auth("admin")).json()
    assert all("key" not in k for k in listed)
    assert client.delete(f"/v1/keys/{created.json()['id']}", headers=auth("admin")).status_code == 200
    assert client.get("/v1/themes", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_keys_are_stored_hashed(client: TestClient, auth: Any, sessions: Any) -> None:
    from sqlalchemy import select

    from models.tables import ApiKey

    secret = client.post("/v1/keys", json={"name": "h", "role": "sales"}, headers=auth("admin")).json()["key"]
    with sessions() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert secret not in stored
    assert all(len(h) == 64 for h in stored)


def test_public_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code in (200, 503)
    assert client.get("/openapi.json").status_code == 200
