"""The demo generator: volume, shape, determinism and the planted signals later stages must find."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import pytest

from ingest.demo import (
    DEAL_BLOCKER_THEME,
    DEMO_SOURCES,
    EMERGING_THEMES,
    FADING_THEME,
    STEADY_THEME,
    THEMES,
    DemoData,
    generate_demo,
)
from ingest.records import AccountRecord, AccountRef, FeedbackRecord

NOW = dt.datetime(2026, 3, 11, 15, 30, tzinfo=dt.UTC)  # a Wednesday: the current week is partial
WEEKS = 16
LEGAL_SUFFIXES = {"inc", "gmbh", "ltd", "llc", "plc", "ag", "corp", "sas"}
KIND_OF_SOURCE = {"zendesk-demo": "ticket", "intercom-demo": "chat", "salesforce-demo": "call_note",
                  "field-notes": "field_note"}


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return generate_demo(weeks=WEEKS, seed=7, now=NOW)


def week_index(when: dt.datetime) -> int:
    """0 for the first of the WEEKS ISO weeks, ``WEEKS - 1`` for the one holding NOW."""
    monday = (NOW - dt.timedelta(days=NOW.weekday())).date()
    return WEEKS - 1 - (monday - (when - dt.timedelta(days=when.weekday())).date()).days // 7


def weekly_counts(data: DemoData) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * WEEKS)
    for _, record in data.items:
        counts[data.truth[record.external_id]][week_index(record.occurred_at)] += 1
    return counts


def without_legal_suffix(name: str) -> str:
    head, _, last = name.rpartition(" ")
    return head if head and last.rstrip(".").casefold() in LEGAL_SUFFIXES else name


def resolve(ref: AccountRef, accounts: list[AccountRecord]) -> AccountRecord:
    """Find the one account a reference names: external id, then domain, then name with or without suffix."""
    for account in accounts:
        if ref.external_id and ref.system and account.external_ids.get(ref.system) == ref.external_id:
            return account
    for account in accounts:
        if ref.domain and account.domain == ref.domain:
            return account
    matches = [a for a in accounts if ref.name and ref.name in (a.name, without_legal_suffix(a.name))]
    assert len(matches) == 1, (ref, [a.name for a in matches])
    return matches[0]


def fingerprint(record: FeedbackRecord) -> tuple[object, ...]:
    return (record.external_id, record.text, record.occurred_at, record.kind, record.title, record.account,
            record.is_html, record.deal_amount)


def test_same_seed_and_now_give_the_same_data(demo: DemoData) -> None:
    again = generate_demo(weeks=WEEKS, seed=7, now=NOW)
    assert [(s, fingerprint(r)) for s, r in again.items] == [(s, fingerprint(r)) for s, r in demo.items]
    assert again.accounts == demo.accounts
    assert again.truth == demo.truth
    other = generate_demo(weeks=WEEKS, seed=8, now=NOW)
    assert [r.text for _, r in other.items[:50]] != [r.text for _, r in demo.items[:50]]


def test_volume_variety_and_kinds(demo: DemoData) -> None:
    texts = [record.text for _, record in demo.items]
    assert len(texts) >= 3000
    assert len(set(texts)) >= 1500
    assert all(text.strip() and "{" not in text for text in texts), "every slot is filled"
    kinds = Counter(record.kind for _, record in demo.items)
    assert set(kinds) == {"ticket", "chat", "call_note", "field_note"}
    assert min(kinds.values()) >= 200
    for source, record in demo.items:
        assert source in DEMO_SOURCES
        assert KIND_OF_SOURCE[source] == record.kind
    assert set(DEMO_SOURCES.values()) == {"zendesk", "intercom", "salesforce", "field_notes"}
    assert len(THEMES) >= 20
    assert set(demo.truth.values()) == set(THEMES)


def test_texts_carry_what_the_cleaner_and_redactor_need(demo: DemoData) -> None:
    texts = [record.text for _, record in demo.items]
    assert sum("wrote:" in t for t in texts) >= 50, "quoted reply chains"
    assert sum("\n--\n" in t for t in texts) >= 50, "email signatures"
    assert sum("@" in t for t in texts) >= 200, "email addresses"
    assert sum("+1 " in t or "+44 " in t or "+49 " in t for t in texts) >= 100, "phone numbers"
    html_items = [r for _, r in demo.items if r.is_html]
    assert len(html_items) >= 50
    assert all(r.kind == "ticket" and r.text.startswith("<p>") for r in html_items)
    assert all(r.title for _, r in demo.items if r.kind == "ticket")
    lengths = [len(t) for t in texts]
    assert min(lengths) < 80 and max(lengths) > 800, "one-liners and long multi-paragraph items"
    notes = " ".join(r.text.lower() for _, r in demo.items if r.kind in ("call_note", "field_note"))
    assert "call w/" in notes and "blocker" in notes


def test_items_span_sixteen_iso_weeks_ending_now(demo: DemoData) -> None:
    when = [record.occurred_at for _, record in demo.items]
    assert all(w.tzinfo is not None and w.utcoffset() == dt.timedelta(0) for w in when)
    assert max(when) <= NOW
    assert when == sorted(when)
    weeks = {w.isocalendar()[:2] for w in when}
    assert len(weeks) == WEEKS
    assert NOW.isocalendar()[:2] in weeks
    first_monday = dt.datetime(2025, 11, 24, tzinfo=dt.UTC)  # 15 weeks before the Monday of NOW
    assert min(when) >= first_monday


def test_external_ids_are_unique_and_all_labelled(demo: DemoData) -> None:
    per_source: dict[str, set[str]] = defaultdict(set)
    for source, record in demo.items:
        assert record.external_id not in per_source[source]
        per_source[source].add(record.external_id)
    assert len(demo.truth) == len(demo.items)  # ids do not collide across sources either


def test_accounts_are_plausible_and_every_reference_resolves(demo: DemoData) -> None:
    accounts = demo.accounts
    assert len(accounts) == 150
    assert len({a.name for a in accounts}) == 150
    assert len({a.domain for a in accounts}) == 150
    lifecycles = Counter(a.lifecycle for a in accounts)
    assert 0.5 <= lifecycles["customer"] / 150 <= 0.8
    assert 0.15 <= lifecycles["prospect"] / 150 <= 0.35
    assert lifecycles["churned"] >= 5
    assert {a.segment for a in accounts} == {"enterprise", "mid-market", "smb"}
    arr = defaultdict(list)
    for account in accounts:
        if account.lifecycle == "customer":
            assert account.arr and account.arr > 0
            arr[account.segment].append(account.arr)
    median = {segment: sorted(values)[len(values) // 2] for segment, values in arr.items()}
    assert median["enterprise"] > median["mid-market"] > median["smb"]
    prospects = [a for a in accounts if a.lifecycle == "prospect"]
    assert sum(bool(a.open_pipeline) for a in prospects) >= 0.7 * len(prospects)

    per_account: Counter[str] = Counter()
    for _, record in demo.items:
        if record.account is None:
            assert record.kind == "chat"  # anonymous website visitors only
            continue
        per_account[resolve(record.account, accounts).name] += 1
    busiest = per_account.most_common()
    top_tenth = sum(n for _, n in busiest[:15])
    assert top_tenth >= 0.3 * sum(per_account.values()), "activity is heavy-tailed"


def test_emerging_themes_appear_in_the_last_three_weeks(demo: DemoData) -> None:
    counts = weekly_counts(demo)
    totals = {key: sum(weeks) for key, weeks in counts.items()}
    for key in EMERGING_THEMES:
        weeks = counts[key]
        assert sum(weeks[:-3]) <= 4, (key, weeks)
        assert weeks[-1] > weeks[-3] and weeks[-1] >= 25, (key, weeks)
        assert sum(weeks[-3:]) >= 50
        assert totals[key] < max(totals.values())
    assert DEAL_BLOCKER_THEME in EMERGING_THEMES


def test_fading_theme_declines(demo: DemoData) -> None:
    weeks = weekly_counts(demo)[FADING_THEME]
    assert sum(weeks[:4]) >= 40
    assert sum(weeks[-4:]) <= 0.1 * sum(weeks[:4]), weeks


def test_steady_theme_is_the_largest_and_flat(demo: DemoData) -> None:
    counts = weekly_counts(demo)
    totals = Counter({key: sum(weeks) for key, weeks in counts.items()})
    assert totals.most_common(1)[0][0] == STEADY_THEME
    weeks = counts[STEADY_THEME]
    mean = sum(weeks) / len(weeks)
    assert all(0.5 * mean <= n <= 1.6 * mean for n in weeks), weeks
    first, second = sum(weeks[: WEEKS // 2]), sum(weeks[WEEKS // 2:])
    assert abs(first - second) <= 0.2 * max(first, second)


def test_other_themes_have_no_planted_trend(demo: DemoData) -> None:
    planted = {*EMERGING_THEMES, FADING_THEME, STEADY_THEME}
    for key, weeks in weekly_counts(demo).items():
        if key in planted:
            continue
        assert sum(weeks[:4]) >= 10, (key, weeks)
        assert sum(weeks[-3:]) <= 2.5 * sum(weeks[:3]) + 8, (key, weeks)


def test_deal_blocker_theme_comes_from_enterprise_prospects_with_pipeline(demo: DemoData) -> None:
    items = [r for _, r in demo.items if demo.truth[r.external_id] == DEAL_BLOCKER_THEME]
    hot = 0
    for record in items:
        if record.account is None:  # an anonymous visitor asking in chat
            continue
        account = resolve(record.account, demo.accounts)
        hot += (account.segment == "enterprise" and account.lifecycle == "prospect"
                and (account.open_pipeline or 0) > 0)
    assert hot >= 0.7 * len(items)
    notes = [r for r in items if r.kind in ("call_note", "field_note")]
    assert len(notes) >= 0.7 * len(items)
    text = " ".join(r.text.lower() for r in notes)
    assert "blocker" in text and "won't sign" in text
    assert "productboard" in text or "canny" in text
    assert sum(r.deal_amount is not None for r in notes) >= 0.7 * len(notes)


@pytest.mark.parametrize("now", [
    dt.datetime(2026, 3, 9, 0, 0, tzinfo=dt.UTC),  # the very start of a week
    dt.datetime(2026, 3, 15, 23, 59, 59, tzinfo=dt.UTC),  # its very end
    dt.datetime(2026, 3, 11, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),  # not UTC
])
def test_any_now_keeps_items_in_range(now: dt.datetime) -> None:
    data = generate_demo(weeks=4, accounts=40, seed=3, now=now)
    assert data.items
    assert all(r.occurred_at <= now and r.occurred_at.utcoffset() == dt.timedelta(0) for _, r in data.items)
    assert len({r.occurred_at.isocalendar()[:2] for _, r in data.items}) <= 4


def test_naive_now_is_taken_as_utc_and_bad_arguments_are_refused() -> None:
    naive = generate_demo(weeks=2, accounts=20, seed=1, now=dt.datetime(2026, 3, 11, 12))
    aware = generate_demo(weeks=2, accounts=20, seed=1, now=dt.datetime(2026, 3, 11, 12, tzinfo=dt.UTC))
    assert [r.text for _, r in naive.items] == [r.text for _, r in aware.items]
    with pytest.raises(ValueError, match="weeks"):
        generate_demo(weeks=0)
    with pytest.raises(ValueError, match="accounts"):
        generate_demo(accounts=0)
