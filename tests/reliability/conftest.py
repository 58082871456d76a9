"""Helpers of the reliability tests: a small demo corpus, a real uvicorn server in a thread, DB snapshots."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ingest.demo import DemoData, generate_demo
from ingest.registry import build_connector
from ingest.sync import sync_source
from models.settings import Settings
from models.tables import (
    AnalysisRun,
    Embedding,
    Feedback,
    Opportunity,
    Report,
    Source,
    Theme,
    ThemeAssignment,
    ThemeEvent,
    ThemeStat,
)
from tests.ingest.conftest import add_source, snapshot, wipe_synced_data

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


def small_demo(seed: int = 5) -> DemoData:
    """A few hundred items: enough for several themes, small enough for a run of a second or two."""
    return generate_demo(weeks=4, accounts=12, seed=seed, now=NOW)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on",
                            timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def feedback_keys(session: Session) -> dict[int, tuple[str, str, str]]:
    """Feedback id -> natural key (source name, external id, content hash)."""
    names = dict(session.execute(select(Source.id, Source.name)).tuples().all())
    return {f.id: (names[f.source_id], f.external_id, f.content_hash)
            for f in session.scalars(select(Feedback))}


def theme_partition(sessions: sessionmaker[Session]) -> set[frozenset[tuple[str, str, str]]]:
    """The themes as sets of items (natural keys), whatever ids the themes got."""
    with sessions() as session:
        keys = feedback_keys(session)
        groups: dict[int, set[tuple[str, str, str]]] = {}
        for fid, tid in session.execute(select(ThemeAssignment.feedback_id, ThemeAssignment.theme_id)).tuples():
            groups.setdefault(tid, set()).add(keys[fid])
    return {frozenset(g) for g in groups.values()}


def analysis_snapshot(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """What an analysis leaves, by natural keys: partition, labels per group, latest opportunities."""
    with sessions() as session:
        keys = feedback_keys(session)
        members: dict[int, set[tuple[str, str, str]]] = {}
        for fid, tid in session.execute(select(ThemeAssignment.feedback_id, ThemeAssignment.theme_id)).tuples():
            members.setdefault(tid, set()).add(keys[fid])
        themes = {t.id: t for t in session.scalars(select(Theme))}
        labelled = sorted((sorted(m), themes[tid].label, themes[tid].status, json.dumps(themes[tid].keywords))
                          for tid, m in members.items())
        latest = session.scalar(select(Opportunity.run_id).order_by(Opportunity.run_id.desc()).limit(1))
        opportunities = sorted(
            (sorted(members.get(o.theme_id, set())), o.segment, o.rank, round(o.score, 6))
            for o in session.scalars(select(Opportunity).where(Opportunity.run_id == latest))
        )
        flags = sorted((keys[f.id], json.dumps(f.flags, sort_keys=True), f.sentiment, f.needs_analysis)
                       for f in session.scalars(select(Feedback)))
    return {"themes": labelled, "opportunities": opportunities, "items": flags}


def report_rows(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, str]]:
    with sessions() as session:
        return sorted((r.week, r.markdown, r.html, json.dumps(r.snapshot, sort_keys=True))
                      for r in session.scalars(select(Report)))


def reset_analysis(sessions: sessionmaker[Session]) -> None:
    """Forget everything an analysis wrote, keeping the feedback as ingested."""
    with sessions.begin() as session:
        for table in (Opportunity, ThemeStat, ThemeEvent, ThemeAssignment, Theme, AnalysisRun, Embedding):
            session.execute(delete(table))
        session.execute(update(Feedback).values(needs_analysis=True, sentiment=None, intent=None, flags={},
                                                competitors=[]))


def write_export(path: Path, rows: int) -> None:
    lines = []
    for i in range(rows):
        if i % 97 == 13:
            lines.append(json.dumps({"external_id": f"broken-{i}", "text": "cut"})[:-8])  # truncated JSON
        elif i % 89 == 7:
            lines.append(json.dumps({"external_id": f"t-{i}", "text": "", "occurred_at": "2026-01-05"}))
        else:
            lines.append(json.dumps({
                "external_id": f"t-{i}", "text": f"ticket {i}: the export to excel fails for {i % 17} users",
                "occurred_at": f"2026-01-{1 + i % 28:02d}T10:00:00Z", "account_name": f"Account {i % 23}",
            }))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def clean_export_sync(sessions: sessionmaker[Session], settings: Settings, path: Path, rows: int,
                      page_size: int) -> dict[str, Any]:
    """Write an export of ``rows`` lines, sync it once into the file source "export", then wipe what it stored.

    Returns the clean run's snapshot, which a faulty run of the same sync must converge to.
    """
    write_export(path, rows)
    add_source(sessions, "export", "file", {"path": str(path), "page_size": str(page_size)})
    with sessions() as session:
        source = session.scalars(select(Source).where(Source.name == "export")).one()
    assert sync_source(sessions, "export", build_connector(source, settings)).status == "ok"
    clean = snapshot(sessions)
    wipe_synced_data(sessions)
    return clean
