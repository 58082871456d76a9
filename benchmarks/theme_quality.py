"""Theme quality on a labeled set: Groundswell's theme discovery beside BERTopic, on the same vectors.

Reads a labeled CSV, TSV, JSONL or CLINC150-style JSON file, embeds the texts with the product's embedder
(vectors cached under ``var/cache/embeddings``), runs the same :class:`~pipeline.clustering.ThemeClusterer`
the product runs (product defaults, given the texts and the model's tokenizer as analysis gives them), and
BERTopic with its defaults on the same embeddings unless ``--no-bertopic``. Unassigned items count as one
group of their own in NMI and ARI. With ``--clean`` each text is first cleaned as ingest cleans feedback
(HTML, quoted replies, signatures, whitespace, PII placeholders); without it the texts are measured as
written, comparable with published results.

A row with a blank text (after cleaning, with ``--clean``) or no label cannot be scored: it is skipped,
counted (``skipped`` in the output) and left without a theme in ``--assignments``.

``--json`` prints one line: Groundswell's ``nmi``, ``ari``, ``k_true``, ``k_found``, ``unassigned`` and
``seconds`` (with ``method``, ``n``, ``skipped``, and ``groups`` per group) at the top level, and BERTopic's
figures under ``bertopic``. BERTopic is only a comparison and only in the ``bench`` extra: when it is not
installed, or fails on the input, a warning says so and Groundswell's figures are printed alone (with
``bertopic: {"error": ...}`` when it failed).

``--draws N`` also measures Groundswell on N random draws of ``--draw-share`` (0.8) of the scored rows,
seeds ``--draw-seed`` (100) and up, and prints the mean, smallest and largest NMI, ARI and unassigned share
over them (under ``draws`` with ``--json``, each draw's figures under ``draws.each``). One set's figure moves
from one draw to another by more than most changes to discovery move it (DSTC11 finance: 71.05-74.36 NMI
over 8 draws), so a change to discovery is judged over the draws; BERTopic is not run on them.

Examples::

    python benchmarks/theme_quality.py --input ../shared/datasets/clinc150/data_full.json
    python benchmarks/theme_quality.py --input ../shared/datasets/dstc11/finance.csv \\
        --text-column utterance --label-column intent --json
    python benchmarks/theme_quality.py --input ../shared/datasets/stackoverflow/test.tsv
    python benchmarks/theme_quality.py --input ../shared/datasets/dstc11/finance.csv \\
        --text-column utterance --label-column intent --no-bertopic --draws 8

A ``.json`` file is a list of objects (one a row) or of ``[text, label]`` pairs, alone or under a key:
CLINC150's ``data_full.json`` holds pairs under each split (``--split``, ``test`` by default). A CSV
whose header has semicolons, tabs or pipes but no comma is read with that delimiter; ``.ndjson`` is
read as JSON lines; a UTF-8 byte-order mark is ignored. Without ``--text-column`` or ``--label-column``
the first usual name the file has is read (``text``, ``utterance``, ``sentence``...; ``label``,
``intent``, ``category``...). A column named on the command line is read as named (or the one column
that differs from it only in case); if the file has no such column the run stops, naming the columns
it has, rather than measure another one.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from ingest.cleaning import clean_text  # noqa: E402
from ingest.connectors.files import csv_delimiter  # noqa: E402
from pipeline import text_prep  # noqa: E402
from pipeline.clustering import ThemeClusterer  # noqa: E402
from pipeline.embedding import DEFAULT_MODEL, make_embedder  # noqa: E402
from pipeline.unknown_words import WordPieces  # noqa: E402

log = logging.getLogger("theme_quality")

CACHE_DIR = ROOT / "var" / "cache" / "embeddings"
TEXT_FALLBACKS = ("text", "utterance", "sentence", "query", "body", "title")
LABEL_FALLBACKS = ("label", "intent", "category", "topic", "tag", "class")


@dataclass
class Result:
    method: str
    nmi: float
    ari: float
    k_true: int
    k_found: int
    unassigned: float
    seconds: float
    n: int
    group: str | None = None


def _pick_column(frame: pd.DataFrame, wanted: str | None, fallbacks: tuple[str, ...], what: str) -> str:
    """The column to read ``what`` from.

    A name the caller gave is used as given, or as the one column that matches it but for case and spaces
    (``Intent`` for ``intent``); it never falls back to another column, so a mistyped name is an error, not a
    silent measurement of the wrong column. Without a name, the first of ``fallbacks`` the file has is used.
    """
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted in columns:
            return wanted
        alike = [c for c in columns if c.strip().casefold() == wanted.strip().casefold()]
        if len(alike) == 1:
            log.warning("no %s column %r; using %r", what, wanted, alike[0])
            return alike[0]
        raise SystemExit(f"{what} column {wanted!r} not found; the file has {columns}")
    for name in fallbacks:
        alike = [c for c in columns if c.strip().casefold() == name]
        if len(alike) == 1:
            if alike[0] != fallbacks[0]:
                log.warning("no %s column %r; using %r (name another with --%s-column)", what, fallbacks[0],
                            alike[0], what)
            return alike[0]
    raise SystemExit(
        f"no {what} column: the file has {columns} and none of {list(fallbacks)}; pass --{what}-column NAME"
    )


def _strings(column: pd.Series) -> pd.Series:
    """Each value as a string, with a missing one (None, NaN, JSON null) as ``""``."""
    return column.map(lambda v: "" if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)) else str(v))


def _read_frame(path: Path, split: str, encoding: str) -> pd.DataFrame:
    """The file as a frame. A JSON of ``[text, label]`` pairs gives the columns ``text`` and ``label`` and is
    marked ``frame.attrs["pairs"]``; a UTF-8 byte-order mark is ignored."""
    suffix = path.suffix.lower()
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # as utf-8, but a leading BOM (Excel's CSV export) is not part of a name
    if suffix == ".json":
        return _json_frame(json.loads(path.read_text(encoding=encoding)), path, split)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, encoding=encoding, dtype=False)
    sep = "\t" if suffix in (".tsv", ".tab") else _csv_delimiter(path, encoding)
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=0, encoding=encoding)


def _csv_delimiter(path: Path, encoding: str) -> str:
    """The delimiter the file connector would read ``path`` with (from its header line)."""
    with path.open(encoding=encoding, newline="") as f:
        return csv_delimiter(f.readline())


def _json_frame(data: Any, path: Path, split: str) -> pd.DataFrame:
    """Rows of a JSON file: CLINC150's ``{split: [[text, label], ...]}``, a list of objects or of pairs, or
    an object holding one such list (``{"data": [...]}``)."""
    rows = data
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if split in lists:
            rows = lists[split]
        elif len(lists) == 1:
            rows = next(iter(lists.values()))
        else:
            raise SystemExit(f"{path}: a JSON object needs its rows under the split {split!r} (pass --split NAME) "
                             f"or in its only list; it has the keys {sorted(data)[:20]}")
    if not isinstance(rows, list) or not rows:
        raise SystemExit(f"{path}: no rows; expected a JSON list of objects or of [text, label] pairs")
    if all(isinstance(r, dict) for r in rows):
        return pd.DataFrame.from_records(rows)
    if all(isinstance(r, list | tuple) and len(r) >= 2 for r in rows):
        frame = pd.DataFrame([r[:2] for r in rows], columns=["text", "label"])
        frame.attrs["pairs"] = True
        return frame
    raise SystemExit(f"{path}: rows must all be objects or all be [text, label] pairs")


def read_labeled(path: Path, *, text_column: str | None = None, label_column: str | None = None,
                 group_column: str | None = None, split: str = "test", encoding: str = "utf-8") -> pd.DataFrame:
    """Read a labeled file into a frame with string columns ``text``, ``label`` and ``group``.

    Input order is kept; a missing value becomes ``""``. A file that cannot be read ends the run with a
    message naming the file and what is wrong with it.
    """
    try:
        frame = _read_frame(path, split, encoding)
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SystemExit(f"{path} is not {encoding} text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                         f"pass its encoding, e.g. --encoding latin-1") from None
    except LookupError as exc:  # an unknown --encoding
        raise SystemExit(f"--encoding: {exc}") from None
    except (ValueError, pd.errors.ParserError) as exc:  # bad JSON lines, an unparseable CSV, an empty file
        raise SystemExit(f"{path} could not be read as {path.suffix.lstrip('.') or 'CSV'}: {exc}") from None
    if frame.attrs.get("pairs"):  # CLINC-style [text, label] pairs: the columns are fixed
        text_column, label_column = "text", "label"
    text_column = _pick_column(frame, text_column, TEXT_FALLBACKS, "text")
    label_column = _pick_column(frame, label_column, LABEL_FALLBACKS, "label")
    out = pd.DataFrame({
        "text": _strings(frame[text_column]),
        "label": _strings(frame[label_column]).str.strip(),
    })
    if group_column:
        out["group"] = _strings(frame[_pick_column(frame, group_column, (), "group")])
    else:
        out["group"] = "all"
    return out.reset_index(drop=True)


def usable_rows(frame: pd.DataFrame, *, clean: bool = False) -> tuple[np.ndarray, dict[str, int]]:
    """The rows that can be scored, and how many others have no text or no label.

    Args:
        clean: first clean ``frame["text"]`` in place as ingest cleans feedback.

    Returns:
        Row positions with a text that is not blank and a label, and the counts ``{"no_text": .., "no_label": ..}``
        of the others (a row with neither counts as ``no_text``).
    """
    if clean:
        frame["text"] = [clean_text(text).text for text in frame["text"]]
    no_text = (frame["text"].str.strip() == "").to_numpy()
    no_label = (frame["label"] == "").to_numpy() & ~no_text
    return np.flatnonzero(~(no_text | no_label)), {"no_text": int(no_text.sum()), "no_label": int(no_label.sum())}


def cached_embeddings(texts: list[str], *, model: str = DEFAULT_MODEL, tag: str = "data") -> np.ndarray:
    """Embed ``texts`` with the product embedder, reusing vectors cached on disk for identical input.

    Returns:
        ``(len(texts), dim)`` float32, unit rows.
    """
    digest = hashlib.sha256(model.encode())
    # What the model reads follows the text-prep rules: vectors cached under another version of them are not reused.
    digest.update(Path(text_prep.__file__).read_bytes())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    safe_model = model.replace("/", "_")
    path = CACHE_DIR / f"{tag}-{safe_model}-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    vectors = make_embedder(model).encode(texts)
    log.info("embedded %d texts in %.1f s", len(texts), time.perf_counter() - started)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def score(method: str, labels_true: np.ndarray, labels_pred: np.ndarray, seconds: float,
          group: str | None) -> Result:
    """NMI and ARI with every unassigned item (``-1``) in one group of its own."""
    found = set(np.unique(labels_pred).tolist()) - {-1}
    return Result(
        method=method,
        nmi=100 * normalized_mutual_info_score(labels_true, labels_pred),
        ari=100 * adjusted_rand_score(labels_true, labels_pred),
        k_true=len(np.unique(labels_true)),
        k_found=len(found),
        unassigned=100 * float(np.mean(labels_pred == -1)),
        seconds=seconds,
        n=len(labels_true),
        group=group,
    )


def run_groundswell(vectors: np.ndarray, texts: list[str],
                    word_pieces: WordPieces | None) -> tuple[np.ndarray, float]:
    """The product's discovery with its defaults, given the texts and the model's tokenizer as analysis gives them."""
    started = time.perf_counter()
    model = ThemeClusterer(word_pieces=word_pieces).fit(vectors, texts=texts)
    return model.labels_, time.perf_counter() - started


def bertopic_missing() -> str | None:
    """Why BERTopic cannot run here (it is only in the ``bench`` extra), or None when it can."""
    if importlib.util.find_spec("bertopic") is None:
        return "BERTopic is not installed (`make bench` installs it, or `pip install bertopic`)"
    return None


def run_bertopic(texts: list[str], vectors: np.ndarray) -> tuple[np.ndarray, float]:
    from bertopic import BERTopic

    started = time.perf_counter()
    topics, _ = BERTopic().fit_transform(texts, embeddings=vectors)
    return np.asarray(topics), time.perf_counter() - started


def measure_groundswell(scored: pd.DataFrame, vectors: np.ndarray,
                        word_pieces: WordPieces | None = None) -> list[tuple[np.ndarray, np.ndarray, Result]]:
    """Groundswell on ``scored`` (columns ``text``, ``label`` and ``group``), discovery run once per group.

    Args:
        word_pieces: the embedding model's word pieces (see :meth:`pipeline.embedding.SentenceEmbedder.word_pieces`),
            or None for a model without a tokenizer.

    Returns:
        Per group, in sorted order: its row positions (sorted), the theme of each of them, and its figures
        (``Result.group`` names the group).
    """
    truth = scored["label"].to_numpy()
    texts = scored["text"].tolist()
    out = []
    for group, rows in scored.groupby("group", sort=True).indices.items():
        rows = np.sort(rows)
        labels, seconds = run_groundswell(vectors[rows], [texts[i] for i in rows], word_pieces)
        out.append((rows, labels, score("groundswell", truth[rows], labels, seconds, group)))
    return out


def draw_size(n: int, share: float) -> int:
    """How many of ``n`` rows one draw of ``share`` of them holds."""
    return int(share * n)


def draw_rows(n: int, share: float, seed: int) -> np.ndarray:
    """The sorted positions of one random draw of :func:`draw_size` of ``n`` rows, without repeats."""
    return np.sort(np.random.default_rng(seed).choice(n, draw_size(n, share), replace=False))


def measure_draws(scored: pd.DataFrame, vectors: np.ndarray, *, count: int, share: float, first_seed: int,
                  word_pieces: WordPieces | None = None) -> dict:
    """Groundswell on ``count`` random draws of ``share`` of the scored rows, seeds ``first_seed`` on.

    One figure on one set moves with any small change to the data (another draw of it, a few texts written
    differently) by more than most changes to discovery move it, so a change to discovery is judged by how
    it does over many draws. Each draw is measured as the whole set is (per group when there are groups).

    Returns:
        ``{"count", "share", "seeds", "nmi", "ari", "unassigned", "k_found", "each"}``: the mean, smallest and
        largest NMI, ARI and unassigned share (x100) over the draws, the theme counts found, and each draw's
        figures.
    """
    each = []
    for seed in range(first_seed, first_seed + count):
        rows = draw_rows(len(scored), share, seed)
        drawn = scored.iloc[rows].reset_index(drop=True)
        parts = [result for *_, result in measure_groundswell(drawn, vectors[rows], word_pieces)]
        row = combine("groundswell", parts)
        each.append({"seed": seed, **{key: row[key] for key in ("n", "nmi", "ari", "unassigned", "k_found")}})

    def spread(key: str) -> dict[str, float]:
        values = [draw[key] for draw in each]
        return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}

    return {"count": count, "share": share, "seeds": [draw["seed"] for draw in each], "nmi": spread("nmi"),
            "ari": spread("ari"), "unassigned": spread("unassigned"), "k_found": [draw["k_found"] for draw in each],
            "each": each}


def combine(method: str, parts: list[Result]) -> dict:
    """One summary per method: item-weighted means over groups, summed counts and seconds."""
    n = sum(p.n for p in parts)
    row = {
        "method": method,
        "nmi": sum(p.nmi * p.n for p in parts) / n,
        "ari": sum(p.ari * p.n for p in parts) / n,
        "k_true": sum(p.k_true for p in parts),
        "k_found": sum(p.k_found for p in parts),
        "unassigned": sum(p.unassigned * p.n for p in parts) / n,
        "seconds": sum(p.seconds for p in parts),
        "n": n,
    }
    if len(parts) > 1:
        row["groups"] = [asdict(p) for p in parts]
    return row


def print_table(rows: list[dict]) -> None:
    header = f"{'method':<12} {'group':<16} {'n':>7} {'NMI':>6} {'ARI':>6} {'k_true':>6} {'k_found':>7} " \
             f"{'unassigned%':>11} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        parts = row.get("groups") or [dict(row, group="all")]
        for part in parts:
            print(f"{row['method']:<12} {str(part['group'])[:16]:<16} {part['n']:>7} {part['nmi']:>6.1f} "
                  f"{part['ari']:>6.1f} {part['k_true']:>6} {part['k_found']:>7} {part['unassigned']:>11.1f} "
                  f"{part['seconds']:>8.2f}")
        if len(parts) > 1:
            print(f"{row['method']:<12} {'(weighted)':<16} {row['n']:>7} {row['nmi']:>6.1f} {row['ari']:>6.1f} "
                  f"{row['k_true']:>6} {row['k_found']:>7} {row['unassigned']:>11.1f} {row['seconds']:>8.2f}")


def print_draws(draws: dict) -> None:
    seeds = draws["seeds"]
    print(f"\ngroundswell over {draws['count']} random draws of {draws['share']:.0%} of the rows "
          f"(seeds {seeds[0]}-{seeds[-1]}):")
    print(f"{'':<12} {'mean':>6} {'min':>6} {'max':>6}")
    for key, name in (("nmi", "NMI"), ("ari", "ARI"), ("unassigned", "unassigned%")):
        figures = draws[key]
        print(f"{name:<12} {figures['mean']:>6.2f} {figures['min']:>6.2f} {figures['max']:>6.2f}")
    print(f"{'themes found':<12} {', '.join(str(k) for k in draws['k_found'])}")


def write_assignments(path: Path, frame: pd.DataFrame, labels: np.ndarray) -> None:
    """CSV ``row,theme``: 0-based input row, theme id (empty when unassigned)."""
    out = pd.DataFrame({"row": np.arange(len(frame)), "theme": pd.array(labels, dtype="Int64")})
    out.loc[out["theme"] == -1, "theme"] = pd.NA
    out.to_csv(path, index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="labeled .csv, .tsv, .jsonl/.ndjson or .json")
    parser.add_argument("--text-column", default=None,
                        help=f"default: the first of {', '.join(TEXT_FALLBACKS)} the file has")
    parser.add_argument("--label-column", default=None,
                        help=f"default: the first of {', '.join(LABEL_FALLBACKS)} the file has")
    parser.add_argument("--group-column", default=None, help="discover themes separately per value")
    parser.add_argument("--split", default="test", help="split to read from a CLINC-style .json")
    parser.add_argument("--encoding", default="utf-8", help="the input file's text encoding")
    parser.add_argument("--clean", action="store_true",
                        help="clean texts as ingest does (HTML, quoted replies, signatures, PII) before embedding")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line: Groundswell's figures, BERTopic's under the key 'bertopic'")
    parser.add_argument("--assignments", type=Path, default=None, help="write Groundswell's row,theme CSV")
    parser.add_argument("--no-bertopic", action="store_true")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedding model name or path")
    parser.add_argument("--draws", type=int, default=0,
                        help="also measure Groundswell on this many random draws of the rows (mean, min, max)")
    parser.add_argument("--draw-share", type=float, default=0.8, help="share of the rows in each draw")
    parser.add_argument("--draw-seed", type=int, default=100, help="seed of the first draw; the next ones count up")
    args = parser.parse_args(argv)
    if args.draws < 0:
        parser.error(f"--draws must be 0 or more; got {args.draws}")
    if not 0 < args.draw_share <= 1:
        parser.error(f"--draw-share must be above 0 and at most 1; got {args.draw_share}")
    logging.basicConfig(level=logging.WARNING if args.json else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    frame = read_labeled(args.input, text_column=args.text_column, label_column=args.label_column,
                         group_column=args.group_column, split=args.split, encoding=args.encoding)
    usable, skipped = usable_rows(frame, clean=args.clean)
    n_skipped = len(frame) - usable.size
    if n_skipped:
        log.warning("skipped %d of %d rows: %d with a blank text, %d with no label",
                    n_skipped, len(frame), skipped["no_text"], skipped["no_label"])
    if not usable.size:
        raise SystemExit(f"{args.input}: no row has both a text and a label")
    scored = frame.iloc[usable].reset_index(drop=True)
    if args.draws and draw_size(len(scored), args.draw_share) < 1:
        raise SystemExit(f"--draw-share {args.draw_share} of {len(scored)} scored rows leaves no row to draw")
    texts = scored["text"].tolist()
    vectors = cached_embeddings(texts, model=args.model, tag=args.input.stem)
    word_pieces = getattr(make_embedder(args.model), "word_pieces", None)  # the tokenizer alone, as analysis uses it

    # BERTopic is the comparison, not the measurement: when it is missing or fails, Groundswell's figures
    # are still printed (with a warning on stderr), never lost with it.
    missing = None if args.no_bertopic else bertopic_missing()
    if missing:
        log.warning("%s; measuring Groundswell alone", missing)
    methods = ["groundswell"] + ([] if args.no_bertopic or missing else ["bertopic"])
    results: dict[str, list[Result]] = {m: [] for m in methods}
    bertopic_error: str | None = None
    assignments = np.full(len(frame), -1, dtype=np.int64)  # every input row; skipped ones stay unassigned
    offset = 0
    truth = scored["label"].to_numpy()
    for rows, labels, result in measure_groundswell(scored, vectors, word_pieces):
        group = result.group
        results["groundswell"].append(result)
        # theme ids stay unique across groups in the assignments file
        assignments[usable[rows]] = np.where(labels >= 0, labels + offset, -1)
        offset += int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        if "bertopic" in results and bertopic_error is None:
            try:
                labels, seconds = run_bertopic([texts[i] for i in rows], vectors[rows])
            except Exception as exc:  # its UMAP/HDBSCAN can refuse small or odd inputs
                bertopic_error = f"{type(exc).__name__}: {exc}"
                log.warning("BERTopic failed on group %r (%s); measuring Groundswell alone", group, bertopic_error)
            else:
                results["bertopic"].append(score("bertopic", truth[rows], labels, seconds, group))
    if bertopic_error is not None:
        del results["bertopic"]

    summaries = {m: dict(combine(m, parts), skipped=n_skipped) for m, parts in results.items()}
    if args.draws:
        summaries["groundswell"]["draws"] = measure_draws(scored, vectors, count=args.draws, share=args.draw_share,
                                                          first_seed=args.draw_seed, word_pieces=word_pieces)
    if args.json:
        # One line: Groundswell's figures at the top level, BERTopic's (when it ran) under "bertopic".
        line = dict(summaries["groundswell"])
        if "bertopic" in summaries:
            line["bertopic"] = {k: v for k, v in summaries["bertopic"].items() if k != "method"}
        elif bertopic_error is not None:
            line["bertopic"] = {"error": bertopic_error}
        print(json.dumps(line))
    else:
        print(f"{args.input.name}: {len(frame)} rows, {usable.size} scored, model {args.model}")
        print_table(list(summaries.values()))
        if args.draws:
            print_draws(summaries["groundswell"]["draws"])
    if args.assignments:
        write_assignments(args.assignments, frame, assignments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
