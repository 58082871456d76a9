"""The thin database code of the weekly report: load a :class:`~pipeline.report.ReportData`, save a report.

Rendering is pure and lives in :mod:`pipeline.report`; delivery (network) lives in ``flows.delivery``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.db import session_scope
from models.settings import Settings
from models.tables import (
    Account,
    Feedback,
    Opportunity,
    Report,
    Theme,
    ThemeAssignment,
    ThemeStat,
    utcnow,
)
from pipeline.report import (
    MENTION_CHART_WEEKS,
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
    iso_week,
    iso_week_bounds,
    parse_snapshot,
    render_report,
    safe_url,
)
from pipeline.runs import latest_scored_run_id

log = logging.getLogger(__name__)

SALES_NOTE_KINDS = ("field_note", "call_note")
TOP_OPPORTUNITIES = 10
STAKE_OPPORTUNITIES = 5  # accounts "at stake" are those behind the top 5 opportunities
QUOTES_PER_THEME = 3
DEFAULT_PUBLIC_URL = str(Settings.model_fields["public_url"].default)


@dataclass(frozen=True)
class SavedReport:
    report_id: int
    md_path: Path
    html_path: Path


@dataclass(frozen=True)
class ReportResult:
    """What ``build_weekly_report`` wrote; ``summary`` is what a Slack message or an e-mail subject needs."""

    week: str
    md_path: Path
    html_path: Path
    report_id: int
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"week": self.week, "report_id": self.report_id, "markdown": str(self.md_path),
                "html": str(self.html_path)}


# -- weeks --------------------------------------------------------------------------------------------------
def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {tz!r}; use an IANA name such as Europe/Berlin") from None


def last_complete_week(now: dt.datetime, tz: str) -> str:
    """The ISO week before the one that holds ``now`` in time zone ``tz``."""
    if now.tzinfo is None:
        raise ReportError("`now` must be time-zone aware")
    local = now.astimezone(zone(tz)).date()
    return iso_week(local - dt.timedelta(days=local.weekday() + 7))


def week_window(week: str, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """UTC instants of Monday 00:00 and the next Monday 00:00 of ``week`` in time zone ``tz``."""
    monday = iso_week_bounds(week)
    z = zone(tz)
    start = dt.datetime.combine(monday, dt.time(0), tzinfo=z).astimezone(dt.UTC)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(0), tzinfo=z).astimezone(dt.UTC)
    return start, end


# -- loading ------------------------------------------------------------------------------------------------
def _theme_url(public_url: str, theme_id: int) -> str:
    return f"{public_url.rstrip('/')}/themes/{theme_id}"


def _record_url(public_url: str, row: Feedback, theme_id: int | None) -> str:
    """The source record's own link when it has one, else the theme page that holds it."""
    own = safe_url(row.url)
    if own:
        return own
    if theme_id is not None:
        return _theme_url(public_url, theme_id)
    return f"{public_url.rstrip('/')}/feedback/{row.id}"


def _quote(row: Feedback, url: str) -> Quote:
    return Quote(text=row.text, source=row.source.name, url=url, account=row.account.name if row.account else None,
                 kind=row.kind, occurred_at=row.occurred_at)


def _in_week(when: dt.datetime, start: dt.datetime, end: dt.datetime) -> bool:
    return start <= when < end


def _theme_quotes(session: Session, themes: list[Theme], week_items: Mapping[int, int], *, start: dt.datetime,
                  end: dt.datetime, public_url: str) -> dict[int, tuple[Quote, ...]]:
    """2 or 3 quotes per theme: its representative quotes (this week's first), topped up with this week's items."""
    wanted = {fid for t in themes for fid in (t.quotes or [])[:5]}
    rows = {f.id: f for f in session.scalars(select(Feedback).where(Feedback.id.in_(wanted)))} if wanted else {}
    out: dict[int, tuple[Quote, ...]] = {}
    for theme in themes:
        picked = [rows[fid] for fid in (theme.quotes or [])[:5] if fid in rows]
        picked.sort(key=lambda f: not _in_week(f.occurred_at, start, end))  # stable: keeps representativeness
        picked = picked[:QUOTES_PER_THEME]
        if len(picked) < 2 and week_items.get(theme.id, 0) > 0:
            extra = session.scalars(
                select(Feedback).join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
                .where(ThemeAssignment.theme_id == theme.id, Feedback.occurred_at >= start,
                       Feedback.occurred_at < end, Feedback.id.not_in([f.id for f in picked] or [-1]))
                .order_by(ThemeAssignment.similarity.desc(), Feedback.id).limit(QUOTES_PER_THEME - len(picked))
            ).all()
            picked += list(extra)
        out[theme.id] = tuple(_quote(f, _record_url(public_url, f, theme.id)) for f in picked)
    return out


