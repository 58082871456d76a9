"""Run rows record their process; a run whose process is gone is closed at once, an old analysis after hours."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import AnalysisRun, utcnow
from pipeline.runs import AnalysisBusy, claim_analysis, owner_gone, process_owner, reap_abandoned_runs
from tests.processes import gone_owner

HOURS = dt.timedelta(hours=6)


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


def statuses(sessions: sessionmaker[Session]) -> dict[int, tuple[str, str | None]]:
    with sessions() as session:
        return {r.id: (r.status, r.error) for r in session.execute(
            select(AnalysisRun.id, AnalysisRun.status, AnalysisRun.error))}


def test_runs_of_a_gone_process_are_closed_at_once_and_live_ones_kept(sessions: sessionmaker[Session]) -> None:
    dead, me = gone_owner(), process_owner()
    minute = dt.timedelta(minutes=1)
    with sessions.begin() as session:
        runs = {
            "dead sync": add_run(session, "sync", "running", owner=dead, age=minute),
            "dead queued report": add_run(session, "report", "queued", owner=dead, age=minute),
            "dead queued analysis": add_run(session, "full", "queued", owner=dead, age=minute),
            "live old sync": add_run(session, "sync", "running", owner=me, age=2 * HOURS),
            "no owner, old sync": add_run(session, "sync", "running", owner=None, age=2 * HOURS),
            "dead but finished": add_run(session, "full", "succeeded", owner=dead, age=minute),
            "other host, old analysis": add_run(session, "full", "running", owner="elsewhere:1:1", age=2 * HOURS),
        }
    with sessions.begin() as session:
        assert reap_abandoned_runs(session, older_than=HOURS) == 4
    status = statuses(sessions)
    assert {name for name, run_id in runs.items() if status[run_id][0] == "abandoned"} == {
        "dead sync", "dead queued report", "dead queued analysis", "other host, old analysis"}
    assert status[runs["live old sync"]][0] == status[runs["no owner, old sync"]][0] == "running"
    assert status[runs["dead but finished"]][0] == "succeeded"
    assert "stopped without recording an end" in (status[runs["dead sync"]][1] or "")
    assert "still running after 6:00:00" in (status[runs["other host, old analysis"]][1] or "")
    with sessions.begin() as session:  # nothing left to close
        assert reap_abandoned_runs(session, older_than=HOURS) == 0

    # one running analysis at a time: each case on its own
    cases = [("gone process", dead, minute, "abandoned"), ("this process, old", me, 2 * HOURS, "running"),
             ("other host, recent", "elsewhere:1:1", minute, "running"), ("no owner, old", None, 2 * HOURS,
                                                                          "abandoned")]
    for name, owner, age, expected in cases:
        with sessions.begin() as session:
            run_id = add_run(session, "incremental", "running", owner=owner, age=age)
        with sessions.begin() as session:
            reap_abandoned_runs(session, older_than=HOURS)
        assert statuses(sessions)[run_id][0] == expected, name
        with sessions.begin() as session:
            session.get(AnalysisRun, run_id).status = "succeeded"


def test_one_analysis_runs_at_a_time(sessions: sessionmaker[Session]) -> None:
    first = claim_analysis(sessions, "full", stale_after=HOURS)
    busy = rf"analysis run {first} \(full\) is running since .* one analysis runs at a time"
    with pytest.raises(AnalysisBusy, match=busy):
        claim_analysis(sessions, "incremental", stale_after=HOURS)
    with sessions.begin() as session:  # a queued job cannot start either; its row stays queued for its runner
        queued = add_run(session, "incremental", "queued", owner=process_owner(), age=dt.timedelta())
    with pytest.raises(AnalysisBusy):
        claim_analysis(sessions, "incremental", run_id=queued, stale_after=HOURS)
    assert statuses(sessions)[queued][0] == "queued"
    with sessions.begin() as session:
        session.get(AnalysisRun, first).status = "succeeded"
    assert claim_analysis(sessions, "incremental", run_id=queued, stale_after=HOURS) == queued
    assert statuses(sessions)[queued][0] == "running"

    # a killed analysis does not block the next one: its process is gone
    with sessions.begin() as session:
        session.get(AnalysisRun, queued).owner = gone_owner()
    third = claim_analysis(sessions, "full", stale_after=HOURS)
    assert statuses(sessions)[queued][0] == "abandoned" and statuses(sessions)[third][0] == "running"
    # other kinds run beside it
    with sessions.begin() as session:
        add_run(session, "sync", "running", owner=process_owner(), age=dt.timedelta())
        add_run(session, "report", "running", owner=process_owner(), age=dt.timedelta())


def test_two_analyses_started_together_one_wins(sessions: sessionmaker[Session]) -> None:
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def start() -> None:
        barrier.wait()
        try:
            claim_analysis(sessions, "full", stale_after=HOURS)
            outcomes.append("ran")
        except AnalysisBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy", "busy", "busy", "ran"]
    assert [s for s, _ in statuses(sessions).values()] == ["running"]
