"""Read queries shared by the JSON routes and the web pages; they return schemas, never ORM rows."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ARRAY, BigInteger, Connection, Select, String, and_, any_, bindparam, func, select
from sqlalchemy.orm import Session, defer

from api.errors import InvalidInput, NotFound
from api.schemas import (
    AccountOut,
    FeedbackOut,
    FeedbackPage,
    OpportunityDetail,
    OpportunityOut,
    QuoteOut,
    ScorePoint,
    ThemeAccount,
    ThemeDetail,
    ThemeEventOut,
    ThemeRef,
    ThemeSummary,
    WeekPoint,
)
from models.tables import (
    Account,
    AnalysisRun,
    Feedback,
    Opportunity,
    Source,
    Theme,
    ThemeAssignment,
    ThemeEvent,
    ThemeStat,
)
from pipeline.runs import latest_scored_run_id, latest_scored_run_select

EMERGING_TRENDS = ("new", "emerging", "growing")


# -- feedback ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FeedbackFilters:
    theme: int | None = None
    account: int | None = None
    source: str | None = None
    kind: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    submitted_by: str | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        if self.theme is not None:
            stmt = stmt.join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id).where(
                ThemeAssignment.theme_id == self.theme)
        if self.account is not None:
            stmt = stmt.where(Feedback.account_id == self.account)
        if self.source is not None:
            if self.source.isdigit():
                stmt = stmt.where(Feedback.source_id == int(self.source))
            else:
                stmt = stmt.where(Feedback.source_id.in_(select(Source.id).where(Source.name == self.source)))
        if self.kind is not None:
            stmt = stmt.where(Feedback.kind == self.kind)
        if self.since is not None:
            stmt = stmt.where(Feedback.occurred_at >= _aware(self.since, "since"))
        if self.until is not None:
            stmt = stmt.where(Feedback.occurred_at < _aware(self.until, "until"))
        if self.submitted_by is not None:
            stmt = stmt.where(Feedback.submitted_by == self.submitted_by)
        return stmt

    def time_range(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """``since`` and ``until`` as UTC-aware datetimes, exactly as :meth:`apply` compares them."""
        return (None if self.since is None else _aware(self.since, "since"),
                None if self.until is None else _aware(self.until, "until"))


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    try:
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"{name} is out of range", field=f"query.{name}") from exc


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id" or not value.isdigit() or len(value) > 18:
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this API gave out", field="query.cursor") from exc


def account_out(account: Account | None) -> AccountOut | None:
    if account is None:
        return None
    return AccountOut(id=account.id, name=account.name, domain=account.domain, segment=account.segment,
                      lifecycle=account.lifecycle, arr=account.arr or 0.0,
                      open_pipeline=account.open_pipeline or 0.0)


def feedback_out(item: Feedback, theme: ThemeRef | None = None) -> FeedbackOut:
    return FeedbackOut(
        id=item.id, source=item.source.name, external_id=item.external_id, kind=item.kind, title=item.title,
        text=item.text, url=item.url, account=account_out(item.account), author_role=item.author_role,
        submitted_by=item.submitted_by, occurred_at=item.occurred_at, ingested_at=item.ingested_at,
        sentiment=item.sentiment, intent=item.intent, flags=item.flags or {},
        competitors=item.competitors or [], tags=item.tags or [], deal_stage=item.deal_stage,
        deal_amount=item.deal_amount, theme=theme,
    )


def theme_refs(session: Session | Connection, feedback_ids: Sequence[int]) -> dict[int, ThemeRef]:
    """The theme of each item (following a merge to the surviving theme), in two queries at most."""
    if not feedback_ids:
        return {}
    rows = session.execute(
        select(ThemeAssignment.feedback_id, *_THEME_REF_COLUMNS)
        .join(Theme, Theme.id == ThemeAssignment.theme_id)
        .where(ThemeAssignment.feedback_id.in_(list(feedback_ids)))
    ).tuples().all()
    return _theme_refs(session, [(row[0], row[1:]) for row in rows])


# What a ThemeRef needs: the assignment's method and similarity, then the theme and where it was merged.
_THEME_REF_COLUMNS = (ThemeAssignment.method, ThemeAssignment.similarity, Theme.id, Theme.label,
                      Theme.label_override, Theme.status, Theme.merged_into_id)


def _theme_refs(session: Session | Connection, rows: Sequence[tuple[int, Sequence[Any]]]) -> dict[int, ThemeRef]:
    """ThemeRefs from ``(feedback id, _THEME_REF_COLUMNS values)``; a merged theme shows its survivor."""
    survivors = {ref[6] for _, ref in rows if ref[5] == "merged" and ref[6] is not None}
    labels: dict[int, str] = {}
    if survivors:
        labels = {tid: override or label for tid, label, override in session.execute(
            select(Theme.id, Theme.label, Theme.label_override).where(Theme.id.in_(survivors))).tuples()}
    out: dict[int, ThemeRef] = {}
    for fid, (method, similarity, theme_id, label, override, status, into) in rows:
        if status == "merged" and into is not None and into in labels:
            theme_id, shown = into, labels[into]
        else:
            shown = override or label
        out[fid] = ThemeRef(id=theme_id, label=shown, method=method, similarity=similarity)
    return out


def feedback_outs(session: Session, items: Sequence[Feedback]) -> list[FeedbackOut]:
    refs = theme_refs(session, [f.id for f in items])
    return [feedback_out(f, refs.get(f.id)) for f in items]


_FEEDBACK_OUT_COLUMNS = (
    Feedback.id, Source.name, Feedback.external_id, Feedback.kind, Feedback.title, Feedback.text, Feedback.url,
    Feedback.author_role, Feedback.submitted_by, Feedback.occurred_at, Feedback.ingested_at, Feedback.sentiment,
    Feedback.intent, Feedback.flags, Feedback.competitors, Feedback.tags, Feedback.deal_stage, Feedback.deal_amount,
    Account.id, Account.name, Account.domain, Account.segment, Account.lifecycle, Account.arr, Account.open_pipeline,
)


def _ids_in(column: Any, dialect: str) -> Any:
    """``column`` among the ids bound as ``ids``, in SQL whose text does not depend on how many there are.

    An expanding ``IN`` is re-rendered for every call and is a new statement for every list length; an
    array (PostgreSQL) or a JSON list (SQLite) is one parameter, so the statement is compiled and prepared
    once.
    """
    if dialect == "sqlite":
        return column.in_(select(func.json_each(bindparam("ids", type_=String)).table_valued("value").c.value))
    return column == any_(bindparam("ids", type_=ARRAY(BigInteger)))  # PostgreSQL, the other backend


def _ids_param(ids: Sequence[int], dialect: str) -> Any:
    return json.dumps(list(ids)) if dialect == "sqlite" else list(ids)


@functools.cache
def _feedback_outs_statement(dialect: str) -> Select[Any]:
    # Built once per dialect, ids bound per call: composing this select costs more than running it.
    return (select(*_FEEDBACK_OUT_COLUMNS, *_THEME_REF_COLUMNS)
            .join(Source, Source.id == Feedback.source_id)
            .outerjoin(Account, Account.id == Feedback.account_id)
            .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
            .outerjoin(Theme, Theme.id == ThemeAssignment.theme_id)
            .where(_ids_in(Feedback.id, dialect)))


def feedback_outs_by_id(session: Session | Connection, feedback_ids: Sequence[int],
                        filters: FeedbackFilters | None = None) -> dict[int, FeedbackOut]:
    """The FeedbackOut of each id that exists (and passes ``filters``), with its theme, in one query.

    The same schema :func:`feedback_out` gives, read as plain columns: several times cheaper than loading
    ORM rows with their account and source, which counts when a search does it on every request.
    """
    if not feedback_ids:
        return {}
    dialect = session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name
    stmt = _feedback_outs_statement(dialect)
    if filters is not None and filters != FeedbackFilters():
        # The filters in a subquery of their own: FeedbackFilters.apply joins tables this select joins too.
        passing = filters.apply(select(Feedback.id).where(_ids_in(Feedback.id, dialect)))
        stmt = stmt.where(Feedback.id.in_(passing.correlate(None)))
    rows = session.execute(stmt, {"ids": _ids_param(feedback_ids, dialect)}).tuples().all()
    n = len(_FEEDBACK_OUT_COLUMNS)
    refs = _theme_refs(session, [(row[0], row[n:]) for row in rows if row[n + 2] is not None])
    items: list[dict[str, Any]] = []
    for row in rows:
        (fid, source, external_id, kind, title, text, url, author_role, submitted_by, occurred_at, ingested_at,
         sentiment, intent, flags, competitors, tags, deal_stage, deal_amount,
         account_id, name, domain, segment, lifecycle, arr, open_pipeline) = row[:n]
        account = None if account_id is None else {
            "id": account_id, "name": name, "domain": domain, "segment": segment, "lifecycle": lifecycle,
            "arr": arr or 0.0, "open_pipeline": open_pipeline or 0.0}
        items.append({
            "id": fid, "source": source, "external_id": external_id, "kind": kind, "title": title, "text": text,
            "url": url, "account": account, "author_role": author_role, "submitted_by": submitted_by,
            "occurred_at": occurred_at, "ingested_at": ingested_at, "sentiment": sentiment, "intent": intent,
            "flags": flags or {}, "competitors": competitors or [], "tags": tags or [], "deal_stage": deal_stage,
            "deal_amount": deal_amount, "theme": refs.get(fid)})
    # One validation of all rows: building each model on its own costs a Python call per model.
    return {out.id: out for out in _FEEDBACK_OUT_LIST.validate_python(items)}


_FEEDBACK_OUT_LIST = TypeAdapter(list[FeedbackOut])


def list_feedback(session: Session, filters: FeedbackFilters, *, cursor: str | None, limit: int) -> FeedbackPage:
    """Newest first (by id); the cursor is the last id seen, so pages never repeat or skip an item."""
    stmt = filters.apply(select(Feedback))
    if cursor:
        stmt = stmt.where(Feedback.id < decode_cursor(cursor))
    items = list(session.scalars(stmt.order_by(Feedback.id.desc()).limit(limit + 1)).unique())
    more = len(items) > limit
    items = items[:limit]
    return FeedbackPage(items=feedback_outs(session, items),
                        next_cursor=encode_cursor(items[-1].id) if more and items else None)


def get_feedback(session: Session, feedback_id: int) -> Feedback:
    item = session.get(Feedback, feedback_id)
    if item is None:
        raise NotFound(f"feedback {feedback_id} does not exist")
    return item


# -- themes --------------------------------------------------------------------------------------------
def latest_run_select() -> Select[int]:
    """The id of the current (latest scored) analysis run; defined once, in the pipeline that writes runs."""
    return latest_scored_run_select()


def latest_run_id(session: Session) -> int | None:
    """The latest succeeded full or incremental analysis that scored opportunities."""
    return latest_scored_run_id(session)


def weekly_series(session: Session, theme_ids: Iterable[int], *, weeks: int = 12) -> dict[int, list[WeekPoint]]:
    """The last ``weeks`` ISO weeks of each theme's stats, weeks without mentions filled with zeros."""
    ids = list(theme_ids)
    if not ids:
        return {}
    last = session.scalar(select(func.max(ThemeStat.week_start)).where(ThemeStat.theme_id.in_(ids)))
    if last is None:
        return {i: [] for i in ids}
    first = last - dt.timedelta(weeks=weeks - 1)
    rows = session.scalars(
        select(ThemeStat).where(ThemeStat.theme_id.in_(ids), ThemeStat.week_start >= first)
    ).all()
    by_theme: dict[int, dict[dt.date, ThemeStat]] = {i: {} for i in ids}
    for row in rows:
        by_theme[row.theme_id][row.week_start] = row
    out: dict[int, list[WeekPoint]] = {}
    for theme_id, stats in by_theme.items():
        series = []
        for n in range(weeks):
            start = first + dt.timedelta(weeks=n)
            stat = stats.get(start)
            if stat is None:
                iso = start.isocalendar()
                series.append(WeekPoint(week=f"{iso.year}-W{iso.week:02d}", week_start=start, items=0, accounts=0))
            else:
                series.append(WeekPoint(week=stat.week, week_start=stat.week_start, items=stat.items,
                                        accounts=stat.accounts, arr=stat.arr, open_pipeline=stat.open_pipeline,
                                        sentiment=stat.sentiment))
        out[theme_id] = series
    return out