def _previous(session: Session, week: str, monday: dt.date,
              labels: Mapping[int, str]) -> tuple[dict[int, ThemeFigures] | None, str | None, bool]:
    """The latest earlier report's frozen snapshot; else last week's figures recomputed from ``theme_stat``."""
    earlier = session.scalars(
        select(Report).where(Report.week < week).order_by(Report.week.desc()).limit(1)).first()
    if earlier is not None:
        return parse_snapshot(earlier.snapshot), earlier.week, False
    last_week = iso_week(monday - dt.timedelta(days=7))
    stats = session.execute(
        select(ThemeStat.theme_id, ThemeStat.items, ThemeStat.accounts).where(ThemeStat.week == last_week)
    ).tuples().all()
    if not stats:
        return None, None, False
    figures = {int(tid): ThemeFigures(labels.get(int(tid), f"Theme {tid}"), int(items), int(accounts))
               for tid, items, accounts in stats if int(tid) in labels}
    return figures, last_week, True


def load_report_data(session: Session, *, week: str | None, now: dt.datetime, tz: str,
                     public_url: str = DEFAULT_PUBLIC_URL) -> ReportData:
    """Everything the report for ISO ``week`` shows (default: the last complete week in ``tz``)."""
    if now.tzinfo is None:
        raise ReportError("`now` must be time-zone aware")
    week = week or last_complete_week(now, tz)
    monday = iso_week_bounds(week)
    start, end = week_window(week, tz)
    prev_start, _ = week_window(iso_week(monday - dt.timedelta(days=7)), tz)

    themes = list(session.scalars(select(Theme).where(Theme.status == "active").order_by(Theme.id)))
    labels = {t.id: t.display_label for t in themes}
    chart_weeks = [iso_week(monday - dt.timedelta(weeks=k)) for k in range(MENTION_CHART_WEEKS)]
    stat_rows = session.execute(
        select(ThemeStat.theme_id, ThemeStat.week, ThemeStat.items, ThemeStat.accounts, ThemeStat.arr,
               ThemeStat.open_pipeline)
        .where(ThemeStat.week.in_(chart_weeks), ThemeStat.theme_id.in_(list(labels) or [-1]))
    ).tuples().all()
    weekly = pd.DataFrame([(int(r[0]), r[1], int(r[2])) for r in stat_rows], columns=["theme_id", "week", "items"])
    this_week = {int(r[0]): r for r in stat_rows if r[1] == week}

    run_id = latest_scored_run_id(session)
    opportunities: list[Opportunity] = []
    if run_id is not None:
        opportunities = list(session.scalars(
            select(Opportunity).join(Theme, Theme.id == Opportunity.theme_id)
            .where(Opportunity.run_id == run_id, Opportunity.segment == "all", Theme.status == "active")
            .order_by(Opportunity.rank, Opportunity.theme_id)))
    scores = {o.theme_id: float(o.score) for o in opportunities}
    by_id = {t.id: t for t in themes}

    week_items = {tid: int(r[2]) for tid, r in this_week.items()}
    quotes = _theme_quotes(session, themes, week_items, start=start, end=end, public_url=public_url)
    theme_weeks = [
        ThemeWeek(theme_id=t.id, label=t.display_label, items=week_items.get(t.id, 0),
                  accounts=int(this_week[t.id][3]) if t.id in this_week else 0,
                  arr=float(this_week[t.id][4]) if t.id in this_week else 0.0,
                  open_pipeline=float(this_week[t.id][5]) if t.id in this_week else 0.0,
                  score=scores.get(t.id), trend=t.trend, url=_theme_url(public_url, t.id), quotes=quotes[t.id])
        for t in themes
    ]
    top = [
        OpportunityRow(theme_id=o.theme_id, label=labels[o.theme_id], rank=int(o.rank), score=float(o.score),
                       tier=o.tier, rationale=o.rationale or "", url=_theme_url(public_url, o.theme_id),
                       components={k: float(v or 0.0) for k, v in (o.components or {}).items()},
                       trend=by_id[o.theme_id].trend, decision=by_id[o.theme_id].decision)
        for o in opportunities[:TOP_OPPORTUNITIES]
    ]

    items = session.execute(
        select(Feedback.id, Feedback.account_id, Feedback.kind, Feedback.flags, ThemeAssignment.theme_id)
        .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
        .where(Feedback.occurred_at >= start, Feedback.occurred_at < end, Feedback.duplicate_of.is_(None))
    ).tuples().all()
    previous_items = session.scalar(
        select(func.count(Feedback.id))
        .where(Feedback.occurred_at >= prev_start, Feedback.occurred_at < start, Feedback.duplicate_of.is_(None)))
    headline = Headline(
        items=len(items),
        accounts=len({a for _, a, _, _, _ in items if a is not None}),
        themes_active=sum(1 for n in week_items.values() if n > 0),
        field_notes=sum(1 for _, _, kind, _, _ in items if kind in SALES_NOTE_KINDS),
        deal_blockers=sum(1 for _, _, _, flags, _ in items if (flags or {}).get("deal_blocker")),
        items_previous=int(previous_items or 0),
    )
    previous, previous_week, recomputed = _previous(session, week, monday, labels)
    return ReportData(
        week=week, week_start=monday, generated_at=now, headline=headline, themes=theme_weeks,
        opportunities=top, weekly_mentions=weekly,
        accounts=_accounts_at_stake(session, items, [o.theme_id for o in top[:STAKE_OPPORTUNITIES]], labels),
        field_notes=_field_notes(session, start, end, labels, public_url),
        decisions=_decisions(session, themes, public_url),
        previous=previous, previous_week=previous_week, previous_recomputed=recomputed, partial_week=end > now,
    )


