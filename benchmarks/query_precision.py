"""What search gives up, if anything, when queries are encoded with int8 weights; and what it saves.

    python -m benchmarks.query_precision --input FILE [--text-column C] [--label-column L] [--queries 500]
                                         [--json]

The API encodes a never-seen search query in the model's int8 graph by default (``query_precision``); the
feedback it searches is always embedded in float32. This benchmark takes a labeled file (CSV, JSON lines or a
CLINC-style JSON, as ``benchmarks.theme_quality`` reads them), embeds every text in float32 as the analysis
does, draws ``--queries`` of its rows as queries and, for each query precision, prints:

- ``ms_4_a_call`` / ``ms_1_a_call``: CPU milliseconds a query, one thread, four queries to a call (as the API's
  model process answers a busy server) and one (best of three rounds); the int8 graph encodes each query on its
  own either way, so that its vector does not depend on the others;
- ``cos_mean`` / ``cos_min``: cosine of each query vector with its float32 vector;
- ``overlap_at_20``: share of the float32 query's 20 nearest texts that this query's 20 nearest hold too;
- ``same_label_at_10``: share of the 10 nearest texts with the query's own label, the query's row left out:
  whether what search finds is as relevant, which matters more than finding the very same rows.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit
from benchmarks.theme_quality import cached_embeddings, read_labeled, usable_rows
from pipeline.embedding import DEFAULT_MODEL, QUERY_PRECISIONS, SentenceEmbedder

K = 20


def cpu_ms_per_query(encode: Any, queries: list[str], batch: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for i in range(0, len(queries), batch):
            encode(queries[i:i + batch])
        best = min(best, (time.process_time() - started) / len(queries) * 1000)
    return best


def nearest(queries: np.ndarray, corpus: np.ndarray, own_rows: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each query's ``k`` nearest corpus rows by cosine, its own row left out."""
    scores = queries @ corpus.T
    scores[np.arange(len(own_rows)), own_rows] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def measure(texts: list[str], labels: np.ndarray, *, queries: int, seed: int, model: str) -> list[dict[str, Any]]:
    corpus = cached_embeddings(texts, model=model, tag="query-precision")
    rows = np.random.default_rng(seed).choice(len(texts), size=min(queries, len(texts)), replace=False)
    asked = [texts[i] for i in rows]
    results: list[dict[str, Any]] = []
    exact_vectors: np.ndarray | None = None
    exact_top: np.ndarray | None = None
    for precision in QUERY_PRECISIONS:
        embedder = SentenceEmbedder(model, device="cpu", threads=1, query_precision=precision)
        used = embedder.query_precision_used
        vectors = embedder.encode_queries(asked)
        top = nearest(vectors, corpus, rows, K)
        if exact_vectors is None or exact_top is None:
            exact_vectors, exact_top = vectors, top
        cosines = np.sum(vectors * exact_vectors, axis=1)
        overlap = np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(top, exact_top, strict=True)])
        results.append({
            "precision": precision if used == precision else f"{precision} (fell back to {used})",
            "queries": len(asked), "texts": len(texts),
            "ms_4_a_call": round(cpu_ms_per_query(embedder.encode_queries, asked, 4), 2),
            "ms_1_a_call": round(cpu_ms_per_query(embedder.encode_queries, asked, 1), 2),
            "cos_mean": round(float(cosines.mean()), 4), "cos_min": round(float(cosines.min()), 4),
            "overlap_at_20": round(float(overlap), 3),
            "same_label_at_10": round(float((labels[top[:, :10]] == labels[rows][:, None]).mean()), 4),
        })
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="Labeled CSV, JSON lines or CLINC-style JSON.")
    parser.add_argument("--text-column")
    parser.add_argument("--label-column")
    parser.add_argument("--queries", type=int, default=500, help="Rows drawn as search queries.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    frame = read_labeled(args.input, text_column=args.text_column, label_column=args.label_column)
    usable, _ = usable_rows(frame)
    if len(usable) <= K:
        raise SystemExit(f"{args.input}: {len(usable)} rows with a text and a label; more than {K} needed")
    frame = frame.iloc[usable].reset_index(drop=True)
    rows = measure(list(frame["text"]), frame["label"].to_numpy(), queries=args.queries, seed=args.seed,
                   model=args.model)
    emit([{"benchmark": "query_precision", "input": args.input.name, **r} for r in rows], as_json=args.json,
         title=f"Search queries by precision ({args.model}, {K} nearest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
