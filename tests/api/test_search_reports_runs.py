"""Search, reports, sources and runs (jobs go to a fake runner that records them)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from models.tables import AnalysisRun, Source
from pipeline.runs import process_owner
from tests.api.factories import World, make_embedding, make_feedback
from tests.processes import gone_owner


def test_search_ranks_by_cosine(client: TestClient, auth: Any, world: World) -> None:
    response = client.get("/v1/search", params={"q": "excel export"}, headers=auth("pm"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "hashing-64"
    hits = body["hits"]
    assert len(hits) == 5
    assert "xcel" in hits[0]["feedback"]["text"] and hits[0]["feedback"]["theme"]["id"] == world.themes[0].id
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    sso = client.get("/v1/search", params={"q": "okta sso", "limit": 1}, headers=auth("pm")).json()["hits"]
    assert sso[0]["feedback"]["text"] == "Please add SSO with Okta"


def test_search_filters_and_cache_refresh(client: TestClient, auth: Any, world: World, app: Any,
                                          sessions: Any, embedder: Any) -> None:
    acme = world.accounts[0]
    filtered = client.get("/v1/search", params={"q": "excel export", "account": acme.id}, headers=auth("pm"))
    assert {h["feedback"]["account"]["id"] for h in filtered.json()["hits"]} == {acme.id}
    by_theme = client.get("/v1/search", params={"q": "excel", "theme": world.themes[1].id}, headers=auth("pm"))
    assert {h["feedback"]["theme"]["id"] for h in by_theme.json()["hits"]} == {world.themes[1].id}
    with sessions.begin() as session:
        source = session.get(Source, world.source.id)
        item = make_feedback(session, source, "kanban board swimlanes please")
        make_embedding(session, item, embedder.encode([item.text])[0], embedder.name)
    app.state.vector_index.recheck_s = 0.0  # see the new vector now, not after the recheck interval
    hits = client.get("/v1/search", params={"q": "kanban swimlanes", "limit": 1}, headers=auth("pm")).json()["hits"]
    assert hits[0]["feedback"]["text"] == "kanban board swimlanes please"
    blank = client.get("/v1/search", params={"q": "   "}, headers=auth("pm"))
    assert blank.status_code == 422 and blank.json()["field"] == "query.q"
    assert client.get("/v1/search", headers=auth("pm")).json()["field"] == "query.q"


def test_reports_by_accept(client: TestClient, auth: Any, world: World, job_runner: Any, sessions: Any) -> None:
    listed = client.get("/v1/reports", headers=auth("pm")).json()
    assert [r["week"] for r in listed] == ["2026-W10"]
    rid = listed[0]["id"]
    md = client.get(f"/v1/reports/{rid}", headers=auth("pm"))
    assert md.headers["content-type"].startswith("text/markdown") and md.text.startswith("# Report 2026-W10")
    html = client.get(f"/v1/reports/{rid}", headers={**auth("pm"), "Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and "<h1>" in html.text
    js = client.get(f"/v1/reports/{rid}", headers={**auth("pm"), "Accept": "application/json"}).json()
    assert js["week"] == "2026-W10" and js["markdown"].startswith("#")
    assert client.get("/v1/reports/999", headers=auth("pm")).status_code == 404
    queued = client.post("/v1/reports", json={"week": "2026-W11", "deliver": True}, headers=auth("pm"))
    assert queued.status_code == 202 and queued.json()["status"] == "queued" and queued.json()["kind"] == "report"
    assert job_runner.calls == [("report", {"run_id": queued.json()["id"], "week": "2026-W11", "deliver": True,
                                            "requested_by": "pm-user"})]
    bad = client.post("/v1/reports", json={"week": "2026-W99"}, headers=auth("pm"))
    assert bad.status_code == 422 and bad.json()["field"] == "body.week"


def test_sources_and_sync(client: TestClient, auth: Any, world: World, job_runner: Any, sessions: Any) -> None:
    created = client.post("/v1/sources", json={"name": "hubspot-us", "kind": "hubspot", "config": {"portal": 1}},
                          headers=auth("admin"))
    assert created.status_code == 201, created.text
    dup = client.post("/v1/sources", json={"name": "hubspot-us", "kind": "hubspot"}, headers=auth("admin"))
    assert dup.status_code == 409 and dup.json()["field"] == "body.name"
    secret = client.post("/v1/sources", json={"name": "z", "kind": "zendesk", "config": {"api_token": "x"}},
                         headers=auth("admin"))
    assert secret.status_code == 422 and secret.json()["field"] == "body.config"
    names = [s["name"] for s in client.get("/v1/sources", headers=auth("pm")).json()]
    assert names == ["zendesk-main", "hubspot-us"]
    sync = client.post(f"/v1/sources/{created.json()['id']}/sync", headers=auth("pm"))
    assert sync.status_code == 202 and sync.json()["kind"] == "sync"
    assert job_runner.calls[-1][0] == "sync" and job_runner.calls[-1][1]["source"] == "hubspot-us"
    assert client.post("/v1/sources/9999/sync", headers=auth("pm")).status_code == 404
    with sessions() as session:
        run = session.get(AnalysisRun, sync.json()["id"])
        assert run is not None and run.status == "queued"


def test_runs(client: TestClient, auth: Any, world: World, job_runner: Any, sessions: Any) -> None:
    started = client.post("/v1/runs", json={"kind": "full"}, headers=auth("pm"))
    assert started.status_code == 202 and started.json()["kind"] == "full"
    assert job_runner.calls == [("full", {"run_id": started.json()["id"], "requested_by": "pm-user"})]
    runs = client.get("/v1/runs", headers=auth("pm")).json()
    assert [r["id"] for r in runs] == [started.json()["id"], world.run.id]
    assert [r["id"] for r in client.get("/v1/runs", params={"status": "queued"}, headers=auth("pm")).json()] == [
        started.json()["id"]]
    assert client.get(f"/v1/runs/{world.run.id}", headers=auth("pm")).json()["status"] == "succeeded"
    with sessions.begin() as session:  # closed because its process was killed
        gone = AnalysisRun(kind="sync", status="abandoned", error="the process ... stopped")
        session.add(gone)
    listed = client.get("/v1/runs", params={"status": "abandoned"}, headers=auth("pm"))
    assert [r["id"] for r in listed.json()] == [gone.id]
    assert client.post("/v1/runs", json={"kind": "everything"}, headers=auth("pm")).json()["field"] == "body.kind"


def test_an_analysis_is_refused_while_another_runs(client: TestClient, auth: Any, world: World, job_runner: Any,
                                                   sessions: Any) -> None:
    with sessions.begin() as session:  # the hourly schedule's analysis, say, in another live process
        session.add(AnalysisRun(kind="incremental", status="running", owner=process_owner()))
        session.add(AnalysisRun(kind="sync", status="running", owner=process_owner()))  # syncs do not count
    refused = client.post("/v1/runs", json={"kind": "full"}, headers=auth("pm"))
    assert refused.status_code == 409
    assert "is running since" in refused.json()["detail"] and "one analysis runs at a time" in refused.json()["detail"]
    assert job_runner.calls == []
    with sessions.begin() as session:  # its process was killed: the next analysis may start (and closes it)
        session.execute(update(AnalysisRun).where(AnalysisRun.kind == "incremental").values(owner=gone_owner()))
    assert client.post("/v1/runs", json={"kind": "full"}, headers=auth("pm")).status_code == 202
    queued = client.post("/v1/runs", json={"kind": "incremental"}, headers=auth("pm"))  # the first is still queued
    assert queued.status_code == 409 and f"analysis run {job_runner.calls[-1][1]['run_id']} (full) is queued since" \
        in queued.json()["detail"]
    with sessions.begin() as session:  # other jobs are not held by a live analysis
        session.execute(update(AnalysisRun).where(AnalysisRun.kind == "incremental").values(owner=process_owner()))
        source_id = session.scalars(select(Source.id)).first()
    assert client.post("/v1/runs", json={"kind": "full"}, headers=auth("pm")).status_code == 409
    assert client.post(f"/v1/sources/{source_id}/sync", headers=auth("pm")).status_code == 202


def test_thread_runner_fails_a_queued_analysis_that_finds_another_running(settings: Any, engine: Any,
                                                                           sessions: Any) -> None:
    from api.jobs import ThreadJobRunner, queue_run
    from flows.analysis import begin_run, decide_recluster

    def analysis(settings: Any, *, run_id: int, **params: Any) -> None:  # as flows.jobs.run_analysis starts
        with sessions() as session:
            decision = decide_recluster(session, settings, asked=True)
        begin_run(sessions, decision, run_id, stale_run_hours=settings.stale_run_hours)
        raise AssertionError("should not get here")

    runner = ThreadJobRunner(settings, sessions, resolve=lambda kind: analysis)
    with sessions.begin() as session:
        other = AnalysisRun(kind="full", status="running", owner=process_owner())
        session.add(other)
        session.flush()
        queued = queue_run(session, "full", {}).id
    runner.submit("full", run_id=queued)
    for thread in runner.threads:
        thread.join(timeout=30)
    with sessions() as session:
        run = session.get(AnalysisRun, queued)
        assert run is not None and run.status == "failed"
        assert run.error.startswith(f"AnalysisBusy: analysis run {other.id} (full) is running since")
        assert session.get(AnalysisRun, other.id).status == "running"


def test_thread_runner_records_outcomes(settings: Any, engine: Any, sessions: Any) -> None:
    from api.jobs import ThreadJobRunner, queue_run

    def ok(_settings: Any, *, run_id: int, **params: Any) -> None:
        assert params == {"x": 1}

    def boom(_settings: Any, *, run_id: int, **params: Any) -> None:
        raise RuntimeError("vendor down")

    jobs = {"ok": ok, "boom": boom}

    def resolve(kind: str) -> Any:
        if kind not in jobs:
            raise LookupError(kind)
        return jobs[kind]

    runner = ThreadJobRunner(settings, sessions, resolve=resolve)
    ids = {}
    for kind in ("ok", "boom", "missing"):
        with sessions.begin() as session:
            ids[kind] = queue_run(session, kind, {"x": 1}).id
        runner.submit(kind, run_id=ids[kind], x=1)
    for thread in runner.threads:
        thread.join(timeout=10)
    with sessions() as session:
        status = {k: session.get(AnalysisRun, v) for k, v in ids.items()}
        assert status["ok"].status == "succeeded"  # type: ignore[union-attr]
        assert status["boom"].status == "failed" and "vendor down" in status["boom"].error  # type: ignore[union-attr,operator]
        assert status["missing"].status == "failed" and "not available" in status["missing"].error  # type: ignore[union-attr,operator]
        assert all(r.finished_at is not None for r in status.values())  # type: ignore[union-attr]


def test_accounts_autocomplete(client: TestClient, auth: Any, world: World) -> None:
    names = [a["name"] for a in client.get("/v1/accounts", params={"q": "ac"}, headers=auth("sales")).json()]
    assert names == ["Acme Corp"]
    by_domain = client.get("/v1/accounts", params={"q": "globex.com"}, headers=auth("sales")).json()
    assert [a["name"] for a in by_domain] == ["Globex"]
    assert client.get("/v1/accounts", params={"q": "%"}, headers=auth("sales")).json() == []
    assert len(client.get("/v1/accounts", headers=auth("sales")).json()) == 3


def test_default_query_embedder_follows_the_settings(tmp_path: Any) -> None:
    from api.app import default_embedder
    from models.settings import Settings
    from pipeline.embedding import HashingEmbedder, SentenceEmbedder

    def settings(**kw: Any) -> Settings:
        return Settings(data_dir=tmp_path, _env_file=None, **kw)  # type: ignore[call-arg]

    one_thread = default_embedder(settings(embedding_runtime="torch", embedding_precision="fp32"))
    assert isinstance(one_thread, SentenceEmbedder)
    assert (one_thread.threads, one_thread.runtime, one_thread.precision) == (1, "torch", "fp32")
    assert default_embedder(settings(torch_threads=3)).threads == 3  # type: ignore[attr-defined]
    assert default_embedder(settings()).query_precision == "int8"  # type: ignore[attr-defined]
    assert default_embedder(settings(query_precision="fp32")).query_precision == "fp32"  # type: ignore[attr-defined]
    assert isinstance(default_embedder(settings(embedding_model="hashing-32")), HashingEmbedder)


def test_searches_at_once_default_to_the_cores(settings: Any, monkeypatch: Any) -> None:
    import api.app
    from api.app import create_app
    from api.fifo import FifoSemaphore
    from pipeline.embedding import HashingEmbedder

    monkeypatch.setattr(api.app, "available_cores", lambda: 3)
    app = create_app(settings, embedder=HashingEmbedder(8))
    assert app.state.search_limiter.total_tokens == 3
    # The slots are handed out in arrival order, so no search is passed over again and again.
    assert isinstance(app.state.search_slots, FifoSemaphore)
    assert [app.state.search_slots.acquire(blocking=False) for _ in range(4)] == [True] * 3 + [False]
    pinned = create_app(settings, embedder=HashingEmbedder(8), search_concurrency=5)
    assert pinned.state.search_limiter.total_tokens == 5


def test_searches_rank_no_more_at_once_than_the_slots(settings: Any, engine: Any, embedder: Any, world: World,
                                                      keys: dict[str, str]) -> None:
    # New queries search in the thread that encoded them and cached ones in the limiter's threads: either
    # way a search ranks and reads only while it holds one of the slots.
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from api.app import create_app

    app = create_app(settings, embedder=embedder, search_concurrency=2)
    inner = app.state.vector_index.search
    lock, running, most = threading.Lock(), [0], [0]

    def search(*args: Any, **kw: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.02)  # long enough for the others to pile up
            return inner(*args, **kw)
        finally:
            with lock:
                running[0] -= 1

    app.state.vector_index.search = search
    headers = {"Authorization": f"Bearer {keys['pm']}"}
    with TestClient(app) as client:
        assert client.get("/v1/search", params={"q": "excel"}, headers=headers).status_code == 200  # now cached

        def one(i: int) -> int:
            q = "excel" if i % 2 else f"excel export {i}"
            return client.get("/v1/search", params={"q": q}, headers=headers).status_code

        with ThreadPoolExecutor(12) as pool:
            assert list(pool.map(one, range(24))) == [200] * 24
    assert most[0] == 2
