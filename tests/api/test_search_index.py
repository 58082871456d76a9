"""The in-memory search index: approximate against exact ranking, numpy filters against SQL, freshness."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.queries import FeedbackFilters
from api.search_index import VectorIndex, build_snapshot
from models.tables import Embedding, Feedback, Source
from tests.api.factories import World, make_account, make_embedding, make_feedback, make_theme

T0 = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # after every item the world fixture makes


def synthetic_rows(*, clusters: int = 40, per_cluster: int = 150, unassigned: int = 60, dim: int = 48,
                   seed: int = 0) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """Snapshot rows of items drawn around ``clusters`` centres, each cluster a theme; and the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    rows = []
    for i in range(clusters * per_cluster + unassigned):
        theme = i // per_cluster if i < clusters * per_cluster else None
        centre = centres[theme] if theme is not None else centres[rng.integers(clusters)]
        vector = (centre + 0.6 * rng.standard_normal(dim)).astype(np.float32)
        rows.append((i + 1, 1 + i % 3, None if i % 5 == 0 else 100 + i % 7, ("ticket", "chat", "call_note")[i % 3],
                     T0 + dt.timedelta(hours=i), None, None if theme is None else theme + 1, vector.tobytes()))
    return rows, centres


def test_approximate_ranking_recalls_the_exact_one_on_clustered_data() -> None:
    rows, centres = synthetic_rows()
    snap = build_snapshot(rows)
    index = VectorIndex(exact_rows=0)  # always approximate when asked to choose
    rng = np.random.default_rng(1)
    queries = centres[rng.integers(len(centres), size=60)] + 0.8 * rng.standard_normal((60, centres.shape[1]))
    recalls, probed = [], []
    for q in queries.astype(np.float32):
        exact_ids, exact_scores = index.nearest(snap, q, limit=10, exact=True)
        approx_ids, approx_scores = index.nearest(snap, q, limit=10)
        assert len(approx_ids) == 10 and np.all(np.diff(approx_scores) <= 0)  # best first
        recalls.append(np.mean(approx_scores >= exact_scores[-1] - 1e-6))
        probed.append(index._probe(snap, q / np.linalg.norm(q), None, 10)[0].size)
    assert np.mean(recalls) >= 0.95
    assert np.mean(probed) < snap.size / 3  # and it scored a fraction of the rows to get there
    # Exact ranking is exact: scores match a brute-force product, ties broken by id.
    q = queries[0].astype(np.float32)
    vectors = np.stack([np.frombuffer(r[7], dtype=np.float32) for r in rows])
    brute = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    ids, scores = index.nearest(snap, q, limit=10, exact=True)
    assert ids.tolist() == [rows[i][0] for i in np.lexsort((np.arange(len(rows)), -brute))[:10]]
    np.testing.assert_allclose(scores, np.sort(brute)[::-1][:10], rtol=1e-5)


def test_small_corpora_and_unthemed_items_are_searched_exactly() -> None:
    rows, centres = synthetic_rows(clusters=5, per_cluster=20, unassigned=30)
    snap = build_snapshot(rows)
    assert snap.pool_end == 30 and len(snap.theme_ids) == 5
    index = VectorIndex()  # 130 rows: under exact_rows
    for q in centres:
        assert index.nearest(snap, q)[0].tolist() == index.nearest(snap, q, exact=True)[0].tolist()
    # An approximate search always scores the items no theme holds yet.
    unthemed = np.frombuffer(rows[-1][7], dtype=np.float32)
    assert index.nearest(snap, unthemed, limit=1, exact=False)[0].tolist() == [rows[-1][0]]


def test_approximate_search_honours_a_selective_filter() -> None:
    rows, centres = synthetic_rows()
    snap = build_snapshot(rows)
    index = VectorIndex(exact_rows=0)
    # Items of account 103 are spread over every theme; the probe takes themes until enough of them pass.
    mask = snap.accounts == 103
    ids, _ = index.nearest(snap, centres[0], limit=20, exact=False, mask=mask)
    exact_ids, _ = index.nearest(snap, centres[0], limit=20, exact=True, mask=mask)
    assert len(ids) == 20 and {rows[i - 1][2] for i in ids} == {103}
    assert len(set(ids.tolist()) & set(exact_ids.tolist())) >= 18


