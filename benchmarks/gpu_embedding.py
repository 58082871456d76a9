"""Embedding on one CUDA GPU: the project's embedding stage against bare ``SentenceTransformer.encode``.

    python -m benchmarks.gpu_embedding [--texts-file FILE] [--n 200000] [--model NAME_OR_PATH]
                                       [--reference FILE.npz] [--json]

Rows (texts per second, best of ``--repeats``):

- ``bare fp32``: ``SentenceTransformer.encode`` as shipped (fp32 weights, batch 32, tokenization
  inside the loop), the usual GPU baseline;
- ``SentenceEmbedder``: the project's encoder (``pipeline.embedding``) on the same texts, as one call
  and in the 4,096-text chunks the analysis stage hands it;
- ``stage (SQLite)``: the whole embedding stage, ``embed_missing``: read the texts that lack a vector
  from a SQLite database, encode, store the vectors;
- agreement: cosine between the project's vectors and bare fp32 encode on the GPU, and (with
  ``--reference``, an ``.npz`` holding ``texts_json`` and ``vectors`` encoded on a CPU) against CPU vectors.

Without a CUDA device it prints one row saying so. Texts come from ``--texts-file`` (one JSON string
per line, or plain lines) or, without it, from the demo generator; they are cycled up to ``--n``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit


def load_texts(path: str | None, n: int) -> list[str]:
    if path:
        texts = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line) if line.startswith('"') else line)
    else:
        from ingest.cleaning import clean_text
        from ingest.demo import generate_demo

        texts = [clean_text(record.text, is_html=record.is_html).text
                 for _, record in generate_demo(weeks=16, accounts=150, seed=11).items]
    return [texts[i % len(texts)] for i in range(n)]


def timed(fn, repeats: int) -> tuple[float, Any]:  # type: ignore[no-untyped-def]
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    best, result = float("inf"), None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        result = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, result


def stage_rate(model: str, texts: list[str], repeats: int, device: str) -> float:
    """Texts/s of embed_missing over a fresh SQLite database holding ``texts`` as feedback."""
    import datetime as dt
    import hashlib
    import tempfile

    from sqlalchemy import delete, insert

    from models.db import make_engine, make_session_factory
    from models.tables import Base, Embedding, Feedback, Source
    from pipeline.analysis import EMBED_COMMIT_TEXTS
    from pipeline.embedding import SentenceEmbedder
    from pipeline.embedding_store import embed_missing

    unique = list(dict.fromkeys(f"{t} #{i // 50_000}" for i, t in enumerate(texts)))
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'stage.db'}")
        Base.metadata.create_all(engine)
        factory = make_session_factory(engine)
        now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
        with factory.begin() as session:
            source = Source(name="bench", kind="file")
            session.add(source)
            session.flush()
            session.execute(insert(Feedback), [
                {"source_id": source.id, "external_id": str(i), "kind": "ticket", "text": t,
                 "content_hash": hashlib.sha256(t.encode()).hexdigest(), "occurred_at": now}
                for i, t in enumerate(unique)])
        embedder = SentenceEmbedder(model, device=device, pretokenize=True)
        embedder.encode(unique[:4096])
        best = float("inf")
        for _ in range(repeats):
            with factory.begin() as session:
                session.execute(delete(Embedding))
            t0 = time.perf_counter()
            done = embed_missing(factory, embedder, batch_size=EMBED_COMMIT_TEXTS)
            best = min(best, time.perf_counter() - t0)
            assert done == len(unique), (done, len(unique))
        engine.dispose()
    return len(unique) / best


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts-file")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--reference", help=".npz with `texts_json` (a JSON list as uint8 bytes) and their "
                        "CPU `vectors` to compare against")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bare-repeats", type=int, help="repeats of the slow bare baseline (default --repeats)")
    parser.add_argument("--no-stage", action="store_true", help="skip the SQLite stage row")
    parser.add_argument("--sweep", default="32768,65536,262144",
                        help="other tokens-per-batch values to time encode_pretokenized with")
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke run of this script")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        rows = [{"benchmark": "gpu_embedding", "case": "skipped", "note": "no CUDA device"}]
        emit(rows, as_json=args.json, title="embedding on a GPU")
        return rows

    from sentence_transformers import SentenceTransformer

    from pipeline.analysis import EMBED_COMMIT_TEXTS
    from pipeline.embedding import (
        SentenceEmbedder,
        available_cores,
        encode_pretokenized,
        resolve_model_path,
        tokenize_parallel,
    )
    from pipeline.text_prep import embedding_text

    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu (smoke run)"
    texts = load_texts(args.texts_file, args.n)
    chars = float(np.mean([len(t) for t in texts]))
    rows: list[dict[str, Any]] = []

    def row(case: str, seconds: float, **extra: Any) -> None:
        rows.append({"benchmark": "gpu_embedding", "case": case, "gpu": gpu, "texts": len(texts),
                     "mean_chars": round(chars), "seconds": round(seconds, 3),
                     "texts_per_s": round(len(texts) / seconds), **extra})

    read = [embedding_text(t) for t in texts]  # what the model reads in the product: the same words for both

    def bare_encode() -> np.ndarray:
        return bare.encode(read, normalize_embeddings=True, convert_to_numpy=True)

    bare = SentenceTransformer(resolve_model_path(args.model), device=args.device).float()
    bare.encode(read[:2048])  # warm-up on what it will read
    t_bare, v_bare = timed(bare_encode, args.bare_repeats or args.repeats)
    row("bare encode fp32, batch 32", t_bare)
    bare = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    embedder = SentenceEmbedder(args.model, device=args.device, pretokenize=True)
    embedder.encode(texts[:8192])
    t_one, v_one = timed(lambda: embedder.encode(texts), args.repeats)
    cos = np.sum(v_one * v_bare, axis=1)
    row("SentenceEmbedder, one call", t_one, cos_vs_bare_min=round(float(cos.min()), 5),
        cos_vs_bare_mean=round(float(cos.mean()), 6), speedup=round(t_bare / t_one, 2))

    def chunked() -> np.ndarray:
        return np.concatenate([embedder.encode(texts[i:i + EMBED_COMMIT_TEXTS])
                               for i in range(0, len(texts), EMBED_COMMIT_TEXTS)])

    t_chunks, v_chunks = timed(chunked, args.repeats)
    row(f"SentenceEmbedder, chunks of {EMBED_COMMIT_TEXTS}", t_chunks,
        cos_vs_bare_min=round(float(np.sum(v_chunks * v_bare, axis=1).min()), 5))

    st, workers = embedder.torch_model(), available_cores()
    t_tok, _ = timed(lambda: tokenize_parallel(st, texts, workers=workers), args.repeats)
    row(f"tokenization alone, {workers} threads", t_tok)
    for budget in [int(b) for b in args.sweep.split(",") if b]:
        t_b, _ = timed(lambda b=budget: encode_pretokenized(st, texts, workers=workers, tokens_per_batch=b),
                       args.repeats)
        row(f"encode_pretokenized, {budget} tokens per batch", t_b)

    if args.reference:
        ref = np.load(args.reference, allow_pickle=False)
        ref_texts = json.loads(ref["texts_json"].tobytes().decode())
        got = embedder.encode(ref_texts)
        c = np.sum(got * ref["vectors"], axis=1)
        rows.append({"benchmark": "gpu_embedding", "case": "agreement with CPU fp32 vectors", "gpu": gpu,
                     "texts": len(ref_texts), "cos_vs_cpu_min": round(float(c.min()), 5),
                     "cos_vs_cpu_mean": round(float(c.mean()), 6),
                     "share_cos_ge_0.999": round(float(np.mean(c >= 0.999)), 5)})

    if not args.no_stage:
        try:
            rate = stage_rate(args.model, texts, args.repeats, args.device)
            rows.append({"benchmark": "gpu_embedding", "case": "stage: embed_missing into SQLite", "gpu": gpu,
                         "texts": len(texts), "texts_per_s": round(rate)})
        except ImportError as exc:
            rows.append({"benchmark": "gpu_embedding", "case": "stage: embed_missing into SQLite",
                         "note": f"skipped: {exc}"})
    emit(rows, as_json=args.json, title="embedding on a GPU")
    return rows


if __name__ == "__main__":
    main()