def _accounts_at_stake(session: Session, items: Iterable[tuple[int, int | None, str, Any, int | None]],
                       theme_ids: list[int], labels: Mapping[int, str]) -> list[AccountAtStake]:
    wanted = set(theme_ids)
    per_account: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"items": 0, "themes": set(), "churn": False, "blocker": False})
    for _, account_id, _, flags, theme_id in items:
        if account_id is None or theme_id not in wanted:
            continue
        entry = per_account[account_id]
        entry["items"] += 1
        entry["themes"].add(theme_id)
        entry["churn"] |= bool((flags or {}).get("churn_risk"))
        entry["blocker"] |= bool((flags or {}).get("deal_blocker"))
    if not per_account:
        return []
    order = {tid: i for i, tid in enumerate(theme_ids)}
    out = []
    for account in session.scalars(select(Account).where(Account.id.in_(list(per_account)))):
        entry = per_account[account.id]
        out.append(AccountAtStake(
            name=account.name, lifecycle=account.lifecycle, segment=account.segment, arr=float(account.arr or 0.0),
            open_pipeline=float(account.open_pipeline or 0.0), items=entry["items"],
            themes=tuple(labels[t] for t in sorted(entry["themes"], key=order.__getitem__)),
            churn_risk=entry["churn"], deal_blocker=entry["blocker"]))
    return out


def _field_notes(session: Session, start: dt.datetime, end: dt.datetime, labels: Mapping[int, str],
                 public_url: str) -> list[FieldNote]:
    rows = session.execute(
        select(Feedback, ThemeAssignment.theme_id)
        .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
        .where(Feedback.kind.in_(SALES_NOTE_KINDS), Feedback.occurred_at >= start, Feedback.occurred_at < end,
               Feedback.duplicate_of.is_(None))
        .order_by(Feedback.occurred_at.desc(), Feedback.id)
    ).tuples().all()
    return [
        FieldNote(text=f.text, kind=f.kind, url=_record_url(public_url, f, tid if tid in labels else None),
                  occurred_at=f.occurred_at, account=f.account.name if f.account else None,
                  submitted_by=f.submitted_by, theme=labels.get(tid) if tid is not None else None,
                  deal_blocker=bool((f.flags or {}).get("deal_blocker")), deal_stage=f.deal_stage,
                  deal_amount=f.deal_amount, competitors=tuple(str(c) for c in (f.competitors or [])))
        for f, tid in rows
    ]


