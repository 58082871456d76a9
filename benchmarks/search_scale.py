"""Search ranking at scale: exact against approximate ranking of the API's search snapshot, 100k and 1M items.

    python -m benchmarks.search_scale [--sizes 100000,1000000] [--queries 100] [--json]

Synthetic 384-d unit vectors in themes of uneven size (the generator of ``benchmarks.cluster_scale``),
each item in its theme; a snapshot is built with ``api.search_index.build_snapshot`` and queried with
perturbed items through ``VectorIndex.nearest``, which is what ``GET /v1/search`` ranks with before it
reads the best rows from the database (that read, a few ms, is in ``benchmarks.api_latency``). Each size
runs in its own process so its peak memory (``ru_maxrss``, the input included) is its own. Recall is the
share of the approximate top 20 that scores at least the exact 20th score.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_one(n: int, queries: int, dim: int = 384) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from api.search_index import VectorIndex, build_snapshot
    from benchmarks.cluster_scale import synthetic

    themes = max(10, min(1000, n // 100))
    X, labels = synthetic(n, dim, themes)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [(i + 1, 1 + i % 3, 100 + i % 500, ("ticket", "chat", "call_note")[i % 3], t0, None,
             None if labels[i] < 0 else int(labels[i]) + 1, X[i].tobytes()) for i in range(n)]
    started = time.perf_counter()
    snap = build_snapshot(rows)
    build_s = time.perf_counter() - started
    del rows
    rng = np.random.default_rng(7)
    picks = rng.choice(n, size=queries, replace=False)
    qs = X[picks] + rng.standard_normal((queries, dim)).astype(np.float32) * np.float32(0.9 / np.sqrt(dim))
    del X
    index = VectorIndex()
    exact_ms, approx_ms, recalls = [], [], []
    for q in qs:
        t = time.perf_counter()
        _, exact_scores = index.nearest(snap, q, limit=20, exact=True)
        exact_ms.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        _, approx_scores = index.nearest(snap, q, limit=20, exact=False)
        approx_ms.append(1000 * (time.perf_counter() - t))
        recalls.append(float(np.mean(approx_scores >= exact_scores[-1] - 1e-6)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "benchmark": "search_scale", "n": n, "dim": dim, "themes": themes, "queries": queries,
        "snapshot_build_s": round(build_s, 2),
        "exact_p50_ms": round(float(np.percentile(exact_ms, 50)), 2),
        "exact_p95_ms": round(float(np.percentile(exact_ms, 95)), 2),
        "approx_p50_ms": round(float(np.percentile(approx_ms, 50)), 2),
        "approx_p95_ms": round(float(np.percentile(approx_ms, 95)), 2),
        "recall_at_20_mean": round(float(np.mean(recalls)), 3),
        "recall_at_20_p10": round(float(np.percentile(recalls, 10)), 3),
        "peak_mib": round(peak / 1024, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.queries)))
        return []
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import emit

    rows = []
    for n in [int(s) for s in args.sizes.split(",") if s]:
        out = subprocess.run([sys.executable, "-m", "benchmarks.search_scale", "--one", str(n),
                              "--queries", str(args.queries)], cwd=ROOT, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    emit(rows, as_json=args.json, title="search ranking at scale (synthetic vectors)")
    return rows


if __name__ == "__main__":
    main()
