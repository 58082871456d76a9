"""Field notes, bulk pushes, listing with filters and cursors, and problem details for bad input."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models.tables import Feedback
from tests.api.factories import World


def _note(**overrides: Any) -> dict[str, Any]:
    return {"text": "Customer wants bulk edit of tags", "account_name": "Acme Corp", "deal_stage": "negotiation",
            "deal_amount": 25000, "tags": ["bulk", "tags"], **overrides}


def test_field_note_is_stored_and_returned(client: TestClient, auth: Any, world: World) -> None:
    response = client.post("/v1/feedback", json=_note(), headers=auth("sales"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "field_note"
    assert body["submitted_by"] == "sales-user"
    assert body["account"]["name"] == "Acme Corp"  # matched to the existing account
    assert body["deal_amount"] == 25000
    assert body["tags"] == ["bulk", "tags"]
    assert client.get(f"/v1/feedback/{body['id']}", headers=auth("sales")).json()["id"] == body["id"]


def test_idempotency_key_returns_the_same_item(client: TestClient, auth: Any, sessions: Any) -> None:
    headers = {**auth("sales"), "Idempotency-Key": "note-123"}
    first = client.post("/v1/feedback", json=_note(account_domain="newco.io", account_name=None), headers=headers)
    second = client.post("/v1/feedback", json=_note(account_domain="newco.io", account_name=None), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    other = client.post("/v1/feedback", json=_note(), headers={**auth("sales"), "Idempotency-Key": "note-124"})
    assert other.json()["id"] != first.json()["id"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 2


def _problem(response: Any, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["field"] == field, body
    assert body["detail"]
    return body


def test_bad_notes_get_problem_details_naming_the_field(client: TestClient, auth: Any,
                                                         settings: Any) -> None:
    h = auth("sales")
    _problem(client.post("/v1/feedback", json=_note(text=""), headers=h), 422, "body.text")
    _problem(client.post("/v1/feedback", json=_note(text="   "), headers=h), 422, "body.text")
    _problem(client.post("/v1/feedback", json={"account_name": "Acme"}, headers=h), 422, "body.text")
    _problem(client.post("/v1/feedback", json=_note(account_name=None), headers=h), 422, "body.account_name")
    _problem(client.post("/v1/feedback", json=_note(account_name="  "), headers=h), 422, "body.account_name")
    _problem(client.post("/v1/feedback", json=_note(text="x" * 100_001), headers=h), 422, "body.text")
    _problem(client.post("/v1/feedback", json=_note(text="é" * 60_000), headers=h), 422, "body.text")  # bytes
    _problem(client.post("/v1/feedback", json=_note(deal_amount=-5), headers=h), 422, "body.deal_amount")
    _problem(client.post("/v1/feedback", json=_note(deal_amount="lots"), headers=h), 422, "body.deal_amount")
    _problem(client.post("/v1/feedback", json=_note(tags="a,b"), headers=h), 422, "body.tags")
    _problem(client.post("/v1/feedback", json=_note(colour="red"), headers=h), 422, "body.colour")
    _problem(client.post("/v1/feedback", json=[1, 2], headers=h), 422, "body")
    malformed = client.post("/v1/feedback", content=b'{"text": "unterminated', headers={
        **h, "Content-Type": "application/json"})
    assert _problem(malformed, 422, "body")["title"] == "Malformed JSON"
    assert client.post("/v1/feedback", json=_note(), headers={**h, "Idempotency-Key": "k" * 151}).status_code == 422


def test_oversized_body_gets_413(client: TestClient, auth: Any, settings: Any) -> None:
    big = json.dumps(_note(text="a" * (settings.max_body_bytes + 10)))
    response = client.post("/v1/feedback", content=big, headers={**auth("sales"), "Content-Type": "application/json"})
    _problem(response, 413, "body")

    def chunks() -> Any:  # no Content-Length: the limit still holds while streaming
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"a" * 65536

    streamed = client.post("/v1/feedback", content=chunks(), headers={**auth("sales"),
                                                                      "Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_note_rate_limit(settings: Any, engine: Any, sessions: Any) -> None:
    from api.app import create_app
    from pipeline.embedding import HashingEmbedder
    from tests.api.factories import make_key

    with sessions.begin() as session:
        key = make_key(session, "sales")
    app = create_app(settings, embedder=HashingEmbedder(), note_rate=(0.001, 2))
    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {key}"}
        codes = [client.post("/v1/feedback", json=_note(), headers=h).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        limited = client.post("/v1/feedback", json=_note(), headers=h)
        assert int(limited.headers["retry-after"]) >= 1


def test_batch_push_and_its_limit(client: TestClient, auth: Any) -> None:
    items = [{"external_id": f"t-{i}", "text": f"ticket number {i} about exports", "kind": "ticket",
              "occurred_at": "2026-01-05T10:00:00Z", "account_domain": "acme.com"} for i in range(3)]
    response = client.post("/v1/feedback/batch", json={"source": "partner-feed", "items": items},
                           headers=auth("ingest"))
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 3
    again = client.post("/v1/feedback/batch", json={"source": "partner-feed", "items": items}, headers=auth("ingest"))
    assert again.json()["inserted"] == 0 and again.json()["unchanged"] == 3
    too_many = [{**items[0], "external_id": f"x-{i}"} for i in range(1001)]
    _problem(client.post("/v1/feedback/batch", json={"items": too_many}, headers=auth("ingest")), 422, "body.items")
    bad_kind = [{**items[0], "kind": "tweet"}]
    _problem(client.post("/v1/feedback/batch", json={"items": bad_kind}, headers=auth("ingest")), 422,
             "body.items.0.kind")


def test_cursor_pagination_walks_every_item_once(client: TestClient, auth: Any, world: World) -> None:
    for i in range(7):
        client.post("/v1/feedback", json=_note(text=f"note {i}"), headers=auth("pm"))
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/feedback", params=params, headers=auth("pm")).json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 12
    assert seen == sorted(seen, reverse=True)
    _problem(client.get("/v1/feedback", params={"cursor": "garbage!"}, headers=auth("pm")), 422, "query.cursor")


def test_filters(client: TestClient, auth: Any, world: World) -> None:
    export, sso = world.themes
    h = auth("pm")
    by_theme = client.get("/v1/feedback", params={"theme": export.id}, headers=h).json()["items"]
    assert {i["theme"]["id"] for i in by_theme} == {export.id} and len(by_theme) == 3
    acme = world.accounts[0]
    by_account = client.get("/v1/feedback", params={"account": acme.id}, headers=h).json()["items"]
    assert len(by_account) == 2 and all(i["account"]["id"] == acme.id for i in by_account)
    assert len(client.get("/v1/feedback", params={"source": "zendesk-main"}, headers=h).json()["items"]) == 5
    assert len(client.get("/v1/feedback", params={"source": str(world.source.id)}, headers=h).json()["items"]) == 5
    assert client.get("/v1/feedback", params={"kind": "field_note"}, headers=h).json()["items"] == []
    assert client.get("/v1/feedback", params={"since": "2100-01-01T00:00:00Z"}, headers=h).json()["items"] == []
    assert len(client.get("/v1/feedback", params={"until": "2100-01-01"}, headers=h).json()["items"]) == 5
    _problem(client.get("/v1/feedback", params={"kind": "tweet"}, headers=h), 422, "query.kind")
    _problem(client.get("/v1/feedback", params={"since": "yesterday"}, headers=h), 422, "query.since")
    _problem(client.get("/v1/feedback", params={"limit": 0}, headers=h), 422, "query.limit")


def test_sales_sees_only_its_own_notes(client: TestClient, auth: Any, world: World, keys: Any) -> None:
    mine = client.post("/v1/feedback", json=_note(), headers=auth("sales")).json()
    pm_note = client.post("/v1/feedback", json=_note(text="pm note"), headers=auth("pm")).json()
    listed = client.get("/v1/feedback", headers=auth("sales")).json()["items"]
    assert [i["id"] for i in listed] == [mine["id"]]
    assert client.get(f"/v1/feedback/{pm_note['id']}", headers=auth("sales")).status_code == 404
    assert client.get(f"/v1/feedback/{world.items[0].id}", headers=auth("sales")).status_code == 404
    assert client.get(f"/v1/feedback/{world.items[0].id}", headers=auth("pm")).status_code == 200
    assert client.get("/v1/feedback/999999", headers=auth("pm")).status_code == 404


def test_move_item_pins_it(client: TestClient, auth: Any, world: World, sessions: Any) -> None:
    from models.tables import ThemeAssignment, ThemeEvent

    item, (export, sso) = world.items[0], world.themes
    moved = client.post(f"/v1/feedback/{item.id}/theme", json={"theme_id": sso.id}, headers=auth("pm"))
    assert moved.status_code == 200, moved.text
    assert moved.json()["id"] == sso.id and moved.json()["method"] == "manual"
    with sessions() as session:
        row = session.get(ThemeAssignment, item.id)
        assert row is not None and row.theme_id == sso.id and row.pinned and row.method == "manual"
        kinds = set(session.scalars(select(ThemeEvent.kind).where(ThemeEvent.theme_id.in_([export.id, sso.id]))))
        assert {"moved_in", "moved_out"} <= kinds
    _problem(client.post(f"/v1/feedback/{item.id}/theme", json={"theme_id": 99999}, headers=auth("pm")), 422,
             "body.theme_id")
    assert client.post("/v1/feedback/99999/theme", json={"theme_id": sso.id}, headers=auth("pm")).status_code == 404
    new_item = client.post("/v1/feedback", json=_note(), headers=auth("pm")).json()  # unassigned so far
    assert client.post(f"/v1/feedback/{new_item['id']}/theme", json={"theme_id": export.id},
                       headers=auth("pm")).status_code == 200


def test_nul_characters_are_refused_not_stored(client: TestClient, auth: Any) -> None:
    item = {"external_id": "a\x00b", "text": "fine text", "occurred_at": "2026-01-05T10:00:00Z"}
    _problem(client.post("/v1/feedback/batch", json={"items": [item]}, headers=auth("ingest")), 422,
             "body.items.0.external_id")
    _problem(client.post("/v1/feedback", json=_note(account_name="Ac\x00me"), headers=auth("sales")), 422,
             "body.account_name")
    _problem(client.get("/v1/feedback", params={"source": "a\x00"}, headers=auth("pm")), 422, "query")
