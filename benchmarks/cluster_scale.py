"""How theme discovery scales: time and peak memory of ThemeClusterer on synthetic unit vectors.

Each size runs in its own subprocess so peak memory (``ru_maxrss``) is that size's alone; the figure
includes the input vectors themselves (n x 384 float32) and the Python interpreter.

    python benchmarks/cluster_scale.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def synthetic(n: int, dim: int, themes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs on the unit sphere of uneven size, plus 2% uniform noise.

    Returns:
        ``(n, dim)`` float32 unit rows and ``(n,)`` true labels (``-1`` for noise).
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((themes, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = rng.pareto(1.5, themes) + 1
    labels = rng.choice(themes, size=n, p=weights / weights.sum())
    labels[rng.random(n) < 0.02] = -1
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # blocks keep the float64 noise temporaries small
        lab = labels[start:start + 100_000]
        block = rng.standard_normal((lab.size, dim), dtype=np.float32) * np.float32(0.9 / np.sqrt(dim))
        block += np.where(lab[:, None] >= 0, centers[np.maximum(lab, 0)], 0)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start:start + lab.size] = block
    return X, labels


def run_one(n: int, dim: int, themes: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from sklearn.metrics import adjusted_rand_score

    from pipeline.clustering import ThemeClusterer

    X, truth = synthetic(n, dim, themes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    model = ThemeClusterer().fit(X)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "n": n, "dim": dim, "themes_true": themes, "themes_found": model.n_themes_,
        "unassigned": round(100 * model.unassigned_share_, 2),
        "ari": round(100 * adjusted_rand_score(truth, model.labels_), 1),
        "seconds": round(seconds, 2),
        "peak_mib": round(peak / 1024, 1),
        "peak_mib_before_fit": round(before / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--themes", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.dim, args.themes)))
        return 0
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim),
                              "--themes", str(args.themes)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"{'n':>9} {'themes':>6} {'found':>6} {'ARI':>6} {'unassigned%':>11} {'seconds':>8} "
              f"{'peak MiB':>9} {'(input+python)':>14}")
        for r in rows:
            print(f"{r['n']:>9} {r['themes_true']:>6} {r['themes_found']:>6} {r['ari']:>6} "
                  f"{r['unassigned']:>11} {r['seconds']:>8} {r['peak_mib']:>9} {r['peak_mib_before_fit']:>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
