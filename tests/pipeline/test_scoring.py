"""Opportunity scoring (pipeline.scoring), end to end from items to ranked, explained themes."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.settings import ScoreWeights
from pipeline.scoring import (
    COMPONENTS,
    SCORE_COLUMNS,
    format_money,
    momentum_component,
    priority_tier,
    rationale,
    score_opportunities,
    segment_items,
)
from pipeline.stats import StatsInputError, theme_momentum, weekly_theme_stats

NOW = pd.Timestamp("2026-03-16 06:00", tz="UTC")  # a Monday morning
WEIGHTS = ScoreWeights().model_dump()


def make_items(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
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
    frame = pd.DataFrame.from_records([{"feedback_id": i + 1, **defaults, **r} for i, r in enumerate(rows)])
    frame["account_id"] = frame["account_id"].astype("Int64")
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def make_accounts(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    defaults: dict[str, Any] = {"segment": "smb", "arr": 0.0, "lifecycle": "customer", "open_pipeline": 0.0}
    return pd.DataFrame.from_records([{"name": f"Account {r['account_id']}", **defaults, **r} for r in rows])


def weekly_mentions(
    theme_id: int, counts: Sequence[int], account_ids: Sequence[int], **fields: Any
) -> list[dict[str, Any]]:
    """Rows for ``counts[i]`` mentions in week i (oldest first, the last complete week last), spread
    round-robin over ``account_ids``, at distinct hours inside each week."""
    rows = []
    k = 0
    weeks = len(counts)
    for i, count in enumerate(counts):
        monday = NOW.normalize() - pd.Timedelta(weeks=weeks - i)
        for j in range(count):
            rows.append(
                {
                    "theme_id": theme_id,
                    "occurred_at": monday + pd.Timedelta(hours=9 + 3 * j),
                    "account_id": account_ids[k % len(account_ids)],
                    **fields,
                }
            )
            k += 1
    return rows


def run_scoring(
    items: pd.DataFrame, accounts: pd.DataFrame, *, segment: str | None = None, **kwargs: Any
) -> pd.DataFrame:
    seg_items, seg_accounts = segment_items(items, accounts, segment)
    weekly = weekly_theme_stats(seg_items, seg_accounts, now=NOW)
    momentum = theme_momentum(weekly, now=NOW, window_weeks=3)
    return score_opportunities(
        items, accounts, momentum, now=NOW, weights=kwargs.pop("weights", WEIGHTS), segment=segment, **kwargs
    )


# --- the end-to-end scenario ------------------------------------------------------------------------------


@pytest.fixture
def scenario() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four themes over 15 weeks.

    1: triples over the last 3 weeks among six enterprise customers ($400k ARR each);
    2: steady and large, from 25 small customers ($8k each);
    3: 60 mentions from ONE customer, whose ARR equals the total of theme 4's accounts;
    4: the same 60 mentions, at the same times, from 30 customers ($20k each).
    """
    accounts: list[dict[str, Any]] = [
        *({"account_id": a, "segment": "enterprise", "arr": 400_000.0} for a in range(1, 7)),
        *({"account_id": a, "arr": 8_000.0} for a in range(100, 125)),
        {"account_id": 200, "segment": "mid-market", "arr": 600_000.0},
        *({"account_id": a, "segment": "mid-market", "arr": 20_000.0} for a in range(300, 330)),
    ]
    rows = [
        *weekly_mentions(1, [3] * 12 + [9, 9, 9], range(1, 7), sentiment=-0.6),
        *weekly_mentions(2, [6] * 15, range(100, 125), sentiment=-0.3),
        *weekly_mentions(3, [4] * 15, [200], sentiment=-0.5),
        *weekly_mentions(4, [4] * 15, range(300, 330), sentiment=-0.5),
    ]
    return make_items(rows), make_accounts(accounts)


def test_a_theme_tripling_among_high_arr_accounts_ranks_first(scenario: tuple[pd.DataFrame, Any]) -> None:
    items, accounts = scenario

    scores = run_scoring(items, accounts).set_index("theme_id")

    assert scores.loc[1, "rank"] == 1
    assert scores.loc[1, "momentum"] > 0
    assert scores.loc[1, "metrics"]["status"] in {"emerging", "growing"}
    assert scores.loc[2, "momentum"] == 0  # steady, however large
    assert "6 accounts ($2.4M ARR) raise it" in scores.loc[1, "rationale"]
    assert "mentions tripled in 3 weeks (p < 0.001)" in scores.loc[1, "rationale"]


