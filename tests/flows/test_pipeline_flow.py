"""The pipeline flow end to end on demo data, the full re-clustering decision, and the API's job functions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterStartTime
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import flows.ingest
from flows.analysis import analyze, decide_recluster
from flows.jobs import JobFailed, run_analysis, run_report, run_sync
from flows.pipeline import pipeline
from ingest.demo import generate_demo
from ingest.demo_loader import load_demo
from ingest.registry import build_connector
from models.settings import Settings
from models.tables import AnalysisRun, Feedback, Opportunity, Report, Source, Theme, ThemeAssignment, utcnow
from pipeline.embedding_store import missing_hashes

DEMO_NOW = dt.datetime(2026, 3, 18, 12, tzinfo=dt.UTC)


def load_small_demo(sessions: sessionmaker[Session]) -> int:
    data = generate_demo(weeks=8, accounts=30, seed=7, now=DEMO_NOW)
    load_demo(sessions, data)
    return len(data.items)


def add_source(sessions: sessionmaker[Session], name: str, kind: str, config: dict[str, Any]) -> None:
    with sessions.begin() as session:
        session.add(Source(name=name, kind=kind, config=config))


def write_csv(path: Path, n: int) -> None:
    rows = [f"n{i},Exporting the dashboard to PDF loses the chart legends {i},2026-03-0{i % 9 + 1}" for i in range(n)]
    path.write_text("external_id,text,occurred_at\n" + "\n".join(rows) + "\n")


class DownVendor:
    """A Zendesk that answers 503 to everything, counting the requests."""

    def __init__(self) -> None:
        self.requests = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(503, json={"error": "maintenance"})


def test_pipeline_end_to_end_with_a_failing_source(sessions: sessionmaker[Session], flow_env: Settings,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo_items = load_small_demo(sessions)
    write_csv(tmp_path / "notes.csv", 12)
    add_source(sessions, "csv", "file", {"path": str(tmp_path / "notes.csv")})
    add_source(sessions, "gone", "file", {"path": str(tmp_path / "missing.csv")})
    add_source(sessions, "zd", "zendesk", {"subdomain": "acme", "email": "ops@acme.com"})
    vendor = DownVendor()
    monkeypatch.setenv("GROUNDSWELL_ZENDESK_TOKEN", "t0ken")
    monkeypatch.setenv("GROUNDSWELL_HTTP_MAX_RETRIES", "0")  # one request per task attempt

    def connector_with_fake_vendor(source: Source, settings: Settings) -> Any:
        return build_connector(source, settings, transport=httpx.MockTransport(vendor.handler),
                               sleep=lambda _s: None)

    monkeypatch.setattr(flows.ingest, "build_connector", connector_with_fake_vendor)
    # Same retries as declared, without the production back-off between them.
    monkeypatch.setattr(flows.ingest, "sync_one", flows.ingest.sync_one.with_options(retry_delay_seconds=0))

    started = utcnow()
    out = pipeline()

    by_name = {s["source"]: s for s in out["sources"]}
    assert set(by_name) == {"csv", "gone", "zd"}  # demo sources are loaded, not pulled
    assert by_name["csv"]["status"] == "ok" and by_name["csv"]["inserted"] == 12
    assert sorted(out["failed"]) == ["gone", "zd"] and out["inserted"] == 12 and out["ingest_error"] is None
    assert "kept failing" in by_name["zd"]["error"]
    assert vendor.requests == 3  # the I/O failure was tried 1 + 2 retries; the missing file was not retried
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(any_=["sync-zd"]), start_time=TaskRunFilterStartTime(after_=started)))
    assert [(r.run_count, r.state_type.value if r.state_type else None) for r in runs] == [(3, "FAILED")]

    analysis = out["analysis"]
    assert analysis["kind"] == "full" and analysis["decision"]["reason"] == "no-themes"
    # The ingest flow embedded every stored text once its syncs stored something (embed_on_arrival), the
    # demo's included: the analysis had nothing left to embed.
    assert analysis["items"] == demo_items + 12 and analysis["embedded"] == 0
    with sessions() as session:
        assert missing_hashes(session, "hashing-128") == []
    assert analysis["themes"] >= 3 and analysis["opportunities"] >= 3
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Theme).where(Theme.status == "active")) >= 3
        assert session.scalar(select(func.count()).select_from(Opportunity)) >= analysis["opportunities"]
        run = session.get(AnalysisRun, analysis["run_id"])
        assert run is not None and run.status == "succeeded" and run.stats["decision"]["reason"] == "no-themes"

    # Nothing new and the full run is fresh: incremental, nothing embedded twice.
    again = analyze()
    assert (again["kind"], again["decision"]["reason"], again["embedded"]) == ("incremental", "incremental", 0)

    # A week after the last full run the flow re-clusters everything by itself, keeping theme ids.
    with sessions.begin() as session:
        theme_ids = set(session.scalars(select(Theme.id).where(Theme.status == "active")))
        week_ago = utcnow() - dt.timedelta(days=7, minutes=1)
        session.execute(update(AnalysisRun).where(AnalysisRun.kind == "full")
                        .values(started_at=week_ago, finished_at=week_ago))
    weekly = analyze()
    assert (weekly["kind"], weekly["decision"]["reason"]) == ("full", "weekly")
    with sessions() as session:
        kept = set(session.scalars(select(Theme.id).where(Theme.status == "active")))
    assert len(kept & theme_ids) >= len(theme_ids) // 2


def test_recluster_decision(sessions: sessionmaker[Session], settings: Settings) -> None:
    now = utcnow()
    with sessions.begin() as session:
        assert decide_recluster(session, settings).reason == "no-themes"
        assert decide_recluster(session, settings, asked=True).reason == "asked"
        session.add(Source(name="s", kind="file", config={}))
        session.add(Theme(label="t", status="active"))
        session.flush()
        assert (decide_recluster(session, settings).full, decide_recluster(session, settings).reason) == (
            True, "no-full-run")
        last_full = now - dt.timedelta(days=2)
        session.add(AnalysisRun(kind="full", status="succeeded", started_at=last_full, finished_at=last_full))
        session.add(AnalysisRun(kind="full", status="failed", started_at=now, finished_at=now))  # does not count
        session.flush()
        decision = decide_recluster(session, settings, now=now)
        assert (decision.full, decision.reason, decision.pool, decision.last_full_at) == (
            False, "incremental", 0, last_full)
        assert decide_recluster(session, settings, now=now + dt.timedelta(days=5)).reason == "weekly"
        assert decide_recluster(settings=settings.model_copy(update={"full_recluster_days": 30}),
                                session=session, now=now + dt.timedelta(days=5)).reason == "incremental"
        source_id = session.scalar(select(Source.id))
        pool_size = settings.recluster_pool_size

        def add_items(prefix: str, n: int, ingested_at: dt.datetime) -> None:
            session.add_all(Feedback(source_id=source_id, external_id=f"{prefix}{i}", kind="ticket", text=f"x {i}",
                                     content_hash=f"{prefix}{i}", occurred_at=now, ingested_at=ingested_at)
                            for i in range(n))
            session.flush()

        # Left unassigned by the last full run (noise): not a reason to re-cluster again.
        add_items("old", pool_size, last_full - dt.timedelta(hours=1))
        assert decide_recluster(session, settings, now=now).reason == "incremental"
        add_items("new", pool_size - 1, now - dt.timedelta(hours=1))
        assert decide_recluster(session, settings, now=now).pool == pool_size - 1
        add_items("more", 1, now)
        decision = decide_recluster(session, settings, now=now)
        assert (decision.full, decision.reason, decision.pool) == (True, "pool", pool_size)
        fid = session.scalar(select(Feedback.id).where(Feedback.external_id == "more0"))
        theme_id = session.scalar(select(Theme.id))
        session.add(ThemeAssignment(feedback_id=fid, theme_id=theme_id, similarity=1.0, method="nearest",
                                    pinned=False))
        session.flush()
        assert decide_recluster(session, settings, now=now).reason == "incremental"


def test_job_functions_update_the_queued_row(sessions: sessionmaker[Session], flow_env: Settings,
                                             tmp_path: Path) -> None:
    load_small_demo(sessions)
    write_csv(tmp_path / "notes.csv", 6)
    add_source(sessions, "csv", "file", {"path": str(tmp_path / "notes.csv")})
    add_source(sessions, "gone", "file", {"path": str(tmp_path / "missing.csv")})
    ids: dict[str, int] = {}
    with sessions.begin() as session:
        for key, kind in (("sync", "sync"), ("broken", "sync"), ("analysis", "incremental"), ("report", "report")):
            run = AnalysisRun(kind=kind, status="queued", stats={"params": {"requested_by": "pm"}})
            session.add(run)
            session.flush()
            ids[key] = run.id

    assert run_sync(flow_env, run_id=ids["sync"], source="csv", requested_by="pm")["inserted"] == 6
    with pytest.raises(JobFailed, match="sync of gone failed"):
        run_sync(flow_env, run_id=ids["broken"], source="gone", requested_by="pm")
    result = run_analysis(flow_env, run_id=ids["analysis"], requested_by="pm")
    assert result["run_id"] == ids["analysis"] and result["decision"]["reason"] == "no-themes"
    week = (DEMO_NOW - dt.timedelta(days=7)).strftime("%G-W%V")
    report = run_report(flow_env, run_id=ids["report"], week=week, deliver=False, requested_by="pm")
    assert report["week"] == week and Path(report["html"]).is_file()

    with sessions() as session:
        rows = {k: session.get(AnalysisRun, v) for k, v in ids.items()}
        assert rows["sync"].stats["result"]["status"] == "ok"  # type: ignore[union-attr]
        assert rows["broken"].stats["result"]["status"] == "failed"  # type: ignore[union-attr]
        analysis = rows["analysis"]
        assert analysis is not None and (analysis.kind, analysis.status) == ("full", "succeeded")
        assert analysis.stats["params"] == {"requested_by": "pm"} and analysis.stats["themes"] >= 3
        assert session.scalar(select(func.count()).select_from(AnalysisRun)) == 4  # no row besides the queued ones
        assert rows["report"].stats["result"]["report_id"] == session.scalar(  # type: ignore[union-attr]
            select(Report.id).where(Report.week == week))


def test_analyses_in_one_process_share_one_loaded_model(settings: Settings, engine: Any) -> None:
    # The API's job runner runs every analysis in its own process: the model must not load again per run.
    from flows.analysis import build_analyzer

    first, second = build_analyzer(settings, engine), build_analyzer(settings, engine)
    assert first.embedder is second.embedder
    other = build_analyzer(settings.model_copy(update={"embedding_batch_size": settings.embedding_batch_size + 1}),
                           engine)
    assert other.embedder is not first.embedder
