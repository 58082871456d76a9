"""Embedders and the embedding store: the fast pre-tokenized path matches sentence-transformers."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from sqlalchemy import func, insert, select

from models.tables import Embedding, Feedback, Source
from pipeline.embedding import EmbeddingError, HashingEmbedder, SentenceEmbedder, make_embedder
from pipeline.embedding_store import embed_missing, embed_pairs, from_bytes, missing_hashes

TEXTS = [
    "Single sign-on keeps failing for our contractors",
    "  leading and trailing spaces  ",
    "UPPER CASE TICKET ABOUT EXPORTS",
    "",
    "émoji 🚀 and right-to-left \u200fعربي text",
    "Tab\tand\nnewline",
    "word " * 600,  # far past the model's 256 tokens: truncated the same way
    "ok",
] + [f"request number {i}: the {['mobile app', 'CSV export', 'billing page'][i % 3]} is slow" for i in range(40)]


def test_precision_is_checked() -> None:
    with pytest.raises(EmbeddingError, match="bad embedding precision 'fp8'"):
        SentenceEmbedder(precision="fp8")


def test_query_precision_is_checked() -> None:
    with pytest.raises(EmbeddingError, match="bad query precision 'int4'"):
        SentenceEmbedder(query_precision="int4")
    assert SentenceEmbedder().query_precision == "fp32"  # stored vectors: only the API's query model asks for int8
    assert make_embedder("all-MiniLM-L6-v2", query_precision="int8").query_precision == "int8"  # type: ignore[attr-defined]


def test_make_embedder_passes_precision() -> None:
    embedder = make_embedder("all-MiniLM-L6-v2", device="cpu", precision="fp32")
    assert isinstance(embedder, SentenceEmbedder) and embedder.precision == "fp32"


@pytest.fixture(scope="module")
def cpu_model():
    return SentenceEmbedder(device="cpu").torch_model()


@pytest.mark.slow
def test_pretokenized_path_matches_sentence_transformers(cpu_model) -> None:
    from pipeline.embedding import encode_pretokenized

    bare = cpu_model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    # Small chunks and batches, several threads: order must survive chunking, sorting and batching.
    fast = encode_pretokenized(cpu_model, TEXTS, workers=3, tokens_per_batch=300, chunk_texts=7)
    assert fast.shape == bare.shape and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.sum(fast * bare, axis=1).min() >= 0.9999


@pytest.mark.slow
def test_sentence_embedder_pretokenize_switch_gives_the_same_vectors() -> None:
    fast = SentenceEmbedder(device="cpu", pretokenize=True).encode(TEXTS[:12])
    plain = SentenceEmbedder(device="cpu", runtime="torch").encode(TEXTS[:12])
    assert np.sum(fast * plain, axis=1).min() >= 0.9999


def test_word_pieces_come_from_the_model_tokenizer_without_loading_the_model() -> None:
    embedder = SentenceEmbedder()
    assert embedder.word_pieces(["wordpress", "loan", "magento", "c++", "SharePoint"]) == [2, 1, 2, 3, 2]
    assert embedder.word_pieces([]) == []
    assert embedder._dim is None and embedder._st is None and embedder._onnx is None  # the model itself not loaded


def test_word_pieces_read_a_word_as_it_stands_inside_a_text(tmp_path) -> None:
    """A byte-level BPE tokenizer (RoBERTa's kind) has one token for " loan" after a space, none for "loan"."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(["my loan is due", "pay my loan", "the loan rate"] * 50, trainer)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert len(tokenizer.encode("loan").ids) > 1 and len(tokenizer.encode(" loan").ids) == 1
    assert SentenceEmbedder(str(tmp_path)).word_pieces(["loan", "qzx"]) == [1, 4]


def test_word_pieces_of_a_model_that_cannot_be_found_say_which_setting_to_change(tmp_path) -> None:
    with pytest.raises(EmbeddingError, match="tokenizer of embedding model .*GROUNDSWELL_EMBEDDING_MODEL"):
        SentenceEmbedder(str(tmp_path / "no-such-model")).word_pieces(["loan"])


def test_runtime_is_checked() -> None:
    with pytest.raises(EmbeddingError, match="bad embedding runtime 'tensorrt'"):
        SentenceEmbedder(runtime="tensorrt")
    assert make_embedder("all-MiniLM-L6-v2", runtime="torch").runtime == "torch"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_onnx_runtime_gives_the_model_vectors_and_exports_once(tmp_path, monkeypatch) -> None:
    import pipeline.onnx_encoder as onnx_encoder

    exports: list[object] = []
    real_export = onnx_encoder._export
    monkeypatch.setattr(onnx_encoder, "_export", lambda st, path: (exports.append(path), real_export(st, path)))
    torch_vectors = SentenceEmbedder(device="cpu", runtime="torch").encode(TEXTS)
    first = SentenceEmbedder(device="cpu", batch_size=5, cache_dir=tmp_path)
    assert first.runtime_used == "onnx"
    # Batches of 5 from length-sorted texts: order must survive sorting, padding and truncation.
    vectors = first.encode(TEXTS)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, torch_vectors, atol=1e-5)
    assert first.encode([]).shape == (0, torch_vectors.shape[1])
    again = SentenceEmbedder(device="cpu", runtime="onnx", cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(TEXTS[:3]), torch_vectors[:3], atol=1e-5)
    assert len(exports) == 1 and [p.name for p in tmp_path.iterdir()] == [exports[0].name]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_the_pytorch_weights_are_let_go_once_onnx_runtime_encodes(tmp_path) -> None:
    import gc
    import weakref

    import sentence_transformers

    loaded: list[weakref.ref] = []
    real_init = sentence_transformers.SentenceTransformer.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(self, *args, **kwargs)
        loaded.append(weakref.ref(self))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sentence_transformers.SentenceTransformer, "__init__", spy)
        onnx = SentenceEmbedder(device="cpu", cache_dir=tmp_path)
        vectors = onnx.encode(TEXTS[:4])
        torch_run = SentenceEmbedder(device="cpu", runtime="torch")
        torch_vectors = torch_run.encode(TEXTS[:4])
    gc.collect()
    assert onnx.runtime_used == "onnx" and onnx.dim == vectors.shape[1] == 384
    assert loaded[0]() is None  # the model ONNX Runtime replaced is gone, nothing else holds it
    assert loaded[1]() is torch_run.torch_model()  # the one that encodes stays
    np.testing.assert_allclose(vectors, torch_vectors, atol=1e-5)
    assert onnx.torch_model() is not None and onnx.runtime_used == "onnx"  # loaded again on request only


