"""The suite's long-format rows (``python -m benchmarks --json``)."""

from __future__ import annotations

import importlib

suite = importlib.import_module("benchmarks.__main__")


def test_what_a_row_was_measured_under_is_its_case_not_a_metric() -> None:
    row = {"backend": "postgresql", "request": "GET /v1/search (new query)", "n": 1000, "p95_ms": 85.6,
           "items": 100000, "query_precision": "int8"}
    flat = suite.flatten("api_latency", row)
    assert [(r["metric"], r["value"]) for r in flat] == [("p95_ms", 85.6)]
    # each endpoint a case of its own: without the request, every endpoint's p95 fell in one case
    assert flat[0]["case"] == ("backend=postgresql, n=1000, items=100000, query_precision=int8, "
                               "request=GET /v1/search (new query)")
    quality = suite.flatten("query_precision", {"input": "test.tsv", "precision": "int8", "same_label_at_10": 0.707})
    assert [(r["case"], r["metric"]) for r in quality] == [("input=test.tsv, precision=int8", "same_label_at_10")]
