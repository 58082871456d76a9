"""Feedback that arrives through the API is embedded at once, so search finds it before the next analysis."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.arrivals import ARRIVAL_NICENESS, ArrivalEmbedder
from models.tables import Embedding, Feedback
from pipeline.embedding import HashingEmbedder
from pipeline.embedding_store import from_bytes
from tests.api.factories import World
from tests.api.test_pages import _csrf, _login


def _vectors(sessions: Any, model: str) -> dict[str, np.ndarray]:
    with sessions() as session:
        rows = session.execute(select(Embedding.content_hash, Embedding.vector)
                               .where(Embedding.model == model)).tuples().all()
    return {h: from_bytes(v) for h, v in rows}


def _hash_of(sessions: Any, feedback_id: int) -> str:
    with sessions() as session:
        return str(session.scalar(select(Feedback.content_hash).where(Feedback.id == feedback_id)))


def test_a_posted_note_is_searchable_before_any_analysis(client: TestClient, auth: Any, world: World, app: Any,
                                                         sessions: Any, embedder: Any) -> None:
    text = "Kanban board with swimlanes per customer"
    note = client.post("/v1/feedback", json={"text": text, "account_name": "Acme Corp"}, headers=auth("sales"))
    assert note.status_code == 201, note.text
    assert app.state.arrivals.flush(timeout=10)
    vectors = _vectors(sessions, embedder.name)
    stored = vectors[_hash_of(sessions, note.json()["id"])]
    np.testing.assert_allclose(stored, embedder.encode([text])[0], atol=1e-6)  # the analysis model's vector
    app.state.vector_index.recheck_s = 0.0
    hits = client.get("/v1/search", params={"q": "kanban swimlanes", "limit": 1}, headers=auth("pm")).json()["hits"]
    assert hits[0]["feedback"]["id"] == note.json()["id"]
    # a retry of the same note embeds nothing more
    again = client.post("/v1/feedback", json={"text": text, "account_name": "Acme Corp"}, headers=auth("sales"))
    assert again.status_code == 201 and app.state.arrivals.flush(timeout=10)
    assert len(_vectors(sessions, embedder.name)) == len(vectors)


def test_a_pushed_batch_is_embedded(client: TestClient, auth: Any, app: Any, sessions: Any, embedder: Any) -> None:
    items = [{"external_id": f"t-{i}", "text": f"ticket {i}: the {word} export fails", "kind": "ticket",
              "occurred_at": "2026-01-05T10:00:00Z"} for i, word in enumerate(["csv", "pdf", "xlsx"])]
    response = client.post("/v1/feedback/batch", json={"source": "partner-feed", "items": items},
                           headers=auth("ingest"))
    assert response.status_code == 200 and response.json()["inserted"] == 3
    assert app.state.arrivals.flush(timeout=10)
    with sessions() as session:
        hashes = set(session.scalars(select(Feedback.content_hash).where(Feedback.external_id.like("t-%"))))
    assert len(hashes) == 3 and hashes <= _vectors(sessions, embedder.name).keys()


def test_a_note_from_the_page_form_is_embedded(client: TestClient, keys: Any, world: World, app: Any,
                                               sessions: Any, embedder: Any) -> None:
    _login(client, keys["sales"])
    form = client.get("/notes/new").text
    sent = client.post("/notes", data={"text": "Offline mode for the field app", "account_name": "Acme Corp",
                                       "csrf": _csrf(form)}, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    feedback_id = int(sent.headers["location"].rsplit("/", 1)[1])
    assert app.state.arrivals.flush(timeout=10)
    assert _hash_of(sessions, feedback_id) in _vectors(sessions, embedder.name)


def test_embedding_on_arrival_can_be_turned_off(settings: Any, engine: Any, embedder: Any, auth: Any,
                                                sessions: Any) -> None:
    app = create_app(settings.model_copy(update={"embed_on_arrival": False}), embedder=embedder)
    assert app.state.arrivals is None
    with TestClient(app) as client:
        note = client.post("/v1/feedback", json={"text": "Dark mode please", "account_name": "Acme"},
                           headers=auth("sales"))
        assert note.status_code == 201
        assert "arrivals" not in client.get("/ready").json()
    assert _vectors(sessions, embedder.name) == {}  # left to the next analysis


class BrokenEmbedder(HashingEmbedder):
    def encode(self, texts: Any) -> np.ndarray:
        raise RuntimeError("model file damaged")


def test_a_failing_embedder_loses_no_note_and_is_counted(settings: Any, engine: Any, auth: Any,
                                                        sessions: Any) -> None:
    app = create_app(settings, embedder=BrokenEmbedder())
    with TestClient(app) as client:
        note = client.post("/v1/feedback", json={"text": "Dark mode please", "account_name": "Acme"},
                           headers=auth("sales"))
        assert note.status_code == 201
        assert app.state.arrivals.flush(timeout=10)
        assert app.state.arrivals.failed == 1
        assert client.get(f"/v1/feedback/{note.json()['id']}", headers=auth("pm")).status_code == 200
        ready = client.get("/ready")  # an operator sees the failure; the server stays ready
        assert ready.status_code == 200, ready.text
        assert ready.json()["arrivals"] == {"pending": 0, "embedded": 0, "failed": 1, "dropped": 0}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Embedding)) == 0


def test_the_queue_is_bounded_and_closes(sessions: Any, embedder: Any, caplog: pytest.LogCaptureFixture) -> None:
    arrivals = ArrivalEmbedder(sessions, embedder, max_pending=2)
    arrivals.close()
    arrivals.submit([1, 2, 3])  # closed: ignored, no thread started
    assert arrivals.flush(timeout=1) and arrivals.dropped == 0
    bounded = ArrivalEmbedder(sessions, embedder, max_pending=2)
    with bounded._cond:  # hold the worker off so the queue fills
        bounded.submit([1, 2, 2, 3])  # a repeated id is queued once; the third id finds the queue full
        assert bounded.dropped == 1 and list(bounded._pending) == [1, 2]
    assert "1 arrived items not queued for embedding" in caplog.text
    assert bounded.flush(timeout=10)  # ids of no stored item are skipped without error
    assert bounded.failed == 0
    bounded.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are a Linux feature")
def test_the_embedding_thread_yields_the_cores_to_requests(sessions: Any, embedder: Any) -> None:
    arrivals = ArrivalEmbedder(sessions, embedder)
    arrivals.submit([1])
    assert arrivals.flush(timeout=10) and arrivals._thread is not None
    assert os.getpriority(os.PRIO_PROCESS, arrivals._thread.native_id or 0) >= ARRIVAL_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < ARRIVAL_NICENESS  # only that thread
    arrivals.close()

