"""Run rows: which analysis is the current one, which process owns a run, and closing runs left open.

``latest_scored_run_select`` is the single definition of the current analysis that the API, the CLI and the
report share. Every run row also records the process that runs it (:func:`process_owner`), so a run whose
process was killed (kill -9, an API server restarted mid-job) can be closed as soon as anyone on the same
host looks, instead of showing as running for hours.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.db import session_scope
from models.tables import ANALYSIS_KINDS, AnalysisRun, Opportunity, utcnow

OPEN_STATUSES = ("queued", "running")


def latest_scored_run_select() -> Select[int]:
    """The id of the latest succeeded full or incremental analysis that scored opportunities: the current one.

    Newest run first with an EXISTS probe, so the answer comes from the first few runs instead of a scan
    of every opportunity ever scored.
    """
    scored = select(Opportunity.id).where(Opportunity.run_id == AnalysisRun.id).exists()
    return (select(AnalysisRun.id)
            .where(AnalysisRun.status == "succeeded", AnalysisRun.kind.in_(("full", "incremental")), scored)
            .order_by(AnalysisRun.id.desc()).limit(1))


def latest_scored_run_id(session: Session) -> int | None:
    """The current analysis run (see :func:`latest_scored_run_select`), or None before the first."""
    return session.scalar(latest_scored_run_select())


def _start_ticks(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (Linux); "" where that cannot be read.

    With the pid it names one process for the life of the host: a pid reused by a later process has
    another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may hold spaces; start time is field 22
    return stat.rpartition(")")[2].split()[19]


@functools.cache
def _host() -> str:
    return socket.gethostname()


def process_owner() -> str:
    """This process, as ``host:pid:start`` (recorded on the run rows it starts)."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{_start_ticks(pid)}"


def owner_state(owner: str | None) -> str:
    """``alive`` or ``gone`` for a process on this host (see :func:`process_owner`); ``unknown`` for a process
    on another host (which this host cannot see) or no owner at all."""
    if not owner:
        return "unknown"
    host, pid_text, start = owner.rsplit(":", 2) if owner.count(":") >= 2 else ("", "", "")
    if host != _host() or not pid_text.isdigit():
        return "unknown"
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:  # alive, under another user
        pass
    except OSError:
        return "unknown"
    return "gone" if start and _start_ticks(pid) not in ("", start) else "alive"


def owner_gone(owner: str | None) -> bool:
    """True when ``owner`` was a process on this host that no longer runs (a reused pid is another process)."""
    return owner_state(owner) == "gone"


def reap_abandoned_runs(session: Session, *, older_than: dt.timedelta) -> int:
    """Close the runs whose process is gone: mark them `abandoned`. Returns how many were marked.

    A process killed mid-run cannot record its own end. A queued or running row of any kind whose owner
    ran on this host and has gone is closed at once; an analysis still `running` after ``older_than`` is
    closed unless its owner is seen alive on this host (it ran elsewhere, and that host may be lost). So
    the run history never shows a dead run as in progress, the API's list cache (paused while an analysis
    runs) resumes, and the next analysis may start.
    """
    cutoff = utcnow() - older_than
    candidates = session.execute(
        select(AnalysisRun.id, AnalysisRun.kind, AnalysisRun.status, AnalysisRun.started_at, AnalysisRun.owner)
        .where(AnalysisRun.status.in_(OPEN_STATUSES),
               or_(AnalysisRun.owner.is_not(None), AnalysisRun.kind.in_(ANALYSIS_KINDS)))
    ).all()
    states = {row.id: owner_state(row.owner) for row in candidates}
    gone = [row.id for row in candidates if states[row.id] == "gone"]
    stale = [row.id for row in candidates
             if row.kind in ANALYSIS_KINDS and row.status == "running" and row.started_at is not None
             and row.started_at <= cutoff and states[row.id] == "unknown"]
    marked = 0
    for ids, error in ((gone, "the process running this job stopped without recording an end (killed?)"),
                       (stale, f"still running after {older_than}: the process running it stopped without "
                               "recording an end (killed?)")):
        if ids:
            result = session.execute(
                update(AnalysisRun).where(AnalysisRun.id.in_(ids), AnalysisRun.status.in_(OPEN_STATUSES))
                .values(status="abandoned", finished_at=utcnow(), error=error))
            marked += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return marked


class AnalysisBusy(RuntimeError):
    """Another analysis is running on this database; one runs at a time."""


def analysis_in_progress(session: Session, statuses: tuple[str, ...] = ("running",)) -> Any | None:
    """The oldest analysis in one of ``statuses`` whose process is not known to be gone, or None.

    Returns: a row with ``id``, ``kind``, ``status``, ``started_at`` and ``owner``.
    """
    rows = session.execute(
        select(AnalysisRun.id, AnalysisRun.kind, AnalysisRun.status, AnalysisRun.started_at, AnalysisRun.owner)
        .where(AnalysisRun.status.in_(statuses), AnalysisRun.kind.in_(ANALYSIS_KINDS)).order_by(AnalysisRun.id))
    return next((row for row in rows if not owner_gone(row.owner)), None)


def describe_run(row: Any) -> str:
    """``analysis run N (kind) is running since YYYY-MM-DD HH:MM UTC`` for a row of :func:`analysis_in_progress`."""
    return f"analysis run {row.id} ({row.kind}) is {row.status} since {row.started_at:%Y-%m-%d %H:%M} UTC"


def claim_analysis(factory: sessionmaker[Session], kind: str, *, run_id: int | None = None,
                   stale_after: dt.timedelta) -> int:
    """Record that an analysis of ``kind`` starts in this process; returns its run id.

    Runs whose process is gone are closed first (:func:`reap_abandoned_runs`). Then the queued row
    ``run_id`` (a job from the API) is adopted, or a row is added. Two analyses at once would rewrite the same
    themes and assignments, so a unique index admits one `running` analysis: while another runs this raises
    :class:`AnalysisBusy` naming it, and records nothing.
    """
    with session_scope(factory) as session:
        reap_abandoned_runs(session, older_than=stale_after)
    values = {"kind": kind, "status": "running", "started_at": utcnow(), "owner": process_owner()}
    try:
        with session_scope(factory) as session:
            if run_id is None:
                run = AnalysisRun(**values)
                session.add(run)
                session.flush()
                return run.id
            found = session.execute(update(AnalysisRun).where(AnalysisRun.id == run_id).values(**values))
            if found.rowcount != 1:  # type: ignore[attr-defined]
                raise LookupError(f"analysis run {run_id} does not exist")
            return run_id
    except IntegrityError:
        pass
    with factory() as session:
        other = analysis_in_progress(session)
    if other is None:  # it ended (or its process died) between the two statements: this one may go ahead
        return claim_analysis(factory, kind, run_id=run_id, stale_after=stale_after)
    raise AnalysisBusy(
        f"{describe_run(other)} (process {other.owner or 'unknown'}); one analysis runs at a time, so wait for it "
        f"to end. A run whose process has gone is closed when the next one starts, or after {stale_after} if it "
        "ran on another host")
