"""Search queries encoded in a child process (api.query_process)."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.query_embedding import QueryEmbedder
from api.query_process import BACKGROUND_CHUNK, QUERY_CHUNK, ProcessEncoder
from models.settings import Settings
from pipeline.embedding import EmbeddingError, HashingEmbedder
from tests.api.conftest import FakeJobRunner
from tests.api.factories import World


class _Picky(HashingEmbedder):
    """Fails on texts containing "boom"; waits while a file named in the text exists ("wait:PATH"), having
    created PATH.waiting."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        for t in texts:
            if "boom" in t:
                raise ValueError(f"cannot encode {t!r}")
            if t.startswith("wait:"):
                Path(t[5:] + ".waiting").touch()  # tells the test the child got here
                while Path(t[5:]).exists():
                    time.sleep(0.01)
        return super().encode(texts)


def _picky() -> HashingEmbedder:
    return _Picky()


class _TwoGraphs(HashingEmbedder):
    """Encodes search queries to the opposite of what it stores, so a test can tell which path ran."""

    query_precision_used = "int8"

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return -self.encode(texts)


def _two_graphs() -> HashingEmbedder:
    return _TwoGraphs()


def _broken() -> HashingEmbedder:
    raise OSError("no weights at /nowhere")


@pytest.fixture
def encoder() -> Any:
    enc = ProcessEncoder(_picky, "hashing-64", start_timeout_s=60)
    yield enc
    enc.close()


def test_vectors_match_the_model_in_process_from_many_threads_at_once(encoder: ProcessEncoder) -> None:
    reference = HashingEmbedder()
    texts = [f"export to excel fails {i}" for i in range(40)]
    got: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, encoder.encode([texts[i], "shared"])))
               for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(40))
    for i, vectors in got.items():
        np.testing.assert_allclose(vectors, reference.encode([texts[i], "shared"]), atol=1e-6)
    assert encoder.encode([]).shape == (0, 64)
    assert encoder.starts == 1 and encoder.name == "hashing-64"
    process = encoder._child.process  # type: ignore[union-attr]
    encoder.close()
    assert process.poll() == 0  # closing the pipe ends the child
    np.testing.assert_allclose(encoder.encode(["again"]), reference.encode(["again"]), atol=1e-6)
    assert encoder.starts == 2  # a call after close starts another


def test_a_model_error_fails_only_its_batch(encoder: ProcessEncoder) -> None:
    with pytest.raises(EmbeddingError, match="ValueError: cannot encode 'boom now'"):
        encoder.encode(["boom now"])
    assert encoder.encode(["fine"]).shape == (1, 64)
    assert encoder.starts == 1  # the child survived its model's error


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_child_that_dies_fails_its_calls_and_the_next_call_starts_another(encoder: ProcessEncoder,
                                                                              tmp_path: Path) -> None:
    encoder.start()
    gate = tmp_path / "gate"
    gate.touch()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            encoder.encode([f"wait:{gate}"])
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    _wait_for(tmp_path / "gate.waiting")  # the child is encoding the waiting text
    pid = encoder._child.process.pid  # type: ignore[union-attr]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    caller.join(10)
    assert not caller.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], EmbeddingError)
    assert "the query encoder process exited (exit code -9)" in str(errors[0])
    gate.unlink()
    np.testing.assert_allclose(encoder.encode(["after"]), HashingEmbedder().encode(["after"]), atol=1e-6)
    assert encoder.starts == 2


def test_a_model_that_cannot_load_is_an_error_naming_why() -> None:
    enc = ProcessEncoder(_broken, "hashing-64", start_timeout_s=60)
    for _ in range(2):  # and again on the next call, not a hang
        with pytest.raises(EmbeddingError, match="could not load its model: OSError: no weights at /nowhere"):
            enc.encode(["anything"])
    enc.close()


def test_a_child_with_another_model_than_expected_is_refused() -> None:
    enc = ProcessEncoder(functools.partial(HashingEmbedder, 32), "hashing-64", start_timeout_s=60)
    with pytest.raises(EmbeddingError, match="loaded 'hashing-32', expected 'hashing-64'"):
        enc.encode(["anything"])
    enc.close()


def test_query_embedder_caches_what_the_child_encodes(encoder: ProcessEncoder) -> None:
    queries = QueryEmbedder(encoder)
    first = queries.encode_one("single sign-on")
    assert queries.encode_one("single sign-on") is first and (queries.hits, queries.misses) == (1, 1)
    with pytest.raises(ValueError):
        first[0] = 1.0  # shared with the cache: read-only


def test_queries_take_the_models_query_graph_and_stored_texts_its_own() -> None:
    stored = HashingEmbedder().encode(["export to csv", "sso"])
    encoder = ProcessEncoder(_two_graphs, "hashing-64", start_timeout_s=60)
    try:
        np.testing.assert_allclose(encoder.encode(["export to csv", "sso"]), -stored, atol=1e-6)
        np.testing.assert_allclose(QueryEmbedder(encoder).encode_one("sso"), -stored[1], atol=1e-6)
        np.testing.assert_allclose(encoder.in_background().encode(["export to csv", "sso"]), stored, atol=1e-6)
        assert encoder.stats()["query_precision"] == "int8"  # what /ready shows
    finally:
        encoder.close()
    in_process = QueryEmbedder(_TwoGraphs())  # query_encoder_process=false: the same split in the server's threads
    np.testing.assert_allclose(in_process.encode_one("sso"), -stored[1], atol=1e-6)
    np.testing.assert_allclose(QueryEmbedder(HashingEmbedder()).encode_one("sso"), stored[1], atol=1e-6)


