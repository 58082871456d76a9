"""Opportunity scoring: one explainable score per theme from reach, revenue, momentum, severity and recency.

Pure step: frames in, a frame out; nothing here opens a database session.

Inputs follow the contract in ``pipeline.stats`` (``items`` one row per assigned feedback item, ``accounts`` one
row per account) plus ``momentum``, the output of ``pipeline.stats.theme_momentum``. For a per-segment score,
compute momentum from ``segment_items(items, accounts, segment)`` too, so that the trend is the segment's.

Every component lies in 0..1 and is scaled against a *fixed* reference, never the batch's maximum, so a score
means the same thing from one run to the next and grows with its inputs:

- ``reach`` = ``log1p(voices) / log1p(REACH_REFERENCE_ACCOUNTS)``, capped at 1; ``voices`` = distinct accounts
  over the scoring horizon + ``anonymous_weight`` per item with no account. An account counts once per theme
  across all sources, so many mentions from one account never reach as far as the same mentions from many.
- ``revenue`` = ``log1p(R / $1k) / log1p(REVENUE_REFERENCE / $1k)``, capped at 1, with
  ``R`` = ARR of the distinct customer accounts + ``pipeline_weight`` * open pipeline of the distinct prospects.
- ``momentum`` = 0 unless growth is significant (``p_value < alpha`` and ratio > 1); then
  ``min(1, log2(ratio) / 3) * min(1, -log10(p_value) / 6)``: 8x growth at p <= 1e-6 saturates it.
- ``severity`` = noisy-or of the item shares ``1 - (1 - 0.5 * negative)(1 - churn)(1 - blocker)(1 - security)``,
  where ``negative`` is the share of items (with a sentiment) below ``NEGATIVE_SENTIMENT``.
- ``recency`` = ``0.5 ** (days since the last mention / recency_half_life_days)``.

``score`` = ``100 * sum(w_c * c) / sum(w_c)`` with the weights of ``Settings.score_weights``.
Tiers (``TIER_RULES``): ``vital`` when score >= 60, or score >= 45 with severity >= 0.5; ``important`` when
score >= 35, or score >= 25 with severity >= 0.5; ``nice_to_have`` otherwise.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.stats import ITEM_COLUMNS, StatsInputError, as_utc_timestamp, utc_times

COMPONENTS = ("reach", "revenue", "momentum", "severity", "recency")

REACH_REFERENCE_ACCOUNTS = 200
REVENUE_REFERENCE = 10_000_000.0
REVENUE_UNIT = 1_000.0
NEGATIVE_SENTIMENT = -0.2
MOMENTUM_SATURATION_RATIO = 8.0
MOMENTUM_SATURATION_LOG10_P = 6.0

# (tier, minimum score, minimum score when severity >= SEVERE), checked in order.
SEVERE = 0.5
TIER_RULES: tuple[tuple[str, float, float], ...] = (("vital", 60.0, 45.0), ("important", 35.0, 25.0))

SCORE_COLUMNS = [
    "theme_id",
    "rank",
    "score",
    "tier",
    *COMPONENTS,
    "components",
    "metrics",
    "rationale",
]

SCORING_ITEM_COLUMNS = (*ITEM_COLUMNS, "churn_risk", "deal_blocker", "security")


def format_money(amount: float) -> str:
    """Short money for rationales: ``$950``, ``$600k``, ``$1.4M``, ``$2M``, ``$1.1B``."""
    if not math.isfinite(amount):
        return "$?"
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    for scale, suffix in ((1e9, "B"), (1e6, "M")):
        if value >= scale * 0.9995 or (suffix == "M" and round(value / 1e3) >= 1000):
            text = f"{value / scale:.1f}".removesuffix(".0")
            return f"{sign}${text}{suffix}"
    if value >= 1e3:
        return f"{sign}${round(value / 1e3):.0f}k"
    return f"{sign}${value:.0f}"


def format_p(p: float) -> str:
    """``p < 0.001``, ``p < 0.01``, ``p = 0.03``."""
    if p < 0.001:
        return "p < 0.001"
    if p < 0.01:
        return "p < 0.01"
    return f"p = {p:.2f}"


def segment_items(
    items: pd.DataFrame, accounts: pd.DataFrame, segment: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The items and accounts of one segment (``None``: all of them, untouched).

    Items without an account belong to no segment and are left out of a segment's view.
    """
    if segment is None:
        return items, accounts
    in_segment = accounts["segment"].astype("string").str.lower().eq(segment.lower()).fillna(False)
    seg_accounts = accounts.loc[in_segment]
    ids = set(pd.to_numeric(seg_accounts["account_id"]).astype("int64").tolist())
    account_ids = pd.to_numeric(items["account_id"], errors="coerce")
    keep = account_ids.isin(ids) & account_ids.notna()
    return items.loc[keep], seg_accounts


