"""Issue acceptance on the demo data with the real model: the planted signals are found.

The demo generator plants two themes that emerge in the last three weeks (one a deal blocker among
enterprise prospects), a fading theme and a steady large theme (see ingest/demo.py).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import select

from api.queries import list_opportunities, list_themes
from ingest.demo import DEAL_BLOCKER_THEME, EMERGING_THEMES, FADING_THEME, STEADY_THEME, generate_demo
from ingest.demo_loader import load_demo
from models.tables import Feedback, ThemeAssignment
from pipeline.analysis import Analyzer
from pipeline.embedding import SentenceEmbedder

pytestmark = pytest.mark.slow
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


def planted_theme_of(session, truth: dict[str, str]) -> dict[int, str]:
    """Each theme's majority planted key (by the generator's ground truth)."""
    votes: dict[int, Counter[str]] = {}
    for external_id, theme_id in session.execute(
        select(Feedback.external_id, ThemeAssignment.theme_id)
        .join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
    ).tuples():
        votes.setdefault(theme_id, Counter())[truth[external_id]] += 1
    return {tid: c.most_common(1)[0][0] for tid, c in votes.items()}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_planted_signals_are_found(sessions, settings) -> None:
    data = generate_demo(now=NOW)
    load_demo(sessions, data)
    summary = Analyzer(sessions, settings, SentenceEmbedder()).run(now=NOW)
    assert summary.unassigned_share <= 0.10
    with sessions() as session:
        planted = planted_theme_of(session, data.truth)
        emerging = list_themes(session, trend=("new", "emerging"), sort="momentum")
        assert sorted(planted[t.id] for t in emerging[:2]) == sorted(EMERGING_THEMES)
        top3 = [planted[o.theme_id] for o in list_opportunities(session, limit=3)]
        assert DEAL_BLOCKER_THEME in top3
        themes = {t.id: t for t in list_themes(session, limit=500)}
        fading = [t for tid, t in themes.items() if planted.get(tid) == FADING_THEME]
        assert fading and all(t.trend == "fading" for t in fading)
        steady = [t for tid, t in themes.items() if planted.get(tid) == STEADY_THEME]
        assert steady and all(t.trend == "stable" for t in steady)
        assert max(themes.values(), key=lambda t: t.size).id in {t.id for t in steady}
        emerging_labels = [t.label for t in emerging[:2]]

    # The weekly report for the demo's last complete week names the planted emerging themes, with charts.
    import re

    from pipeline.report_data import build_weekly_report

    report = build_weekly_report(sessions, settings, now=NOW)
    markdown, page = report.md_path.read_text(), report.html_path.read_text()
    for label in emerging_labels:
        assert label in markdown
    assert len(re.findall(r"data:image/png;base64,", page)) >= 2
