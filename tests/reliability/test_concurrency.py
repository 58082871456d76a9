"""50 sales reps posting field notes through a real uvicorn server while an analysis runs.

Every note must be stored exactly once (retries with the same idempotency key, even racing each other, give the
same item), and no writer may see "database is locked" or any other error: all answers are 200/201.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from ingest.demo_loader import load_demo
from ingest.field_notes import SOURCE_NAME
from models.settings import Settings
from models.tables import AnalysisRun, ApiKey, Feedback, Source
from pipeline.analysis import Analyzer
from pipeline.embedding import HashingEmbedder
from tests.api.factories import make_key
from tests.reliability.conftest import NOW, serve, small_demo

WRITERS = 50
OVERLAP = 20  # answers the writers have had before the analysis goes on to its themes


class Recorder:
    """Every answer the writers got, with the time it came back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = threading.Condition(self.lock)
        self.answers: list[tuple[str, int, str, float]] = []  # (idempotency key or "", status, body, time)

    def wait_for(self, n: int, timeout: float) -> None:
        """Until at least ``n`` answers came back, or ``timeout`` seconds passed."""
        with self.answered:
            self.answered.wait_for(lambda: len(self.answers) >= n, timeout)

    def post(self, client: httpx.Client, key: str, idem: str | None, text: str) -> int | None:
        headers = {"Authorization": f"Bearer {key}"}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        response = client.post("/v1/feedback", json={"text": text, "account_name": "Acme Robotics"},
                               headers=headers)
        with self.answered:
            self.answers.append((idem or "", response.status_code, response.text, time.monotonic()))
            self.answered.notify_all()
        return int(response.json()["id"]) if response.status_code in (200, 201) else None


def writer(base: str, key: str, n: int, rec: Recorder) -> dict[str, list[int | None]]:
    """One rep: a note retried after its answer, a note sent twice at once, a note without a key."""
    ids: dict[str, list[int | None]] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        first = f"rep{n}-a"
        ids[first] = [rec.post(client, key, first, f"rep {n}: the export to excel keeps timing out")]
        ids[first].append(rec.post(client, key, first, f"rep {n}: the export to excel keeps timing out"))
        second = f"rep{n}-b"
        with httpx.Client(base_url=base, timeout=60) as twin, ThreadPoolExecutor(2) as pool:
            racing = [pool.submit(rec.post, c, key, second, f"rep {n}: they need SSO before they sign")
                      for c in (client, twin)]
            ids[second] = [f.result() for f in racing]
        ids[""] = [rec.post(client, key, None, f"rep {n}: pricing page confuses the buyer")]
    return ids


def test_fifty_writers_during_an_analysis_lose_and_duplicate_nothing(
        sessions: sessionmaker[Session], settings: Settings, engine: Any) -> None:
    demo = small_demo()
    demo.items = [(name, item) for name, item in demo.items if name != SOURCE_NAME][:150]
    load_demo(sessions, demo)
    with sessions.begin() as session:
        keys = [make_key(session, "sales", name=f"rep-{n}") for n in range(WRITERS)]
    app = create_app(settings, embedder=HashingEmbedder(128))
    analysis_started = threading.Event()
    analysis: dict[str, Any] = {}
    rec = Recorder()

    def step(name: str) -> None:
        analysis_started.set()
        if name == "themes":
            # 150 items analyse faster than 50 writers start: hold the analysis between its steps until writers
            # are being answered, so that the themes and scores steps overlap them on every machine.
            rec.wait_for(OVERLAP, timeout=60)

    def analyse() -> None:
        try:
            analyzer = Analyzer(sessions, settings.model_copy(update={"embedding_model": "hashing-128"}),
                                HashingEmbedder(128))
            summary = analyzer.run(full=True, now=NOW, progress=step)
            analysis["summary"] = summary
        except BaseException as exc:  # reported by the assertion below
            analysis["error"] = exc
            analysis_started.set()
        finally:
            analysis["ended"] = time.monotonic()

    with serve(app) as base:
        thread = threading.Thread(target=analyse, name="analysis")
        thread.start()
        assert analysis_started.wait(30)
        with ThreadPoolExecutor(WRITERS) as pool:
            results = list(pool.map(lambda nk: writer(base, nk[1], nk[0], rec), enumerate(keys)))
        thread.join(timeout=120)

    assert "error" not in analysis, analysis.get("error")
    assert rec.answers, "no writer got an answer"
    during = sum(1 for *_, t in rec.answers if t < analysis["ended"])
    assert during >= OVERLAP, "the writers never overlapped the analysis: the test proves nothing"

    bad = [(idem, status, body[:200]) for idem, status, body, _ in rec.answers if status not in (200, 201)]
    assert not bad, f"{len(bad)} writers got errors, e.g. {bad[:3]}"
    assert not any("locked" in body.lower() for *_, body, _t in rec.answers)

    for n, ids in enumerate(results):
        for idem, got in ids.items():
            assert all(i is not None for i in got)
            if idem:
                assert len(set(got)) == 1, f"rep {n}: retries of {idem!r} gave different items {got}"
        assert len({ids[f"rep{n}-a"][0], ids[f"rep{n}-b"][0], ids[""][0]}) == 3

    with sessions() as session:
        source_id = session.scalar(select(Source.id).where(Source.name == SOURCE_NAME))
        key_ids = dict(session.execute(select(ApiKey.name, ApiKey.id)).tuples().all())
        rows = session.execute(select(Feedback.id, Feedback.external_id, Feedback.submitted_by)
                               .where(Feedback.source_id == source_id)).tuples().all()
        run_status = session.scalar(select(AnalysisRun.status).where(
            AnalysisRun.id == analysis["summary"].run_id))
        total = session.scalar(select(func.count(Feedback.id)).where(Feedback.source_id == source_id))
    assert run_status == "succeeded"
    assert total == 3 * WRITERS, f"expected {3 * WRITERS} notes, found {total}"
    keyed = sorted(external for _, external, _ in rows if external.startswith("key:"))
    expected = sorted(f"key:k{key_ids[f'rep-{n}']}:rep{n}-{s}" for n in range(WRITERS) for s in "ab")
    assert keyed == expected  # every idempotency key exactly once
    by_rep: dict[str, int] = {}
    for _, _, submitted_by in rows:
        by_rep[submitted_by] = by_rep.get(submitted_by, 0) + 1
    assert by_rep == {f"rep-{n}": 3 for n in range(WRITERS)}
    assert {fid for fid, _, _ in rows} == {i for ids in results for got in ids.values() for i in got}
