"""A sync, an analysis or a report in a process of its own, for the kill -9 tests.

    python tests/reliability/runner.py sync|analysis|report DATABASE_URL DATA_DIR [SOURCE]

Knobs (environment, read by this script only) make the process stop where a test wants to kill it. Each prints
``PAUSED`` on stdout and then sleeps, so the test kills it at a known point:

- ``GS_RUNNER_PAUSE_PAGE=N``: sync, with page N stored but not committed (its transaction open).
- ``GS_RUNNER_PAUSE_STEP=NAME``: analysis, as step NAME (embed, signals, themes, scores) begins.
- ``GS_RUNNER_PAUSE_WRITE=N``: report, inside the N-th atomic file write (its temporary file written, not yet
  renamed into place).

Without a knob the process runs to the end and prints ``DONE``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import select  # noqa: E402

from models.db import make_engine, make_session_factory  # noqa: E402
from models.settings import Settings  # noqa: E402

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


def pause() -> None:
    print("PAUSED", flush=True)
    time.sleep(600)


def main(argv: list[str]) -> int:
    job, url, data_dir = argv[:3]
    settings = Settings(database_url=url, data_dir=Path(data_dir), embedding_model="hashing-128",
                        _env_file=None)  # type: ignore[call-arg]
    sessions = make_session_factory(make_engine(url))
    if job == "sync":
        from ingest.registry import build_connector
        from ingest.sync import sync_source
        from models.tables import Source

        pause_page = int(os.environ.get("GS_RUNNER_PAUSE_PAGE", "0"))
        with sessions() as session:
            source = session.scalars(select(Source).where(Source.name == argv[3])).one()
            connector = build_connector(source, settings)

        def before_commit(_stream: str, number: int) -> None:
            if number == pause_page:
                pause()

        sync_source(sessions, argv[3], connector, before_commit=before_commit)
    elif job == "analysis":
        from flows.analysis import decide_recluster
        from pipeline.analysis import Analyzer
        from pipeline.embedding import HashingEmbedder

        pause_step = os.environ.get("GS_RUNNER_PAUSE_STEP", "")
        with sessions() as session:
            full = decide_recluster(session, settings, now=NOW).full

        def progress(step: str) -> None:
            if step == pause_step:
                pause()

        Analyzer(sessions, settings, HashingEmbedder(128)).run(full=full, now=NOW, progress=progress)
    elif job == "report":
        from pipeline.report_data import build_weekly_report

        pause_write = int(os.environ.get("GS_RUNNER_PAUSE_WRITE", "0"))
        real_fsync = os.fsync
        seen = {"writes": 0}

        def fsync(fd: int) -> None:  # write_atomically calls it between writing the temp file and renaming it
            seen["writes"] += 1
            if seen["writes"] == pause_write:
                pause()
            real_fsync(fd)

        os.fsync = fsync
        build_weekly_report(sessions, settings, now=NOW)
    else:
        print(f"unknown job {job!r}", file=sys.stderr)
        return 2
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
