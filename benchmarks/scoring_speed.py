"""Speed of the statistics and scoring step: weekly_theme_stats, theme_momentum and score_opportunities.

    python benchmarks/scoring_speed.py [--items 100000] [--themes 1000] [--weeks 26] [--repeat 3] [--json]

Builds synthetic ``items`` and ``accounts`` frames in the input contract of ``pipeline.stats`` (skewed theme
sizes, ~30% anonymous items, four segments, some themes growing) and runs the step the way
``Analyzer._stats_and_scores`` does: weekly statistics and momentum for all items, then for "all" and for each
segment ``segment_items`` + weekly item counts + momentum + scores. Each row gives the seconds spent in one
function over the whole step (best of ``--repeat`` runs), the number of calls and the seconds per call.
Targets: the whole step <= 0.3 s at 3,500 items / 200 themes, <= 5 s at 100,000 items / 1,000 themes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import emit, peak_mib  # noqa: E402

NOW = pd.Timestamp("2026-03-18 15:30", tz="UTC")  # a Wednesday: the current week is partial
SEGMENTS = ("enterprise", "mid-market", "smb", None)
LIFECYCLES = ("customer", "prospect", "churned", "unknown")
SOURCES = ("zendesk", "intercom", "gong", "salesforce", "g2", "typeform")
KINDS = ("ticket", "chat", "call_note", "field_note", "review", "survey")
INTENTS = ("bug", "feature_request", "question", "complaint", "praise", None)


def synthetic(n_items: int, n_themes: int, *, weeks: int = 26, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(items, accounts)`` frames of ``n_items`` assigned items over ``n_themes`` themes and ``weeks`` weeks."""
    rng = np.random.default_rng(seed)
    n_accounts = max(50, n_items // 15)
    accounts = pd.DataFrame(
        {
            "account_id": pd.array(np.arange(1, n_accounts + 1), dtype="Int64"),
            "name": [f"Account {i}" for i in range(1, n_accounts + 1)],
            "segment": rng.choice(np.array(SEGMENTS, dtype=object), n_accounts, p=[0.15, 0.3, 0.45, 0.1]),
            "arr": np.round(rng.lognormal(10.5, 1.2, n_accounts), 2),
            "lifecycle": rng.choice(np.array(LIFECYCLES, dtype=object), n_accounts, p=[0.6, 0.25, 0.1, 0.05]),
            "open_pipeline": np.round(rng.lognormal(10.0, 1.5, n_accounts), 2),
        }
    )
    # Skewed theme sizes; a fifth of the themes grow over the last weeks, a few are brand new.
    sizes = rng.pareto(1.2, n_themes) + 1.0
    theme = rng.choice(n_themes, n_items, p=sizes / sizes.sum()) + 1
    age_days = rng.uniform(0, weeks * 7, n_items)
    growing = (theme % 5 == 0) & (rng.random(n_items) < 0.5)
    age_days[growing] = rng.uniform(0, 21, int(growing.sum()))
    newborn = theme % 37 == 0
    age_days[newborn] = rng.uniform(0, 14, int(newborn.sum()))
    occurred = NOW - pd.to_timedelta(np.round(age_days * 86400), unit="s")
    account = rng.integers(1, n_accounts + 1, n_items).astype(object)
    account[rng.random(n_items) < 0.3] = None
    sentiment = np.round(rng.uniform(-1, 1, n_items), 3)
    sentiment[rng.random(n_items) < 0.1] = np.nan
    items = pd.DataFrame(
        {
            "feedback_id": np.arange(1, n_items + 1),
            "theme_id": theme.astype("int64"),
            "account_id": pd.array(account, dtype="Int64"),
            "occurred_at": occurred,
            "source": rng.choice(np.array(SOURCES, dtype=object), n_items),
            "kind": rng.choice(np.array(KINDS, dtype=object), n_items),
            "sentiment": sentiment,
            "intent": rng.choice(np.array(INTENTS, dtype=object), n_items),
            "churn_risk": rng.random(n_items) < 0.05,
            "deal_blocker": rng.random(n_items) < 0.04,
            "security": rng.random(n_items) < 0.02,
            "submitted_by": None,
        }
    )
    return items, accounts


def run_step(items: pd.DataFrame, accounts: pd.DataFrame, timings: dict[str, list[float]]) -> None:
    """The statistics and scoring step of one analysis, each call timed into ``timings[function]``."""
    from models.settings import ScoreWeights
    from pipeline.scoring import score_opportunities, segment_items
    from pipeline.stats import theme_momentum, weekly_item_counts, weekly_theme_stats

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name].append(time.perf_counter() - started)
        return out

    weights = ScoreWeights().model_dump()
    weekly = timed("weekly_theme_stats", weekly_theme_stats, items, accounts, now=NOW)
    momentum = timed("theme_momentum", theme_momentum, weekly, now=NOW)
    segments = [None, *sorted({str(x) for x in accounts["segment"].dropna().unique()})]
    for segment in segments:
        if segment is None:
            seg_items, seg_momentum = items, momentum
        else:
            seg_items, _ = timed("segment_items", segment_items, items, accounts, segment)
            if seg_items.empty:
                continue
            seg_weekly = timed("weekly_item_counts", weekly_item_counts, seg_items, now=NOW)
            seg_momentum = timed("theme_momentum", theme_momentum, seg_weekly, now=NOW)
        timed("score_opportunities", score_opportunities, seg_items, accounts, seg_momentum, now=NOW,
              weights=weights, segment=segment)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=3_500)
    parser.add_argument("--themes", type=int, default=200)
    parser.add_argument("--weeks", type=int, default=26, help="weeks of history in the synthetic items")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the whole step; the best one is shown")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    items, accounts = synthetic(args.items, args.themes, weeks=args.weeks)
    best: dict[str, list[float]] | None = None
    for _ in range(max(1, args.repeat)):
        timings: dict[str, list[float]] = defaultdict(list)
        run_step(items, accounts, timings)
        if best is None or sum(map(sum, timings.values())) < sum(map(sum, best.values())):
            best = timings
    assert best is not None
    themes = int(items["theme_id"].nunique())
    rows = [
        {
            "items": args.items,
            "themes": themes,
            "function": name,
            "calls": len(times),
            "seconds": round(sum(times), 4),
            "per_call": round(sum(times) / len(times), 4),
        }
        for name, times in best.items()
    ]
    total = sum(r["seconds"] for r in rows)
    rows.append({"items": args.items, "themes": themes, "function": "step total", "calls": None,
                 "seconds": round(total, 4), "per_call": None, "peak_mib": peak_mib()})
    emit(rows, as_json=args.json, title=f"Statistics and scoring step, best of {max(1, args.repeat)}")
    return rows


if __name__ == "__main__":
    main()
