"""The suite's long-format rows (``python -m benchmarks --json``)."""

from __future__ import annotations

import importlib

suite = importlib.import_module("benchmarks.__main__")


def test_what_a_row_was_measured_under_is_its_case_not_a_metric() -> None:
    row = {"benchmark": "api_latency", "backend": "postgresql", "items": 100000, "endpoint": "search (new query)",
           "query_precision": "int8", "p95_ms": 85.6}
    flat = suite.flatten("api_latency", row)
    assert [(r["metric"], r["value"]) for r in flat] == [("p95_ms", 85.6)]
    assert flat[0]["case"] == ("backend=postgresql, items=100000, endpoint=search (new query), "
                               "query_precision=int8")
    quality = suite.flatten("query_precision", {"input": "test.tsv", "precision": "int8", "same_label_at_10": 0.707})
    assert [(r["case"], r["metric"]) for r in quality] == [("input=test.tsv, precision=int8", "same_label_at_10")]