def _decisions(session: Session, themes: list[Theme], public_url: str) -> list[Decision]:
    decided = [t for t in themes if t.decision]
    if not decided:
        return []
    accounts = dict(session.execute(
        select(ThemeAssignment.theme_id, func.count(func.distinct(Feedback.account_id)))
        .join(Feedback, Feedback.id == ThemeAssignment.feedback_id)
        .where(ThemeAssignment.theme_id.in_([t.id for t in decided]))
        .group_by(ThemeAssignment.theme_id)
    ).tuples().all())
    return [
        Decision(theme_id=t.id, label=t.display_label, decision=str(t.decision), url=_theme_url(public_url, t.id),
                 note=t.decision_note, decided_by=t.decided_by, decided_at=t.decided_at,
                 accounts=int(accounts.get(t.id, 0)))
        for t in decided
    ]


# -- saving -------------------------------------------------------------------------------------------------
def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes a 0600 file; a report is meant to be read by the web server too, so keep the old mode or 0644.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_report(session: Session, week: str, markdown: str, html: str, snapshot: dict[str, Any],
                directory: Path) -> SavedReport:
    """Write ``<week>.md`` and ``<week>.html`` under ``directory`` and upsert the week's ``report`` row.

    Files come first: if the database write fails, the files are still there and generating again repairs the
    row. Regenerating a week replaces its row (and clears its delivery record: it is a new report).
    """
    iso_week_bounds(week)  # refuses anything that is not an ISO week before it becomes a file name
    md_path, html_path = directory / f"{week}.md", directory / f"{week}.html"
    write_atomically(md_path, markdown)
    write_atomically(html_path, html)
    values = {"markdown": markdown, "html": html, "snapshot": snapshot, "path": str(md_path),
              "created_at": utcnow(), "delivery": {}}
    report = session.scalars(select(Report).where(Report.week == week)).first()
    if report is None:
        try:
            with session.begin_nested():
                report = Report(week=week, **values)
                session.add(report)
        except IntegrityError:  # another writer stored the same week between our read and insert
            report = session.scalars(select(Report).where(Report.week == week)).one()
    for key, value in values.items():
        setattr(report, key, value)
    session.flush()
    return SavedReport(report_id=int(report.id), md_path=md_path, html_path=html_path)


def delivery_summary(data: ReportData, report_id: int, public_url: str) -> dict[str, Any]:
    """The few facts a Slack message needs, JSON-safe."""
    h = data.headline
    return {
        "week": data.week,
        "url": f"{public_url.rstrip('/')}/reports/{report_id}",
        "headline": {"items": h.items, "items_previous": h.items_previous, "accounts": h.accounts,
                     "themes_active": h.themes_active, "field_notes": h.field_notes,
                     "deal_blockers": h.deal_blockers},
        "top": [{"rank": o.rank, "label": o.label, "score": round(o.score, 1), "tier": o.tier,
                 "rationale": o.rationale, "url": o.url} for o in data.opportunities[:3]],
    }


def build_weekly_report(factory: sessionmaker[Session], settings: Settings, *, week: str | None = None,
                        now: dt.datetime | None = None) -> ReportResult:
    """Load, render and store the report of ``week`` (default: the last complete week)."""
    now = now or utcnow()
    with factory() as session:
        data = load_report_data(session, week=week, now=now, tz=settings.timezone, public_url=settings.public_url)
    rendered = render_report(data)  # outside any transaction: drawing charts must not hold a database lock
    with session_scope(factory) as session:
        saved = save_report(session, data.week, rendered.markdown, rendered.html, rendered.snapshot,
                            settings.reports_dir)
    log.info("report %s written to %s (id %d)", data.week, saved.html_path, saved.report_id)
    return ReportResult(week=data.week, md_path=saved.md_path, html_path=saved.html_path,
                        report_id=saved.report_id, summary=delivery_summary(data, saved.report_id,
                                                                            settings.public_url))