def test_the_server_searches_with_its_model_in_a_child_process(settings: Settings, engine: Any, world: World,
                                                               keys: dict[str, str]) -> None:
    configured = settings.model_copy(update={"embedding_model": "hashing-64"})
    app = create_app(configured, job_runner=FakeJobRunner())
    encoder = app.state.query_process
    assert isinstance(encoder, ProcessEncoder) and app.state.query_embedder.embedder is encoder
    with TestClient(app) as client:
        response = client.get("/v1/search", params={"q": "export to excel"},
                              headers={"Authorization": f"Bearer {keys['pm']}"})
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        assert hits and hits[0]["feedback"]["text"].lower().count("export") >= 1
        process = encoder._child.process
        assert process.poll() is None
        # One copy of the model: notes embedded on arrival go to the same child, after the queries.
        assert app.state.embedder.name == "hashing-64" and app.state.embedder.encoder is encoder
        note = client.post("/v1/feedback", json={"text": "Bulk export to excel times out", "account_name": "Acme"},
                           headers={"Authorization": f"Bearer {keys['sales']}"})
        assert note.status_code == 201, note.text
        assert app.state.arrivals.flush(30)
        assert app.state.arrivals.stats()["embedded"] == 1 and encoder.starts == 1
        ready = client.get("/ready").json()["query_encoder"]
        assert ready == {"state": "running", "pid": process.pid, "starts": 1, "query_precision": "fp32"}
        process.kill()
        deadline = time.monotonic() + 10
        while client.get("/ready").json()["query_encoder"]["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/ready").json()["query_encoder"]["state"] == "exited (exit code -9)"
        again = client.get("/v1/search", params={"q": "single sign-on"},  # a new query: a new child encodes it
                            headers={"Authorization": f"Bearer {keys['pm']}"})
        assert again.status_code == 200, again.text
        assert client.get("/ready").json()["query_encoder"]["starts"] == 2
        process = encoder._child.process
    assert process.poll() == 0  # the app's shutdown stops it
    threads = create_app(settings.model_copy(update={"embedding_model": "hashing-64",
                                                     "query_encoder_process": False}), job_runner=FakeJobRunner())
    assert threads.state.query_process is None


def test_a_call_after_the_child_died_is_answered_by_a_new_one(encoder: ProcessEncoder) -> None:
    encoder.start()
    process = encoder._child.process  # type: ignore[union-attr]
    process.kill()
    process.wait(10)
    # Whether or not the reply reader has noticed yet, a call made now is not the dead child's to fail.
    np.testing.assert_allclose(encoder.encode(["late"]), HashingEmbedder().encode(["late"]), atol=1e-6)
    assert encoder.starts == 2


def test_a_failing_search_model_is_a_503_naming_it(settings: Settings, engine: Any, world: World,
                                                   keys: dict[str, str]) -> None:
    class Gone:
        name = "hashing-64"

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise EmbeddingError("the query encoder process exited (exit code -9)")

    with TestClient(create_app(settings, embedder=Gone(), job_runner=FakeJobRunner())) as client:
        response = client.get("/v1/search", params={"q": "export"}, headers={"Authorization": f"Bearer {keys['pm']}"})
    assert response.status_code == 503
    detail = "the search model is unavailable: the query encoder process exited (exit code -9)"
    assert response.json()["detail"] == detail


def test_queries_go_before_background_work_between_its_chunks(encoder: ProcessEncoder, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.touch()
    second.touch()
    # Two chunks of background work, each held in the child until its file is removed.
    notes = [f"wait:{first}"] + [f"note {i}" for i in range(1, BACKGROUND_CHUNK)] + [f"wait:{second}", "last"]
    got: dict[str, np.ndarray] = {}
    encoder.start()
    worker = threading.Thread(target=lambda: got.__setitem__("notes", encoder.in_background().encode(notes)))
    worker.start()
    _wait_for(tmp_path / "first.waiting")  # the child is on the first chunk
    query = threading.Thread(target=lambda: got.__setitem__("query", encoder.encode(["quick question"])))
    query.start()
    time.sleep(0.3)  # the query is in the pipe
    first.unlink()
    query.join(10)
    assert "query" in got and second.exists()  # answered before the second chunk began
    second.unlink()
    worker.join(10)
    np.testing.assert_allclose(got["notes"], HashingEmbedder().encode(notes), atol=1e-6)
    np.testing.assert_allclose(got["query"], HashingEmbedder().encode(["quick question"]), atol=1e-6)


def test_waiting_queries_are_answered_a_few_at_a_time_in_arrival_order(encoder: ProcessEncoder,
                                                                      tmp_path: Path) -> None:
    first, last = tmp_path / "first", tmp_path / "last"
    first.touch()
    last.touch()
    encoder.start()
    got: dict[str, np.ndarray] = {}

    def ask(text: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: got.__setitem__(text, encoder.encode([text])))
        thread.start()
        return thread

    holder = ask(f"wait:{first}")
    _wait_for(tmp_path / "first.waiting")  # the child is on the first query; the next ones wait in the pipe
    early = [ask(f"query {i}") for i in range(QUERY_CHUNK)]
    time.sleep(0.3)
    late = ask(f"wait:{last}")  # one more than a chunk: it goes in the next call
    time.sleep(0.3)
    first.unlink()
    for thread in [holder, *early]:
        thread.join(10)
    assert sorted(got) == sorted([f"wait:{first}", *(f"query {i}" for i in range(QUERY_CHUNK))])
    assert last.exists()  # the first chunk was answered before the late query was encoded
    last.unlink()
    late.join(10)
    for text, vector in got.items():
        np.testing.assert_allclose(vector, HashingEmbedder().encode([text]), atol=1e-6)