def _validated_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise StatsInputError(f"unknown score weight(s) {unknown}; the components are {list(COMPONENTS)}")
    out = {name: float(weights.get(name, 0.0)) for name in COMPONENTS}
    if any(w < 0 or not math.isfinite(w) for w in out.values()):
        raise StatsInputError(f"score weights must be finite and >= 0, got {out}")
    if sum(out.values()) <= 0:
        raise StatsInputError("at least one score weight must be positive")
    return out


def reach_component(voices: float, *, reference: float = REACH_REFERENCE_ACCOUNTS) -> float:
    """``log1p(voices) / log1p(reference)`` capped at 1."""
    return float(min(1.0, math.log1p(max(voices, 0.0)) / math.log1p(reference)))


def revenue_component(revenue: float, *, reference: float = REVENUE_REFERENCE) -> float:
    """Revenue at stake on a log scale, saturating at ``reference`` dollars."""
    return float(min(1.0, math.log1p(max(revenue, 0.0) / REVENUE_UNIT) / math.log1p(reference / REVENUE_UNIT)))


def momentum_component(ratio: float, p_value: float, *, alpha: float = 0.01) -> float:
    """Growth factor times significance; 0 unless growth is significant at ``alpha``."""
    if not (math.isfinite(ratio) and math.isfinite(p_value)) or ratio <= 1.0 or p_value >= alpha:
        return 0.0
    growth = min(1.0, math.log2(ratio) / math.log2(MOMENTUM_SATURATION_RATIO))
    significance = min(1.0, -math.log10(max(p_value, 1e-300)) / MOMENTUM_SATURATION_LOG10_P)
    return float(growth * significance)


def severity_component(negative: float, churn: float, blocker: float, security: float) -> float:
    """Noisy-or of the item shares; negative sentiment alone weighs half as much as a flag."""
    keep = (1.0 - 0.5 * negative) * (1.0 - churn) * (1.0 - blocker) * (1.0 - security)
    return float(min(1.0, max(0.0, 1.0 - keep)))


def recency_component(days_since_last: float, *, half_life_days: float) -> float:
    """``0.5 ** (days / half_life)``; 0 when the theme was never mentioned."""
    if not math.isfinite(days_since_last):
        return 0.0
    return float(0.5 ** (max(days_since_last, 0.0) / half_life_days))


