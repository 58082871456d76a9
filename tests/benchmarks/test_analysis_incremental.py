"""The incremental-analysis benchmark: new items embedded on arrival, or by the runs themselves.

Runs in process with the hashing embedder on one demo set (about 3,700 items); it checks what the
benchmark reports, not how fast anything is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import analysis_incremental  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("embed_in_run", [False, True])
def test_the_benchmark_embeds_new_items_where_the_product_does(embed_in_run: bool) -> None:
    argv = ["--copies", "1", "--model", "hashing-128", "--json"] + (["--embed-in-run"] if embed_in_run else [])
    (row,) = analysis_incremental.main(argv)
    assert row["items"] > 3000 and row["new_items"] == row["items"] - int(row["items"] * 0.99)
    if embed_in_run:  # as with embed_on_arrival off: each run embeds the new texts itself
        assert row["arrival_embedded"] == 0 and row["arrival_embed_s"] == 0
        assert 0 < row["embedded_in_run"] <= row["new_items"]
    else:  # embedded when they arrived; neither run has anything left to embed
        assert 0 < row["arrival_embedded"] <= row["new_items"] and row["embedded_in_run"] == 0
        assert row["incremental_steps"]["embed"] < 0.5 and row["full_steps"]["embed"] < 0.5
    assert 0 < row["ratio"] < 1 and row["incremental_s"] < row["full_s"]