def test_one_loud_account_does_not_outrank_many_accounts(scenario: tuple[pd.DataFrame, Any]) -> None:
    items, accounts = scenario

    scores = run_scoring(items, accounts).set_index("theme_id")
    one, many = scores.loc[3], scores.loc[4]

    assert one["metrics"]["mentions"] == many["metrics"]["mentions"] == 48  # 12 weeks of horizon
    assert one["metrics"]["arr"] == pytest.approx(600_000.0)
    assert many["metrics"]["arr"] == pytest.approx(600_000.0)  # same revenue at stake
    assert many["reach"] > one["reach"]
    assert many["score"] > one["score"]
    assert many["rank"] < one["rank"]


def test_output_shape_ranks_and_ranges(scenario: tuple[pd.DataFrame, Any]) -> None:
    items, accounts = scenario

    scores = run_scoring(items, accounts)

    assert list(scores.columns) == SCORE_COLUMNS
    assert scores["rank"].tolist() == [1, 2, 3, 4]
    assert scores["score"].is_monotonic_decreasing
    for row in scores.itertuples():
        assert set(row.components) == set(COMPONENTS)
        assert all(0.0 <= row.components[c] == getattr(row, c) <= 1.0 for c in COMPONENTS)
        assert row.tier in {"vital", "important", "nice_to_have"}
        assert row.tier == priority_tier(row.score, row.severity)


def test_ties_are_broken_by_theme_id() -> None:
    rows = [
        *weekly_mentions(9, [2] * 4, [1]),
        *weekly_mentions(4, [2] * 4, [2]),
        *weekly_mentions(6, [2] * 4, [3]),
    ]
    accounts = make_accounts([{"account_id": a, "arr": 5_000.0} for a in (1, 2, 3)])

    scores = run_scoring(make_items(rows), accounts)

    assert scores["score"].nunique() == 1
    assert scores["theme_id"].tolist() == [4, 6, 9]


def test_enterprise_prospects_blocking_a_deal_are_explained() -> None:
    accounts = make_accounts(
        [
            {"account_id": 1, "segment": "enterprise", "lifecycle": "prospect", "open_pipeline": 250_000.0},
            {"account_id": 2, "segment": "enterprise", "lifecycle": "prospect", "open_pipeline": 200_000.0},
            {"account_id": 3, "segment": "enterprise", "lifecycle": "prospect", "open_pipeline": 150_000.0},
            {"account_id": 4, "segment": "smb", "arr": 1_000_000.0},
        ]
    )
    rows = [
        *weekly_mentions(1, [0, 1, 1, 1], [1, 2, 3], deal_blocker=True, sentiment=-0.7, kind="field_note"),
        *weekly_mentions(2, [0, 1, 1, 1], [4], sentiment=0.5),
    ]

    scores = run_scoring(make_items(rows), accounts).set_index("theme_id")
    blocker = scores.loc[1]

    assert blocker["rationale"].startswith("3 enterprise prospects with $600k open pipeline cite it as a blocker")
    assert blocker["metrics"]["enterprise_prospects"] == 3
    assert blocker["metrics"]["open_pipeline"] == pytest.approx(600_000.0)
    assert blocker["severity"] > scores.loc[2, "severity"]
    # Pipeline counts at pipeline_weight beside ARR.
    half = run_scoring(make_items(rows), accounts, pipeline_weight=0.5).set_index("theme_id")
    full = run_scoring(make_items(rows), accounts, pipeline_weight=1.0).set_index("theme_id")
    assert half.loc[1, "metrics"]["revenue_at_stake"] == pytest.approx(300_000.0)
    assert full.loc[1, "metrics"]["revenue_at_stake"] == pytest.approx(600_000.0)
    assert full.loc[1, "revenue"] > half.loc[1, "revenue"]


def test_segment_scoring_keeps_only_that_segments_accounts(scenario: tuple[pd.DataFrame, Any]) -> None:
    items, accounts = scenario

    enterprise = run_scoring(items, accounts, segment="enterprise")
    mid_market = run_scoring(items, accounts, segment="mid-market").set_index("theme_id")

    assert enterprise["theme_id"].tolist() == [1]
    assert sorted(mid_market.index) == [3, 4]
    assert mid_market.loc[4, "metrics"]["accounts"] == 30


def test_scores_use_fixed_references_not_the_batch() -> None:
    rows = weekly_mentions(1, [1] * 12, [1, 2, 3])
    accounts = make_accounts([{"account_id": a, "arr": 50_000.0} for a in (1, 2, 3)])
    big = weekly_mentions(2, [40] * 12, list(range(10, 90)))
    big_accounts = make_accounts([{"account_id": a, "arr": 900_000.0} for a in range(10, 90)])

    alone = run_scoring(make_items(rows), accounts)
    beside = run_scoring(make_items(rows + big), pd.concat([accounts, big_accounts]))

    assert alone.iloc[0]["score"] == pytest.approx(beside.set_index("theme_id").loc[1, "score"])