def priority_tier(score: float, severity: float) -> str:
    """``vital``, ``important`` or ``nice_to_have`` from the score and the severity (see ``TIER_RULES``)."""
    for tier, minimum, minimum_if_severe in TIER_RULES:
        if score >= minimum or (severity >= SEVERE and score >= minimum_if_severe):
            return tier
    return "nice_to_have"


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def score_opportunities(
    items: pd.DataFrame,
    accounts: pd.DataFrame,
    momentum: pd.DataFrame,
    *,
    now: dt.datetime | pd.Timestamp,
    weights: Mapping[str, float],
    pipeline_weight: float = 0.5,
    segment: str | None = None,
    horizon_weeks: int = 12,
    anonymous_weight: float = 0.25,
    recency_half_life_days: float = 14.0,
    alpha: float = 0.01,
) -> pd.DataFrame:
    """Score, rank, tier and explain every theme.

    Args:
        items: one row per assigned feedback item (contract in ``pipeline.stats``).
        accounts: one row per account (contract in ``pipeline.stats``).
        momentum: ``theme_momentum`` output; a theme absent from it gets momentum 0.
        now: the analysis instant, time-zone aware.
        weights: weight per component (``Settings.score_weights.model_dump()``); missing ones are 0.
        pipeline_weight: weight of prospects' open pipeline beside customers' ARR.
        segment: score only the accounts (and their items) of this segment; ``None`` for all.
        horizon_weeks: reach, revenue and severity look at the items of the last ``horizon_weeks`` weeks.
        anonymous_weight: reach of one item without an account, in accounts.
        recency_half_life_days: days after which the recency component halves.
        alpha: significance level under which growth counts as momentum.

    Returns:
        One row per theme (every theme with an item up to ``now``, or in ``momentum``), sorted by rank,
        columns ``SCORE_COLUMNS``: ``rank`` int (1 = best; ties by ``theme_id``), ``score`` float 0..100,
        ``tier`` str, one float column per component in 0..1, ``components`` dict of them, ``metrics`` dict
        (JSON-ready), ``rationale`` str.
    """
    missing = [c for c in SCORING_ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise StatsInputError(f"items frame lacks column(s) {missing}; see the input contract in pipeline.stats")
    w = _validated_weights(weights)
    if pipeline_weight < 0:
        raise StatsInputError(f"pipeline_weight must be >= 0, got {pipeline_weight}")
    now_utc = as_utc_timestamp(now)
    items, accounts = segment_items(items, accounts, segment)

    frame = items.loc[:, list(SCORING_ITEM_COLUMNS)].copy()
    frame["theme_id"] = frame["theme_id"].astype("int64")
    frame["occurred_at"] = utc_times(frame["occurred_at"])
    frame["account_id"] = pd.to_numeric(frame["account_id"], errors="coerce").astype("Int64")
    frame["sentiment"] = pd.to_numeric(frame["sentiment"], errors="coerce").astype("float64")
    for flag in ("churn_risk", "deal_blocker", "security"):
        frame[flag] = frame[flag].fillna(False).astype(bool)
    frame = frame.loc[frame["occurred_at"] <= now_utc]
    horizon = frame.loc[frame["occurred_at"] > now_utc - pd.Timedelta(weeks=horizon_weeks)]

    book = _account_book(accounts)
    trend = _momentum_by_theme(momentum)
    theme_ids = sorted(set(frame["theme_id"].tolist()) | set(trend))
    last_seen = frame.groupby("theme_id")["occurred_at"].max().reindex(theme_ids)
    days_since = ((now_utc - last_seen) / pd.Timedelta(days=1)).fillna(math.inf).tolist()
    last_seen_at = [None if pd.isna(last) else last.isoformat() for last in last_seen]
    per_theme = _theme_metrics(horizon, book, theme_ids, pipeline_weight=pipeline_weight)

    rows = []
    for theme_id, metrics, days, last_at in zip(theme_ids, per_theme, days_since, last_seen_at, strict=True):
        metrics.update(trend.get(theme_id, _NO_TREND))
        metrics["horizon_weeks"] = horizon_weeks
        metrics["last_seen_at"] = last_at
        metrics["days_since_last"] = days
        components = {
            "reach": reach_component(metrics["accounts"] + anonymous_weight * metrics["anonymous_mentions"]),
            "revenue": revenue_component(metrics["revenue_at_stake"]),
            "momentum": momentum_component(metrics["ratio"], metrics["p_value"], alpha=alpha),
            "severity": severity_component(
                metrics["negative_share"],
                metrics["churn_share"],
                metrics["blocker_share"],
                metrics["security_share"],
            ),
            "recency": recency_component(days, half_life_days=recency_half_life_days),
        }
        score = 100.0 * sum(w[c] * components[c] for c in COMPONENTS) / sum(w.values())
        score = float(min(100.0, max(0.0, score)))
        rows.append(
            {
                "theme_id": theme_id,
                "score": score,
                "tier": priority_tier(score, components["severity"]),
                **components,
                "components": dict(components),
                "metrics": {k: _clean(v) for k, v in metrics.items()},
                "rationale": rationale(metrics, alpha=alpha),
            }
        )
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SCORE_COLUMNS})
    out = pd.DataFrame(rows)
    out = out.sort_values(["score", "theme_id"], ascending=[False, True], kind="mergesort")
    out["rank"] = np.arange(1, len(out) + 1)
    return out.loc[:, SCORE_COLUMNS].reset_index(drop=True)


