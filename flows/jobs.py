"""Job functions for the API's background runner (``api.jobs.JOB_FUNCTIONS``): sync, analysis, report.

Each is called as ``fn(settings, run_id=..., **params)`` for a queued ``analysis_run`` row, runs the matching
Prefect flow with those settings, and records the outcome in the row's ``stats`` (keeping ``params``). A job
that fails raises :class:`JobFailed` (or the flow's error), and the runner marks the row failed with it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from sqlalchemy import update

from flows.analysis import analyze
from flows.ingest import ingest_all
from flows.report import build_report, send_report
from models.db import engine_from_settings, make_session_factory, session_scope
from models.settings import Settings
from models.tables import AnalysisRun


class JobFailed(RuntimeError):
    """The job ran but did not do its work (a source that failed to sync); the message says why."""


def record_outcome(settings: Settings, run_id: int, params: dict[str, Any], result: dict[str, Any]) -> None:
    engine = engine_from_settings(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            session.execute(update(AnalysisRun).where(AnalysisRun.id == run_id).values(
                stats={"params": params, "result": result}))
    finally:
        engine.dispose()


def run_sync(settings: Settings, *, run_id: int, source: str, **params: Any) -> dict[str, Any]:
    """Sync one source (the ``ingest-all`` flow, narrowed to it).

    Raises:
        JobFailed: the sync failed; what it stored before failing stays stored.
    """
    summary = ingest_all(names=[source], settings=settings)[0]
    record_outcome(settings, run_id, {"source": source, **params}, summary)
    if summary.get("status") != "ok":
        raise JobFailed(f"sync of {source} failed: {summary.get('error')}")
    return summary


def run_analysis(settings: Settings, *, run_id: int, **params: Any) -> dict[str, Any]:
    """Run the analysis as the queued row: a ``full`` row forces a full re-clustering, ``incremental`` lets the
    flow decide (it still re-clusters when one is due)."""
    engine = engine_from_settings(settings)
    try:
        with make_session_factory(engine)() as session:
            run = session.get(AnalysisRun, run_id)
            if run is None:
                raise JobFailed(f"analysis run {run_id} does not exist")
            full = run.kind == "full"
    finally:
        engine.dispose()
    return analyze(full=full, run_id=run_id, settings=settings)


# The same tasks as ``weekly_report``, with the caller's settings rather than the environment's.
@flow(name="report-job", log_prints=False)
def report_job(settings: Settings, week: str | None = None, deliver: bool = False) -> dict[str, Any]:
    result = build_report(settings, week)
    out: dict[str, Any] = result.as_dict()
    if deliver:
        out["delivery"] = send_report(settings, result)
    return out


def run_report(settings: Settings, *, run_id: int, week: str | None = None, deliver: bool = False,
               **params: Any) -> dict[str, Any]:
    """Write (and when asked, deliver) the weekly report; the row's stats get its week, id and paths."""
    out = report_job(settings, week, deliver)
    record_outcome(settings, run_id, {"week": week, "deliver": deliver, **params}, out)
    return out
