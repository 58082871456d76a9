"""Weekly theme statistics and momentum (pipeline.stats)."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest

from pipeline.stats import (
    MOMENTUM_COLUMNS,
    WEEKLY_COLUMNS,
    StatsInputError,
    growth_p_values,
    iso_week_label,
    theme_momentum,
    weekly_item_counts,
    weekly_theme_stats,
)

# A Monday, early morning: the current week has barely begun, so the window is ~3 complete weeks.
NOW = pd.Timestamp("2026-03-16 06:00", tz="UTC")
THIS_MONDAY = dt.date(2026, 3, 16)


def make_items(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Items frame in the input contract; each row needs theme_id and occurred_at, the rest has defaults."""
    defaults: dict[str, Any] = {
        "account_id": None,
        "source": "zendesk",
        "kind": "ticket",
        "sentiment": 0.0,
        "intent": "feature_request",
        "churn_risk": False,
        "deal_blocker": False,
        "security": False,
        "submitted_by": None,
    }
    records = [{"feedback_id": i + 1, **defaults, **row} for i, row in enumerate(rows)]
    frame = pd.DataFrame.from_records(records)
    frame["account_id"] = frame["account_id"].astype("Int64")
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def make_accounts(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    defaults: dict[str, Any] = {"segment": "smb", "arr": 0.0, "lifecycle": "customer", "open_pipeline": 0.0}
    return pd.DataFrame.from_records([{"name": f"Account {row['account_id']}", **defaults, **row} for row in rows])


NO_ACCOUNTS = make_accounts([{"account_id": 999}])


def weekly_counts(counts: dict[int, list[int]], *, current: dt.date = THIS_MONDAY) -> pd.DataFrame:
    """A weekly frame from per-theme item counts, oldest first, the last entry being the current week."""
    rows = []
    for theme_id, series in counts.items():
        for back, items in enumerate(reversed(series)):
            rows.append({"theme_id": theme_id, "week_start": current - dt.timedelta(weeks=back), "items": items})
    return pd.DataFrame(rows)


def momentum_of(counts: dict[int, list[int]], **kwargs: Any) -> pd.DataFrame:
    return theme_momentum(weekly_counts(counts), now=NOW, **kwargs).set_index("theme_id")


# --- weekly statistics ----------------------------------------------------------------------------------


def test_an_account_counts_once_per_week_across_sources() -> None:
    tuesday = pd.Timestamp("2026-03-10 10:00", tz="UTC")
    items = make_items(
        [
            {"theme_id": 1, "occurred_at": tuesday, "account_id": 7, "source": "zendesk", "kind": "ticket"},
            {"theme_id": 1, "occurred_at": tuesday, "account_id": 7, "source": "intercom", "kind": "chat"},
            {"theme_id": 1, "occurred_at": tuesday, "account_id": 7, "source": "gong", "kind": "call_note"},
            {"theme_id": 1, "occurred_at": tuesday, "account_id": 8, "source": "zendesk"},
            {"theme_id": 1, "occurred_at": tuesday, "account_id": None, "source": "reviews"},
        ]
    )
    accounts = make_accounts([{"account_id": 7, "arr": 1000.0}, {"account_id": 8, "arr": 10.0}])

    weekly = weekly_theme_stats(items, accounts, now=NOW)
    row = weekly.loc[weekly["week"] == "2026-W11"].iloc[0]

    assert row["items"] == 5
    assert row["accounts"] == 2  # 7 once despite three sources; the anonymous review adds no account
    assert row["arr"] == pytest.approx(1010.0)  # account 7's ARR once, not three times
    assert row["sources"] == {"gong": 1, "intercom": 1, "reviews": 1, "zendesk": 2}
    assert list(weekly.columns) == WEEKLY_COLUMNS


def test_arr_comes_from_customers_and_pipeline_from_prospects() -> None:
    day = pd.Timestamp("2026-03-03 12:00", tz="UTC")
    items = make_items([{"theme_id": 3, "occurred_at": day, "account_id": a} for a in (1, 1, 2, 3, 4, 5)])
    accounts = make_accounts(
        [
            {"account_id": 1, "lifecycle": "customer", "arr": 100_000.0, "open_pipeline": 7_000.0},
            {"account_id": 2, "lifecycle": "prospect", "arr": 55_000.0, "open_pipeline": 40_000.0},
            {"account_id": 3, "lifecycle": "churned", "arr": 80_000.0, "open_pipeline": 9_000.0},
            {"account_id": 4, "lifecycle": "unknown", "arr": 30_000.0, "open_pipeline": 3_000.0},
            # account 5 is not in the accounts frame at all
        ]
    )

    weekly = weekly_theme_stats(items, accounts, now=NOW)
    row = weekly.loc[weekly["week_start"] == dt.date(2026, 3, 2)].iloc[0]

    assert row["accounts"] == 5
    assert row["arr"] == pytest.approx(100_000.0)
    assert row["open_pipeline"] == pytest.approx(40_000.0)


def test_weeks_are_zero_filled_from_the_first_week_to_the_current_week() -> None:
    items = make_items(
        [
            {"theme_id": 1, "occurred_at": "2026-02-17 09:00", "sentiment": -0.5, "intent": "complaint"},
            {"theme_id": 1, "occurred_at": "2026-02-18 09:00", "sentiment": 0.5, "intent": "complaint"},
            {"theme_id": 1, "occurred_at": "2026-03-04 09:00", "sentiment": None, "intent": None},
            {"theme_id": 2, "occurred_at": "2026-03-10 09:00"},
        ]
    )

    weekly = weekly_theme_stats(items, NO_ACCOUNTS, now=NOW)
    theme1 = weekly.loc[weekly["theme_id"] == 1]
    theme2 = weekly.loc[weekly["theme_id"] == 2]

    assert theme1["week"].tolist() == ["2026-W08", "2026-W09", "2026-W10", "2026-W11", "2026-W12"]
    assert theme1["items"].tolist() == [2, 0, 1, 0, 0]
    assert theme1["week_start"].tolist()[0] == dt.date(2026, 2, 16)
    assert theme1["week_start"].tolist()[-1] == THIS_MONDAY
    first, empty, sentiment_unknown = theme1.iloc[0], theme1.iloc[1], theme1.iloc[2]
    assert first["sentiment"] == pytest.approx(0.0)
    assert first["intents"] == {"complaint": 2}
    assert empty["intents"] == {} and empty["sources"] == {} and math.isnan(empty["sentiment"])
    assert empty["arr"] == 0.0 and empty["accounts"] == 0
    assert math.isnan(sentiment_unknown["sentiment"]) and sentiment_unknown["intents"] == {}
    assert theme2["week"].tolist() == ["2026-W11", "2026-W12"]


def test_weeks_argument_keeps_only_the_latest_weeks() -> None:
    items = make_items([{"theme_id": 1, "occurred_at": "2026-01-06 09:00"}])

    weekly = weekly_theme_stats(items, NO_ACCOUNTS, now=NOW, weeks=4)

    assert weekly["week"].tolist() == ["2026-W09", "2026-W10", "2026-W11", "2026-W12"]
    assert weekly["items"].sum() == 0


def test_items_after_the_current_week_are_left_out() -> None:
    items = make_items(
        [
            {"theme_id": 1, "occurred_at": "2026-03-16 09:00"},
            {"theme_id": 1, "occurred_at": "2026-03-24 09:00"},  # next week: clock skew
        ]
    )

    weekly = weekly_theme_stats(items, NO_ACCOUNTS, now=NOW)

    assert weekly["week"].tolist() == ["2026-W12"]
    assert weekly["items"].tolist() == [1]


def test_iso_weeks_follow_the_configured_time_zone() -> None:
    # Monday 00:30 in Berlin is Sunday 23:30 UTC; Sunday 20:00 in Los Angeles is Monday 03:00 UTC.
    berlin_monday = pd.Timestamp("2026-03-16 00:30", tz="Europe/Berlin").tz_convert("UTC")
    la_sunday = pd.Timestamp("2026-03-15 20:00", tz="America/Los_Angeles").tz_convert("UTC")
    items = make_items([{"theme_id": 1, "occurred_at": berlin_monday}, {"theme_id": 2, "occurred_at": la_sunday}])
    now = pd.Timestamp("2026-03-18 12:00", tz="UTC")

    def week_of(tz: str, theme_id: int) -> str:
        weekly = weekly_theme_stats(items, NO_ACCOUNTS, now=now, tz=tz)
        rows = weekly.loc[(weekly["theme_id"] == theme_id) & (weekly["items"] > 0)]
        return str(rows["week"].iloc[0])

    assert week_of("UTC", 1) == "2026-W11"
    assert week_of("Europe/Berlin", 1) == "2026-W12"
    assert week_of("UTC", 2) == "2026-W12"
    assert week_of("America/Los_Angeles", 2) == "2026-W11"


def test_iso_week_label_at_the_year_boundary() -> None:
    items = make_items([{"theme_id": 1, "occurred_at": "2025-12-31 12:00"}])
    now = pd.Timestamp("2026-01-02 12:00", tz="UTC")

    weekly = weekly_theme_stats(items, NO_ACCOUNTS, now=now)

    assert weekly["week"].tolist() == ["2026-W01"]
    assert weekly["week_start"].tolist() == [dt.date(2025, 12, 29)]
    assert iso_week_label(dt.date(2027, 1, 1)) == "2026-W53"


def test_bad_input_is_refused_with_a_useful_message() -> None:
    items = make_items([{"theme_id": 1, "occurred_at": "2026-03-10 09:00"}])
    with pytest.raises(StatsInputError, match="occurred_at"):
        weekly_theme_stats(items.drop(columns="occurred_at"), NO_ACCOUNTS, now=NOW)
    with pytest.raises(StatsInputError, match="time-zone aware"):
        weekly_theme_stats(items, NO_ACCOUNTS, now=dt.datetime(2026, 3, 16))


# --- momentum -------------------------------------------------------------------------------------------


def test_a_theme_that_triples_over_three_weeks_is_a_significant_trend() -> None:
    momentum = momentum_of({1: [3] * 12 + [9, 9, 9, 0]})
    row = momentum.loc[1]

    assert row["status"] in {"emerging", "growing"}
    assert row["p_value"] < 0.01
    assert row["recent_count"] == 27 and row["baseline_count"] == 36 and row["baseline_exposure"] == 12
    assert row["ratio"] > 2.5
    assert row["emerging_strength"] > 0
    assert list(theme_momentum(weekly_counts({1: [1, 0]}), now=NOW).columns) == MOMENTUM_COLUMNS


def test_two_becoming_four_mentions_is_not_a_trend() -> None:
    momentum = momentum_of({1: [2] * 12 + [4, 4, 4, 0], 2: [2] * 12 + [2, 2, 4, 0], 3: [2, 4, 0, 0, 0]})

    for theme_id in (1, 2, 3):
        assert momentum.loc[theme_id, "p_value"] >= 0.01
        assert momentum.loc[theme_id, "status"] == "stable"


def test_established_growth_is_growing_and_a_jump_from_near_zero_is_emerging() -> None:
    momentum = momentum_of({1: [10] * 12 + [20, 21, 19, 0], 2: [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 6, 7, 6, 0]})

    assert momentum.loc[1, "status"] == "growing"
    assert momentum.loc[1, "ratio"] < 3
    assert momentum.loc[2, "status"] == "emerging"
    assert momentum.loc[2, "baseline_rate"] < 1


def test_a_theme_that_goes_quiet_fades_then_goes_dormant() -> None:
    momentum = momentum_of({1: [6] * 12 + [1, 1, 0, 0], 2: [6] * 12 + [0, 0, 0, 0], 3: [1] + [0] * 15})

    assert momentum.loc[1, "status"] == "fading"
    assert momentum.loc[1, "p_decline"] < 0.01
    assert momentum.loc[1, "emerging_strength"] < 0
    assert momentum.loc[2, "status"] == "dormant"
    assert momentum.loc[3, "status"] == "dormant"


def test_a_small_dip_is_stable_not_fading() -> None:
    momentum = momentum_of({1: [4] * 12 + [3, 2, 3, 0]})

    assert momentum.loc[1, "status"] == "stable"


def test_brand_new_themes_are_new_with_a_defined_baseline() -> None:
    momentum = momentum_of({1: [4, 8, 12, 0], 2: [1, 0, 0, 0], 3: [0, 0, 0, 2]})

    for theme_id in (1, 2, 3):
        assert momentum.loc[theme_id, "status"] == "new"
        assert momentum.loc[theme_id, "baseline_exposure"] == 0
        assert momentum.loc[theme_id, "baseline_rate"] == pytest.approx(0.5)
    assert momentum.loc[1, "p_value"] < 0.01  # 24 mentions out of nowhere is significant
    assert momentum.loc[2, "p_value"] > 0.1  # one mention is not
    assert momentum.loc[1, "emerging_strength"] > momentum.loc[2, "emerging_strength"]


def test_themes_are_sorted_strongest_momentum_first() -> None:
    weekly = weekly_counts({1: [2] * 12 + [4, 4, 4, 0], 2: [3] * 12 + [9, 9, 9, 0], 3: [6] * 12 + [0, 0, 0, 0]})

    momentum = theme_momentum(weekly, now=NOW)

    assert momentum["theme_id"].tolist() == [2, 1, 3]


def test_sparse_weekly_rows_are_read_as_zero_weeks() -> None:
    dense = weekly_counts({1: [3] * 12 + [9, 9, 9, 0]})
    sparse = dense.loc[dense["items"] > 0]
    gappy = weekly_counts({1: [3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 3, 0, 0]})

    assert theme_momentum(sparse, now=NOW).equals(theme_momentum(dense, now=NOW))
    got = theme_momentum(gappy.loc[gappy["items"] > 0], now=NOW).iloc[0]
    assert got["baseline_count"] == 18 and got["baseline_exposure"] == 12 and got["recent_count"] == 6


def test_the_current_partial_week_is_prorated() -> None:
    thursday_noon = pd.Timestamp("2026-03-19 12:00", tz="UTC")
    weekly = weekly_counts({1: [3] * 12 + [3, 3, 3, 2]})

    row = theme_momentum(weekly, now=thursday_noon).iloc[0]

    assert row["recent_exposure"] == pytest.approx(3.5)
    assert row["recent_count"] == 11
    assert row["recent_rate"] == pytest.approx(11 / 3.5)


def test_the_current_week_is_the_local_week() -> None:
    # Sunday 23:30 UTC is already Monday 00:30 in Berlin: a new, nearly empty week there.
    now = pd.Timestamp("2026-03-15 23:30", tz="UTC")
    weekly = weekly_counts({1: [3] * 15 + [1]})

    berlin = theme_momentum(weekly, now=now, tz="Europe/Berlin").iloc[0]

    assert berlin["recent_exposure"] == pytest.approx(3 + 0.5 / 168)
    assert berlin["recent_count"] == 10


def test_growth_p_values_are_tail_probabilities() -> None:
    up, down = growth_p_values(30, 3, 30, 12)
    assert up < 1e-4 and down > 0.99
    flat_up, flat_down = growth_p_values(7, 3, 30, 12)
    assert 0.3 < flat_up < 0.8 and 0.3 < flat_down < 0.8
    assert growth_p_values(0, 3, 30, 12)[0] == 1.0
    assert growth_p_values(5, 0, 30, 12) == (1.0, 1.0)
    with pytest.raises(StatsInputError, match="window_weeks"):
        theme_momentum(weekly_counts({1: [1]}), now=NOW, window_weeks=0)


# --- the vectorised steps against a straightforward per-theme reference --------------------------------


def reference_momentum(weekly: pd.DataFrame, *, now: pd.Timestamp, window_weeks: int, baseline_weeks: int) -> dict:
    """Per theme, from that theme's rows alone, the documented recipe (defaults for everything else)."""
    week = pd.Timedelta(days=7)
    this_week = now.tz_localize(None).floor("D") - pd.Timedelta(days=now.weekday())  # UTC weeks
    fraction = (now.tz_localize(None) - this_week) / week
    window_start = this_week - window_weeks * week
    baseline_start = window_start - baseline_weeks * week
    exposure = window_weeks + fraction
    out = {}
    for theme_id in sorted(set(weekly["theme_id"])):
        group = weekly.loc[weekly["theme_id"] == theme_id]
        starts = pd.to_datetime(group["week_start"])
        active = starts[group["items"] > 0]
        first = active.min() if len(active) else starts.min()
        base_from = max(baseline_start, first)
        base_exposure = max(0, int((window_start - base_from) / week))
        recent = int(group.loc[starts >= window_start, "items"].sum())
        base = int(group.loc[(starts >= base_from) & (starts < window_start), "items"].sum())
        base_rate = (base + 0.5) / (base_exposure + 1.0)
        ratio = recent / exposure / base_rate
        p_up, p_down = growth_p_values(recent, exposure, base, base_exposure)
        log_ratio = math.log2(((recent + 0.5) / exposure) / base_rate)
        strength = -math.log10(max(p_up if log_ratio > 0 else p_down, 1e-300)) * log_ratio
        if len(active) and first >= window_start:
            status = "new"
        elif recent == 0 and len(active):
            status = "dormant"
        elif p_up < 0.01 and ratio > 1:
            status = "emerging" if base_rate < 1.0 or ratio >= 3.0 else "growing"
        elif p_down < 0.01 and ratio < 1:
            status = "fading"
        else:
            status = "stable"
        out[int(theme_id)] = {
            "status": status, "first_seen": first.date(), "last_seen": active.max().date() if len(active) else None,
            "recent_count": recent, "recent_exposure": exposure, "baseline_count": base,
            "baseline_exposure": base_exposure, "baseline_rate": base_rate, "ratio": ratio, "p_value": p_up,
            "p_decline": p_down, "emerging_strength": strength,
        }
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_momentum_matches_a_per_theme_reference_exactly(seed: int) -> None:
    rng = random.Random(seed)
    histories = {}
    for theme_id in range(1, 61):
        weeks = rng.randint(1, 30)
        level = rng.choice([0.3, 1, 3, 10])
        series = [rng.choice([0, round(level * rng.uniform(0, 2))]) for _ in range(weeks)]
        if theme_id % 4 == 0:  # a jump in the last weeks
            series[-4:] = [round(level * 4)] * min(4, weeks)
        histories[theme_id] = series
    weekly = weekly_counts(histories)
    weekly = weekly.loc[(weekly["items"] > 0) | (weekly.index % 3 == 0)]  # sparse rows are zero weeks
    now = NOW + pd.Timedelta(hours=rng.randint(0, 160))

    for window, baseline in ((3, 12), (2, 6), (4, 20)):
        got = theme_momentum(weekly, now=now, window_weeks=window, baseline_weeks=baseline)
        want = reference_momentum(weekly, now=now, window_weeks=window, baseline_weeks=baseline)

        assert sorted(got["theme_id"]) == sorted(want)
        for row in got.to_dict("records"):
            expected = want[row["theme_id"]]
            assert {k: row[k] for k in expected} == expected, row["theme_id"]
        strengths = list(zip(-got["emerging_strength"], got["theme_id"], strict=True))
        assert strengths == sorted(strengths)


LIFECYCLE = ("customer", "prospect")


def test_weekly_stats_match_a_per_theme_week_reference() -> None:
    rng = random.Random(7)
    sources, intents = ["zendesk", "gong", "intercom"], ["bug", "feature_request", None]
    rows = [
        {
            "theme_id": rng.randint(1, 25),
            "occurred_at": NOW - pd.Timedelta(hours=rng.randint(-30, 24 * 7 * 20)),
            "account_id": rng.choice([None, *range(1, 30)]),
            "source": rng.choice(sources),
            "intent": rng.choice(intents),
            "sentiment": rng.choice([None, rng.uniform(-1, 1)]),
        }
        for _ in range(600)
    ]
    items = make_items(rows)
    accounts = make_accounts(
        [
            {"account_id": a, "arr": 1000.0 * a, "open_pipeline": 500.0 * a, "lifecycle": LIFECYCLE[a % 2]}
            for a in range(1, 25)
        ]
    )

    weekly = weekly_theme_stats(items, accounts, now=NOW)

    items["monday"] = [(t - pd.Timedelta(days=t.weekday())).date() for t in items["occurred_at"]]
    items = items.loc[items["monday"] <= THIS_MONDAY]
    for theme_id, group in weekly.groupby("theme_id"):
        theme_items = items.loc[items["theme_id"] == theme_id]
        first = theme_items["monday"].min()
        assert group["week_start"].tolist() == [
            first + dt.timedelta(weeks=k) for k in range((THIS_MONDAY - first).days // 7 + 1)
        ]
        for row in group.to_dict("records"):
            in_week = theme_items.loc[theme_items["monday"] == row["week_start"]]
            assert row["week"] == iso_week_label(row["week_start"])
            assert row["items"] == len(in_week)
            voices = {int(a) for a in in_week["account_id"].dropna()}
            assert row["accounts"] == len(voices)
            assert row["arr"] == sum(1000.0 * a for a in sorted(voices) if a < 25 and a % 2 == 0)
            assert row["open_pipeline"] == sum(500.0 * a for a in sorted(voices) if a < 25 and a % 2 == 1)
            assert row["sources"] == dict(sorted(Counter(in_week["source"]).items()))
            assert list(row["intents"]) == sorted(row["intents"])
            assert row["intents"] == dict(Counter(in_week["intent"].dropna()))


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_momentum_from_item_counts_equals_momentum_from_weekly_stats(tz: str) -> None:
    rng = random.Random(11)
    rows = [
        {
            "theme_id": rng.randint(1, 30),
            # Some items after the current week (clock skew), some on week boundaries in either zone.
            "occurred_at": NOW - pd.Timedelta(minutes=rng.randint(-3000, 60 * 24 * 7 * 26)),
            "account_id": rng.choice([None, *range(1, 20)]),
        }
        for _ in range(900)
    ]
    items = make_items(rows)
    accounts = make_accounts([{"account_id": a} for a in range(1, 20)])
    now = NOW + pd.Timedelta(hours=30)

    counts = weekly_item_counts(items, now=now, tz=tz)
    weekly = weekly_theme_stats(items, accounts, now=now, tz=tz)

    assert list(counts.columns) == ["theme_id", "week_start", "items"]
    assert (counts["items"] > 0).all()
    active = weekly.loc[weekly["items"] > 0]
    assert counts["theme_id"].tolist() == active["theme_id"].tolist()
    assert [d.date() for d in counts["week_start"]] == active["week_start"].tolist()
    assert counts["items"].tolist() == active["items"].tolist()
    for window in (2, 3, 4):
        pd.testing.assert_frame_equal(
            theme_momentum(counts, now=now, tz=tz, window_weeks=window),
            theme_momentum(weekly, now=now, tz=tz, window_weeks=window),
            check_exact=True,
        )


def test_item_counts_of_no_items_give_no_momentum() -> None:
    items = make_items([{"theme_id": 1, "occurred_at": NOW + pd.Timedelta(days=9)}])  # after the current week

    counts = weekly_item_counts(items, now=NOW)

    assert counts.empty and list(counts.columns) == ["theme_id", "week_start", "items"]
    assert theme_momentum(counts, now=NOW).empty