@pytest.fixture
def searchable(world: World, sessions: Any, embedder: Any) -> World:
    """The world plus items of another account, kind, time and submitter, all embedded."""
    with sessions.begin() as session:
        source = session.get(Source, world.source.id)
        other = make_source_named(session, "intercom-eu")
        umbrella = make_account(session, "Umbrella", segment="smb")
        extra = [
            make_feedback(session, source, "excel export crashes", account=umbrella, kind="chat",
                          occurred_at=T0 - dt.timedelta(days=3)),
            make_feedback(session, other, "export to excel please", kind="field_note", submitted_by="rep-1",
                          occurred_at=T0 + dt.timedelta(days=3)),
            make_feedback(session, other, "okta login loops", kind="call_note", occurred_at=T0),
        ]
        for item in extra:
            make_embedding(session, item, embedder.encode([item.text])[0], embedder.name)
        world.extra["items"] = [item.id for item in extra]
        world.extra["other_source"] = other.id
    return world


def make_source_named(session: Any, name: str) -> Source:
    source = Source(name=name, kind="intercom", config={})
    session.add(source)
    session.flush()
    return source


def test_numpy_filters_select_what_the_sql_filters_select(searchable: World, sessions: Any, embedder: Any) -> None:
    index = VectorIndex(sessions)
    cases = [
        FeedbackFilters(),
        FeedbackFilters(theme=searchable.themes[0].id),
        FeedbackFilters(account=searchable.accounts[0].id),
        FeedbackFilters(source="intercom-eu"),
        FeedbackFilters(source=str(searchable.extra["other_source"])),
        FeedbackFilters(source="nowhere"),
        FeedbackFilters(kind="chat"),
        FeedbackFilters(kind="review"),
        FeedbackFilters(since=T0),
        FeedbackFilters(until=T0),
        FeedbackFilters(since=T0 - dt.timedelta(days=5), until=T0.replace(tzinfo=None)),  # naive means UTC
        FeedbackFilters(submitted_by="rep-1"),
        FeedbackFilters(kind="field_note", source="intercom-eu", since=T0),
    ]
    with sessions() as session:
        snap = index.snapshot(session, embedder.name)
        embedded = set(session.scalars(select(Feedback.id).join(
            Embedding, Embedding.content_hash == Feedback.content_hash)))
        for filters in cases:
            mask = index.mask(snap, filters, session)
            by_mask = set(snap.ids.tolist() if mask is None else snap.ids[mask].tolist())
            by_sql = set(session.scalars(filters.apply(select(Feedback.id)))) & embedded
            assert by_mask == by_sql, filters


def test_search_endpoint_filters(client: TestClient, auth: Any, searchable: World) -> None:
    chat_id, note_id, okta_id = searchable.extra["items"]

    def ids(**params: Any) -> list[int]:
        response = client.get("/v1/search", params={"q": "excel export", **params}, headers=auth("pm"))
        assert response.status_code == 200, response.text
        return [h["feedback"]["id"] for h in response.json()["hits"]]

    assert ids(kind="chat") == [chat_id]
    assert ids(source="intercom-eu", limit=1) == [note_id]
    assert set(ids(since=T0.isoformat())) == {note_id, okta_id} and ids(since=T0.isoformat())[0] == note_id
    assert ids(kind="review") == []
    bad = client.get("/v1/search", params={"q": "excel", "since": "9999-12-31T23:59:59-23:00"}, headers=auth("pm"))
    assert bad.status_code == 422


def test_a_stale_snapshot_never_returns_an_item_outside_the_filter(client: TestClient, auth: Any, world: World,
                                                                   app: Any) -> None:
    export, sso = world.themes
    excel = world.items[0]
    index = app.state.vector_index

    def theme_hits(theme_id: int) -> list[int]:
        response = client.get("/v1/search", params={"q": "excel export", "theme": theme_id}, headers=auth("pm"))
        return [h["feedback"]["id"] for h in response.json()["hits"]]

    assert excel.id in theme_hits(export.id)
    index.recheck_s = 3600.0  # keep the snapshot that predates the move
    moved = client.post(f"/v1/feedback/{excel.id}/theme", json={"theme_id": sso.id}, headers=auth("pm"))
    assert moved.status_code == 200
    assert excel.id not in theme_hits(export.id)  # the snapshot says export; SQL says no longer
    index.recheck_s = 0.0  # check for changes on every search: the move shows at once
    assert excel.id in theme_hits(sso.id)
    assert excel.id not in theme_hits(export.id)


