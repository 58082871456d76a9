"""Embedding stage against a bare ``SentenceTransformer.encode`` on the same texts, in one run.

    python -m benchmarks.embedding_rate [--texts 3000] [--rounds 5] [--runtime auto|torch|onnx] [--json]

The stage reads the texts that lack a vector, encodes them and stores float32 vectors per
(content hash, model); the ratio stage/bare is its overhead (target: at most 1.05). With the product's
default runtime (``auto``: ONNX Runtime on a CPU) the stage runs faster than the bare PyTorch encode and
the ratio falls below 1; ``--runtime torch`` measures the stage's overhead on the same PyTorch encode.

The same ``encode`` varies by several percent from one run to the next on a shared machine, more than the
stage's own work, so the rounds alternate bare and stage runs and the ratio is the median of each
round's stage/bare. Beside it, ``own_s`` is the stage's time outside its ``encode`` calls (reading the
missing texts, storing the vectors), timed directly, and ``own_pct`` is ``own_s`` as a percentage of the
bare encode: what the stage adds to it, without the encode's own drift.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit, peak_mib


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare and stage runs")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"],
                        help="the stage's runtime (the bare encode is always SentenceTransformer.encode)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from sqlalchemy import delete

    from ingest.demo import generate_demo
    from ingest.demo_loader import load_demo
    from models import migrate
    from models.db import make_engine, make_session_factory
    from models.tables import Embedding
    from pipeline.analysis import EMBED_COMMIT_TEXTS
    from pipeline.embedding import SentenceEmbedder
    from pipeline.embedding_store import embed_missing, missing_hashes
    from pipeline.text_prep import embedding_text

    data = generate_demo(weeks=16, accounts=150, seed=11)
    data.items = data.items[: args.texts]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'emb.db'}")
        migrate.upgrade(engine)
        factory = make_session_factory(engine)
        load_demo(factory, data)
        with factory() as session:
            texts = [t for _, t in missing_hashes(session, args.model)]
        embedder = _TimedEmbedder(SentenceEmbedder(args.model, batch_size=args.batch_size, runtime=args.runtime))
        model = embedder.torch_model()  # the bare baseline: SentenceTransformer.encode
        # The bare encode reads what the model reads in the stage (the texts without spoken-language fillers),
        # so the ratio counts taking the fillers out as the stage's own work, not as shorter input.
        read = [embedding_text(t) for t in texts]
        model.encode(read[:64], batch_size=args.batch_size)  # warm-up, both paths alike
        bare_times, stage_times, own_times = [], [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            model.encode(read, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            bare_times.append(time.perf_counter() - t0)
            with factory.begin() as session:
                session.execute(delete(Embedding))
            embedder.encode_s = 0.0
            t0 = time.perf_counter()
            done = embed_missing(factory, embedder, batch_size=EMBED_COMMIT_TEXTS)
            stage_times.append(time.perf_counter() - t0)
            own_times.append(stage_times[-1] - embedder.encode_s)
            assert done == len(texts), (done, len(texts))
        engine.dispose()
    bare, stage, own = statistics.median(bare_times), statistics.median(stage_times), statistics.median(own_times)
    rows = [{"benchmark": "embedding", "runtime": embedder.runtime_used, "texts": len(texts), "rounds": args.rounds,
             "bare_encode_s": round(bare, 2),
             "stage_s": round(stage, 2), "texts_per_s": round(len(texts) / stage),
             "ratio": round(statistics.median(s / b for s, b in zip(stage_times, bare_times, strict=True)), 3),
             "ratio_min_max": f"{min(s / b for s, b in zip(stage_times, bare_times, strict=True)):.3f}-"
                              f"{max(s / b for s, b in zip(stage_times, bare_times, strict=True)):.3f}",
             "own_s": round(own, 3), "own_pct": round(100 * own / bare, 2), "peak_mib": peak_mib()}]
    emit(rows, as_json=args.json, title="embedding stage vs bare encode")
    return rows


class _TimedEmbedder:
    """The stage's embedder, adding up the seconds spent in ``encode`` (what the bare runs also spend)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.encode_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)

    def encode(self, texts: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.embedder.encode(texts)
        finally:
            self.encode_s += time.perf_counter() - t0


if __name__ == "__main__":
    main()
