"""Run rows record their process; a run whose process is gone is closed at once, an old analysis after hours."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import AnalysisRun, utcnow
from pipeline.runs import owner_gone, process_owner, reap_abandoned_runs

ROOT = Path(__file__).resolve().parents[2]
HOURS = dt.timedelta(hours=6)


def gone_owner() -> str:
    """The owner string of a process that has run and exited."""
    done = subprocess.run([sys.executable, "-c", "from pipeline.runs import process_owner; print(process_owner())"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.strip()


def test_this_process_is_alive_and_an_exited_one_is_gone() -> None:
    me = process_owner()
    host, pid, start = me.rsplit(":", 2)
    assert pid == str(os.getpid()) and start.isdigit()
    assert not owner_gone(me)
    exited = gone_owner()
    assert exited.rsplit(":", 2)[0] == host and exited != me
    assert owner_gone(exited)


def test_a_reused_pid_is_another_process_and_other_hosts_are_never_judged() -> None:
    host, pid, start = process_owner().rsplit(":", 2)
    assert owner_gone(f"{host}:{pid}:{int(start) + 1}")  # same pid, started at another time: not the owner
    assert not owner_gone(f"another-host.example:{pid}:{int(start) + 1}")
    assert not owner_gone(f"another-host.example:{2**22 + 7}:1")  # no such pid here, but not our host
    for unknown in (None, "", "garbage", f"{host}:notapid:1"):
        assert not owner_gone(unknown)


def add_run(session: Session, kind: str, status: str, *, owner: str | None, age: dt.timedelta) -> int:
    run = AnalysisRun(kind=kind, status=status, owner=owner, started_at=utcnow() - age)
    session.add(run)
    session.flush()
    return run.id


def test_runs_of_a_gone_process_are_closed_at_once_and_live_ones_kept(sessions: sessionmaker[Session]) -> None:
    dead, me = gone_owner(), process_owner()
    minute = dt.timedelta(minutes=1)
    with sessions.begin() as session:
        runs = {
            "dead sync": add_run(session, "sync", "running", owner=dead, age=minute),
            "dead queued report": add_run(session, "report", "queued", owner=dead, age=minute),
            "dead analysis": add_run(session, "incremental", "running", owner=dead, age=minute),
            "live analysis": add_run(session, "full", "running", owner=me, age=minute),
            "live old sync": add_run(session, "sync", "running", owner=me, age=2 * HOURS),
            "other host, recent": add_run(session, "full", "running", owner="elsewhere:1:1", age=minute),
            "other host, old": add_run(session, "full", "running", owner="elsewhere:1:1", age=2 * HOURS),
            "no owner, old": add_run(session, "incremental", "running", owner=None, age=2 * HOURS),
            "no owner, old sync": add_run(session, "sync", "running", owner=None, age=2 * HOURS),
            "dead but finished": add_run(session, "full", "succeeded", owner=dead, age=minute),
        }
    with sessions.begin() as session:
        assert reap_abandoned_runs(session, older_than=HOURS) == 5
    with sessions() as session:
        status = dict(session.execute(select(AnalysisRun.id, AnalysisRun.status)).tuples().all())
        errors = dict(session.execute(select(AnalysisRun.id, AnalysisRun.error)).tuples().all())
        finished = dict(session.execute(select(AnalysisRun.id, AnalysisRun.finished_at)).tuples().all())
    assert {name for name, run_id in runs.items() if status[run_id] == "abandoned"} == {
        "dead sync", "dead queued report", "dead analysis", "other host, old", "no owner, old"}
    assert status[runs["live analysis"]] == status[runs["live old sync"]] == "running"
    assert status[runs["other host, recent"]] == status[runs["no owner, old sync"]] == "running"
    assert status[runs["dead but finished"]] == "succeeded"
    assert "stopped without recording an end" in (errors[runs["dead sync"]] or "")
    assert "still running after 6:00:00" in (errors[runs["other host, old"]] or "")
    assert finished[runs["dead sync"]] is not None
    with sessions.begin() as session:  # nothing left to close
        assert reap_abandoned_runs(session, older_than=HOURS) == 0
