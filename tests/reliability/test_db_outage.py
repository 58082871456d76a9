"""The database unreachable for a while during an analysis or a sync: a clear failure recorded once the database
is back (never a run left ``running``), nothing half-written, and the next run converges to one clean run.

The outage is injected at the engine: while it lasts every statement fails with OperationalError, as when the
server is down or the network drops. Tests use 2 s; one slow-marked test keeps the full 10 s.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from flows.analysis import decide_recluster
from ingest.demo_loader import load_demo
from ingest.registry import build_connector
from ingest.sync import sync_source
from models.settings import Settings
from models.tables import AnalysisRun, Source
from pipeline.analysis import Analyzer
from pipeline.embedding import HashingEmbedder
from tests.ingest.conftest import snapshot
from tests.reliability.conftest import NOW, analysis_snapshot, clean_export_sync, reset_analysis, small_demo


class Outage:
    """Makes every statement on ``engine`` fail for ``seconds`` once started."""

    def __init__(self, engine: Engine, seconds: float) -> None:
        self.seconds = seconds
        self.down = threading.Event()
        self.over = threading.Event()
        self.refused = 0
        event.listen(engine, "before_cursor_execute", self._hook)
        self.engine = engine

    def _hook(self, *_args: Any) -> None:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError("(injected)", {}, ConnectionRefusedError("database unreachable (injected)"))

    def start(self) -> None:
        if self.down.is_set() or self.over.is_set():
            return
        self.down.set()

        def end() -> None:
            self.down.clear()
            self.over.set()
        timer = threading.Timer(self.seconds, end)
        timer.daemon = True
        timer.start()

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)


def analyse(sessions: sessionmaker[Session], settings: Settings, progress: Any = None) -> int:
    with sessions() as session:
        full = decide_recluster(session, settings, now=NOW).full
    return Analyzer(sessions, settings, HashingEmbedder(128)).run(full=full, now=NOW, progress=progress).run_id


@pytest.mark.parametrize("seconds", [2.0, pytest.param(10.0, marks=pytest.mark.slow)])
def test_analysis_during_an_outage_fails_clearly_then_converges(sessions: sessionmaker[Session], engine: Engine,
                                                               settings: Settings, seconds: float) -> None:
    demo = small_demo()
    demo.items = demo.items[:120]
    load_demo(sessions, demo)
    hashing = settings.model_copy(update={"embedding_model": "hashing-128"})
    analyse(sessions, hashing)
    clean = analysis_snapshot(sessions)
    reset_analysis(sessions)

    outage = Outage(engine, seconds)
    try:
        with pytest.raises(OperationalError):
            analyse(sessions, hashing, progress=lambda step: outage.start() if step == "themes" else None)
        assert outage.refused and outage.over.is_set()
    finally:
        outage.remove()
    with sessions() as session:
        run = session.scalars(select(AnalysisRun)).one()
    assert run.status == "failed" and run.finished_at is not None  # recorded once the database came back
    assert "OperationalError" in (run.error or "") and "unreachable" in (run.error or "")

    analyse(sessions, hashing)
    assert analysis_snapshot(sessions) == clean
    with sessions() as session:
        assert session.scalars(select(AnalysisRun.status).order_by(AnalysisRun.id)).all() == ["failed", "succeeded"]


def test_sync_during_an_outage_keeps_whole_pages_then_converges(sessions: sessionmaker[Session], engine: Engine,
                                                               settings: Settings, tmp_path: Any) -> None:
    export = tmp_path / "export.jsonl"
    clean = clean_export_sync(sessions, settings, export, 600, page_size=100)
    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == "export")).one()

    outage = Outage(engine, 2.0)
    try:
        with pytest.raises(Exception) as failed:  # noqa: PT011 - SyncFailed, or the outage itself (see report)
            sync_source(sessions, "export", build_connector(source, settings),
                        after_commit=lambda _s, n: outage.start() if n == 3 else None)
        assert "unreachable" in str(failed.value) or "OperationalError" in str(failed.value)
    finally:
        deadline = time.monotonic() + 30
        while not outage.over.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        outage.remove()
    partial = snapshot(sessions)
    assert len(partial["feedback"]) + len(partial["rejected"]) == 300  # the three committed pages, whole
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Source)) == 1
    assert sync_source(sessions, "export", build_connector(source, settings)).status == "ok"
    assert snapshot(sessions) == clean
