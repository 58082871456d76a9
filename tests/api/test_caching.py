"""What the API keeps between requests: cached lists, shared lookups, query vectors; and Server-Timing."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.query_embedding import QueryEmbedder
from api.sharing import SharedCall
from models.tables import AnalysisRun, Theme
from pipeline.embedding import HashingEmbedder
from pipeline.runs import process_owner
from tests.api.conftest import FakeJobRunner
from tests.api.factories import World, make_opportunity, make_run, make_stats
from tests.processes import gone_owner


def test_lists_are_cached_until_a_new_run_lands(client: TestClient, auth: Any, world: World, app: Any,
                                                 sessions: Any) -> None:
    cache = app.state.list_cache
    export, sso = world.themes
    first = client.get("/v1/opportunities", headers=auth("pm")).json()
    assert [o["theme_id"] for o in first] == [export.id, sso.id]
    assert client.get("/v1/opportunities", headers=auth("pm")).json() == first
    assert (cache.hits, cache.misses) == (1, 1)
    with sessions.begin() as session:  # another process's analysis: sso now ranks first
        run = make_run(session)
        make_opportunity(session, session.get(Theme, sso.id), run, score=95.0, rank=1)
        make_opportunity(session, session.get(Theme, export.id), run, score=40.0, rank=2)
    after = client.get("/v1/opportunities", headers=auth("pm")).json()
    assert [(o["theme_id"], o["run_id"]) for o in after] == [(sso.id, run.id), (export.id, run.id)]
    with sessions.begin() as session:  # an analysis in progress: lists are built, never cached
        make_run(session, status="running")
    misses = cache.misses
    client.get("/v1/opportunities", headers=auth("pm"))
    client.get("/v1/opportunities", headers=auth("pm"))
    assert cache.misses == misses + 2



def test_a_killed_analysis_does_not_keep_lists_uncached(client: TestClient, auth: Any, app: Any,
                                                         sessions: Any) -> None:
    cache = app.state.list_cache
    with sessions.begin() as session:  # syncs and reports change no list: they never pause the cache
        session.add(AnalysisRun(kind="sync", status="running", owner=process_owner()))
        session.add(AnalysisRun(kind="report", status="running", owner=process_owner()))
    client.get("/v1/themes", headers=auth("pm"))
    client.get("/v1/themes", headers=auth("pm"))
    assert (cache.hits, cache.misses) == (1, 1)
    with sessions.begin() as session:  # an analysis whose process was killed (kill -9) mid-run
        killed = make_run(session, status="running")
        killed.owner = gone_owner()
    client.get("/v1/themes", headers=auth("pm"))  # sees the run, finds its process gone, closes it
    client.get("/v1/themes", headers=auth("pm"))
    assert (cache.hits, cache.misses) == (2, 2)
    with sessions() as session:
        assert session.get(AnalysisRun, killed.id).status == "abandoned"
    with sessions.begin() as session:  # a live analysis still pauses the cache
        make_run(session, status="running").owner = process_owner()
    client.get("/v1/themes", headers=auth("pm"))
    client.get("/v1/themes", headers=auth("pm"))
    assert (cache.hits, cache.misses) == (2, 4)


def test_a_server_start_closes_the_jobs_its_previous_process_left_open(settings: Any, engine: Any,
                                                                        sessions: Any) -> None:
    dead = gone_owner()
    with sessions.begin() as session:
        left = [AnalysisRun(kind="sync", status="running", owner=dead),
                AnalysisRun(kind="report", status="queued", owner=dead),
                AnalysisRun(kind="full", status="running", owner="other-host:1:1")]
        session.add_all(left)
    app = create_app(settings, embedder=HashingEmbedder(64), job_runner=FakeJobRunner())
    with TestClient(app):
        pass
    with sessions() as session:
        assert [session.get(AnalysisRun, run.id).status for run in left] == ["abandoned", "abandoned", "running"]

def test_curation_and_new_stats_show_at_once(client: TestClient, auth: Any, world: World, sessions: Any) -> None:
    export = world.themes[0]

    def theme(theme_id: int) -> dict[str, Any]:
        return next(t for t in client.get("/v1/themes", headers=auth("pm")).json() if t["id"] == theme_id)

    weeks_before = theme(export.id)["weekly"]
    renamed = client.patch(f"/v1/themes/{export.id}", json={"label": "Excel exports"}, headers=auth("pm"))
    assert renamed.status_code == 200
    assert theme(export.id)["label"] == "Excel exports"
    decided = client.patch(f"/v1/opportunities/{export.id}", json={"decision": "planned"}, headers=auth("pm"))
    assert decided.status_code == 200
    listed = client.get("/v1/opportunities", headers=auth("pm")).json()
    assert next(o for o in listed if o["theme_id"] == export.id)["decision"] == "planned"
    with sessions.begin() as session:  # a newer week's stats, written outside an analysis run
        make_stats(session, session.get(Theme, export.id), [7], end=dt.date.today() + dt.timedelta(weeks=2))
    assert theme(export.id)["weekly"] != weeks_before
    archived = client.patch(f"/v1/themes/{export.id}", json={"archived": True}, headers=auth("pm"))
    assert archived.status_code == 200
    assert export.id not in [t["id"] for t in client.get("/v1/themes", headers=auth("pm")).json()]


def test_a_revoked_key_is_refused_by_the_next_request(client: TestClient, auth: Any, keys: dict[str, str],
                                                      world: World) -> None:
    created = client.post("/v1/keys", json={"name": "temp", "role": "pm"}, headers=auth("admin"))
    assert created.status_code == 201, created.text
    temp = {"Authorization": f"Bearer {created.json()['key']}"}
    assert client.get("/v1/themes", headers=temp).status_code == 200
    assert client.delete(f"/v1/keys/{created.json()['id']}", headers=auth("admin")).status_code == 200
    assert client.get("/v1/themes", headers=temp).status_code == 401


def test_shared_call_never_answers_from_before_the_caller_arrived() -> None:
    started = {1: threading.Event(), 2: threading.Event()}
    release = {1: threading.Event(), 2: threading.Event()}
    runs_of_k: list[int] = []

    def lookup(key: str) -> int:
        if key == "other":
            return -1
        runs_of_k.append(len(runs_of_k) + 1)
        n = runs_of_k[-1]
        started[n].set()
        release[n].wait(5)
        return n

    async def scenario() -> tuple[int, list[int], int]:
        shared: SharedCall[str, int] = SharedCall(lookup)
        first = asyncio.ensure_future(shared("k"))
        await asyncio.to_thread(started[1].wait, 5)
        # These arrive while run 1 is in flight: its answer may predate them, so they wait for run 2.
        late = [asyncio.ensure_future(shared("k")) for _ in range(3)]
        assert await shared("other") == -1  # another key does not wait for this one
        release[1].set()
        answer = await first
        await asyncio.to_thread(started[2].wait, 5)
        release[2].set()
        return answer, list(await asyncio.gather(*late)), shared.runs

    first, late, runs = asyncio.run(scenario())
    assert first == 1
    assert late == [2, 2, 2]  # one run for the three of them, and not the one that started before them
    assert runs == 3 and runs_of_k == [1, 2]


class CountingEmbedder:
    """Records every batch it is asked to encode; slow enough for concurrent callers to pile up."""

    name = "counting-16"

    def __init__(self) -> None:
        self.inner = HashingEmbedder(16)
        self.batches: list[list[str]] = []
        self.gate = threading.Event()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.gate.wait(5)
        return self.inner.encode(texts)


def test_query_embedder_batches_concurrent_queries_and_remembers_them() -> None:
    embedder = CountingEmbedder()
    queries = QueryEmbedder(embedder, cache_size=3)
    texts = [f"query {w}" for w in ("alpha", "beta", "gamma", "delta", "epsilon")]
    out: dict[str, np.ndarray] = {}
    threads = [threading.Thread(target=lambda t=t: out.__setitem__(t, queries.encode_one(t))) for t in texts]
    for thread in threads:
        thread.start()
    while not embedder.batches:
        threading.Event().wait(0.01)
    threading.Event().wait(0.1)  # the others queue behind the first encode
    embedder.gate.set()
    for thread in threads:
        thread.join(5)
    assert sorted(t for b in embedder.batches for t in b) == sorted(texts)  # each text encoded once
    assert len(embedder.batches) <= 2  # the first, then everyone who queued meanwhile
    for t in texts:
        np.testing.assert_array_equal(out[t], embedder.inner.encode([t])[0])
    kept = [t for t in texts if queries.cached(t) is not None]
    assert len(kept) == 3  # the cache holds three
    calls = len(embedder.batches)
    assert queries.encode_one(kept[0]) is out[kept[0]] and len(embedder.batches) == calls
    queries.encode_one(next(t for t in texts if t not in kept))
    assert len(embedder.batches) == calls + 1
    with pytest.raises(ValueError):
        out[texts[0]][0] = 1.0  # shared vectors are read-only


def test_query_embedder_reports_a_failed_encode_to_each_caller() -> None:
    class Broken:
        name = "broken"

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("model gone")

    queries = QueryEmbedder(Broken())
    for _ in range(2):
        with pytest.raises(RuntimeError, match="model gone"):
            queries.encode_one("anything")


def test_server_timing_header_only_when_asked(settings: Any, engine: Any, client: TestClient, auth: Any,
                                              world: World) -> None:
    from api.app import create_app

    assert "server-timing" not in client.get("/v1/themes", headers=auth("pm")).headers
    timed = create_app(settings, embedder=HashingEmbedder(), server_timing=True)
    with TestClient(timed) as c:
        header = c.get("/v1/search", params={"q": "excel"}, headers=auth("pm")).headers["server-timing"]
    stages = dict(part.strip().split(";dur=") for part in header.split(","))
    assert {"app", "auth", "embed", "score", "rows"} <= set(stages)
    assert all(float(v) >= 0 for v in stages.values())


def test_lru_keeps_the_most_recently_used_keys() -> None:
    from api.lru import LRU

    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now newer than b
    lru.put("c", 3)
    assert (lru.get("b"), lru.get("a"), lru.get("c"), len(lru), lru.hits) == (None, 1, 3, 2, 3)
    none: LRU[str, int] = LRU(0)
    none.put("a", 1)
    assert none.get("a") is None and len(none) == 0