def test_weights_are_validated_and_normalised(scenario: tuple[pd.DataFrame, Any]) -> None:
    items, accounts = scenario
    momentum = theme_momentum(weekly_theme_stats(items, accounts, now=NOW), now=NOW)

    reach_only = score_opportunities(items, accounts, momentum, now=NOW, weights={"reach": 2.0})
    assert (reach_only["score"] == 100 * reach_only["reach"]).all()
    with pytest.raises(StatsInputError, match="unknown score weight"):
        score_opportunities(items, accounts, momentum, now=NOW, weights={"reech": 1.0})
    with pytest.raises(StatsInputError, match="positive"):
        score_opportunities(items, accounts, momentum, now=NOW, weights={"reach": 0.0})


def test_money_formatting() -> None:
    assert format_money(950) == "$950"
    assert format_money(600_000) == "$600k"
    assert format_money(1_400_000) == "$1.4M"
    assert format_money(2_000_000) == "$2M"
    assert format_money(999_900) == "$1M"
    assert format_money(12_400) == "$12k"
    assert format_money(-1_400_000) == "-$1.4M"
    assert format_money(1_100_000_000) == "$1.1B"
    assert format_money(0) == "$0"


def test_rationale_is_written_from_the_numbers() -> None:
    metrics = {
        "mentions": 40,
        "accounts": 15,
        "prospects": 3,
        "enterprise_prospects": 3,
        "arr": 1_400_000.0,
        "open_pipeline": 600_000.0,
        "anonymous_mentions": 0,
        "blocker_accounts": 9,
        "churn_accounts": 0,
        "security_flags": 0,
        "status": "emerging",
        "window_weeks": 3,
        "ratio": 3.1,
        "p_value": 0.004,
        "recent_rate": 9.0,
    }
    assert rationale(metrics) == (
        "12 accounts ($1.4M ARR) and 3 enterprise prospects with $600k open pipeline cite it as a blocker; "
        "mentions tripled in 3 weeks (p < 0.01)"
    )
    quiet = {**metrics, "blocker_accounts": 1, "churn_accounts": 2, "status": "stable", "p_value": 0.4}
    assert rationale(quiet) == (
        "12 accounts ($1.4M ARR) and 3 enterprise prospects with $600k open pipeline raise it "
        "(1 as a deal blocker, 2 with churn risk); steady at 9.0 mentions/week"
    )
    anonymous = {"mentions": 5, "accounts": 0, "anonymous_mentions": 5}
    assert rationale(anonymous) == "5 unattributed mentions raise it"


def test_momentum_component_needs_significant_growth() -> None:
    assert momentum_component(3.0, 0.02) == 0.0  # not significant
    assert momentum_component(0.5, 1e-9) == 0.0  # significant, but a decline
    assert momentum_component(math.nan, math.nan) == 0.0
    assert 0.0 < momentum_component(2.0, 0.001) < momentum_component(3.0, 0.001) < 1.0
    assert momentum_component(8.0, 1e-6) == pytest.approx(1.0)


# --- properties -----------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=40, deadline=None)


@st.composite
def one_theme(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One theme's mentions over the last weeks, with random flags and accounts, and a momentum row."""
    n_accounts = draw(st.integers(1, 6))
    mentions = draw(st.integers(n_accounts + 1, 14))
    lifecycles = draw(st.lists(st.sampled_from(["customer", "prospect", "churned", "unknown"]), min_size=7, max_size=7))
    money = draw(st.lists(st.floats(0, 5e6), min_size=7, max_size=7))
    rows = []
    for i in range(mentions):
        rows.append(
            {
                "theme_id": 1,
                "occurred_at": NOW - pd.Timedelta(hours=draw(st.integers(1, 24 * 7 * 14))),
                "account_id": 1 + i % n_accounts,
                "sentiment": draw(st.one_of(st.none(), st.floats(-1, 1))),
                "churn_risk": draw(st.booleans()),
                "deal_blocker": draw(st.booleans()),
                "security": draw(st.booleans()),
            }
        )
    accounts = make_accounts(
        [
            {"account_id": a, "lifecycle": lifecycles[a - 1], "arr": money[a - 1], "open_pipeline": money[a - 1]}
            for a in range(1, 8)
        ]
    )
    momentum = momentum_row(draw(st.floats(0.1, 20)), draw(st.floats(1e-12, 1)))
    return make_items(rows), accounts, momentum


def momentum_row(ratio: float, p_value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "theme_id": 1,
                "status": "stable",
                "recent_rate": 2.0 * ratio,
                "baseline_rate": 2.0,
                "ratio": ratio,
                "p_value": p_value,
                "window_weeks": 3,
            }
        ]
    )


