"""The theme-quality benchmark's interface: its input handling, JSON keys and assignments file.

Runs in process with the hashing embedder (no model download, vectors cached in a temporary folder).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import theme_quality  # noqa: E402

TOPICS = {
    "billing": "invoice refund charged payment billing receipt vat amount card overcharged",
    "login": "login password reset sso locked account signin twofactor session expired",
    "export": "export csv excel download spreadsheet columns pdf file report xlsx",
    "mobile": "iphone android app crash battery notification tablet offline sync screen",
}


def _rows(n_per_topic: int = 40, seed: int = 3) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for _ in range(n_per_topic):
            rows.append({"body": " ".join(rng.sample(vocab, 5)), "topic": topic, "product": rng.choice("AB")})
    rng.shuffle(rows)
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["body", "topic", "product"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setattr(theme_quality, "CACHE_DIR", tmp_path / "cache")


def _run(capsys, *args: str) -> list[dict]:
    assert theme_quality.main([*args, "--model", "hashing-384", "--no-bertopic", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_line_carries_the_documented_keys_and_scores_separable_topics(tmp_path, capsys) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    [row] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic")
    assert {"nmi", "ari", "k_true", "k_found", "unassigned", "seconds"} <= row.keys()
    assert row["k_true"] == 4 and row["n"] == 160 and row["skipped"] == 0
    assert row["nmi"] > 80 and row["ari"] > 70, row
    assert row["unassigned"] <= 10


def test_rows_without_text_or_label_are_skipped_counted_and_left_without_a_theme(tmp_path, capsys) -> None:
    rows = [{"body": r["body"], "topic": r["topic"]} for r in _rows()]
    bad = {5: {"body": "   ", "topic": "billing"},  # blank
           17: {"body": "\n\t", "topic": "login"},  # whitespace only
           30: {"body": None, "topic": "export"},  # JSON null
           44: {"body": "invoice refund payment", "topic": None},  # no label
           58: {"topic": "mobile"}}  # no text field at all
    for position, row in bad.items():
        rows.insert(position, row)
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "assignments.csv"

    [row] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic",
                 "--assignments", str(out))

    assert row["skipped"] == 5 and row["n"] == 160
    with out.open(newline="") as f:
        written = list(csv.DictReader(f))
    assert [int(r["row"]) for r in written] == list(range(len(rows)))  # every input row, in input order
    assert all(written[i]["theme"] == "" for i in bad)
    given = [r["theme"] for i, r in enumerate(written) if i not in bad]
    assert sum(t != "" for t in given) == round(160 * (1 - row["unassigned"] / 100))


def test_clean_measures_the_texts_as_ingest_would_store_them(tmp_path, capsys) -> None:
    rows = [{"body": r["body"], "topic": r["topic"]} for r in _rows()]
    rows[0]["body"] = "<p>&nbsp;</p>"  # nothing is left once the HTML is cleaned
    rows[1]["body"] = f"<div><p>{rows[1]['body']}</p></div>"
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    [raw] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic")
    [clean] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic", "--clean")
    assert raw["skipped"] == 0 and clean["skipped"] == 1 and clean["n"] == 159


def test_a_group_column_discovers_themes_per_group_with_ids_unique_across_groups(tmp_path, capsys) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    out = tmp_path / "assignments.csv"
    [row] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic",
                 "--group-column", "product", "--assignments", str(out))
    assert sorted(g["group"] for g in row["groups"]) == ["A", "B"]
    assert sum(g["n"] for g in row["groups"]) == row["n"] == 160
    with out.open(newline="") as f:
        written = list(csv.DictReader(f))
    products = [r["product"] for r in _rows()]
    themes_of = {p: {r["theme"] for r, q in zip(written, products, strict=True) if q == p and r["theme"]}
                 for p in "AB"}
    assert themes_of["A"] and themes_of["B"] and not themes_of["A"] & themes_of["B"]


def test_unreadable_input_is_refused_with_a_message_that_names_the_problem(tmp_path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 export is broken,export\n".encode("latin-1"))
    with pytest.raises(SystemExit, match="not utf-8 text.*--encoding"):
        theme_quality.main(["--input", str(latin), "--model", "hashing-384", "--no-bertopic"])

    odd = tmp_path / "odd.csv"
    odd.write_text("words,kind\nexport is broken,export\n", encoding="utf-8")  # no column a fallback knows
    with pytest.raises(SystemExit, match=r"label column 'intent' not found; the file has \['words', 'kind'\]"):
        theme_quality.main(["--input", str(odd), "--text-column", "words", "--label-column", "intent",
                            "--model", "hashing-384", "--no-bertopic"])

    empty = _write_csv(tmp_path / "empty.csv", [{"body": "", "topic": "x", "product": "A"}])
    with pytest.raises(SystemExit, match="no row has both a text and a label"):
        theme_quality.main(["--input", str(empty), "--text-column", "body", "--label-column", "topic",
                            "--model", "hashing-384", "--no-bertopic"])


def test_a_named_column_is_read_as_named_and_never_swapped_for_another(tmp_path, capsys) -> None:
    rows = _rows(20)
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Body", "Topic", "label", "product"])  # a "label" column that is not the one wanted
        writer.writerows([r["body"], r["topic"], r["product"], r["product"]] for r in rows)
    with pytest.raises(SystemExit, match=r"label column 'intent' not found; the file has \['Body', 'Topic', 'label'"):
        theme_quality.main(["--input", str(path), "--text-column", "Body", "--label-column", "intent",
                            "--model", "hashing-384", "--no-bertopic"])
    with pytest.raises(SystemExit, match=r"group column 'segment' not found"):
        theme_quality.main(["--input", str(path), "--text-column", "Body", "--label-column", "Topic",
                            "--group-column", "segment", "--model", "hashing-384", "--no-bertopic"])
    [named] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic")
    assert named["k_true"] == 4  # "topic" read from "Topic", not the two-valued "label"
    [guessed] = _run(capsys, "--input", str(path))
    assert guessed["k_true"] == 2  # with no name given, the usual "label" column is the one read


def test_without_a_usual_column_name_the_run_says_what_the_file_has(tmp_path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("words,kind\nexport is broken,export\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"no text column: the file has \['words', 'kind'\] and none of"):
        theme_quality.main(["--input", str(path), "--model", "hashing-384", "--no-bertopic"])


def _run_with_bertopic(capsys, path: Path) -> list[dict]:
    assert theme_quality.main(["--input", str(path), "--text-column", "body", "--label-column", "topic",
                               "--model", "hashing-384", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_is_one_line_with_bertopic_beside_groundswell(tmp_path, capsys, monkeypatch) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    [alone] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic")
    monkeypatch.setattr(theme_quality, "bertopic_missing", lambda: None)
    # a stand-in for BERTopic (it is in the bench extra only): one topic per parity of the row
    monkeypatch.setattr(theme_quality, "run_bertopic", lambda texts, vectors: (np.arange(len(texts)) % 2, 0.5))
    [line] = _run_with_bertopic(capsys, path)
    assert {k: v for k, v in line.items() if k != "bertopic"} == {k: v for k, v in alone.items() if k != "seconds"} \
        | {"seconds": line["seconds"]}
    assert line["method"] == "groundswell" and line["bertopic"]["k_found"] == 2 and line["bertopic"]["seconds"] == 0.5
    assert set(line["bertopic"]) >= {"nmi", "ari", "k_true", "k_found", "unassigned", "seconds"}


def test_groundswell_is_measured_when_bertopic_is_missing_or_fails(tmp_path, capsys, monkeypatch, caplog) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    real = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bertopic" else real(name, *a))
        [line] = _run_with_bertopic(capsys, path)
    assert line["k_true"] == 4 and "bertopic" not in line
    assert "BERTopic is not installed" in caplog.text and "measuring Groundswell alone" in caplog.text

    def broken(texts, vectors):
        raise ValueError("k must be less than or equal to the number of training points")

    monkeypatch.setattr(theme_quality, "bertopic_missing", lambda: None)
    monkeypatch.setattr(theme_quality, "run_bertopic", broken)
    [line] = _run_with_bertopic(capsys, path)
    assert line["k_true"] == 4 and line["bertopic"] == {
        "error": "ValueError: k must be less than or equal to the number of training points"}
    assert "BERTopic failed" in caplog.text


def test_another_encoding_can_be_named(tmp_path, capsys) -> None:
    path = tmp_path / "latin.csv"
    rows = _rows(20)
    text = "body,topic\n" + "".join(f"{r['body']} caf\xe9,{r['topic']}\n" for r in rows)
    path.write_bytes(text.encode("latin-1"))
    [row] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic",
                 "--encoding", "latin-1")
    assert row["n"] == 80 and row["k_true"] == 4


def test_the_usual_shapes_of_a_labeled_export_are_read_alike(tmp_path, capsys) -> None:
    """Semicolon CSV with Excel's BOM, JSON lists of objects (alone or under a key), pairs, NDJSON."""
    rows = _rows(20)
    expected = None
    semicolon = tmp_path / "excel.csv"
    semicolon.write_bytes(("body;topic;product\n" + "".join(f"{r['body']};{r['topic']};{r['product']}\n"
                                                            for r in rows)).encode("utf-8-sig"))
    objects = [{"body": r["body"], "topic": r["topic"]} for r in rows]
    inputs = {
        "excel.csv": semicolon,
        "list.json": objects,
        "wrapped.json": {"meta": {"source": "survey"}, "data": objects},
        "pairs.json": [[r["body"], r["topic"]] for r in rows],
        "lines.ndjson": "".join(json.dumps(o) + "\n" for o in objects),
    }
    for name, content in inputs.items():
        path = tmp_path / name
        if not isinstance(content, Path):
            path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        [row] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic")
        got = (row["n"], row["k_true"], row["k_found"], round(row["nmi"], 6))
        assert row["n"] == 80 and row["k_true"] == 4, (name, row)
        expected = expected or got
        assert got == expected, name  # the same rows, in the same order, give the same themes