def _momentum(opp: Opportunity | None) -> float | None:
    if opp is None:
        return None
    value = (opp.components or {}).get("momentum")
    return float(value) if isinstance(value, int | float) else None


def _strength(opp: Opportunity | None) -> float:
    """How strongly a theme is rising: signed -log10(p) x log2(ratio) of its momentum test."""
    if opp is None:
        return float("-inf")
    value = (opp.metrics or {}).get("emerging_strength")
    return float(value) if isinstance(value, int | float) else float("-inf")


def _summary(theme: Theme, opp: Opportunity | None, weekly: list[WeekPoint]) -> ThemeSummary:
    return ThemeSummary(
        id=theme.id, label=theme.display_label, auto_label=theme.label, keywords=theme.keywords or [],
        status=theme.status, trend=theme.trend, size=theme.size or 0,
        score=opp.score if opp else None, rank=opp.rank if opp else None, momentum=_momentum(opp),
        decision=theme.decision, weekly=weekly,
    )


def list_themes(session: Session, *, status: str | None = "active", segment: str = "all", sort: str = "score",
                trend: Sequence[str] | None = None, limit: int = 50, weeks: int = 12) -> list[ThemeSummary]:
    """Themes with their latest score in ``segment``; a segment other than ``all`` keeps scored themes only."""
    run_id = latest_run_id(session)
    opp_join = and_(Opportunity.theme_id == Theme.id, Opportunity.run_id == (run_id or -1),
                    Opportunity.segment == segment)
    stmt = select(Theme, Opportunity).outerjoin(Opportunity, opp_join).options(defer(Theme.centroid))
    if status is not None:
        stmt = stmt.where(Theme.status == status)
    if trend:
        stmt = stmt.where(Theme.trend.in_(list(trend)))
    if segment != "all":
        stmt = stmt.where(Opportunity.id.is_not(None))
    rows = list(session.execute(stmt).tuples().all())
    if sort == "size":
        rows.sort(key=lambda r: (-(r[0].size or 0), r[0].id))
    elif sort == "momentum":
        rows.sort(key=lambda r: (-_strength(r[1]), r[0].id))
    else:
        rows.sort(key=lambda r: (r[1] is None, -(r[1].score if r[1] else 0.0), r[0].id))
    rows = rows[:limit]
    series = weekly_series(session, [t.id for t, _ in rows], weeks=weeks)
    return [_summary(t, o, series.get(t.id, [])) for t, o in rows]


