"""kill -9 of a sync mid-page, of an analysis mid-run and of a report mid-write: the next run converges to what
one clean run leaves. The work runs in a subprocess (tests/reliability/runner.py) that pauses at a known point
and is then SIGKILLed; the rerun happens here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from flows.analysis import decide_recluster
from ingest.demo_loader import load_demo
from models.settings import Settings
from models.tables import (
    AnalysisRun,
    Embedding,
    Report,
    SyncState,
)
from pipeline.analysis import Analyzer
from pipeline.embedding import HashingEmbedder
from pipeline.report_data import build_weekly_report
from tests.ingest.conftest import snapshot
from tests.reliability.conftest import (
    NOW,
    analysis_snapshot,
    clean_export_sync,
    report_rows,
    reset_analysis,
    small_demo,
)

RUNNER = Path(__file__).with_name("runner.py")
ROOT = Path(__file__).resolve().parents[2]


def start(job: str, settings: Settings, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), job, settings.effective_database_url, str(settings.data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def kill_when_paused(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait for the runner's PAUSED marker, then SIGKILL it."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    while line.strip() != "PAUSED":
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"runner never paused: {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}")
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def run_to_end(proc: subprocess.Popen[str]) -> None:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "DONE" in out, err[-3000:]


# -- sync ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pause_page", [5])
def test_sync_killed_mid_page_then_rerun_equals_one_clean_run(sessions: sessionmaker[Session], settings: Settings,
                                                               tmp_path: Path, pause_page: int) -> None:
    export = tmp_path / "export.jsonl"
    clean = clean_export_sync(sessions, settings, export, 1200, page_size=100)
    assert len(clean["feedback"]) > 1000 and clean["rejected"] and clean["cursors"]

    kill_when_paused(start("sync", settings, "export", env={"GS_RUNNER_PAUSE_PAGE": str(pause_page)}))
    partial = snapshot(sessions)
    # Only the committed pages are there, whole: each row stored or rejected, none of the open page.
    assert len(partial["feedback"]) + len(partial["rejected"]) == (pause_page - 1) * 100
    assert partial != clean

    run_to_end(start("sync", settings, "export"))
    assert snapshot(sessions) == clean


def test_sync_killed_at_an_arbitrary_moment_then_rerun_equals_one_clean_run(
        sessions: sessionmaker[Session], settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    # Enough pages that an idle machine cannot finish the sync between start-up and the first poll.
    clean = clean_export_sync(sessions, settings, export, 12000, page_size=20)

    proc = start("sync", settings, "export")
    deadline = time.monotonic() + 60
    while True:  # kill as soon as a few pages are committed: wherever the next page happens to be
        with sessions() as session:
            if session.scalar(select(func.count(SyncState.id))):
                break
        assert proc.poll() is None and time.monotonic() < deadline, "the sync ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert snapshot(sessions) != clean, "the kill came too late to test anything"
    run_to_end(start("sync", settings, "export"))
    assert snapshot(sessions) == clean


# -- analysis -----------------------------------------------------------------------------------------------
def analyse_in_process(sessions: sessionmaker[Session], settings: Settings) -> None:
    with sessions() as session:
        full = decide_recluster(session, settings, now=NOW).full
    Analyzer(sessions, settings, HashingEmbedder(128)).run(full=full, now=NOW)


@pytest.fixture
def analysed(sessions: sessionmaker[Session], settings: Settings) -> Settings:
    demo = small_demo()
    demo.items = demo.items[:160]
    load_demo(sessions, demo)
    return settings.model_copy(update={"embedding_model": "hashing-128"})


@pytest.mark.parametrize("pause_step", ["scores"])
def test_analysis_killed_mid_run_then_rerun_equals_one_clean_run(sessions: sessionmaker[Session], analysed: Settings,
                                                                 pause_step: str) -> None:
    analyse_in_process(sessions, analysed)
    clean = analysis_snapshot(sessions)
    assert clean["themes"] and clean["opportunities"]
    reset_analysis(sessions)

    kill_when_paused(start("analysis", analysed, env={"GS_RUNNER_PAUSE_STEP": pause_step}))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Embedding)), "the embed step should be committed"
        assert session.scalar(select(AnalysisRun.status)) == "running"  # a killed process records nothing
    assert analysis_snapshot(sessions) != clean

    # The next run closes the killed one at once (its process is gone; it is not yet stale by age) and
    # converges to the clean result.
    assert analysed.stale_run_hours >= 1
    analyse_in_process(sessions, analysed)
    assert analysis_snapshot(sessions) == clean
    with sessions() as session:
        runs = session.execute(select(AnalysisRun.status, AnalysisRun.error).order_by(AnalysisRun.id)).all()
    assert runs[-1].status == "succeeded"
    assert [r.status for r in runs].count("running") == 0
    assert [r.error for r in runs if r.status == "abandoned"] == [
        "the process running this job stopped without recording an end (killed?)"]


# -- report -------------------------------------------------------------------------------------------------
def report_files(directory: Path) -> dict[str, str]:
    """The files a reader sees (temporary files are hidden dot-files)."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize("pause_write", [1, 2])
def test_report_killed_while_written_leaves_no_half_file_and_rerun_equals_clean(
        sessions: sessionmaker[Session], analysed: Settings, pause_write: int) -> None:
    analyse_in_process(sessions, analysed)
    result = build_weekly_report(sessions, analysed, now=NOW)
    clean_rows, clean_files = report_rows(sessions), report_files(analysed.reports_dir)
    assert set(clean_files) == {result.md_path.name, result.html_path.name}
    assert len(clean_files[result.html_path.name]) > 1000
    # An older version of the week is on disk; the killed writer must leave it whole, not truncated.
    with sessions.begin() as session:
        session.execute(delete(Report))
    old = "# an older report of the same week\n"
    result.md_path.write_text(old, encoding="utf-8")
    result.html_path.unlink()

    kill_when_paused(start("report", analysed, env={"GS_RUNNER_PAUSE_WRITE": str(pause_write)}))
    visible = report_files(analysed.reports_dir)
    leftovers = [p.name for p in analysed.reports_dir.iterdir() if p.name.startswith(".")]
    assert leftovers and all(n.endswith(".tmp") for n in leftovers), leftovers  # killed mid-write, for real
    if pause_write == 1:
        assert visible == {result.md_path.name: old}
    else:  # the Markdown was renamed into place whole; the HTML never appeared
        assert visible == {result.md_path.name: clean_files[result.md_path.name]}
    assert report_rows(sessions) == []

    run_to_end(start("report", analysed))
    assert report_files(analysed.reports_dir) == clean_files
    assert report_rows(sessions) == clean_rows
    with sessions() as session:
        assert session.scalar(select(func.count(Report.id))) == 1