_NO_TREND: dict[str, Any] = {
    "status": None,
    "recent_rate": math.nan,
    "baseline_rate": math.nan,
    "ratio": math.nan,
    "p_value": math.nan,
    "window_weeks": None,
}


def _momentum_by_theme(momentum: pd.DataFrame) -> dict[int, dict[str, Any]]:
    if momentum.empty:
        return {}
    needed = ("theme_id", "status", "recent_rate", "baseline_rate", "ratio", "p_value", "window_weeks")
    missing = [c for c in needed if c not in momentum.columns]
    if missing:
        raise StatsInputError(f"momentum frame lacks column(s) {missing}; pass theme_momentum's output")
    return {
        int(row["theme_id"]): {
            "status": row["status"],
            "recent_rate": float(row["recent_rate"]),
            "baseline_rate": float(row["baseline_rate"]),
            "ratio": float(row["ratio"]),
            "p_value": float(row["p_value"]),
            "window_weeks": int(row["window_weeks"]),
        }
        for row in momentum.loc[:, list(needed)].to_dict("records")
    }


def _account_book(accounts: pd.DataFrame) -> pd.DataFrame:
    """Accounts indexed by id with normalised lifecycle and segment and non-negative money."""
    book = accounts.loc[accounts["account_id"].notna()].drop_duplicates("account_id").copy()
    book["account_id"] = pd.to_numeric(book["account_id"]).astype("int64")
    book["lifecycle"] = book["lifecycle"].astype("string").str.lower().fillna("unknown")
    segment = book["segment"] if "segment" in book.columns else pd.Series(pd.NA, index=book.index)
    book["segment"] = segment.astype("string").str.lower()
    book["arr"] = pd.to_numeric(book["arr"], errors="coerce").fillna(0.0).clip(lower=0.0)
    book["open_pipeline"] = pd.to_numeric(book["open_pipeline"], errors="coerce").fillna(0.0).clip(lower=0.0)
    return book.set_index("account_id").loc[:, ["lifecycle", "segment", "arr", "open_pipeline"]]