def quotes_for(session: Session, theme: Theme, *, limit: int = 5) -> list[QuoteOut]:
    """The theme's representative quotes, topped up with its most similar items."""
    ids = [int(i) for i in (theme.quotes or []) if isinstance(i, int | str) and str(i).isdigit()][:limit]
    items: list[Feedback] = []
    if ids:
        found = {f.id: f for f in session.scalars(select(Feedback).where(Feedback.id.in_(ids))).unique()}
        items = [found[i] for i in ids if i in found]
    if len(items) < limit:
        more = session.scalars(
            select(Feedback).join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
            .where(ThemeAssignment.theme_id == theme.id, Feedback.id.not_in([f.id for f in items] or [-1]))
            .order_by(ThemeAssignment.similarity.desc(), Feedback.id).limit(limit - len(items))
        ).unique()
        items.extend(more)
    return [QuoteOut(feedback_id=f.id, text=f.text, source=f.source.name, kind=f.kind,
                     account=f.account.name if f.account else None,
                     segment=f.account.segment if f.account else None, occurred_at=f.occurred_at, url=f.url,
                     submitted_by=f.submitted_by) for f in items]


def theme_accounts(session: Session, theme_id: int, *, limit: int = 50) -> list[ThemeAccount]:
    """Accounts behind a theme, each counted once, most revenue first."""
    mentions = func.count(Feedback.id).label("mentions")
    rows = session.execute(
        select(Account, mentions).join(Feedback, Feedback.account_id == Account.id)
        .join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
        .where(ThemeAssignment.theme_id == theme_id).group_by(Account.id)
    ).tuples().all()
    accounts = [ThemeAccount(id=a.id, name=a.name, segment=a.segment, lifecycle=a.lifecycle, arr=a.arr or 0.0,
                             open_pipeline=a.open_pipeline or 0.0, mentions=n) for a, n in rows]
    accounts.sort(key=lambda a: (-(a.arr + a.open_pipeline), -a.mentions, a.id))
    return accounts[:limit]