weights_strategy = st.fixed_dictionaries({c: st.floats(0, 1) for c in COMPONENTS}).filter(
    lambda w: sum(w.values()) > 0.01
)


def score_of(items: pd.DataFrame, accounts: pd.DataFrame, momentum: pd.DataFrame, weights: Any) -> float:
    scores = score_opportunities(items, accounts, momentum, now=NOW, weights=weights)
    return float(scores.set_index("theme_id").loc[1, "score"])


@PROPERTY
@given(one_theme(), weights_strategy)
def test_scores_and_components_stay_in_range(theme: Any, weights: dict[str, float]) -> None:
    items, accounts, momentum = theme

    scores = score_opportunities(items, accounts, momentum, now=NOW, weights=weights)

    assert scores["score"].between(0, 100).all()
    for c in COMPONENTS:
        assert scores[c].between(0, 1).all()
    assert isinstance(scores.iloc[0]["rationale"], str) and scores.iloc[0]["rationale"]


@PROPERTY
@given(one_theme(), weights_strategy, st.sampled_from(["customer", "prospect", "churned"]), st.floats(0, 5e6))
def test_more_accounts_never_lower_the_score(
    theme: Any, weights: dict[str, float], lifecycle: str, amount: float
) -> None:
    items, accounts, momentum = theme
    # Inside the scoring horizon, so re-spreading cannot take an account's only recent mention away
    # (that would rightly lower its revenue at stake, and is not "more accounts").
    items = items.assign(occurred_at=items["occurred_at"].clip(lower=NOW - pd.Timedelta(weeks=11)))
    n_accounts = int(items["account_id"].nunique())
    # The same mentions, re-spread over one more account: no mention, flag or time changes.
    spread = items.copy()
    spread["account_id"] = pd.array([1 + i % (n_accounts + 1) for i in range(len(items))], dtype="Int64")
    more = accounts.copy()
    more.loc[more["account_id"] == n_accounts + 1, ["lifecycle", "arr", "open_pipeline"]] = [
        lifecycle,
        amount,
        amount,
    ]
    before = score_of(items, more, momentum, weights)

    assert score_of(spread, more, momentum, weights) >= before - 1e-9


@PROPERTY
@given(one_theme(), weights_strategy, st.integers(1, 7), st.floats(0, 1e7))
def test_more_arr_or_pipeline_never_lowers_the_score(
    theme: Any, weights: dict[str, float], account_id: int, extra: float
) -> None:
    items, accounts, momentum = theme
    richer = accounts.copy()
    row = richer["account_id"] == account_id
    richer.loc[row, "arr"] = richer.loc[row, "arr"] + extra
    richer.loc[row, "open_pipeline"] = richer.loc[row, "open_pipeline"] + extra

    assert score_of(items, richer, momentum, weights) >= score_of(items, accounts, momentum, weights) - 1e-9


@PROPERTY
@given(one_theme(), weights_strategy, st.floats(1, 10), st.floats(1e-6, 1))
def test_more_momentum_never_lowers_the_score(
    theme: Any, weights: dict[str, float], growth: float, p_shrink: float
) -> None:
    items, accounts, momentum = theme
    ratio, p_value = float(momentum.loc[0, "ratio"]), float(momentum.loc[0, "p_value"])
    stronger = momentum_row(ratio * growth, p_value * p_shrink)

    assert score_of(items, accounts, stronger, weights) >= score_of(items, accounts, momentum, weights) - 1e-9


# --- the vectorised metrics against a straightforward per-theme reference -------------------------------


