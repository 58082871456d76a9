"""The weekly theme report: rendering on hand-built data, saving, and the whole path on demo data."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from models.settings import Settings
from models.tables import Report, Theme
from pipeline.report import (
    AccountAtStake,
    Decision,
    FieldNote,
    Headline,
    OpportunityRow,
    Quote,
    ReportData,
    ReportError,
    ThemeFigures,
    ThemeWeek,
    compare_snapshots,
    iso_week_bounds,
    md_text,
    mentions_matrix,
    parse_snapshot,
    render_report,
    snapshot,
)
from pipeline.report_data import build_weekly_report, last_complete_week, save_report, week_window
from tests.chromium import CHROMIUM_ARGS, require_chromium

URL = "https://gs.example.com"
SECTIONS = ("Headline", "Top opportunities", "What changed", "Themes this week", "Accounts and ARR at stake",
            "From the field", "PM decisions")


def theme(theme_id: int, label: str, items: int, *, quotes: int = 2, score: float | None = None,
          trend: str | None = None) -> ThemeWeek:
    return ThemeWeek(
        theme_id=theme_id, label=label, items=items, accounts=max(items // 2, 0), url=f"{URL}/themes/{theme_id}",
        arr=1_400_000.0 if theme_id == 1 else 0.0, open_pipeline=600_000.0 if theme_id == 2 else 0.0,
        score=score, trend=trend,
        quotes=tuple(Quote(text=f"{label} quote {k}: we need this badly", source="zendesk-demo",
                           url=f"https://support.example.com/tickets/{theme_id}{k}", account=f"Acme {theme_id}-{k}",
                           kind="ticket") for k in range(quotes)),
    )


def weekly(rows: dict[int, list[int]], last_week: str = "2026-W47") -> pd.DataFrame:
    monday = iso_week_bounds(last_week)
    out = []
    for theme_id, counts in rows.items():
        for k, n in enumerate(reversed(counts)):
            day = monday - dt.timedelta(weeks=k)
            year, week, _ = day.isocalendar()
            out.append((theme_id, f"{year}-W{week:02d}", n))
    return pd.DataFrame(out, columns=["theme_id", "week", "items"])


def make_data(*, previous: dict[int, ThemeFigures] | None = None) -> ReportData:
    themes = [
        theme(1, "Data residency in the EU", 42, score=81.5, trend="emerging"),
        theme(2, "AI summaries of threads", 25, score=64.25, trend="new"),
        theme(3, "Calendar sync duplicates", 2, score=20.0, trend="fading"),
        theme(4, "Dashboard performance", 30, score=55.0, trend="stable"),
        theme(5, "CSV export", 0, quotes=0, score=None, trend="dormant"),
    ]
    opportunities = [
        OpportunityRow(theme_id=1, label=themes[0].label, rank=1, score=81.5, tier="vital",
                       rationale="12 accounts ($1.4M ARR) cite it as a blocker; mentions tripled (p < 0.01)",
                       url=f"{URL}/themes/1", trend="emerging", decision="planned",
                       components={"reach": 0.8, "revenue": 0.9, "momentum": 0.95, "severity": 0.5, "recency": 1.0}),
        OpportunityRow(theme_id=2, label=themes[1].label, rank=2, score=64.25, tier="important",
                       rationale="new this month across 9 accounts", url=f"{URL}/themes/2",
                       components={"reach": 0.6, "revenue": 0.4, "momentum": 0.9, "severity": 0.2, "recency": 1.0}),
        OpportunityRow(theme_id=4, label=themes[3].label, rank=3, score=55.0, tier="nice_to_have",
                       rationale="steady", url=f"{URL}/themes/4",
                       components={"reach": 0.9, "revenue": 0.5, "momentum": 0.1, "severity": 0.3, "recency": 1.0}),
    ]
    when = dt.datetime(2026, 11, 18, 10, tzinfo=dt.UTC)
    return ReportData(
        week="2026-W47", week_start=dt.date(2026, 11, 16), generated_at=dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC),
        headline=Headline(items=1234, accounts=87, themes_active=4, field_notes=9, deal_blockers=5,
                          items_previous=914),
        themes=themes, opportunities=opportunities,
        weekly_mentions=weekly({1: [0, 0, 1, 10, 25, 42], 2: [0, 0, 0, 0, 9, 25], 4: [31, 29, 30, 28, 33, 30]}),
        accounts=[
            AccountAtStake(name="Globex", lifecycle="customer", arr=1_200_000.0, open_pipeline=0.0, items=4,
                           themes=(themes[0].label,), segment="enterprise", churn_risk=True),
            AccountAtStake(name="Initech", lifecycle="prospect", arr=0.0, open_pipeline=600_000.0, items=2,
                           themes=(themes[0].label, themes[1].label), segment="enterprise", deal_blocker=True),
            AccountAtStake(name="Hooli", lifecycle="customer", arr=200_000.0, open_pipeline=0.0, items=1,
                           themes=(themes[3].label,), segment="smb"),
        ],
        field_notes=[
            FieldNote(text="Great call, they love the new dashboard.", kind="call_note", url=f"{URL}/themes/4",
                      occurred_at=when + dt.timedelta(days=1), account="Hooli", submitted_by="sam@vendor.io"),
            FieldNote(text="Won't sign until data stays in the EU; looking at Productboard.", kind="field_note",
                      url=f"{URL}/themes/1", occurred_at=when, account="Initech", submitted_by="ana@vendor.io",
                      theme=themes[0].label, deal_blocker=True, deal_stage="negotiation", deal_amount=600_000.0,
                      competitors=("Productboard",)),
        ],
        decisions=[
            Decision(theme_id=3, label=themes[2].label, decision="shipped", url=f"{URL}/themes/3",
                     note="Fixed in 4.2", decided_by="pm@vendor.io",
                     decided_at=dt.datetime(2026, 11, 10, tzinfo=dt.UTC), accounts=14),
            Decision(theme_id=1, label=themes[0].label, decision="planned", url=f"{URL}/themes/1",
                     note="Q1: EU region", accounts=12),
        ],
        previous=previous, previous_week="2026-W46" if previous is not None else None,
    )


PREVIOUS = {
    1: ThemeFigures("Data residency in the EU", 25, 10, 70.0, "emerging"),  # 25 -> 42: growing
    3: ThemeFigures("Calendar sync duplicates", 12, 8, 30.0, "fading"),  # 12 -> 2: fading
    4: ThemeFigures("Dashboard performance", 28, 14, 55.0, "stable"),  # 28 -> 30: noise
    5: ThemeFigures("CSV export", 4, 3, 10.0, "stable"),  # 4 -> 0: gone
    9: ThemeFigures("Old retired theme", 6, 5, 12.0, "fading"),  # no longer a theme: gone
}


# -- pure parts ----------------------------------------------------------------------------------------------
def test_compare_snapshots_sorts_themes_into_new_growing_fading_gone() -> None:
    current = {t.theme_id: t.figures() for t in make_data().themes}
    changes = compare_snapshots(current, PREVIOUS)
    assert [c.theme_id for c in changes.new] == [2]
    assert [(c.theme_id, c.before, c.after) for c in changes.growing] == [(1, 25, 42)]
    assert [(c.theme_id, c.before, c.after) for c in changes.fading] == [(3, 12, 2)]
    assert [c.theme_id for c in changes.gone] == [9, 5]  # most mentions last week first
    assert changes.gone[0].label == "Old retired theme"


@pytest.mark.parametrize(("before", "after", "kind"), [
    (2, 4, None),  # two more mentions is not growth
    (4, 7, "growing"),
    (40, 48, None),  # +20% of a large theme is noise
    (40, 50, "growing"),
    (10, 7, "fading"),
    (10, 8, None),
    (3, 0, "gone"),
    (2, 0, None),  # two mentions last week and none now is not news either
])
def test_compare_snapshots_needs_a_real_change(before: int, after: int, kind: str | None) -> None:
    changes = compare_snapshots({1: ThemeFigures("t", after, 1)}, {1: ThemeFigures("t", before, 1)})
    found = [k for k, items in changes.by_kind().items() if items]
    assert found == ([kind] if kind else [])


def test_snapshot_round_trips_through_json() -> None:
    themes = make_data().themes
    stored = json.loads(json.dumps(snapshot(themes)))
    assert set(stored) == {"1", "2", "3", "4", "5"}
    assert stored["1"] == {"label": "Data residency in the EU", "items": 42, "accounts": 21, "score": 81.5,
                           "trend": "emerging"}
    assert parse_snapshot(stored) == {t.theme_id: t.figures() for t in themes}
    assert parse_snapshot({"note": "x", "7": "bad"}) == {}


def test_iso_week_and_last_complete_week() -> None:
    assert iso_week_bounds("2026-W47") == dt.date(2026, 11, 16)
    assert iso_week_bounds("2027-W01") == dt.date(2027, 1, 4)
    for bad in ("2026-47", "2026-W54", "W47", "", "2026-W47.md"):
        with pytest.raises(ReportError):
            iso_week_bounds(bad)
    # Sunday 23:30 UTC is already Monday in Berlin: there W47 is complete, in UTC it is not.
    now = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    assert last_complete_week(now, "Europe/Berlin") == "2026-W47"
    assert last_complete_week(now, "UTC") == "2026-W46"
    start, end = week_window("2026-W47", "Europe/Berlin")
    assert start == dt.datetime(2026, 11, 15, 23, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 11, 22, 23, tzinfo=dt.UTC)
    with pytest.raises(ReportError):
        last_complete_week(now, "Mars/Olympus")


def test_mentions_matrix_fills_missing_weeks_with_zero() -> None:
    frame = weekly({1: [3, 5], 2: [7]})
    matrix = mentions_matrix(frame, [2, 1, 8], last_week="2026-W47", weeks=4)
    assert list(matrix.index) == ["2026-W44", "2026-W45", "2026-W46", "2026-W47"]
    assert matrix[1].tolist() == [0, 0, 3, 5]
    assert matrix[2].tolist() == [0, 0, 0, 7]
    assert matrix[8].tolist() == [0, 0, 0, 0]


# -- rendering ----------------------------------------------------------------------------------------------
def _images(page: str) -> list[np.ndarray]:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [mpimg.imread(io.BytesIO(base64.b64decode(u)), format="png") for u in uris]


def test_html_has_every_section_numbers_and_embedded_charts() -> None:
    rendered = render_report(make_data(previous=PREVIOUS))
    page = rendered.html
    for section in SECTIONS:
        assert f">{section}</h2>" in page
    assert "Groundswell theme report — 2026-W47" in page
    assert "16–22 Nov 2026" in page
    assert "1,234" in page and "+35% vs last week" in page  # 914 -> 1,234
    assert "$1.4M across 2 customers" in page and "$600k across 1 prospects" in page
    assert "81.5" in page and "0.95" in page and "tripled (p &lt; 0.01)" in page
    assert "1 / 1 / 1 / 2" in page  # new / growing / fading / gone
    assert "25 → 42 mentions (+68%)" in page and "Old retired theme" in page
    assert "Planned" in page and "Shipped" in page and "Fixed in 4.2" in page
    assert page.count("https://support.example.com/tickets/") >= 6  # a link back per quote
    # The deal blocker leads the field notes even though it is older.
    assert page.index("Won&#39;t sign until") < page.index("they love the new dashboard")
    images = _images(page)
    assert len(images) >= 2 and "<script" not in page and "http://" not in page.split("<main>")[0]
    for image in images:
        assert image.shape[0] > 100 and image.shape[1] > 300
        assert float(image[..., :3].std()) > 0.02  # drawn, not blank
    assert set(rendered.charts) == {"mentions", "scores"}


def test_markdown_carries_the_same_content() -> None:
    data = make_data(previous=PREVIOUS)
    rendered = render_report(data)
    md, page = rendered.markdown, rendered.html
    for section in SECTIONS:
        assert f"## {section}" in md
    assert md.startswith("# Groundswell theme report — 2026-W47")
    for text in ("1,234", "+35% vs last week", "$1.4M across 2 customers", "25 → 42 mentions (+68%)",
                 "Old retired theme", "Fixed in 4.2", "**Deal blocker:**", "Productboard"):
        assert text in md, text
    for t in data.themes:
        for q in t.quotes:
            assert q.url in md and q.url in page
            assert q.account is not None and q.account in md and q.account in page
    for o in data.opportunities:
        assert o.label in md and o.label in page
        assert f"{o.score:.1f}" in md
    # The charts' numbers as a table: the emerging theme's last weeks.
    assert re.search(r"\| 2026-W47 \| 42 \| 25 \| 30 \|", md)
    assert md.index("Won't sign until") < md.index("they love the new dashboard")
    assert "data:image" not in md


def test_first_report_says_there_is_nothing_to_compare() -> None:
    rendered = render_report(make_data(previous=None))
    assert "first report" in rendered.markdown and "first report" in rendered.html
    assert "### New" not in rendered.markdown


def test_customer_text_cannot_inject_markup_or_links() -> None:
    data = make_data()
    evil = Quote(text='<script>alert(1)</script> see [here](javascript:alert(1)) | a | b',
                 source="intercom", url="javascript:alert(1)", account="<b>Evil</b> Corp")
    data.themes[0] = ThemeWeek(**{**data.themes[0].__dict__, "quotes": (evil,)})
    rendered = render_report(data)
    assert "<script>" not in rendered.html and 'href="javascript' not in rendered.html
    assert 'href="#"' in rendered.html
    assert re.search(r"(?<!\\)<[A-Za-z/]", rendered.markdown) is None  # no raw tag survives
    assert "\\<script>" in rendered.markdown and "\\<b>Evil\\</b> Corp" in rendered.markdown
    assert re.search(r"(?<!\\)\]\(javascript", rendered.markdown) is None  # the brackets are escaped
    quote_line = next(line for line in rendered.markdown.splitlines() if "alert" in line)
    assert "\\|" in quote_line and "(#)" in quote_line


@pytest.mark.browser
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = require_chromium()
    page = tmp_path / "report.html"
    page.write_text(render_report(make_data(previous=PREVIOUS)).html, encoding="utf-8")
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
        check=True, timeout=120, capture_output=True,
    )
    assert shot.exists() and shot.stat().st_size > 20_000
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert float(pixels[..., :3].std()) > 0.05
    # Charts are drawn (coloured lines and bars), not just black text on white.
    rgb = pixels[..., :3]
    colourful = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.3
    assert colourful.sum() > 500


# -- saving ----------------------------------------------------------------------------------------------------
def test_save_report_upserts_one_row_per_week_and_writes_files(sessions, settings: Settings) -> None:
    directory = settings.reports_dir
    with sessions.begin() as session:
        first = save_report(session, "2026-W47", "# one", "<p>one</p>", {"1": {"items": 1}}, directory)
    with sessions.begin() as session:
        session.get_one(Report, first.report_id).delivery = {"slack": {"status": "sent"}}
    with sessions.begin() as session:
        second = save_report(session, "2026-W47", "# two", "<p>two</p>", {"1": {"items": 2}}, directory)
        other = save_report(session, "2026-W46", "# old", "<p>old</p>", {}, directory)
    assert second.report_id == first.report_id != other.report_id
    assert first.md_path.read_text() == "# two" and first.html_path.read_text() == "<p>two</p>"
    assert first.md_path == directory / "2026-W47.md" and first.html_path == directory / "2026-W47.html"
    assert first.md_path.stat().st_mode & 0o777 == 0o644  # readable by the web server, not mkstemp's 0600
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 2
        row = session.scalars(select(Report).where(Report.week == "2026-W47")).one()
        assert (row.markdown, row.snapshot, row.delivery) == ("# two", {"1": {"items": 2}}, {})
    assert sorted(p.name for p in directory.iterdir()) == ["2026-W46.html", "2026-W46.md", "2026-W47.html",
                                                           "2026-W47.md"]
    with sessions.begin() as session, pytest.raises(ReportError):
        save_report(session, "../../etc/passwd", "x", "x", {}, directory)


def test_a_crash_while_writing_keeps_the_old_file_whole(sessions, settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    directory = settings.reports_dir
    with sessions.begin() as session:
        save_report(session, "2026-W47", "# complete old report", "<p>old</p>", {}, directory)

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with sessions.begin() as session, pytest.raises(OSError, match="disk full"):
        save_report(session, "2026-W47", "# new" * 10_000, "<p>new</p>", {}, directory)
    monkeypatch.undo()
    assert (directory / "2026-W47.md").read_text() == "# complete old report"
    assert sorted(p.name for p in directory.iterdir()) == ["2026-W47.html", "2026-W47.md"]  # no temp files left
    with sessions() as session:
        assert session.scalars(select(Report.markdown)).one() == "# complete old report"


# -- end to end on demo data -------------------------------------------------------------------------------------
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)  # a Friday in 2026-W47: the last complete week is W46


def test_demo_report_end_to_end(sessions, settings: Settings) -> None:
    from ingest.demo import generate_demo
    from ingest.demo_loader import load_demo
    from pipeline.analysis import Analyzer
    from pipeline.embedding import HashingEmbedder

    load_demo(sessions, generate_demo(weeks=10, accounts=40, seed=3, now=NOW))
    Analyzer(sessions, settings, HashingEmbedder(128)).run(now=NOW)
    with sessions.begin() as session:  # a PM decision the report must carry
        decided = session.scalars(select(Theme).where(Theme.status == "active").order_by(Theme.id)).first()
        assert decided is not None
        decided.decision, decided.decision_note, decided.decided_by = "planned", "EU region in Q1", "pm@x.io"
        decided_label = decided.display_label

    earlier = build_weekly_report(sessions, settings, week="2026-W45", now=NOW)
    result = build_weekly_report(sessions, settings, now=NOW)
    assert result.week == "2026-W46"
    assert result.md_path == settings.reports_dir / "2026-W46.md" and result.md_path.exists()
    assert result.html_path.exists() and earlier.md_path.exists()
    md, page = result.md_path.read_text(), result.html_path.read_text()
    assert md.startswith("# Groundswell theme report — 2026-W46")
    assert "snapshot frozen in the 2026-W45 report" in md
    assert len(re.findall(r"data:image/png;base64,", page)) >= 2
    assert "EU region in Q1" in md and decided_label in md
    assert result.summary["top"] and result.summary["url"].endswith(f"/reports/{result.report_id}")
    with sessions() as session:
        row = session.get_one(Report, result.report_id)
        assert row.markdown == md and row.html == page and row.path == str(result.md_path)
        frozen = parse_snapshot(row.snapshot)
        active = session.scalar(select(func.count()).select_from(Theme).where(Theme.status == "active"))
        assert len(frozen) == active and sum(f.items for f in frozen.values()) > 0

    # Regenerating replaces the week's row and files instead of adding one.
    again = build_weekly_report(sessions, settings, week="2026-W46", now=NOW + dt.timedelta(hours=1))
    assert again.report_id == result.report_id
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 2
        assert session.scalar(select(func.count()).select_from(Report).where(Report.week == "2026-W46")) == 1

    # The diff reads last week's frozen snapshot, not today's figures: doctor it and the report follows.
    with sessions.begin() as session:
        now46 = parse_snapshot(session.get_one(Report, result.report_id).snapshot)
        busiest = max(now46, key=lambda tid: (now46[tid].items, -tid))
        row45 = session.get_one(Report, earlier.report_id)
        row45.snapshot = {k: v for k, v in row45.snapshot.items() if int(k) != busiest}
    md = build_weekly_report(sessions, settings, now=NOW).md_path.read_text()
    new_section = md.split("### New")[1].split("### Growing")[0]
    assert f"- {md_text(now46[busiest].label, 80)}: {now46[busiest].items} mentions" in new_section
