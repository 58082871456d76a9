"""Read models shared by the command line, the API and the report: themes and opportunities as plain dicts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import AnalysisRun, Feedback, Opportunity, Theme, ThemeAssignment

EMERGING_TRENDS = ("new", "emerging")
TREND_STATUSES = ("new", "emerging", "growing", "stable", "fading", "dormant")


def latest_analysis_run_id(session: Session) -> int | None:
    """The last analysis that finished; its opportunities are the current ones."""
    return session.scalar(
        select(AnalysisRun.id)
        .where(AnalysisRun.kind.in_(("full", "incremental")), AnalysisRun.status == "succeeded")
        .order_by(AnalysisRun.id.desc()).limit(1)
    )


def theme_accounts(session: Session, theme_ids: list[int]) -> dict[int, int]:
    """Distinct accounts per theme."""
    if not theme_ids:
        return {}
    return dict(session.execute(
        select(ThemeAssignment.theme_id, func.count(func.distinct(Feedback.account_id)))
        .join(Feedback, Feedback.id == ThemeAssignment.feedback_id)
        .where(ThemeAssignment.theme_id.in_(theme_ids))
        .group_by(ThemeAssignment.theme_id)
    ).tuples().all())


def quote_texts(session: Session, themes: list[Theme], limit: int = 5) -> dict[int, list[dict[str, Any]]]:
    """The representative quotes of each theme, in the stored order."""
    wanted = {fid for t in themes for fid in (t.quotes or [])[:limit]}
    if not wanted:
        return {t.id: [] for t in themes}
    rows = {f.id: f for f in session.scalars(select(Feedback).where(Feedback.id.in_(wanted)))}
    out: dict[int, list[dict[str, Any]]] = {}
    for theme in themes:
        out[theme.id] = [
            {"feedback_id": fid, "text": rows[fid].text, "kind": rows[fid].kind, "source": rows[fid].source.name,
             "account": rows[fid].account.name if rows[fid].account else None,
             "occurred_at": rows[fid].occurred_at.isoformat(), "url": rows[fid].url}
            for fid in (theme.quotes or [])[:limit] if fid in rows
        ]
    return out


def theme_competitors(session: Session, theme_ids: list[int]) -> dict[int, dict[str, int]]:
    """How often each competitor is named in a theme's items."""
    counts: dict[int, Counter[str]] = {tid: Counter() for tid in theme_ids}
    if not theme_ids:
        return {}
    for theme_id, names in session.execute(
        select(ThemeAssignment.theme_id, Feedback.competitors)
        .join(Feedback, Feedback.id == ThemeAssignment.feedback_id)
        .where(ThemeAssignment.theme_id.in_(theme_ids))
    ).tuples():
        if names:
            counts[theme_id].update(names)
    return {tid: dict(c.most_common()) for tid, c in counts.items()}


def list_opportunities(session: Session, *, segment: str = "all", limit: int = 20,
                       run_id: int | None = None) -> list[dict[str, Any]]:
    """Ranked opportunities of the latest analysis (or ``run_id``) for a segment."""
    run_id = run_id or latest_analysis_run_id(session)
    if run_id is None:
        return []
    rows = session.execute(
        select(Opportunity, Theme).join(Theme, Theme.id == Opportunity.theme_id)
        .where(Opportunity.run_id == run_id, Opportunity.segment == segment, Theme.status == "active")
        .order_by(Opportunity.rank, Opportunity.theme_id).limit(limit)
    ).tuples().all()
    themes = [t for _, t in rows]
    quotes = quote_texts(session, themes, limit=3)
    competitors = theme_competitors(session, [t.id for t in themes])
    return [
        {
            "theme_id": t.id, "label": t.display_label, "score": round(o.score, 2), "rank": o.rank,
            "tier": o.tier, "components": o.components, "metrics": o.metrics, "rationale": o.rationale,
            "trend": t.trend, "keywords": t.keywords, "quotes": [q["text"] for q in quotes.get(t.id, [])],
            "competitors": competitors.get(t.id, {}), "decision": t.decision, "segment": segment,
        }
        for o, t in rows
    ]


def list_themes(session: Session, *, status: str | None = None, sort: str = "score", limit: int = 200,
                segment: str = "all") -> list[dict[str, Any]]:
    """Themes with size, accounts, trend and quotes.

    ``status`` filters on the trend (``emerging`` means new or emerging, strongest momentum first) or on
    the theme's state (``active``, ``archived``, ``merged``, ``retired``).
    """
    query = select(Theme)
    if status is None:
        query = query.where(Theme.status == "active")
    elif status == "emerging":
        query = query.where(Theme.status == "active", Theme.trend.in_(EMERGING_TRENDS))
    elif status in TREND_STATUSES:
        query = query.where(Theme.status == "active", Theme.trend == status)
    else:
        query = query.where(Theme.status == status)
    themes = list(session.scalars(query))
    run_id = latest_analysis_run_id(session)
    opp: dict[int, Opportunity] = {}
    if run_id is not None and themes:
        opp = {o.theme_id: o for o in session.scalars(select(Opportunity).where(
            Opportunity.run_id == run_id, Opportunity.segment == segment,
            Opportunity.theme_id.in_([t.id for t in themes])))}
    accounts = theme_accounts(session, [t.id for t in themes])

    def momentum(t: Theme) -> float:
        o = opp.get(t.id)
        return float((o.metrics or {}).get("emerging_strength") or 0.0) if o else 0.0

    def score(t: Theme) -> float:
        o = opp.get(t.id)
        return o.score if o else -1.0

    if status == "emerging" or sort == "momentum":
        themes.sort(key=lambda t: (-momentum(t), -score(t), t.id))
    elif sort == "size":
        themes.sort(key=lambda t: (-t.size, t.id))
    else:
        themes.sort(key=lambda t: (-score(t), -t.size, t.id))
    themes = themes[:limit]
    quotes = quote_texts(session, themes)
    return [
        {
            "id": t.id, "label": t.display_label, "auto_label": t.label, "keywords": t.keywords, "size": t.size,
            "accounts": int(accounts.get(t.id, 0)), "status": t.trend or "unknown", "state": t.status,
            "score": round(opp[t.id].score, 2) if t.id in opp else None,
            "tier": opp[t.id].tier if t.id in opp else None,
            "momentum": momentum(t),
            "quotes": [q["text"] for q in quotes.get(t.id, [])],
        }
        for t in themes
    ]
