"""The query-precision benchmark: what int8 query vectors cost search, measured with the real model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks import query_precision, theme_quality

TOPICS = {
    "billing": ["I was charged twice for my invoice", "refund the duplicate payment", "the VAT on the receipt is wrong",
                "our card was overcharged this month", "invoice amount does not match the quote"],
    "login": ["cannot sign in after the password reset", "SSO with Okta keeps failing", "my account is locked",
              "two-factor code never arrives", "session expires every five minutes"],
    "export": ["export to CSV drops columns", "the Excel download is empty", "PDF report export times out",
               "need to export the dashboard to a spreadsheet", "xlsx file has broken dates"],
}


@pytest.mark.slow
def test_int8_queries_find_what_float32_queries_find(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(theme_quality, "CACHE_DIR", tmp_path / "cache")
    path = tmp_path / "labeled.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["body", "topic"])
        for topic, texts in TOPICS.items():
            for text in texts:
                for suffix in ("", " please", " again today", " for the whole team"):
                    writer.writerow([text + suffix, topic])
        writer.writerow(["", "billing"])  # no text: skipped, not a query
    assert query_precision.main(["--input", str(path), "--text-column", "body", "--label-column", "topic",
                                 "--queries", "30", "--seed", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    exact, quick = rows
    assert (exact["precision"], quick["precision"]) == ("fp32", "int8")
    assert exact["texts"] == quick["texts"] == 60 and exact["queries"] == 30
    assert exact["cos_min"] == pytest.approx(1.0, abs=1e-4) and exact["overlap_at_20"] == 1.0
    assert 0.95 <= quick["cos_min"] < 0.9999 and quick["cos_mean"] >= 0.98
    assert quick["overlap_at_20"] >= 0.8
    assert exact["same_label_at_10"] >= 0.8 and quick["same_label_at_10"] >= exact["same_label_at_10"] - 0.05
    assert quick["ms_1_a_call"] > 0 and exact["ms_4_a_call"] > 0


def test_too_few_rows_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text("text,label\nexport fails,export\nsso broken,login\n")
    with pytest.raises(SystemExit, match="tiny.csv: 2 rows with a text and a label; more than 20 needed"):
        query_precision.main(["--input", str(path)])
