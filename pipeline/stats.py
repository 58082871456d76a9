"""Per-theme weekly statistics and momentum: how often a theme is raised, by whom, and whether that is changing.

Pure steps: frames in, frames out; nothing here opens a database session.

Input contract (built by the loading code from ``feedback``, ``theme_assignment``, ``source`` and ``account``):

``items``, one row per assigned feedback item:

===============  ==============================  ==========================================================
column           dtype                           meaning
===============  ==============================  ==========================================================
feedback_id      int                             ``feedback.id``
theme_id         int                             ``theme_assignment.theme_id``
account_id       Int64 (nullable)                ``feedback.account_id``; NA for anonymous items
occurred_at      datetime64[*, UTC]              when the customer said it (naive values are read as UTC)
source           str                             ``source.name``
kind             str                             ticket, chat, call_note, field_note, review, survey
sentiment        float in [-1, 1], NaN allowed   ``feedback.sentiment``
intent           str or None                     ``feedback.intent``
churn_risk       bool                            ``feedback.flags["churn_risk"]``
deal_blocker     bool                            ``feedback.flags["deal_blocker"]``
security         bool                            ``feedback.flags["security"]``
submitted_by     str or None                     ``feedback.submitted_by``
===============  ==============================  ==========================================================

``accounts``, one row per account: ``account_id, name, segment (enterprise / mid-market / smb / None),
arr: float, lifecycle (customer / prospect / churned / unknown), open_pipeline: float``.

Weeks are ISO weeks (Monday to Sunday) of the configured time zone (``Settings.timezone``): an item written at
23:30 on a Sunday in Berlin belongs to that Sunday's week even though it is Monday in UTC.

Momentum compares the recent rate of a theme with its own baseline. The *window* is the last
``window_weeks`` complete weeks plus the current week so far, so the current partial week is prorated: its
exposure is the elapsed fraction of the week, and the recent rate is ``recent_count / (window_weeks +
fraction)``. The *baseline* is up to ``baseline_weeks`` complete weeks just before the window, counted only from
the theme's first week. The test is one-sided and Poisson, with the uncertainty of the baseline rate carried
through: a Gamma posterior on the baseline rate (prior: ``prior_rate`` items/week worth ``prior_weeks`` weeks)
gives a negative-binomial predictive for the window count, and ``p_value = P(X >= recent_count)``,
``p_decline = P(X <= recent_count)``. The prior gives brand-new themes a defined, small baseline, and carrying
the baseline's uncertainty is what keeps 2-becoming-4-mentions-a-week from reading as a trend.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

ITEM_COLUMNS = ("feedback_id", "theme_id", "account_id", "occurred_at", "source", "sentiment", "intent")
ACCOUNT_COLUMNS = ("account_id", "arr", "lifecycle", "open_pipeline")

WEEKLY_COLUMNS = [
    "theme_id",
    "week",
    "week_start",
    "items",
    "accounts",
    "arr",
    "open_pipeline",
    "sentiment",
    "intents",
    "sources",
]

MOMENTUM_COLUMNS = [
    "theme_id",
    "status",
    "first_seen",
    "last_seen",
    "window_weeks",
    "recent_count",
    "recent_exposure",
    "recent_rate",
    "baseline_count",
    "baseline_exposure",
    "baseline_rate",
    "ratio",
    "p_value",
    "p_decline",
    "emerging_strength",
]

TREND_STATUSES = ("new", "emerging", "growing", "stable", "fading", "dormant")

_WEEK = pd.Timedelta(days=7)


class StatsInputError(ValueError):
    """A frame given to a stats step lacks a column or holds values the step cannot read."""


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StatsInputError(f"{name} frame lacks column(s) {missing}; see the input contract in pipeline.stats")


def as_utc_timestamp(now: dt.datetime | pd.Timestamp) -> pd.Timestamp:
    """``now`` as a UTC ``Timestamp``; a naive value is refused because weeks depend on the zone."""
    ts = pd.Timestamp(now)
    if ts.tzinfo is None:
        raise StatsInputError("`now` must be time-zone aware (e.g. datetime.now(datetime.UTC))")
    return ts.tz_convert("UTC")


def utc_times(values: pd.Series) -> pd.Series:
    """A column of instants as tz-aware UTC; naive values are read as UTC (how the database stores them)."""
    return pd.to_datetime(values, utc=True)


def week_starts(times: pd.Series, tz: str) -> pd.Series:
    """Monday (naive midnight, ``datetime64``) of the ISO week of each UTC instant, in time zone ``tz``."""
    local = utc_times(times).dt.tz_convert(tz).dt.tz_localize(None)
    day = local.dt.floor("D")
    return day - pd.to_timedelta(day.dt.weekday, unit="D")


def current_week_start(now: dt.datetime | pd.Timestamp, tz: str) -> pd.Timestamp:
    """Monday (naive midnight) of the ISO week that holds ``now`` in time zone ``tz``."""
    local = as_utc_timestamp(now).tz_convert(tz).tz_localize(None).floor("D")
    return local - pd.Timedelta(days=local.weekday())


def iso_week_label(monday: pd.Timestamp | dt.date) -> str:
    """``'2026-W47'`` for the week starting on ``monday``."""
    year, week, _ = pd.Timestamp(monday).isocalendar()
    return f"{year}-W{week:02d}"


def _counts(frame: pd.DataFrame, column: str, rows: int) -> list[dict[str, int]]:
    """Per row of the weekly table (``frame["_row"]``): ``{value: count}`` of the non-null values of ``column``.

    Keys are in sorted order of the values; every row gets its own dict (empty when nothing was counted).
    """
    out: list[dict[str, int]] = [{} for _ in range(rows)]
    present = frame.loc[frame[column].notna(), ["_row", column]]
    if present.empty:
        return out
    counted = present.groupby(["_row", column], sort=True).size()
    row_of = counted.index.get_level_values(0).tolist()
    values = counted.index.get_level_values(1).tolist()
    for row, value, count in zip(row_of, values, counted.tolist(), strict=True):
        out[row][str(value)] = int(count)
    return out


def weekly_theme_stats(
    items: pd.DataFrame,
    accounts: pd.DataFrame,
    *,
    now: dt.datetime | pd.Timestamp,
    tz: str = "UTC",
    weeks: int | None = None,
) -> pd.DataFrame:
    """Statistics per theme per ISO week, zero-filled from each theme's first week to the current week.

    An account counts once per theme per week across all sources: a ticket, a chat and a call note from one
    customer are one voice. ARR is summed over the distinct *customer* accounts, open pipeline over the
    distinct *prospect* accounts; other lifecycles count as accounts but add no money. Items after the
    current week (clock skew) are left out, since the frame describes the weeks up to ``now``.

    Args:
        items: one row per assigned feedback item (see the module docstring).
        accounts: one row per account (see the module docstring).
        now: the analysis instant, time-zone aware.
        tz: IANA time zone whose ISO weeks are used (``Settings.timezone``).
        weeks: keep only the last ``weeks`` weeks, ending with the current one; ``None`` keeps all.

    Returns:
        One row per (theme, week) sorted by ``theme_id, week_start``, columns ``WEEKLY_COLUMNS``:
        ``theme_id`` int, ``week`` str (``'2026-W47'``), ``week_start`` ``datetime.date`` (Monday),
        ``items``/``accounts`` int, ``arr``/``open_pipeline`` float, ``sentiment`` float (mean, NaN when no
        item has one), ``intents``/``sources`` dict ``{name: count}`` (empty dict in a zero week).
    """
    _require(items, ITEM_COLUMNS, "items")
    _require(accounts, ACCOUNT_COLUMNS, "accounts")
    if weeks is not None and weeks < 1:
        raise StatsInputError(f"weeks must be a positive number of weeks or None, got {weeks}")
    this_week = current_week_start(now, tz)

    frame = items.loc[:, list(ITEM_COLUMNS)].copy()
    frame["theme_id"] = frame["theme_id"].astype("int64")
    frame["week_start"] = week_starts(frame["occurred_at"], tz)
    frame = frame.loc[frame["week_start"] <= this_week]
    if frame.empty:
        return _empty_weekly()
    frame["sentiment"] = pd.to_numeric(frame["sentiment"], errors="coerce").astype("float64")

    keys = ["theme_id", "week_start"]
    grouped = frame.groupby(keys, sort=True)
    table = pd.DataFrame({"items": grouped.size(), "sentiment": grouped["sentiment"].mean()})

    # One voice per account per theme per week, whatever the number of sources and items.
    voices = frame.loc[frame["account_id"].notna(), [*keys, "account_id"]].drop_duplicates()
    voices["account_id"] = voices["account_id"].astype("int64")
    money = _account_money(accounts)
    voices = voices.merge(money, on="account_id", how="left")
    voices[["customer_arr", "prospect_pipeline"]] = voices[["customer_arr", "prospect_pipeline"]].fillna(0.0)
    per_voice = voices.groupby(keys, sort=True).agg(
        accounts=("account_id", "size"),
        arr=("customer_arr", "sum"),
        open_pipeline=("prospect_pipeline", "sum"),
    )
    table = table.join(per_voice, how="left")

    # Zero-fill each theme from its first week to the current week, so momentum sees the quiet weeks.
    firsts = table.index.get_level_values("week_start").to_series().groupby(
        table.index.get_level_values("theme_id"), sort=True
    ).min()
    first_weeks = firsts.to_numpy()
    week_step = np.timedelta64(7, "D").astype(f"m8[{np.datetime_data(first_weeks.dtype)[0]}]")
    spans = ((this_week.to_datetime64().astype(first_weeks.dtype) - first_weeks) // week_step).astype("int64") + 1
    offsets = np.concatenate([[0], np.cumsum(spans)])  # the first row of each theme in the full table
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], spans)
    full_index = pd.MultiIndex.from_arrays(
        [np.repeat(firsts.index.to_numpy(), spans), np.repeat(first_weeks, spans) + within * week_step],
        names=keys,
    )
    table = table.reindex(full_index)
    table[["items", "accounts"]] = table[["items", "accounts"]].fillna(0).astype("int64")
    table[["arr", "open_pipeline"]] = table[["arr", "open_pipeline"]].fillna(0.0).astype("float64")

    # Row of each item in the full table: its theme's first row plus the weeks since the theme's first week.
    theme_pos = firsts.index.get_indexer(frame["theme_id"])
    item_weeks = frame["week_start"].to_numpy().astype(first_weeks.dtype)
    frame["_row"] = offsets[theme_pos] + (item_weeks - first_weeks[theme_pos]) // week_step
    table["intents"] = _counts(frame, "intent", len(table))
    table["sources"] = _counts(frame, "source", len(table))

    out = table.reset_index()
    if weeks is not None:
        out = out.loc[out["week_start"] > this_week - weeks * _WEEK]
    codes, mondays = pd.factorize(out["week_start"])
    labels = [iso_week_label(monday) for monday in mondays]
    dates = [monday.date() for monday in mondays]
    out["week"] = [labels[c] for c in codes]
    out["week_start"] = [dates[c] for c in codes]
    return out.loc[:, WEEKLY_COLUMNS].reset_index(drop=True)


def _account_money(accounts: pd.DataFrame) -> pd.DataFrame:
    """Per account: ARR if it is a customer, open pipeline if it is a prospect (0 otherwise)."""
    money = accounts.loc[:, ["account_id", "arr", "lifecycle", "open_pipeline"]].copy()
    money = money.loc[money["account_id"].notna()].drop_duplicates("account_id")
    money["account_id"] = money["account_id"].astype("int64")
    lifecycle = money["lifecycle"].astype("string").str.lower()
    arr = pd.to_numeric(money["arr"], errors="coerce").fillna(0.0).clip(lower=0.0)
    pipeline = pd.to_numeric(money["open_pipeline"], errors="coerce").fillna(0.0).clip(lower=0.0)
    money["customer_arr"] = arr.where(lifecycle.eq("customer").fillna(False), 0.0)
    money["prospect_pipeline"] = pipeline.where(lifecycle.eq("prospect").fillna(False), 0.0)
    return money.loc[:, ["account_id", "customer_arr", "prospect_pipeline"]]


def _empty_weekly() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "theme_id": pd.Series(dtype="int64"),
            "week": pd.Series(dtype="object"),
            "week_start": pd.Series(dtype="object"),
            "items": pd.Series(dtype="int64"),
            "accounts": pd.Series(dtype="int64"),
            "arr": pd.Series(dtype="float64"),
            "open_pipeline": pd.Series(dtype="float64"),
            "sentiment": pd.Series(dtype="float64"),
            "intents": pd.Series(dtype="object"),
            "sources": pd.Series(dtype="object"),
        }
    )


def weekly_item_counts(items: pd.DataFrame, *, now: dt.datetime | pd.Timestamp, tz: str = "UTC") -> pd.DataFrame:
    """Items per theme per ISO week, only the weeks with an item: all that ``theme_momentum`` reads.

    The ``items`` column of ``weekly_theme_stats`` without the accounts, money, sentiment and breakdowns, so a
    per-segment trend costs one group-by. ``theme_momentum`` reads missing weeks as zero weeks, so it gives the
    same momentum from these rows as from ``weekly_theme_stats`` of the same items.

    Args:
        items: at least ``theme_id`` and ``occurred_at`` (see the module docstring).
        now: the analysis instant, time-zone aware; items after its week are left out.
        tz: IANA time zone whose ISO weeks are used (``Settings.timezone``).

    Returns:
        One row per (theme, week with an item) sorted by ``theme_id, week_start``: ``theme_id`` int,
        ``week_start`` ``datetime64`` (Monday, naive), ``items`` int.
    """
    _require(items, ("theme_id", "occurred_at"), "items")
    this_week = current_week_start(now, tz)
    frame = pd.DataFrame(
        {"theme_id": items["theme_id"].astype("int64"), "week_start": week_starts(items["occurred_at"], tz)}
    )
    frame = frame.loc[frame["week_start"] <= this_week]
    return frame.groupby(["theme_id", "week_start"], sort=True).size().rename("items").reset_index()


def growth_p_values(
    recent_count: float,
    recent_exposure: float,
    baseline_count: float,
    baseline_exposure: float,
    *,
    prior_rate: float = 0.5,
    prior_weeks: float = 1.0,
) -> tuple[float, float]:
    """One-sided p-values of the window count against the theme's baseline.

    The baseline rate has a Gamma(``baseline_count + prior_rate * prior_weeks``, ``baseline_exposure +
    prior_weeks``) posterior; the window count over ``recent_exposure`` weeks then follows a negative binomial.

    Returns:
        ``(p_growth, p_decline)`` = ``(P(X >= recent_count), P(X <= recent_count))`` under "no change".
    """
    if recent_exposure <= 0:
        return 1.0, 1.0
    shape = baseline_count + prior_rate * prior_weeks
    rate = baseline_exposure + prior_weeks
    p = rate / (rate + recent_exposure)
    k = int(round(recent_count))
    p_growth = float(sps.nbinom.sf(k - 1, shape, p)) if k > 0 else 1.0
    p_decline = float(sps.nbinom.cdf(k, shape, p))
    return min(p_growth, 1.0), min(p_decline, 1.0)


def theme_momentum(
    weekly: pd.DataFrame,
    *,
    now: dt.datetime | pd.Timestamp,
    tz: str = "UTC",
    window_weeks: int = 3,
    baseline_weeks: int = 12,
    alpha: float = 0.01,
    prior_rate: float = 0.5,
    prior_weeks: float = 1.0,
    emerging_baseline_rate: float = 1.0,
    emerging_ratio: float = 3.0,
) -> pd.DataFrame:
    """Recent rate against the theme's own baseline, a one-sided significance test, and a trend status.

    Status, first match wins:

    - ``new``: the theme's first item falls in the window;
    - ``dormant``: no item in the window (and some before);
    - ``emerging``: significant growth (``p_value < alpha``) from a small baseline
      (``baseline_rate < emerging_baseline_rate`` items/week) or by a large factor (``ratio >= emerging_ratio``);
    - ``growing``: significant growth from an established baseline;
    - ``fading``: significant decline (``p_decline < alpha``);
    - ``stable``: anything else. Size alone never makes a theme emerging.

    Args:
        weekly: ``weekly_theme_stats`` output (at least ``theme_id, week_start, items``); missing weeks are
            read as zero weeks, so sparse rows from the database are fine. Give it at least
            ``window_weeks + baseline_weeks + 1`` weeks of history.
        now: the analysis instant, time-zone aware; its week is the current (partial) week.
        tz: the time zone of the weeks (the one given to ``weekly_theme_stats``).
        window_weeks: complete weeks in the recent window (``Settings.momentum_window_weeks``, 2 to 4).
        baseline_weeks: complete weeks before the window used as the baseline at most.
        alpha: significance level of both one-sided tests.
        prior_rate: prior baseline rate, items/week, so a brand-new theme has a defined baseline.
        prior_weeks: weight of that prior, in weeks of evidence.
        emerging_baseline_rate: baseline rate below which significant growth is ``emerging``.
        emerging_ratio: growth factor from which significant growth is ``emerging``.

    Returns:
        One row per theme, sorted by ``emerging_strength`` descending then ``theme_id``, columns
        ``MOMENTUM_COLUMNS``: ``status`` str; ``first_seen``/``last_seen`` ``datetime.date`` (Monday of the first
        and last week with an item); ``window_weeks`` int; ``recent_count`` int and ``recent_exposure`` float
        (weeks, current week prorated); ``recent_rate``, ``baseline_rate`` (items/week, the baseline smoothed by
        the prior); ``baseline_count`` int; ``baseline_exposure`` int (weeks); ``ratio`` = recent / baseline
        rate; ``p_value`` (growth), ``p_decline``; ``emerging_strength`` = ``-log10(p) * log2(ratio)``, with the
        growth p when the ratio is above 1 and the decline p below (negative then).
    """
    _require(weekly, ("theme_id", "week_start", "items"), "weekly")
    if window_weeks < 1 or baseline_weeks < 1:
        raise StatsInputError("window_weeks and baseline_weeks must be at least 1")
    now_utc = as_utc_timestamp(now)
    this_week = current_week_start(now_utc, tz)
    week_begin = this_week.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    fraction = float(np.clip((now_utc - week_begin) / _WEEK, 0.0, 1.0))
    window_start = this_week - window_weeks * _WEEK
    baseline_start = window_start - baseline_weeks * _WEEK

    frame = weekly.loc[:, ["theme_id", "week_start", "items"]].copy()
    frame["week_start"] = pd.to_datetime(frame["week_start"])
    frame["items"] = pd.to_numeric(frame["items"]).fillna(0).astype("int64")
    frame = frame.loc[frame["week_start"] <= this_week]

    rows = _momentum_rows(
        frame,
        window_start=window_start,
        baseline_start=baseline_start,
        recent_exposure=window_weeks + fraction,
        window_weeks=window_weeks,
        alpha=alpha,
        prior_rate=prior_rate,
        prior_weeks=prior_weeks,
        emerging_baseline_rate=emerging_baseline_rate,
        emerging_ratio=emerging_ratio,
    )
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in MOMENTUM_COLUMNS})
    out = pd.DataFrame(rows, columns=MOMENTUM_COLUMNS)
    out = out.sort_values(["emerging_strength", "theme_id"], ascending=[False, True], kind="mergesort")
    return out.reset_index(drop=True)


def _momentum_rows(
    frame: pd.DataFrame,
    *,
    window_start: pd.Timestamp,
    baseline_start: pd.Timestamp,
    recent_exposure: float,
    window_weeks: int,
    alpha: float,
    prior_rate: float,
    prior_weeks: float,
    emerging_baseline_rate: float,
    emerging_ratio: float,
) -> list[dict[str, Any]]:
    """One momentum row per theme of ``frame`` (``theme_id, week_start, items``, weeks up to the current one).

    The counts come from whole-frame group-bys and the p-values from one vectorised call per tail; only the
    cheap per-theme arithmetic and the status run in a loop over plain Python numbers.
    """
    week = frame["week_start"]
    count = frame["items"]
    frame = frame.assign(
        _active=week.where(count > 0),  # NaT in weeks without an item
        _recent=count.where(week >= window_start, 0),
    )
    grouped = frame.groupby("theme_id", sort=True)
    per_theme = grouped.agg(
        first_week=("week_start", "min"),
        first_active=("_active", "min"),
        last_active=("_active", "max"),
        recent_count=("_recent", "sum"),
    )
    if per_theme.empty:
        return []
    has_active = per_theme["first_active"].notna()
    first_seen = per_theme["first_active"].where(has_active, per_theme["first_week"])
    # The theme's own history only: weeks before its first item are not zero weeks of this theme.
    base_from = first_seen.where(first_seen > baseline_start, baseline_start)
    baseline_exposure = np.maximum(0, np.trunc(((window_start - base_from) / _WEEK).to_numpy(float))).astype("int64")
    row_base_from = base_from.to_numpy()[grouped.ngroup().to_numpy()]
    in_baseline = (week.to_numpy() >= row_base_from) & (week < window_start).to_numpy()
    baseline_count = frame["items"].where(in_baseline, 0).groupby(frame["theme_id"], sort=True).sum()

    recent_count = per_theme["recent_count"].to_numpy("int64")
    base_count = baseline_count.to_numpy("int64")
    p_value, p_decline = _growth_p_values_array(
        recent_count, recent_exposure, base_count, baseline_exposure, prior_rate=prior_rate, prior_weeks=prior_weeks
    )
    is_new = (has_active & (first_seen >= window_start)).tolist()
    first_dates = [monday.date() for monday in first_seen]
    last_dates = [monday.date() if not pd.isna(monday) else None for monday in per_theme["last_active"]]

    rows: list[dict[str, Any]] = []
    for i, (theme_id, recent, base, exposure, p_growth, p_down, active) in enumerate(
        zip(
            per_theme.index.tolist(),
            recent_count.tolist(),
            base_count.tolist(),
            baseline_exposure.tolist(),
            p_value.tolist(),
            p_decline.tolist(),
            has_active.tolist(),
            strict=True,
        )
    ):
        baseline_rate = (base + prior_rate * prior_weeks) / (exposure + prior_weeks)
        recent_rate = recent / recent_exposure
        ratio = recent_rate / baseline_rate
        # Smoothed log-ratio so a silent window gives a finite (negative) strength.
        log_ratio = math.log2(((recent + 0.5) / recent_exposure) / baseline_rate)
        p_used = p_growth if log_ratio > 0 else p_down
        strength = -math.log10(max(p_used, 1e-300)) * log_ratio

        if is_new[i]:
            status = "new"
        elif recent == 0 and active:
            status = "dormant"
        elif p_growth < alpha and ratio > 1.0:
            emerging = baseline_rate < emerging_baseline_rate or ratio >= emerging_ratio
            status = "emerging" if emerging else "growing"
        elif p_down < alpha and ratio < 1.0:
            status = "fading"
        else:
            status = "stable"

        rows.append(
            {
                "theme_id": int(theme_id),
                "status": status,
                "first_seen": first_dates[i],
                "last_seen": last_dates[i],
                "window_weeks": window_weeks,
                "recent_count": recent,
                "recent_exposure": recent_exposure,
                "recent_rate": recent_rate,
                "baseline_count": base,
                "baseline_exposure": exposure,
                "baseline_rate": baseline_rate,
                "ratio": ratio,
                "p_value": p_growth,
                "p_decline": p_down,
                "emerging_strength": strength,
            }
        )
    return rows


def _growth_p_values_array(
    recent_count: np.ndarray,
    recent_exposure: float,
    baseline_count: np.ndarray,
    baseline_exposure: np.ndarray,
    *,
    prior_rate: float,
    prior_weeks: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``growth_p_values`` for arrays of themes (same numbers, element by element)."""
    if recent_exposure <= 0:
        ones = np.ones(len(recent_count))
        return ones, ones.copy()
    shape = baseline_count + prior_rate * prior_weeks
    rate = baseline_exposure + prior_weeks
    p = rate / (rate + recent_exposure)
    k = np.rint(recent_count).astype("int64")
    p_growth = np.ones(len(k))
    grows = k > 0
    if grows.any():
        p_growth[grows] = sps.nbinom.sf(k[grows] - 1, shape[grows], p[grows])
    p_decline = np.asarray(sps.nbinom.cdf(k, shape, p), dtype=float)
    return np.minimum(p_growth, 1.0), np.minimum(p_decline, 1.0)