def theme_competitors(session: Session, theme_id: int) -> dict[str, int]:
    """Competitors named in the theme's items, with how many items name each."""
    counts: Counter[str] = Counter()
    for names in session.scalars(
        select(Feedback.competitors).join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
        .where(ThemeAssignment.theme_id == theme_id)
    ):
        for name in set(names or []):
            counts[str(name)] += 1
    return dict(counts.most_common())


def get_theme(session: Session, theme_id: int) -> Theme:
    theme = session.get(Theme, theme_id)
    if theme is None:
        raise NotFound(f"theme {theme_id} does not exist")
    return theme


def _latest_opportunity(session: Session, theme_id: int, segment: str) -> Opportunity | None:
    run_id = latest_run_id(session)
    if run_id is None:
        return None
    return session.scalars(select(Opportunity).where(
        Opportunity.theme_id == theme_id, Opportunity.run_id == run_id, Opportunity.segment == segment)).first()


def theme_detail(session: Session, theme_id: int, *, segment: str = "all", weeks: int = 26) -> ThemeDetail:
    theme = get_theme(session, theme_id)
    opp = _latest_opportunity(session, theme_id, segment)
    accounts = theme_accounts(session, theme_id, limit=100_000)
    size = session.scalar(select(func.count()).select_from(ThemeAssignment)
                          .where(ThemeAssignment.theme_id == theme_id)) or 0
    summary = _summary(theme, opp, weekly_series(session, [theme_id], weeks=weeks)[theme_id])
    summary.size = size
    events = session.scalars(select(ThemeEvent).where(ThemeEvent.theme_id == theme_id)
                             .order_by(ThemeEvent.created_at, ThemeEvent.id)).all()
    return ThemeDetail(
        **summary.model_dump(), parent_id=theme.parent_id, merged_into_id=theme.merged_into_id,
        rationale=opp.rationale if opp else None, components=(opp.components or {}) if opp else {},
        quotes=quotes_for(session, theme), accounts=accounts[:50],
        arr_at_stake=sum(a.arr for a in accounts if a.lifecycle != "prospect"),
        open_pipeline_at_stake=sum(a.open_pipeline for a in accounts if a.lifecycle == "prospect"),
        competitors=theme_competitors(session, theme_id),
        lineage=[ThemeEventOut(id=e.id, kind=e.kind, detail=e.detail or {}, run_id=e.run_id,
                               created_at=e.created_at) for e in events],
    )