@pytest.mark.slow
def test_onnx_runtime_falls_back_to_torch_when_it_cannot_reproduce_the_model(tmp_path, monkeypatch) -> None:
    import pipeline.onnx_encoder as onnx_encoder

    monkeypatch.setattr(onnx_encoder, "TOLERANCE", -1.0)  # no graph can pass: as if export changed the model
    auto = SentenceEmbedder(device="cpu", cache_dir=tmp_path)
    assert auto.runtime_used == "torch"
    assert np.linalg.norm(auto.encode(["still encodes"]), axis=1)[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EmbeddingError, match="cannot run embedding model .* in ONNX Runtime: the exported graph "
                       "differs"):
        SentenceEmbedder(device="cpu", runtime="onnx", cache_dir=tmp_path).load()


@pytest.mark.slow
def test_int8_query_vectors_stay_near_the_stored_ones_and_are_quantized_once(tmp_path, monkeypatch) -> None:
    import pipeline.onnx_encoder as onnx_encoder

    made: list[object] = []
    real_quantize = onnx_encoder._quantize
    monkeypatch.setattr(onnx_encoder, "_quantize",
                        lambda source, path: (made.append(path), real_quantize(source, path)))
    exact = SentenceEmbedder(device="cpu", cache_dir=tmp_path)
    quick = SentenceEmbedder(device="cpu", cache_dir=tmp_path, query_precision="int8")
    assert (exact.query_precision_used, quick.query_precision_used) == ("fp32", "int8")
    texts = [t for t in TEXTS if t.strip()]
    stored = exact.encode(texts)
    np.testing.assert_array_equal(quick.encode(texts), stored)  # what is stored never changes
    np.testing.assert_array_equal(exact.encode_queries(texts), stored)
    queries = quick.encode_queries(texts)
    cosines = np.sum(queries * stored, axis=1)
    assert queries.dtype == np.float32 and np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert cosines.min() >= 0.95 and cosines.mean() >= 0.985  # near the float32 vectors (600 words repeated: 0.969) ...
    assert np.abs(queries - stored).max() > 1e-3  # ... but from another graph
    # Ranking: each query's nearest stored text is its own.
    assert (np.argmax(queries @ stored.T, axis=1) == np.arange(len(texts))).mean() >= 0.95
    again = SentenceEmbedder(device="cpu", cache_dir=tmp_path, query_precision="int8")
    # A query's vector is its own, whatever is encoded beside it: the same search ranks the same way.
    np.testing.assert_array_equal(again.encode_queries(texts[2:5]), queries[2:5])
    np.testing.assert_array_equal(again.encode_queries(texts[4:5]), queries[4:5])
    assert len(made) == 1 and made[0] in set(tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 2


@pytest.mark.slow
def test_queries_run_in_float32_when_the_int8_graph_falls_short_or_is_damaged(tmp_path, monkeypatch, caplog) -> None:
    import pipeline.onnx_encoder as onnx_encoder

    with monkeypatch.context() as m:
        m.setattr(onnx_encoder, "AGREEMENT", 1.01)  # no int8 graph can pass: as if its kernels were broken here
        strict = SentenceEmbedder(device="cpu", cache_dir=tmp_path, query_precision="int8")
        assert strict.query_precision_used == "fp32" and strict.runtime_used == "onnx"
    assert "search queries of all-MiniLM-L6-v2 run in float32: the int8 graph's vectors reach a cosine" in caplog.text
    np.testing.assert_array_equal(strict.encode_queries(TEXTS[:3]), strict.encode(TEXTS[:3]))
    (quantized,) = tmp_path.glob("*.int8-*.onnx")
    quantized.write_bytes(b"not a model")
    assert SentenceEmbedder(device="cpu", cache_dir=tmp_path, query_precision="int8").query_precision_used == "fp32"
    assert not quantized.exists()  # removed, so the next load makes it again
    assert SentenceEmbedder(device="cpu", cache_dir=tmp_path, query_precision="int8").query_precision_used == "int8"
    assert quantized.stat().st_size > 1_000_000


@pytest.mark.slow
def test_a_damaged_onnx_file_is_exported_again(tmp_path) -> None:
    assert SentenceEmbedder(device="cpu", cache_dir=tmp_path).runtime_used == "onnx"
    (exported,) = tmp_path.iterdir()
    exported.write_bytes(b"not a model")
    assert SentenceEmbedder(device="cpu", cache_dir=tmp_path).runtime_used == "torch"  # this load falls back
    assert not exported.exists()
    assert SentenceEmbedder(device="cpu", cache_dir=tmp_path).runtime_used == "onnx"
    assert exported.stat().st_size > 1_000_000


def test_onnx_runtime_missing(monkeypatch, tmp_path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    from pipeline.onnx_encoder import OnnxUnavailable, onnx_encoder

    with pytest.raises(OnnxUnavailable, match="onnxruntime is not installed"):
        onnx_encoder(object(), threads=1, batch_size=8, cache_dir=tmp_path)


def add_feedback(sessions, texts: list[str]) -> None:
    now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    with sessions.begin() as session:
        source = Source(name="s", kind="file")
        session.add(source)
        session.flush()
        session.execute(insert(Feedback), [
            {"source_id": source.id, "external_id": str(i), "kind": "ticket", "text": t,
             "content_hash": hashlib.sha256(t.encode()).hexdigest(), "occurred_at": now}
            for i, t in enumerate(texts)])


def test_embed_missing_stores_every_batch_once_and_resumes(sessions) -> None:
    texts = [f"text {i} about exports and billing" for i in range(23)]
    add_feedback(sessions, texts)
    embedder = HashingEmbedder(16)
    seen: list[int] = []
    assert embed_missing(sessions, embedder, batch_size=5, progress=seen.append) == 23
    assert seen == [5, 5, 5, 5, 3]
    with sessions() as session:
        rows = session.execute(select(Embedding.content_hash, Embedding.vector)).tuples().all()
    assert len(rows) == 23
    by_hash = {hashlib.sha256(t.encode()).hexdigest(): t for t in texts}
    for content_hash, blob in rows:
        np.testing.assert_allclose(from_bytes(blob, 16), embedder.encode([by_hash[content_hash]])[0])
    assert embed_missing(sessions, embedder, batch_size=5) == 0


def test_a_vector_stored_meanwhile_by_another_writer_is_kept_and_not_an_error(sessions) -> None:
    """The API embeds notes as they arrive while an analysis may embed the same texts: neither may fail."""
    texts = [f"note {i} about the mobile app" for i in range(6)]
    add_feedback(sessions, texts)
    embedder = HashingEmbedder(16)
    with sessions() as session:
        todo = missing_hashes(session, embedder.name)
    first = embedder.encode([todo[0][1]])[0] * -1  # a recognisably different vector, stored first
    with sessions.begin() as session:
        session.add(Embedding(content_hash=todo[0][0], model=embedder.name, dim=16, vector=first.tobytes()))
    assert embed_pairs(sessions, embedder, todo, batch_size=4) == 6  # the stale list still names it
    with sessions() as session:
        stored = dict(session.execute(select(Embedding.content_hash, Embedding.vector)).tuples().all())
    assert len(stored) == 6
    np.testing.assert_array_equal(from_bytes(stored[todo[0][0]]), first)  # the earlier writer's vector stays


class FailingEmbedder(HashingEmbedder):
    """Fails on its third batch, as a process killed mid-stage would."""

    def __init__(self) -> None:
        super().__init__(16)
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return super().encode(texts)


def test_embed_missing_keeps_finished_batches_when_encoding_fails(sessions) -> None:
    add_feedback(sessions, [f"text {i}" for i in range(20)])
    with pytest.raises(RuntimeError, match="boom"):
        embed_missing(sessions, FailingEmbedder(), batch_size=5)
    with sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Embedding))
    assert stored == 10  # the two batches encoded before the failure were written, nothing half-written
    assert embed_missing(sessions, HashingEmbedder(16), batch_size=5) == 10


@pytest.mark.slow
def test_gpu_benchmark_runs_end_to_end_on_a_cpu(tmp_path) -> None:
    """The GPU benchmark only runs where a GPU is lent; a CPU smoke run keeps the script from rotting."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps(t) for t in TEXTS[:20]) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_embedding", "--device", "cpu", "--texts-file", str(texts),
         "--n", "30", "--repeats", "1", "--sweep", "512", "--json"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    cases = [r["case"] for r in rows]
    assert cases[0] == "bare encode fp32, batch 32" and cases[-1] == "stage: embed_missing into SQLite"
    one_call = next(r for r in rows if r["case"] == "SentenceEmbedder, one call")
    assert one_call["texts"] == 30 and one_call["cos_vs_bare_min"] >= 0.9999
    assert rows[-1]["texts_per_s"] > 0