def test_a_json_without_recognisable_rows_is_refused_with_what_it_has(tmp_path) -> None:
    path = tmp_path / "two_lists.json"
    path.write_text(json.dumps({"train": [["a", "b"]], "dev": [["c", "d"]]}), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"under the split 'test' \(pass --split NAME\).*\['dev', 'train'\]"):
        theme_quality.main(["--input", str(path), "--model", "hashing-384", "--no-bertopic"])
    path.write_text(json.dumps([{"text": "a", "label": "b"}, ["c", "d"]]), encoding="utf-8")
    with pytest.raises(SystemExit, match="all be objects or all be"):
        theme_quality.main(["--input", str(path), "--model", "hashing-384", "--no-bertopic"])


def test_draws_measure_random_subsets_the_way_the_whole_set_is_measured(tmp_path, capsys) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    args = ("--input", str(path), "--text-column", "body", "--label-column", "topic")
    [row] = _run(capsys, *args, "--draws", "3", "--draw-share", "0.5", "--draw-seed", "7")
    draws = row["draws"]
    assert draws["count"] == 3 and draws["share"] == 0.5 and draws["seeds"] == [7, 8, 9]
    assert [d["seed"] for d in draws["each"]] == [7, 8, 9] and all(d["n"] == 80 for d in draws["each"])
    for key in ("nmi", "ari", "unassigned"):
        values = [d[key] for d in draws["each"]]
        assert draws[key] == {"mean": pytest.approx(np.mean(values)), "min": min(values), "max": max(values)}
    assert draws["k_found"] == [d["k_found"] for d in draws["each"]]
    # The whole set's figures are those of a run without draws.
    [plain] = _run(capsys, *args)
    assert {k: v for k, v in row.items() if k not in ("draws", "seconds")} == \
        {k: v for k, v in plain.items() if k != "seconds"}

    # Each draw is the rows draw_rows gives for its seed, measured as a set of its own would be.
    subset = tmp_path / "subset.csv"
    rows = _rows()
    drawn = theme_quality.draw_rows(len(rows), 0.5, 8)
    assert len(drawn) == 80 and len(set(drawn.tolist())) == 80
    _write_csv(subset, [rows[i] for i in drawn])
    [alone] = _run(capsys, "--input", str(subset), "--text-column", "body", "--label-column", "topic")
    second = draws["each"][1]
    assert second["nmi"] == pytest.approx(alone["nmi"]) and second["ari"] == pytest.approx(alone["ari"])
    # Different seeds draw different rows; the same seed the same ones.
    assert not np.array_equal(theme_quality.draw_rows(160, 0.5, 7), drawn)
    assert np.array_equal(theme_quality.draw_rows(160, 0.5, 8), drawn)


