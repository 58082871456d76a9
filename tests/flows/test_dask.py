"""Embedding batches on a local Dask cluster of 2 worker processes (prefect-dask) equal those computed in-process."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import false, select
from sqlalchemy.orm import Session, sessionmaker

import flows.embedding
from flows.embedding import (
    TaskRunnerConfigError,
    dask_task_runner,
    embed_batches,
    run_embed_batches,
    store_vectors,
    task_runner_setting,
)
from models.settings import Settings
from models.tables import Embedding, Feedback, Source, utcnow
from pipeline.embedding import HashingEmbedder, make_embedder
from pipeline.embedding_store import from_bytes

WORDS = ["export", "dashboard", "invoice", "login", "slow", "mobile", "sso", "legend", "billing", "search",
         "filter", "report", "chart", "timezone", "webhook", "latency"]


def add_feedback(sessions: sessionmaker[Session], n: int) -> dict[str, str]:
    """``n`` distinct texts (plus one duplicate text); returns content hash -> text."""
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=6)) + f" case {i}" for i in range(n)]
    texts.append(texts[0])  # same text, same hash: embedded once
    with sessions.begin() as session:
        source = Source(name="notes", kind="file", config={})
        session.add(source)
        session.flush()
        session.add_all(Feedback(source_id=source.id, external_id=str(i), kind="ticket", text=t,
                                 content_hash=f"h{texts.index(t):04d}", occurred_at=utcnow())
                        for i, t in enumerate(texts))
    return {f"h{i:04d}": t for i, t in enumerate(texts[:n])}


def stored(sessions: sessionmaker[Session], model: str) -> dict[str, np.ndarray]:
    with sessions() as session:
        return {h: from_bytes(v) for h, v in session.execute(
            select(Embedding.content_hash, Embedding.vector).where(Embedding.model == model)).tuples()}


def on_workers(run: Callable[[], int]) -> int:
    """Runs ``run`` and checks that the batches ran in the workers: this process never built an embedder."""
    flows.embedding._EMBEDDERS.clear()
    count = run()
    assert flows.embedding._EMBEDDERS == {}
    return count


def test_hashing_vectors_from_dask_workers_equal_in_process(sessions: sessionmaker[Session],
                                                            flow_env: Settings) -> None:
    texts = add_feedback(sessions, 150)
    # As the analysis flow runs it: the setting picks the runner; batches of 4 x 16 texts, 3 over 2 workers.
    settings = flow_env.model_copy(update={"embedding_task_runner": "local:2", "embedding_batch_size": 16})
    assert on_workers(lambda: run_embed_batches(settings)) == 150
    vectors = stored(sessions, "hashing-128")
    hashes = sorted(texts)
    assert sorted(vectors) == hashes
    expected = HashingEmbedder(128).encode([texts[h] for h in hashes])
    np.testing.assert_allclose(np.stack([vectors[h] for h in hashes]), expected, atol=1e-5)
    # Everything is embedded: a second run has nothing to do.
    assert embed_batches(settings=flow_env, batch_size=32) == 0


@pytest.mark.slow
def test_minilm_vectors_from_dask_workers_equal_in_process(sessions: sessionmaker[Session],
                                                           flow_env: Settings) -> None:
    settings = flow_env.model_copy(update={"embedding_model": "all-MiniLM-L6-v2", "embedding_device": "cpu",
                                           "torch_threads": 1})
    texts = add_feedback(sessions, 64)
    local = embed_batches.with_options(task_runner=dask_task_runner("local:2"))
    assert on_workers(lambda: local(settings=settings, batch_size=16)) == 64
    vectors = stored(sessions, "all-MiniLM-L6-v2")
    hashes = sorted(texts)
    expected = make_embedder("all-MiniLM-L6-v2", device="cpu").encode([texts[h] for h in hashes])
    assert expected.shape == (64, 384)
    np.testing.assert_allclose(np.stack([vectors[h] for h in hashes]), expected, atol=1e-5)


def test_runner_setting(settings: Settings) -> None:
    assert task_runner_setting(settings) == ""
    assert task_runner_setting(settings.model_copy(update={"embedding_task_runner": " local:2 "})) == "local:2"
    local = dask_task_runner("local:3")
    assert local.cluster_kwargs["n_workers"] == 3 and local.address is None
    assert dask_task_runner("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for bad in ("local:", "local:0", "local:two"):
        with pytest.raises(TaskRunnerConfigError, match="local:N"):
            dask_task_runner(bad)


def test_store_vectors_skips_what_is_stored(sessions: sessionmaker[Session]) -> None:
    a, b = np.ones(4, dtype=np.float32) / 2, np.zeros(4, dtype=np.float32)
    assert store_vectors(sessions, "m", [("x", a)]) == 1
    assert store_vectors(sessions, "m", [("x", b), ("y", b), ("y", b)]) == 1
    assert store_vectors(sessions, "m", []) == 0
    got = stored(sessions, "m")
    np.testing.assert_array_equal(got["x"], a)  # the first vector stays


def test_store_vectors_keeps_a_vector_stored_after_its_check(sessions: sessionmaker[Session],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The API embeds notes as they arrive: a vector can land between the lookup and the insert."""
    a, b = np.ones(4, dtype=np.float32) / 2, np.zeros(4, dtype=np.float32)
    assert store_vectors(sessions, "m", [("x", a)]) == 1
    monkeypatch.setattr(flows.embedding, "select", lambda *cols: select(*cols).where(false()))  # a stale lookup
    assert store_vectors(sessions, "m", [("x", b), ("y", b)]) == 2
    got = stored(sessions, "m")
    np.testing.assert_array_equal(got["x"], a)
    np.testing.assert_array_equal(got["y"], b)