# -- opportunities -----------------------------------------------------------------------------------------
def _opportunity_out(opp: Opportunity, theme: Theme, weekly: list[WeekPoint]) -> OpportunityOut:
    return OpportunityOut(
        theme_id=theme.id, label=theme.display_label, segment=opp.segment, score=opp.score, rank=opp.rank,
        tier=opp.tier, trend=theme.trend, components=opp.components or {}, metrics=opp.metrics or {},
        rationale=opp.rationale, decision=theme.decision, decision_note=theme.decision_note, run_id=opp.run_id,
        weekly=weekly,
    )


def list_opportunities(session: Session, *, segment: str = "all", limit: int = 20,
                       weeks: int = 12) -> list[OpportunityOut]:
    run_id = latest_run_id(session)
    if run_id is None:
        return []
    rows = session.execute(
        select(Opportunity, Theme).join(Theme, Theme.id == Opportunity.theme_id).options(defer(Theme.centroid))
        .where(Opportunity.run_id == run_id, Opportunity.segment == segment, Theme.status == "active")
        .order_by(Opportunity.rank, Opportunity.score.desc(), Theme.id).limit(limit)
    ).tuples().all()
    series = weekly_series(session, [t.id for _, t in rows], weeks=weeks)
    return [_opportunity_out(o, t, series.get(t.id, [])) for o, t in rows]


def opportunity_detail(session: Session, theme_id: int, *, segment: str = "all") -> OpportunityDetail:
    theme = get_theme(session, theme_id)
    opp = _latest_opportunity(session, theme_id, segment)
    if opp is None:
        raise NotFound(f"theme {theme_id} has no scored opportunity in segment {segment!r} in the latest analysis")
    history_rows = session.execute(
        select(Opportunity, AnalysisRun.started_at).join(AnalysisRun, AnalysisRun.id == Opportunity.run_id)
        .where(Opportunity.theme_id == theme_id, Opportunity.segment == segment,
               AnalysisRun.status == "succeeded")
        .order_by(Opportunity.run_id)
    ).tuples().all()
    reps = session.scalars(
        select(Feedback.submitted_by).join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
        .where(ThemeAssignment.theme_id == theme_id, Feedback.kind == "field_note",
               Feedback.submitted_by.is_not(None)).distinct()
    ).all()
    base = _opportunity_out(opp, theme, weekly_series(session, [theme_id])[theme_id])
    return OpportunityDetail(
        **base.model_dump(),
        history=[ScorePoint(run_id=o.run_id, created_at=started, score=o.score, rank=o.rank)
                 for o, started in history_rows],
        competitors=theme_competitors(session, theme_id), accounts=theme_accounts(session, theme_id),
        sales_reps=sorted(r for r in reps if r), quotes=quotes_for(session, theme),
        decided_at=theme.decided_at, decided_by=theme.decided_by,
    )