def test_draws_are_measured_per_group_when_there_are_groups(tmp_path, capsys) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    [row] = _run(capsys, "--input", str(path), "--text-column", "body", "--label-column", "topic",
                 "--group-column", "product", "--draws", "2")
    # k_found sums over the two products' own discoveries, as the whole set's does
    assert len(row["draws"]["each"]) == 2 and all(d["n"] == 128 for d in row["draws"]["each"])
    assert all(d["k_found"] >= 4 for d in row["draws"]["each"]), row["draws"]


def test_the_table_shows_the_draws(tmp_path, capsys) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    assert theme_quality.main(["--input", str(path), "--text-column", "body", "--label-column", "topic",
                               "--model", "hashing-384", "--no-bertopic", "--draws", "2"]) == 0
    out = capsys.readouterr().out
    assert "over 2 random draws of 80% of the rows (seeds 100-101)" in out
    assert out.count("NMI") >= 2 and "themes found" in out


@pytest.mark.parametrize(("args", "message"), [
    (("--draws", "-1"), "--draws must be 0 or more"),
    (("--draws", "2", "--draw-share", "0"), "--draw-share must be above 0"),
    (("--draws", "2", "--draw-share", "1.5"), "--draw-share must be above 0"),
])
def test_bad_draw_settings_are_refused_by_name(tmp_path, capsys, args, message) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows())
    with pytest.raises(SystemExit):
        theme_quality.main(["--input", str(path), "--model", "hashing-384", "--no-bertopic", *args])
    assert message in capsys.readouterr().err


def test_a_draw_share_too_small_for_the_rows_is_refused(tmp_path) -> None:
    path = _write_csv(tmp_path / "feedback.csv", _rows(n_per_topic=2))
    with pytest.raises(SystemExit, match="--draw-share 0.1 of 8 scored rows leaves no row"):
        theme_quality.main(["--input", str(path), "--text-column", "body", "--label-column", "topic",
                            "--model", "hashing-384", "--no-bertopic", "--draws", "1", "--draw-share", "0.1"])
