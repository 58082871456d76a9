"""Background jobs started from the API: sync a source, run an analysis, write a report.

The route records an ``analysis_run`` row (status ``queued``) and hands its id to ``app.state.job_runner``.
The default :class:`ThreadJobRunner` runs the job function in a daemon thread; tests inject a fake that
records calls. Job functions live with the flows and are looked up by name, so the API does not import
Prefect at start-up.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models.db import session_scope
from models.settings import Settings
from models.tables import ANALYSIS_KINDS, AnalysisRun, utcnow
from pipeline.runs import process_owner

log = logging.getLogger(__name__)

# kind -> "module:function". Each function is called as fn(settings, run_id=..., **params) and may update
# the run row itself; whatever it leaves as queued/running is closed here as succeeded or failed.
JOB_FUNCTIONS: dict[str, str] = {
    "sync": "flows.jobs:run_sync",
    "full": "flows.jobs:run_analysis",
    "incremental": "flows.jobs:run_analysis",
    "report": "flows.jobs:run_report",
}


class JobRunner(Protocol):
    def submit(self, kind: str, **params: Any) -> int:
        """Start job ``kind`` for the queued run ``params['run_id']``; returns that run id."""
        ...


def queue_run(session: Session, kind: str, params: dict[str, Any]) -> AnalysisRun:
    """Record a queued run; the caller commits before submitting it."""
    run = AnalysisRun(kind=kind, status="queued", stats={"params": params}, owner=process_owner())
    session.add(run)
    session.flush()
    return run


def resolve_job(kind: str) -> Callable[..., Any]:
    target = JOB_FUNCTIONS.get(kind)
    if target is None:
        raise LookupError(f"no job function for kind {kind!r}")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


class ThreadJobRunner:
    """Runs each job in its own daemon thread and keeps the run row's status honest."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], *,
                 resolve: Callable[[str], Callable[..., Any]] = resolve_job) -> None:
        self.settings = settings
        self.sessions = sessions
        self.resolve = resolve
        self.threads: list[threading.Thread] = []

    def submit(self, kind: str, **params: Any) -> int:
        run_id = int(params.pop("run_id"))
        thread = threading.Thread(target=self._run, args=(kind, run_id, params), name=f"gs-job-{kind}-{run_id}",
                                  daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()
        return run_id

    def _finish(self, run_id: int, status: str, error: str | None = None) -> None:
        with session_scope(self.sessions) as session:
            session.execute(
                update(AnalysisRun).where(AnalysisRun.id == run_id, AnalysisRun.status.in_(("queued", "running")))
                .values(status=status, error=error, finished_at=utcnow())
            )

    def _run(self, kind: str, run_id: int, params: dict[str, Any]) -> None:
        try:
            job = self.resolve(kind)
        except (LookupError, ImportError, AttributeError) as exc:
            log.error("run %s: job %s is not available: %s", run_id, kind, exc)
            self._finish(run_id, "failed", f"job {kind!r} is not available in this installation: {exc}")
            return
        if kind not in ANALYSIS_KINDS:  # an analysis marks itself running once no other one runs
            with session_scope(self.sessions) as session:
                session.execute(update(AnalysisRun).where(AnalysisRun.id == run_id)
                                .values(status="running", started_at=utcnow(), owner=process_owner()))
        try:
            job(self.settings, run_id=run_id, **params)
        except Exception as exc:
            log.exception("run %s (%s) failed", run_id, kind)
            self._finish(run_id, "failed", f"{type(exc).__name__}: {exc}")
            return
        self._finish(run_id, "succeeded")
