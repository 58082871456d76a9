"""Run every benchmark and print one table (``--json``: one JSON object per row).

    python -m benchmarks [--json] [--quick] [--only NAME ...]

Each benchmark is also a script of its own with more options (``python -m benchmarks.NAME --help``).
``--quick`` uses smaller sizes, for a smoke run; the recorded figures in docs/benchmarks.md use the defaults.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def suite(quick: bool) -> list[tuple[str, list[str]]]:
    small = quick
    runs: list[tuple[str, list[str]]] = [
        ("ingest_rate", ["--rows", "20000" if small else "100000"]),
        ("embedding_rate", ["--texts", "500" if small else "3000"]),
        ("gpu_embedding", ["--n", "20000" if small else "200000"]),  # a row saying so without a GPU
        ("cluster_scale", ["--sizes", "10000" if small else "10000,100000,1000000"]),
        ("analysis_incremental", ["--copies", "2" if small else "6"]),
        ("intent_quality", []),
        ("scoring_speed", ["--items", "20000" if small else "100000"]),
    ]
    quality = [
        ("clinc150", [str(DATASETS / "clinc150" / "data_full.json")], []),
        ("dstc11-finance", [str(DATASETS / "dstc11" / "finance.csv")],
         ["--text-column", "utterance", "--label-column", "intent"]),
        ("stackoverflow", [str(DATASETS / "stackoverflow" / "test.tsv")], []),
    ]
    for _name, path, extra in quality:
        if Path(path[0]).exists():
            runs.append(("theme_quality", ["--input", path[0], *extra, *(["--no-bertopic"] if small else [])]))
            runs.append(("query_precision", ["--input", path[0], *extra, "--queries", "100" if small else "500"]))
    runs.append(("api_latency", ["--items", "10000" if small else "100000"]))
    runs.append(("search_scale", ["--sizes", "100000" if small else "100000,1000000"]))
    return runs


def flatten(name: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    """One long-format row per figure: benchmark, case, metric, value."""
    case_keys = ("backend", "method", "n", "size", "items", "dataset", "endpoint", "case", "clients", "input",
                 "precision", "query_precision", "request")
    case = ", ".join(f"{k}={row[k]}" for k in case_keys if k in row)
    out = []
    for key, value in row.items():
        if key in case_keys or key == "benchmark":
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value)
        out.append({"benchmark": row.get("benchmark", name), "case": case, "metric": key, "value": value})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    failed = []
    for name, extra in suite(args.quick):
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *extra, "--json"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            failed.append(name)
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            rows.append({"benchmark": name, "case": " ".join(extra), "metric": "error", "value": tail[0]})
            continue
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                row = json.loads(line)
                nested = row.pop("bertopic", None)  # theme_quality's comparison, a case of its own
                for part in [row] + ([dict(nested, method="bertopic")] if isinstance(nested, dict) else []):
                    rows.extend(flatten(name, part))
        rows.append({"benchmark": name, "case": " ".join(extra), "metric": "wall_s",
                     "value": round(time.perf_counter() - started, 1)})
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
    else:
        from benchmarks.common import emit

        emit(rows, as_json=False, title="Groundswell benchmarks")
        print(f"\nmachine: {machine()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