def _theme_metrics(
    horizon: pd.DataFrame, book: pd.DataFrame, theme_ids: list[int], *, pipeline_weight: float
) -> list[dict[str, Any]]:
    """Counts and money of each theme's items over the horizon, each account once; one dict per ``theme_ids``.

    Whole-frame work: the items are sorted by theme once (keeping their order within a theme) and every count
    is a difference of cumulative sums at the themes' boundaries. Money and sentiment are summed per theme
    over a contiguous slice in the same order as a per-theme ``Series.sum`` would, so the floats are the same
    to the last bit.
    """
    themes = np.asarray(theme_ids, dtype="int64")
    theme = horizon["theme_id"].to_numpy("int64")
    order = np.argsort(theme, kind="stable")
    theme = theme[order]
    lo, hi = np.searchsorted(theme, themes, "left"), np.searchsorted(theme, themes, "right")
    mentions = hi - lo

    def per_theme(mask: np.ndarray) -> list[int]:
        """How many rows of each theme (``theme`` sorted, ``lo``/``hi`` its bounds) have ``mask`` set."""
        running = np.concatenate([[0], np.cumsum(mask, dtype="int64")])
        return (running[hi] - running[lo]).tolist()

    linked_mask = horizon["account_id"].notna().to_numpy(bool)[order]
    flags = {flag: horizon[flag].to_numpy(bool)[order] for flag in ("churn_risk", "deal_blocker", "security")}
    linked = per_theme(linked_mask)
    blockers, churn_flags, security_flags = (per_theme(flags[f]) for f in ("deal_blocker", "churn_risk", "security"))

    sentiment = horizon["sentiment"].to_numpy("float64")[order]
    rated = ~np.isnan(sentiment)
    scores, score_theme = sentiment[rated], theme[rated]
    s_lo, s_hi = np.searchsorted(score_theme, themes, "left"), np.searchsorted(score_theme, themes, "right")
    running = np.concatenate([[0], np.cumsum(scores < NEGATIVE_SENTIMENT, dtype="int64")])
    negatives = (running[s_hi] - running[s_lo]).tolist()

    # Distinct (theme, account) voices, sorted by theme then account id like ``sorted(set(ids))`` per theme.
    voices = pd.DataFrame(
        {
            "theme_id": theme[linked_mask],
            "account_id": horizon["account_id"].to_numpy("int64", na_value=0)[order][linked_mask],
            "deal_blocker": flags["deal_blocker"][linked_mask],
            "churn_risk": flags["churn_risk"][linked_mask],
        }
    )
    pairs = voices[["theme_id", "account_id"]].drop_duplicates().sort_values(["theme_id", "account_id"])
    pair_theme = pairs["theme_id"].to_numpy()
    where = book.index.get_indexer(pairs["account_id"])
    found = where >= 0
    at = np.where(found, where, 0)
    is_customer = book["lifecycle"].eq("customer").to_numpy(bool)[at] & found
    is_prospect = book["lifecycle"].eq("prospect").to_numpy(bool)[at] & found
    is_enterprise = is_prospect & book["segment"].eq("enterprise").fillna(False).to_numpy(bool)[at]
    arr_of, pipeline_of = book["arr"].to_numpy("float64")[at], book["open_pipeline"].to_numpy("float64")[at]

    def counted(keys: np.ndarray) -> list[int]:
        return (np.searchsorted(keys, themes, "right") - np.searchsorted(keys, themes, "left")).tolist()

    def summed(keys: np.ndarray, values: np.ndarray) -> list[float]:
        starts, ends = np.searchsorted(keys, themes, "left"), np.searchsorted(keys, themes, "right")
        return [float(values[a:b].sum()) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]

    accounts = counted(pair_theme)
    customers = counted(pair_theme[is_customer])
    prospects = counted(pair_theme[is_prospect])
    enterprise = counted(pair_theme[is_enterprise])
    arr = summed(pair_theme[is_customer], arr_of[is_customer])
    pipeline = summed(pair_theme[is_prospect], pipeline_of[is_prospect])
    enterprise_pipeline = summed(pair_theme[is_enterprise], pipeline_of[is_enterprise])
    blocker_accounts = counted(np.sort(voices.loc[voices["deal_blocker"], ["theme_id", "account_id"]]
                                       .drop_duplicates()["theme_id"].to_numpy()))
    churn_accounts = counted(np.sort(voices.loc[voices["churn_risk"], ["theme_id", "account_id"]]
                                     .drop_duplicates()["theme_id"].to_numpy()))
    sentiment_sums = [
        float(scores[a:b].sum()) if b > a else math.nan for a, b in zip(s_lo.tolist(), s_hi.tolist(), strict=True)
    ]

    out = []
    for i, n in enumerate(mentions.tolist()):
        rated_n = int(s_hi[i] - s_lo[i])
        out.append(
            {
                "mentions": n,
                "accounts": accounts[i],
                "anonymous_mentions": n - linked[i],
                "customers": customers[i],
                "prospects": prospects[i],
                "enterprise_prospects": enterprise[i],
                "arr": arr[i],
                "open_pipeline": pipeline[i],
                "enterprise_open_pipeline": enterprise_pipeline[i],
                "revenue_at_stake": arr[i] + pipeline_weight * pipeline[i],
                "blockers": blockers[i],
                "blocker_accounts": blocker_accounts[i],
                "churn_flags": churn_flags[i],
                "churn_accounts": churn_accounts[i],
                "security_flags": security_flags[i],
                "negative_share": negatives[i] / rated_n if rated_n else 0.0,
                "mean_sentiment": sentiment_sums[i] / rated_n if rated_n else math.nan,
                "churn_share": churn_flags[i] / n if n else 0.0,
                "blocker_share": blockers[i] / n if n else 0.0,
                "security_share": security_flags[i] / n if n else 0.0,
            }
        )
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_MULTIPLES = {2: "doubled", 3: "tripled", 4: "quadrupled"}