def reference_metrics(items: pd.DataFrame, accounts: pd.DataFrame, theme_id: int, horizon_weeks: int) -> dict:
    """One theme's horizon metrics, from that theme's rows alone (pipeline_weight 0.5)."""
    rows = items.loc[(items["theme_id"] == theme_id) & (items["occurred_at"] <= NOW)]
    rows = rows.loc[rows["occurred_at"] > NOW - pd.Timedelta(weeks=horizon_weeks)]
    linked = rows.loc[rows["account_id"].notna()]
    book = accounts.drop_duplicates("account_id").set_index("account_id")
    lifecycle = book["lifecycle"].str.lower()
    voices = sorted({int(a) for a in linked["account_id"]})
    known = [a for a in voices if a in book.index]
    customers = [a for a in known if lifecycle[a] == "customer"]
    prospects = [a for a in known if lifecycle[a] == "prospect"]
    enterprise = [a for a in prospects if str(book.loc[a, "segment"]).lower() == "enterprise"]
    arr = float(book.loc[customers, "arr"].fillna(0.0).clip(lower=0.0).sum())
    pipeline = float(book.loc[prospects, "open_pipeline"].fillna(0.0).clip(lower=0.0).sum())
    sentiment = rows["sentiment"].dropna()
    n = len(rows)
    return {
        "mentions": n,
        "accounts": len(voices),
        "anonymous_mentions": n - len(linked),
        "customers": len(customers),
        "prospects": len(prospects),
        "enterprise_prospects": len(enterprise),
        "arr": arr,
        "open_pipeline": pipeline,
        "enterprise_open_pipeline": float(book.loc[enterprise, "open_pipeline"].fillna(0.0).clip(lower=0.0).sum()),
        "revenue_at_stake": arr + 0.5 * pipeline,
        "blockers": int(rows["deal_blocker"].sum()),
        "blocker_accounts": linked.loc[linked["deal_blocker"], "account_id"].nunique(),
        "churn_flags": int(rows["churn_risk"].sum()),
        "churn_accounts": linked.loc[linked["churn_risk"], "account_id"].nunique(),
        "security_flags": int(rows["security"].sum()),
        "negative_share": float((sentiment < -0.2).mean()) if len(sentiment) else 0.0,
        "mean_sentiment": float(sentiment.mean()) if len(sentiment) else None,
        "churn_share": float(rows["churn_risk"].sum()) / n if n else 0.0,
        "blocker_share": float(rows["deal_blocker"].sum()) / n if n else 0.0,
        "security_share": float(rows["security"].sum()) / n if n else 0.0,
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_match_a_per_theme_reference_exactly(seed: int) -> None:
    rng = random.Random(seed)
    accounts = make_accounts(
        [
            {
                "account_id": a,
                "segment": rng.choice(["enterprise", "Enterprise", "mid-market", "smb", None]),
                "lifecycle": rng.choice(["customer", "Prospect", "prospect", "churned", "unknown", None]),
                "arr": rng.choice([None, -5.0, round(rng.lognormvariate(10, 1.5), 2), rng.uniform(0, 1e6)]),
                "open_pipeline": rng.choice([None, round(rng.lognormvariate(10, 1.5), 2), rng.uniform(0, 1e6)]),
            }
            for a in range(1, 60)
        ]
    )
    rows = [
        {
            "theme_id": rng.choice(range(1, 31)) if i % 5 else rng.choice(range(1, 5)),
            "occurred_at": NOW - pd.Timedelta(minutes=rng.randint(-600, 60 * 24 * 7 * 20)),
            "account_id": rng.choice([None, 999, *range(1, 60)]),  # 999: an account not in the book
            "sentiment": rng.choice([None, rng.uniform(-1, 1)]),
            "churn_risk": rng.random() < 0.1,
            "deal_blocker": rng.random() < 0.1,
            "security": rng.random() < 0.05,
        }
        for i in range(900)
    ]
    items = make_items(rows)
    momentum = theme_momentum(weekly_theme_stats(items, accounts, now=NOW), now=NOW)
    momentum = pd.concat([momentum, momentum_row(2.0, 1e-4).assign(theme_id=77)])  # a theme without items

    for horizon in (12, 2):
        scores = score_opportunities(items, accounts, momentum, now=NOW, weights=WEIGHTS, horizon_weeks=horizon)

        assert sorted(scores["theme_id"]) == sorted({*items["theme_id"], 77})
        assert scores["rank"].tolist() == list(range(1, len(scores) + 1))
        for row in scores.to_dict("records"):
            want = reference_metrics(items, accounts, row["theme_id"], horizon)
            assert {k: row["metrics"][k] for k in want} == want, row["theme_id"]
            theme_items = items.loc[(items["theme_id"] == row["theme_id"]) & (items["occurred_at"] <= NOW)]
            last = theme_items["occurred_at"].max() if len(theme_items) else None
            assert row["metrics"]["last_seen_at"] == (last.isoformat() if last is not None else None)
            if last is not None:
                assert row["metrics"]["days_since_last"] == (NOW - last) / pd.Timedelta(days=1)
            assert row["rationale"] == rationale(row["metrics"])