def test_a_repeated_search_reuses_its_ranking_and_still_checks_each_hit(client: TestClient, auth: Any,
                                                                        world: World, app: Any) -> None:
    export, sso = world.themes
    index = app.state.vector_index
    index.recheck_s = 3600.0  # one snapshot throughout

    def top(theme_id: int) -> list[int]:
        response = client.get("/v1/search", params={"q": "excel export", "theme": theme_id, "limit": 1},
                              headers=auth("pm"))
        assert response.status_code == 200, response.text
        return [h["feedback"]["id"] for h in response.json()["hits"]]

    (best,) = top(export.id)
    (snap,) = index._snapshots.values()
    assert snap.rankings.hits == 0
    assert top(export.id) == [best]
    assert snap.rankings.hits == 1  # ranked once, answered twice
    moved = client.post(f"/v1/feedback/{best}/theme", json={"theme_id": sso.id}, headers=auth("pm"))
    assert moved.status_code == 200
    # The remembered ranking still names it, the database no longer does: ranked again, the item left out.
    assert best not in top(export.id)
    assert snap.rankings.hits == 2
    assert list(index._snapshots.values()) == [snap]


def test_changes_reach_search_through_the_background_refresh(client: TestClient, auth: Any, world: World,
                                                             app: Any, sessions: Any, embedder: Any) -> None:
    index = app.state.vector_index
    assert client.get("/v1/search", params={"q": "kanban"}, headers=auth("pm")).status_code == 200
    built = index.rebuilds
    index.recheck_s = 0.01
    with sessions.begin() as session:
        item = make_feedback(session, session.get(Source, world.source.id), "kanban board swimlanes please")
        make_embedding(session, item, embedder.encode([item.text])[0], embedder.name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a search starts the refresh and answers from the old snapshot
        hits = client.get("/v1/search", params={"q": "kanban swimlanes", "limit": 1}, headers=auth("pm")).json()
        if hits["hits"] and hits["hits"][0]["feedback"]["id"] == item.id:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the new item never became searchable")
    assert index.rebuilds == built + 1
    with sessions.begin() as session:  # a new theme and assignment-free item change nothing else
        make_theme(session, "unrelated")
    before = index.rebuilds
    client.get("/v1/search", params={"q": "kanban"}, headers=auth("pm"))
    time.sleep(0.2)
    client.get("/v1/search", params={"q": "kanban"}, headers=auth("pm"))
    assert index.rebuilds == before  # nothing search depends on changed: no rebuild


def test_warm_search_builds_the_snapshot_at_startup(settings: Any, engine: Any, world: World,
                                                    embedder: Any) -> None:
    from api.app import create_app

    app = create_app(settings, embedder=embedder, warm_search=True)
    with TestClient(app):
        deadline = time.monotonic() + 30
        while app.state.vector_index.rebuilds == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.vector_index.rebuilds == 1
        assert app.state.query_embedder.cached("warm up") is not None


def test_search_rows_read_as_columns_serialise_like_the_orm_feedback_schema(world: World, sessions: Any) -> None:
    from api.queries import feedback_outs, feedback_outs_by_id

    with sessions() as session:
        items = list(session.scalars(select(Feedback).order_by(Feedback.id)))
        assert any(i.account_id is not None for i in items) and len(items) >= 3
        validated = {out.id: out.model_dump_json() for out in feedback_outs(session, items)}
        fast = {i: out.model_dump_json() for i, out in feedback_outs_by_id(session, [i.id for i in items]).items()}
    assert fast == validated
    assert any('"theme":{' in body for body in fast.values())


def test_search_rows_are_one_statement_whatever_the_number_of_ids(world: World, sessions: Any, engine: Any) -> None:
    # The ids travel as one parameter (an array, or a JSON list on SQLite), so the statement is compiled
    # and prepared once instead of once per list length, and filters still apply in SQL.
    from sqlalchemy import event

    from api.queries import feedback_outs_by_id

    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with sessions() as session:
        items = list(session.scalars(select(Feedback).order_by(Feedback.id)))
        ids = [i.id for i in items]
        event.listen(engine, "before_cursor_execute", capture)
        try:
            one = feedback_outs_by_id(session, ids[:1])
            every = feedback_outs_by_id(session, [*ids, 10**12])  # an id that does not exist is skipped
            account = next(i.account_id for i in items if i.account_id is not None)
            filtered = feedback_outs_by_id(session, ids, FeedbackFilters(account=account))
        finally:
            event.remove(engine, "before_cursor_execute", capture)
    assert list(one) == ids[:1] and sorted(every) == sorted(ids)
    assert sorted(filtered) == sorted(i.id for i in items if i.account_id == account) and len(filtered) < len(ids)
    main = [s for s in statements if "external_id" in s]
    assert len(main) == 3 and main[0] == main[1]