def rationale(metrics: Mapping[str, Any], *, alpha: float = 0.01) -> str:
    """One sentence from the numbers: who raises it, what it is worth, how hard it bites, where it is heading.

    e.g. ``"12 accounts ($1.4M ARR) and 3 enterprise prospects with $600k open pipeline cite it as a blocker;
    mentions tripled in 3 weeks (p < 0.01)"``.
    """
    prospects = int(metrics.get("prospects", 0))
    others = int(metrics.get("accounts", 0)) - prospects
    parts: list[str] = []
    if others > 0:
        arr = float(metrics.get("arr", 0.0))
        money = f" ({format_money(arr)} ARR)" if arr > 0 else ""
        parts.append(f"{_plural(others, 'account')}{money}")
    if prospects > 0:
        enterprise = int(metrics.get("enterprise_prospects", 0))
        if enterprise == prospects:
            who = f"{enterprise} enterprise prospect{'s' if enterprise != 1 else ''}"
        elif enterprise > 0:
            who = f"{_plural(prospects, 'prospect')} ({enterprise} enterprise)"
        else:
            who = _plural(prospects, "prospect")
        pipeline = float(metrics.get("open_pipeline", 0.0))
        if pipeline > 0:
            who += f" with {format_money(pipeline)} open pipeline"
        parts.append(who)
    anonymous = int(metrics.get("anonymous_mentions", 0))
    mentions = int(metrics.get("mentions", 0))
    if mentions == 0:
        horizon = metrics.get("horizon_weeks")
        clauses = [f"no mentions in the last {horizon} weeks" if horizon else "no mentions"]
        clauses.append(_trend_phrase(metrics, alpha=alpha))
        return "; ".join(c for c in clauses if c)
    if not parts:
        parts.append(_plural(anonymous, "unattributed mention"))
    voices = int(metrics.get("accounts", 0))
    plural = voices > 1 or (voices == 0 and anonymous > 1)
    blockers = int(metrics.get("blocker_accounts", 0))
    churn = int(metrics.get("churn_accounts", 0))
    if voices and blockers * 2 >= voices:
        verb = "cite it as a blocker" if plural else "cites it as a blocker"
    else:
        verb = "raise it" if plural else "raises it"
    extras = []
    if blockers and blockers * 2 < voices:
        extras.append(f"{blockers} as a deal blocker")
    if churn:
        extras.append(f"{churn} with churn risk")
    security = int(metrics.get("security_flags", 0))
    if security:
        extras.append(_plural(security, "security flag"))
    if voices and anonymous:
        extras.append(f"plus {_plural(anonymous, 'unattributed mention')}")
    clauses = [f"{' and '.join(parts)} {verb}" + (f" ({', '.join(extras)})" if extras else "")]
    clauses.append(_trend_phrase(metrics, alpha=alpha))
    return "; ".join(c for c in clauses if c)


def _trend_phrase(metrics: Mapping[str, Any], *, alpha: float) -> str:
    status = metrics.get("status")
    weeks = metrics.get("window_weeks")
    ratio = metrics.get("ratio")
    p_value = metrics.get("p_value")
    recent = metrics.get("recent_rate")
    if status is None or weeks is None or ratio is None or p_value is None or recent is None:
        return ""
    if not all(isinstance(v, float) and math.isfinite(v) for v in (ratio, p_value, recent)):
        return ""
    span = f"{weeks} weeks"
    if status == "new":
        return f"new in the last {span} ({recent:.1f} mentions/week)"
    if status == "dormant":
        return f"no mentions in the last {span}"
    if p_value < alpha and ratio > 1.0:
        multiple = round(ratio)
        named = _MULTIPLES.get(multiple) if abs(ratio - multiple) < 0.25 else None
        return f"mentions {named or f'rose {ratio:.1f}x'} in {span} ({format_p(p_value)})"
    if status == "fading":
        return f"mentions fell {100 * (1 - ratio):.0f}% in {span}"
    return f"steady at {recent:.1f} mentions/week"
