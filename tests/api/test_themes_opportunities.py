"""Themes and opportunities: ranked reads, evidence, curation and decisions."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from models.tables import Theme, ThemeAssignment, ThemeEvent
from tests.api.factories import World, make_opportunity, make_run, make_theme


def test_themes_sorted_by_score_momentum_and_size(client: TestClient, auth: Any, world: World,
                                                  sessions: Any) -> None:
    export, sso = world.themes
    with sessions.begin() as session:
        make_theme(session, "unscored big theme", size=50)
    h = auth("sales")
    by_score = client.get("/v1/themes", headers=h).json()
    assert [t["id"] for t in by_score[:2]] == [export.id, sso.id]
    assert by_score[0]["score"] == 82.0 and by_score[2]["score"] is None
    assert len(by_score[0]["weekly"]) == 12 and by_score[0]["weekly"][-1]["items"] == 7
    assert client.get("/v1/themes", params={"sort": "size"}, headers=h).json()[0]["label"] == "unscored big theme"
    assert client.get("/v1/themes", params={"sort": "momentum"}, headers=h).json()[0]["id"] == export.id
    enterprise = client.get("/v1/themes", params={"segment": "enterprise"}, headers=h).json()
    assert [t["id"] for t in enterprise] == [export.id] and enterprise[0]["score"] == 80.0
    emerging = client.get("/v1/themes", params={"trend": ["emerging", "new"]}, headers=h).json()
    assert [t["id"] for t in emerging] == [export.id]
    assert client.get("/v1/themes", params={"sort": "loudness"}, headers=h).json()["field"] == "query.sort"


def test_theme_detail_has_evidence(client: TestClient, auth: Any, world: World) -> None:
    export = world.themes[0]
    body = client.get(f"/v1/themes/{export.id}", headers=auth("pm")).json()
    assert body["size"] == 3
    assert len(body["quotes"]) == 3 and {q["source"] for q in body["quotes"]} == {"zendesk-main"}
    assert {a["name"] for a in body["accounts"]} == {"Acme Corp", "Globex", "Initech"}
    assert body["arr_at_stake"] == 128_000.0 and body["open_pipeline_at_stake"] == 50_000.0
    assert body["competitors"] == {"Productboard": 1, "Canny": 1}
    assert body["rationale"].startswith("export to excel")
    assert len(body["weekly"]) == 26
    assert client.get("/v1/themes/9999", headers=auth("pm")).status_code == 404


def test_rename_and_archive(client: TestClient, auth: Any, world: World, sessions: Any) -> None:
    export = world.themes[0]
    renamed = client.patch(f"/v1/themes/{export.id}", json={"label": "Excel exports"}, headers=auth("pm"))
    assert renamed.status_code == 200 and renamed.json()["label"] == "Excel exports"
    assert renamed.json()["auto_label"] == "export to excel"
    assert [e["kind"] for e in renamed.json()["lineage"]] == ["renamed"]
    bad = client.patch(f"/v1/themes/{export.id}", json={"label": "  "}, headers=auth("pm"))
    assert bad.status_code == 422 and bad.json()["field"] == "body.label"
    assert client.patch(f"/v1/themes/{export.id}", json={}, headers=auth("pm")).status_code == 422
    archived = client.patch(f"/v1/themes/{export.id}", json={"archived": True}, headers=auth("pm"))
    assert archived.json()["status"] == "archived"
    assert export.id not in [t["id"] for t in client.get("/v1/themes", headers=auth("pm")).json()]
    assert export.id not in [o["theme_id"] for o in client.get("/v1/opportunities", headers=auth("pm")).json()]
    restored = client.patch(f"/v1/themes/{export.id}", json={"archived": False}, headers=auth("pm"))
    assert restored.json()["status"] == "active"
    with sessions() as session:
        kinds = session.scalars(select(ThemeEvent.kind).where(ThemeEvent.theme_id == export.id)
                                .order_by(ThemeEvent.id)).all()
    assert kinds == ["renamed", "archived", "restored"]


def test_merge_moves_every_assignment(client: TestClient, auth: Any, world: World, sessions: Any) -> None:
    export, sso = world.themes
    pinned_item = world.items[3]  # an sso item, pinned by hand
    client.post(f"/v1/feedback/{pinned_item.id}/theme", json={"theme_id": sso.id}, headers=auth("pm"))
    merged = client.post(f"/v1/themes/{sso.id}/merge", json={"into": export.id}, headers=auth("pm"))
    assert merged.status_code == 200, merged.text
    assert merged.json()["id"] == export.id and merged.json()["size"] == 5
    with sessions() as session:
        source = session.get(Theme, sso.id)
        assert source is not None and source.status == "merged" and source.merged_into_id == export.id
        rows = session.scalars(select(ThemeAssignment)).all()
        assert {r.theme_id for r in rows} == {export.id}
        assert session.get(ThemeAssignment, pinned_item.id).pinned  # type: ignore[union-attr]
        events = session.execute(select(ThemeEvent.theme_id, ThemeEvent.kind).where(ThemeEvent.kind == "merged"))
        assert set(events.tuples()) == {(sso.id, "merged"), (export.id, "merged")}
    again = client.post(f"/v1/themes/{sso.id}/merge", json={"into": export.id}, headers=auth("pm"))
    assert again.status_code == 409
    into_merged = client.post(f"/v1/themes/{export.id}/merge", json={"into": sso.id}, headers=auth("pm"))
    assert into_merged.status_code == 409 and into_merged.json()["field"] == "body.into"
    itself = client.post(f"/v1/themes/{export.id}/merge", json={"into": export.id}, headers=auth("pm"))
    assert itself.status_code == 422 and itself.json()["field"] == "body.into"
    missing = client.post(f"/v1/themes/{export.id}/merge", json={"into": 9999}, headers=auth("pm"))
    assert missing.status_code == 422 and missing.json()["field"] == "body.into"
    assert client.post("/v1/themes/9999/merge", json={"into": export.id}, headers=auth("pm")).status_code == 404
    # an item's theme follows the merge
    item = client.get(f"/v1/feedback/{world.items[4].id}", headers=auth("pm")).json()
    assert item["theme"]["id"] == export.id


def test_opportunities_latest_run_and_segment(client: TestClient, auth: Any, world: World, sessions: Any) -> None:
    export, sso = world.themes
    with sessions.begin() as session:  # a newer run that failed, and one still running: ignored
        for status in ("failed", "running"):
            run = make_run(session, status=status)
            make_opportunity(session, sso, run, score=99.0, rank=1)
    listed = client.get("/v1/opportunities", headers=auth("sales")).json()
    assert [o["theme_id"] for o in listed] == [export.id, sso.id]
    assert listed[0]["score"] == 82.0 and listed[0]["run_id"] == world.run.id
    assert [o["theme_id"] for o in client.get("/v1/opportunities", params={"segment": "enterprise"},
                                             headers=auth("sales")).json()] == [export.id]
    assert client.get("/v1/opportunities", params={"limit": 1}, headers=auth("sales")).json()[0]["rank"] == 1
    assert client.get("/v1/opportunities", params={"segment": "nowhere"}, headers=auth("sales")).json() == []


def test_opportunity_detail_and_decision(client: TestClient, auth: Any, world: World) -> None:
    export = world.themes[0]
    note = client.post("/v1/feedback", json={"text": "exports", "account_name": "Acme Corp"}, headers=auth("sales"))
    client.post(f"/v1/feedback/{note.json()['id']}/theme", json={"theme_id": export.id}, headers=auth("pm"))
    detail = client.get(f"/v1/opportunities/{export.id}", headers=auth("sales")).json()
    assert detail["sales_reps"] == ["sales-user"]
    assert [h["score"] for h in detail["history"]] == [82.0]
    assert detail["competitors"] == {"Productboard": 1, "Canny": 1}
    assert detail["accounts"][0]["name"] == "Acme Corp"
    decided = client.patch(f"/v1/opportunities/{export.id}", json={"decision": "planned", "note": "Q3"},
                           headers=auth("pm"))
    assert decided.status_code == 200
    assert decided.json()["decision"] == "planned" and decided.json()["decided_by"] == "pm-user"
    bad = client.patch(f"/v1/opportunities/{export.id}", json={"decision": "maybe"}, headers=auth("pm"))
    assert bad.status_code == 422 and bad.json()["field"] == "body.decision"
    assert client.get("/v1/opportunities/9999", headers=auth("pm")).status_code == 404
