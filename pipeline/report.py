"""The weekly theme report: plain data in, Markdown and a self-contained HTML page out.

Pure rendering: nothing here opens a session or the network. :mod:`pipeline.report_data` loads a
:class:`ReportData` from the database; tests build one by hand.

What changed is measured against the *frozen* snapshot of the previous report (theme id ->
``{label, items, accounts, score, trend}`` of that report's week, see :func:`snapshot`), not against figures
recomputed today, so a re-clustering or a late import does not rewrite last week's story.

Charts are drawn with matplotlib's object API (``Figure`` + Agg canvas, no pyplot state, so rendering is safe
in worker threads) and embedded in the HTML as base64 PNG data URIs; the Markdown carries the same numbers
as tables.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from jinja2 import Environment, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.scoring import format_money

COMPONENT_ORDER = ("reach", "revenue", "momentum", "severity", "recency")
DECISION_LABELS = {
    "shipped": "Shipped",
    "planned": "Planned",
    "under_review": "Under review",
    "declined": "Declined",
}
TIER_LABELS = {"vital": "vital", "important": "important", "nice_to_have": "nice to have"}
CHANGE_KINDS = ("new", "growing", "fading", "gone")
MENTION_CHART_THEMES = 5
MENTION_CHART_WEEKS = 12
QUOTE_CHARS = 320


class ReportError(ValueError):
    """A report cannot be written as asked (bad week, nothing to report on)."""


# -- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quote:
    """One piece of evidence, with where it came from."""

    text: str
    source: str
    url: str
    account: str | None = None
    kind: str | None = None
    occurred_at: dt.datetime | None = None


@dataclass(frozen=True)
class ThemeFigures:
    """A theme's figures for one week: what a snapshot freezes."""

    label: str
    items: int
    accounts: int
    score: float | None = None
    trend: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "items": self.items, "accounts": self.accounts,
                "score": None if self.score is None else round(float(self.score), 2), "trend": self.trend}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ThemeFigures:
        score = value.get("score")
        return cls(label=str(value.get("label") or ""), items=int(value.get("items") or 0),
                   accounts=int(value.get("accounts") or 0), score=None if score is None else float(score),
                   trend=value.get("trend"))


@dataclass(frozen=True)
class ThemeWeek:
    """An active theme in the report's week (``items`` may be 0)."""

    theme_id: int
    label: str
    items: int
    accounts: int
    url: str
    arr: float = 0.0
    open_pipeline: float = 0.0
    score: float | None = None
    trend: str | None = None
    quotes: tuple[Quote, ...] = ()

    def figures(self) -> ThemeFigures:
        return ThemeFigures(self.label, self.items, self.accounts, self.score, self.trend)


@dataclass(frozen=True)
class OpportunityRow:
    theme_id: int
    label: str
    rank: int
    score: float
    tier: str
    rationale: str
    url: str
    components: Mapping[str, float] = field(default_factory=dict)
    trend: str | None = None
    decision: str | None = None


@dataclass(frozen=True)
class AccountAtStake:
    """An account whose feedback this week fell into one of the top opportunities."""

    name: str
    lifecycle: str
    arr: float
    open_pipeline: float
    items: int
    themes: tuple[str, ...]
    segment: str | None = None
    churn_risk: bool = False
    deal_blocker: bool = False


@dataclass(frozen=True)
class FieldNote:
    """A sales field or call note of the week."""

    text: str
    kind: str
    url: str
    occurred_at: dt.datetime
    account: str | None = None
    submitted_by: str | None = None
    theme: str | None = None
    deal_blocker: bool = False
    deal_stage: str | None = None
    deal_amount: float | None = None
    competitors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """A PM's decision on a theme (closing the loop with sales)."""

    theme_id: int
    label: str
    decision: str
    url: str
    note: str | None = None
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    accounts: int = 0


@dataclass(frozen=True)
class Headline:
    items: int
    accounts: int
    themes_active: int
    field_notes: int
    deal_blockers: int
    items_previous: int | None = None


@dataclass
class ReportData:
    """Everything one weekly report shows.

    ``weekly_mentions`` has one row per theme and ISO week: columns ``theme_id`` (int), ``week`` (str,
    ``2026-W47``) and ``items`` (int); missing weeks count as zero. ``previous`` is the previous report's frozen
    snapshot (None for the first report); ``previous_recomputed`` says it was rebuilt from today's weekly
    statistics because no report was stored for that week.
    """

    week: str
    week_start: dt.date
    generated_at: dt.datetime
    headline: Headline
    themes: list[ThemeWeek]
    opportunities: list[OpportunityRow]
    weekly_mentions: pd.DataFrame
    accounts: list[AccountAtStake] = field(default_factory=list)
    field_notes: list[FieldNote] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    previous: Mapping[int, ThemeFigures] | None = None
    previous_week: str | None = None
    previous_recomputed: bool = False
    partial_week: bool = False

    @property
    def week_end(self) -> dt.date:
        return self.week_start + dt.timedelta(days=6)


@dataclass(frozen=True)
class ThemeChange:
    theme_id: int
    label: str
    kind: str  # new, growing, fading, gone
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass
class ThemeChanges:
    new: list[ThemeChange] = field(default_factory=list)
    growing: list[ThemeChange] = field(default_factory=list)
    fading: list[ThemeChange] = field(default_factory=list)
    gone: list[ThemeChange] = field(default_factory=list)

    def by_kind(self) -> dict[str, list[ThemeChange]]:
        return {"new": self.new, "growing": self.growing, "fading": self.fading, "gone": self.gone}

    def __len__(self) -> int:
        return len(self.new) + len(self.growing) + len(self.fading) + len(self.gone)


@dataclass(frozen=True)
class RenderedReport:
    markdown: str
    html: str
    snapshot: dict[str, dict[str, Any]]
    charts: dict[str, bytes]  # name -> PNG bytes


# -- pure computations -------------------------------------------------------------------------------
def snapshot(themes: Iterable[ThemeWeek]) -> dict[str, dict[str, Any]]:
    """The frozen figures of this report's week, stored as ``report.snapshot`` (JSON keys are strings)."""
    return {str(t.theme_id): t.figures().as_json() for t in themes}


def parse_snapshot(value: Mapping[str, Any] | None) -> dict[int, ThemeFigures]:
    """The inverse of :func:`snapshot`; entries that are not theme figures are skipped."""
    out: dict[int, ThemeFigures] = {}
    for key, figures in (value or {}).items():
        if str(key).isdigit() and isinstance(figures, Mapping):
            out[int(key)] = ThemeFigures.from_json(figures)
    return out


def compare_snapshots(current: Mapping[int, ThemeFigures], previous: Mapping[int, ThemeFigures], *,
                      min_change: int = 3, relative: float = 0.25) -> ThemeChanges:
    """Themes new, growing, fading or gone against the previous week's snapshot.

    A change counts when it is at least ``min_change`` items *and* ``relative`` of last week's count, so
    5 -> 7 mentions is noise while 4 -> 12 is growth. New: absent from the snapshot, mentioned now. Gone:
    mentioned at least ``min_change`` times last week and not now, or no longer an active theme.
    """
    changes = ThemeChanges()
    for theme_id, now in current.items():
        before = previous.get(theme_id)
        if before is None:
            if now.items > 0:
                changes.new.append(ThemeChange(theme_id, now.label, "new", 0, now.items))
            continue
        threshold = max(min_change, relative * before.items)
        if before.items >= min_change and now.items == 0:
            changes.gone.append(ThemeChange(theme_id, now.label, "gone", before.items, 0))
        elif now.items - before.items >= threshold:
            changes.growing.append(ThemeChange(theme_id, now.label, "growing", before.items, now.items))
        elif before.items - now.items >= threshold:
            changes.fading.append(ThemeChange(theme_id, now.label, "fading", before.items, now.items))
    for theme_id, before in previous.items():
        if theme_id not in current and before.items > 0:
            changes.gone.append(ThemeChange(theme_id, before.label, "gone", before.items, 0))
    changes.new.sort(key=lambda c: (-c.after, c.theme_id))
    changes.growing.sort(key=lambda c: (-c.delta, c.theme_id))
    changes.fading.sort(key=lambda c: (c.delta, c.theme_id))
    changes.gone.sort(key=lambda c: (-c.before, c.theme_id))
    return changes


def iso_week_bounds(week: str) -> dt.date:
    """Monday of ISO week ``'2026-W47'``."""
    match = re.fullmatch(r"(\d{4})-W(\d{2})", week or "")
    if match is None:
        raise ReportError(f"week {week!r} is not an ISO week; write it like 2026-W47")
    try:
        return dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise ReportError(f"week {week!r} does not exist: {exc}") from None


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def mentions_matrix(weekly: pd.DataFrame, theme_ids: Sequence[int], *, last_week: str,
                    weeks: int = MENTION_CHART_WEEKS) -> pd.DataFrame:
    """Items per week (rows, oldest first, ending at ``last_week``) and theme (columns); gaps are zeros."""
    monday = iso_week_bounds(last_week)
    labels = [iso_week(monday - dt.timedelta(weeks=k)) for k in range(weeks - 1, -1, -1)]
    frame = pd.DataFrame(0, index=pd.Index(labels, name="week"), columns=list(theme_ids), dtype="int64")
    if weekly.empty or not theme_ids:
        return frame
    wanted = weekly.loc[weekly["theme_id"].isin(list(theme_ids)) & weekly["week"].isin(labels)]
    table = wanted.pivot_table(index="week", columns="theme_id", values="items", aggfunc="sum", fill_value=0)
    return frame.add(table.reindex(index=labels, columns=list(theme_ids), fill_value=0), fill_value=0).astype("int64")


# -- charts ---------------------------------------------------------------------------------------
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def _short(label: str, width: int = 38) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def mentions_chart(matrix: pd.DataFrame, labels: Mapping[int, str]) -> bytes:
    """Lines of weekly mentions, one per theme. Returns PNG bytes."""
    fig = Figure(figsize=(8.0, 3.6))
    ax = fig.add_subplot()
    x = range(len(matrix.index))
    for i, theme_id in enumerate(matrix.columns):
        ax.plot(x, matrix[theme_id].to_numpy(), marker="o", markersize=3, linewidth=2,
                color=PALETTE[i % len(PALETTE)], label=_short(labels.get(int(theme_id), f"Theme {theme_id}")))
    ax.set_xticks(list(x), [w.split("-")[1] for w in matrix.index], fontsize=8)
    ax.set_ylabel("mentions per week")
    ax.set_title("Weekly mentions of the top themes", fontsize=11, loc="left")
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_ylim(bottom=0)
    if len(matrix.columns):
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def scores_chart(opportunities: Sequence[OpportunityRow]) -> bytes:
    """Horizontal bars of opportunity scores, best at the top. Returns PNG bytes."""
    rows = list(opportunities)[:10]
    fig = Figure(figsize=(8.0, 0.45 * max(len(rows), 2) + 1.0))
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]
    colors = [{"vital": "#dc2626", "important": "#d97706"}.get(r.tier, "#2563eb") for r in rows]
    bars = ax.barh(y, [r.score for r in rows], color=colors, height=0.6)
    ax.set_yticks(y, [f"{r.rank}. {_short(r.label)}" for r in rows], fontsize=8)
    for bar, row in zip(bars, rows, strict=True):
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, f"{row.score:.0f}", va="center", fontsize=8)
    ax.set_xlim(0, 105)
    ax.set_xlabel("score (0-100)")
    ax.set_title("Opportunity scores", fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- formatting -------------------------------------------------------------------------------------
def fmt_int(n: int | float) -> str:
    return f"{int(n):,}"


def fmt_change(now: int, before: int | None) -> str:
    """``+35%`` / ``-12%`` / ``new`` / ``±0%``."""
    if before is None:
        return ""
    if before == 0:
        return "new" if now else "±0%"
    pct = round(100 * (now - before) / before)
    return "±0%" if pct == 0 else f"{pct:+d}%"


def fmt_date(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def fmt_week_range(start: dt.date, end: dt.date) -> str:
    if start.year != end.year:
        return f"{fmt_date(start)} – {fmt_date(end)}"
    if start.month != end.month:
        return f"{start.day} {start:%b} – {fmt_date(end)}"
    return f"{start.day}–{fmt_date(end)}"


def safe_url(url: str | None) -> str | None:
    """Only http(s) links reach the report; anything else (``javascript:``...) is dropped."""
    if url and re.match(r"^https?://", url.strip(), re.IGNORECASE):
        return url.strip()
    return None


def link(url: str | None) -> str:
    """A link safe for both renderers: http(s) only (else ``#``), with Markdown's delimiters percent-encoded."""
    safe = safe_url(url)
    if safe is None:
        return "#"
    return safe.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def one_line(text: str, limit: int = QUOTE_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def md_text(text: str, limit: int = QUOTE_CHARS) -> str:
    """Customer text made inert in Markdown: one line, no raw HTML, no table breaks, no link syntax."""
    flat = re.sub(r"([\\`*_\[\]|#])", r"\\\1", one_line(text, limit))
    # Only a "<" that could open a tag, comment or autolink is escaped, so "p < 0.01" stays readable as text.
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", flat)


def component_list(components: Mapping[str, float]) -> list[tuple[str, float]]:
    keys = [k for k in COMPONENT_ORDER if k in components] + sorted(k for k in components if k not in COMPONENT_ORDER)
    return [(k, float(components[k] or 0.0)) for k in keys]


def decision_label(decision: str) -> str:
    return DECISION_LABELS.get(decision, decision.replace("_", " ").capitalize())


def _decision_order(d: Decision) -> tuple[int, float, int]:
    order = list(DECISION_LABELS)
    rank = order.index(d.decision) if d.decision in order else len(order)
    return rank, -(d.decided_at.timestamp() if d.decided_at else 0.0), d.theme_id


def _note_order(n: FieldNote) -> tuple[int, float, float]:
    return (0 if n.deal_blocker else 1), -(n.deal_amount or 0.0), -n.occurred_at.timestamp()


# -- the view model both renderers share ------------------------------------------------------------------
@dataclass
class _View:
    data: ReportData
    changes: ThemeChanges | None
    themes: list[ThemeWeek]  # the themes shown with quotes
    accounts: list[AccountAtStake]
    notes: list[FieldNote]
    decisions: list[Decision]
    matrix: pd.DataFrame
    labels: dict[int, str]
    charts: dict[str, bytes]
    arr_at_stake: float
    pipeline_at_stake: float
    customers_at_stake: int
    prospects_at_stake: int


def _view(data: ReportData, *, max_themes: int = 10, max_accounts: int = 15, max_notes: int = 8) -> _View:
    current = {t.theme_id: t.figures() for t in data.themes}
    changes = compare_snapshots(current, data.previous) if data.previous is not None else None
    labels = {t.theme_id: t.label for t in data.themes}
    labels.update({o.theme_id: o.label for o in data.opportunities})
    # Quotes for the top opportunities first, then for what is new or growing, then the busiest themes.
    order: list[int] = [o.theme_id for o in data.opportunities]
    if changes is not None:
        order += [c.theme_id for c in changes.new + changes.growing]
    order += [t.theme_id for t in sorted(data.themes, key=lambda t: (-t.items, t.theme_id))]
    by_id = {t.theme_id: t for t in data.themes}
    shown: list[ThemeWeek] = []
    for theme_id in dict.fromkeys(order):
        theme = by_id.get(theme_id)
        if theme is not None and (theme.items > 0 or theme.quotes):
            shown.append(theme)
        if len(shown) >= max_themes:
            break
    top_ids = [o.theme_id for o in data.opportunities[:MENTION_CHART_THEMES]]
    if not top_ids:
        top_ids = [t.theme_id for t in sorted(data.themes, key=lambda t: (-t.items, t.theme_id))][
            :MENTION_CHART_THEMES]
    matrix = mentions_matrix(data.weekly_mentions, top_ids, last_week=data.week)
    charts = {"mentions": mentions_chart(matrix, labels), "scores": scores_chart(data.opportunities)}
    accounts = sorted(data.accounts, key=lambda a: (-(a.arr + a.open_pipeline), a.name))
    customers = [a for a in data.accounts if a.lifecycle == "customer"]
    prospects = [a for a in data.accounts if a.lifecycle == "prospect"]
    return _View(
        data=data, changes=changes, themes=shown, accounts=accounts[:max_accounts],
        notes=sorted(data.field_notes, key=_note_order)[:max_notes],
        decisions=sorted(data.decisions, key=_decision_order), matrix=matrix, labels=labels, charts=charts,
        arr_at_stake=sum(a.arr for a in customers), pipeline_at_stake=sum(a.open_pipeline for a in prospects),
        customers_at_stake=len(customers), prospects_at_stake=len(prospects),
    )


def _title(data: ReportData) -> str:
    partial = " (week in progress)" if data.partial_week else ""
    return f"Groundswell theme report — {data.week}{partial}"


def _comparison_note(data: ReportData) -> str:
    if data.previous is None or data.previous_week is None:
        return "This is the first report: there is no earlier snapshot to compare with."
    if data.previous_recomputed:
        return (f"Compared with {data.previous_week}, recomputed from today's weekly statistics "
                "(no report was stored for that week).")
    return f"Compared with the snapshot frozen in the {data.previous_week} report."


def _headline_rows(v: _View) -> list[tuple[str, str]]:
    h = v.data.headline
    change = fmt_change(h.items, h.items_previous)
    return [
        ("Feedback items", fmt_int(h.items) + (f" ({change} vs last week)" if change else "")),
        ("Accounts heard from", fmt_int(h.accounts)),
        ("Themes mentioned", fmt_int(h.themes_active)),
        ("New / growing / fading / gone themes",
         " / ".join(str(len(x)) for x in v.changes.by_kind().values()) if v.changes is not None else "n/a"),
        ("Sales field and call notes", fmt_int(h.field_notes)),
        ("Items flagged as deal blockers", fmt_int(h.deal_blockers)),
        ("ARR at stake (customers behind the top opportunities)",
         f"{format_money(v.arr_at_stake)} across {fmt_int(v.customers_at_stake)} customers"),
        ("Open pipeline at stake (prospects)",
         f"{format_money(v.pipeline_at_stake)} across {fmt_int(v.prospects_at_stake)} prospects"),
    ]


def _change_text(c: ThemeChange) -> str:
    if c.kind == "new":
        return f"{fmt_int(c.after)} mentions"
    if c.kind == "gone":
        return f"{fmt_int(c.before)} mentions last week, none this week"
    return f"{fmt_int(c.before)} → {fmt_int(c.after)} mentions ({fmt_change(c.after, c.before)})"


# -- Markdown ---------------------------------------------------------------------------------------------
def render_markdown(data: ReportData, view: _View | None = None) -> str:
    v = view or _view(data)
    out: list[str] = [f"# {_title(data)}", "",
                      f"{fmt_week_range(data.week_start, data.week_end)} · generated "
                      f"{data.generated_at:%Y-%m-%d %H:%M %Z}".rstrip(), ""]
    out += ["## Headline", ""]
    out += [f"- **{label}:** {value}" for label, value in _headline_rows(v)]
    out += ["", "## Top opportunities", ""]
    if data.opportunities:
        comps = [k for k in COMPONENT_ORDER if any(k in o.components for o in data.opportunities)]
        out.append("| # | theme | score | tier | trend | " + " | ".join(comps) + " |")
        out.append("| ---: | --- | ---: | --- | --- | " + " | ".join("---:" for _ in comps) + " |")
        for o in data.opportunities:
            cells = [f"{float(o.components.get(k) or 0.0):.2f}" for k in comps]
            out.append(f"| {o.rank} | [{md_text(o.label, 80)}]({link(o.url)}) | {o.score:.1f} | "
                       f"{TIER_LABELS.get(o.tier, o.tier)} | {o.trend or ''} | " + " | ".join(cells) + " |")
        out.append("")
        for o in data.opportunities:
            decided = f" Decision: {decision_label(o.decision)}." if o.decision else ""
            out.append(f"{o.rank}. **{md_text(o.label, 80)}** — {md_text(o.rationale, 600)}{decided}")
    else:
        out.append("No opportunities scored yet: run an analysis first.")
    out += ["", "## What changed", "", _comparison_note(data), ""]
    if v.changes is not None:
        for kind, items in v.changes.by_kind().items():
            out.append(f"### {kind.capitalize()} ({len(items)})")
            out.append("")
            out += [f"- {md_text(c.label, 80)}: {_change_text(c)}" for c in items] or ["- none"]
            out.append("")
    out += ["## Weekly mentions of the top themes", ""]
    if len(v.matrix.columns):
        out.append("| week | " + " | ".join(md_text(v.labels.get(int(t), str(t)), 40) for t in v.matrix.columns)
                   + " |")
        out.append("| --- | " + " | ".join("---:" for _ in v.matrix.columns) + " |")
        for week, row in v.matrix.iterrows():
            out.append(f"| {week} | " + " | ".join(fmt_int(x) for x in row.tolist()) + " |")
    else:
        out.append("No theme has mentions yet.")
    out += ["", "## Themes this week", ""]
    for t in v.themes:
        score = f", score {t.score:.1f}" if t.score is not None else ""
        trend = f", {t.trend}" if t.trend else ""
        out.append(f"### [{md_text(t.label, 80)}]({link(t.url)})")
        out.append("")
        out.append(f"{fmt_int(t.items)} mentions from {fmt_int(t.accounts)} accounts{score}{trend}; "
                   f"{format_money(t.arr)} ARR, {format_money(t.open_pipeline)} open pipeline.")
        out.append("")
        for q in t.quotes:
            who = ", ".join(x for x in (md_text(q.account, 80) if q.account else "", md_text(q.source, 60)) if x)
            out.append(f"> “{md_text(q.text)}” — {who} ([source]({link(q.url)}))")
            out.append("")
    if not v.themes:
        out += ["No theme was mentioned this week.", ""]
    out += ["## Accounts and ARR at stake", ""]
    if v.accounts:
        out.append("| account | segment | lifecycle | ARR | open pipeline | items | themes | flags |")
        out.append("| --- | --- | --- | ---: | ---: | ---: | --- | --- |")
        for a in v.accounts:
            flags = ", ".join(f for f, on in (("deal blocker", a.deal_blocker), ("churn risk", a.churn_risk)) if on)
            out.append(f"| {md_text(a.name, 80)} | {a.segment or ''} | {a.lifecycle} | {format_money(a.arr)} | "
                       f"{format_money(a.open_pipeline)} | {fmt_int(a.items)} | "
                       f"{md_text('; '.join(a.themes), 200)} | {flags} |")
    else:
        out.append("No account raised the top opportunities this week.")
    out += ["", "## From the field", ""]
    for n in v.notes:
        out.append(f"- {_note_prefix(n)}“{md_text(n.text)}” — {md_text(_note_meta(n), 300)} ([source]({link(n.url)}))")
    if not v.notes:
        out.append("No field or call notes this week.")
    out += ["", "## PM decisions", ""]
    for d in v.decisions:
        note = f" — {md_text(d.note, 400)}" if d.note else ""
        by = f" ({md_text(_decided(d), 120)})" if _decided(d) else ""
        out.append(f"- **{decision_label(d.decision)}:** [{md_text(d.label, 80)}]({link(d.url)}), "
                   f"{fmt_int(d.accounts)} accounts{note}{by}")
    if not v.decisions:
        out.append("No decisions recorded yet.")
    out.append("")
    return "\n".join(out)


def _note_prefix(n: FieldNote) -> str:
    return "**Deal blocker:** " if n.deal_blocker else ""


def _note_meta(n: FieldNote) -> str:
    parts = [n.account or "unknown account", n.kind.replace("_", " ")]
    if n.submitted_by:
        parts.append(f"by {n.submitted_by}")
    if n.deal_stage:
        parts.append(n.deal_stage)
    if n.deal_amount:
        parts.append(format_money(n.deal_amount))
    if n.theme:
        parts.append(f"theme: {n.theme}")
    if n.competitors:
        parts.append("vs " + ", ".join(n.competitors))
    return ", ".join(parts)


def _decided(d: Decision) -> str:
    parts = [f"by {d.decided_by}" if d.decided_by else "", f"{d.decided_at:%Y-%m-%d}" if d.decided_at else ""]
    return " ".join(p for p in parts if p)


# -- HTML -------------------------------------------------------------------------------------------------
_CSS = """
body{font:15px/1.5 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2937;background:#f8fafc;
margin:0}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 10px;border-bottom:2px solid #e5e7eb;
padding-bottom:4px}h3{font-size:16px;margin:18px 0 6px}
.sub{color:#6b7280;margin:0 0 16px}a{color:#1d4ed8}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:10px 12px;background:#f9fafb}
.card b{display:block;font-size:20px}.card span{color:#6b7280;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:14px;margin:6px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.tier{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:#dbeafe}
.tier.vital{background:#fee2e2}.tier.important{background:#fef3c7}
.why{color:#374151;font-size:14px;margin:2px 0 8px}
.changes{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.changes ul{padding-left:18px;margin:4px 0}.changes h3{margin-top:6px}
.new h3{color:#7c3aed}.growing h3{color:#16a34a}.fading h3{color:#d97706}.gone h3{color:#6b7280}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #e5e7eb;border-radius:6px}
blockquote{margin:6px 0;padding:6px 12px;border-left:3px solid #93c5fd;background:#f8fafc}
blockquote small{display:block;color:#6b7280}
.blocker{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
"""

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ css|safe }}</style></head>
<body><main>
<h1>{{ title }}</h1>
<p class="sub">{{ range }} · generated {{ generated }}</p>

<h2 id="headline">Headline</h2>
<div class="cards">{% for label, value in headline %}
<div class="card"><b>{{ value }}</b><span>{{ label }}</span></div>{% endfor %}
</div>

<h2 id="opportunities">Top opportunities</h2>
{% if opportunities %}<table><thead><tr><th class="n">#</th><th>theme</th><th class="n">score</th>
<th>tier</th><th>trend</th>{% for c in component_names %}<th class="n">{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for o in opportunities %}<tr><td class="n">{{ o.rank }}</td><td><a href="{{ link(o.url) }}">{{ o.label }}</a></td>
<td class="n">{{ "%.1f"|format(o.score) }}</td>
<td><span class="tier {{ o.tier }}">{{ tier(o.tier) }}</span></td><td>{{ o.trend or "" }}</td>
{% for c in component_names %}<td class="n">{{ "%.2f"|format(o.components.get(c) or 0) }}</td>{% endfor %}</tr>
<tr><td></td><td colspan="{{ 4 + component_names|length }}" class="why">{{ o.rationale }}
{% if o.decision %}<b>Decision: {{ decision(o.decision) }}.</b>{% endif %}</td></tr>{% endfor %}
</tbody></table>
{% else %}<p class="muted">No opportunities scored yet: run an analysis first.</p>{% endif %}

<h2 id="changes">What changed</h2>
<p class="muted">{{ comparison }}</p>
{% if changes %}<div class="changes">{% for kind, items in changes.by_kind().items() %}
<div class="{{ kind }}"><h3>{{ kind|capitalize }} ({{ items|length }})</h3><ul>
{% for c in items %}<li>{{ c.label }}: {{ change_text(c) }}</li>{% else %}<li class="muted">none</li>{% endfor %}
</ul></div>{% endfor %}</div>{% endif %}

<h2 id="charts">Charts</h2>
<figure><img alt="Weekly mentions of the top themes" src="{{ charts.mentions }}"></figure>
<figure><img alt="Opportunity scores" src="{{ charts.scores }}"></figure>

<h2 id="themes">Themes this week</h2>
{% for t in themes %}<h3><a href="{{ link(t.url) }}">{{ t.label }}</a></h3>
<p>{{ num(t.items) }} mentions from {{ num(t.accounts) }} accounts{% if t.score is not none %},
score {{ "%.1f"|format(t.score) }}{% endif %}{% if t.trend %}, {{ t.trend }}{% endif %};
{{ money(t.arr) }} ARR, {{ money(t.open_pipeline) }} open pipeline.</p>
{% for q in t.quotes %}<blockquote>“{{ line(q.text) }}”<small>{% if q.account %}{{ q.account }} · {% endif %}
{{ q.source }} · <a href="{{ link(q.url) }}">source</a></small></blockquote>{% endfor %}
{% else %}<p class="muted">No theme was mentioned this week.</p>{% endfor %}

<h2 id="accounts">Accounts and ARR at stake</h2>
{% if accounts %}<table><thead><tr><th>account</th><th>segment</th><th>lifecycle</th><th class="n">ARR</th>
<th class="n">open pipeline</th><th class="n">items</th><th>themes</th><th>flags</th></tr></thead><tbody>
{% for a in accounts %}<tr><td>{{ a.name }}</td><td>{{ a.segment or "" }}</td><td>{{ a.lifecycle }}</td>
<td class="n">{{ money(a.arr) }}</td><td class="n">{{ money(a.open_pipeline) }}</td>
<td class="n">{{ num(a.items) }}</td>
<td>{{ a.themes|join("; ") }}</td><td>{% if a.deal_blocker %}<span class="blocker">deal blocker</span> {% endif %}
{% if a.churn_risk %}<span class="blocker">churn risk</span>{% endif %}</td></tr>{% endfor %}
</tbody></table>
{% else %}<p class="muted">No account raised the top opportunities this week.</p>{% endif %}

<h2 id="field">From the field</h2>
{% for n in notes %}<blockquote>{% if n.deal_blocker %}<span class="blocker">Deal blocker:</span> {% endif %}
“{{ line(n.text) }}”<small>{{ note_meta(n) }} · <a href="{{ link(n.url) }}">source</a></small></blockquote>
{% else %}<p class="muted">No field or call notes this week.</p>{% endfor %}

<h2 id="decisions">PM decisions</h2>
{% if decisions %}<ul>{% for d in decisions %}<li><b>{{ decision(d.decision) }}:</b>
<a href="{{ link(d.url) }}">{{ d.label }}</a>, {{ num(d.accounts) }} accounts{% if d.note %} — {{ d.note }}{% endif %}
{% if decided(d) %} <span class="muted">({{ decided(d) }})</span>{% endif %}</li>{% endfor %}</ul>
{% else %}<p class="muted">No decisions recorded yet.</p>{% endif %}
</main></body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True), keep_trailing_newline=True)
_COMPILED = _ENV.from_string(_TEMPLATE)


def render_html(data: ReportData, view: _View | None = None) -> str:
    v = view or _view(data)
    comps = [k for k in COMPONENT_ORDER if any(k in o.components for o in data.opportunities)]
    return _COMPILED.render(
        title=_title(data), css=_CSS, range=fmt_week_range(data.week_start, data.week_end),
        generated=f"{data.generated_at:%Y-%m-%d %H:%M %Z}".rstrip(), headline=_headline_rows(v),
        opportunities=data.opportunities, component_names=comps, comparison=_comparison_note(data),
        changes=v.changes, charts={k: data_uri(png) for k, png in v.charts.items()}, themes=v.themes,
        accounts=v.accounts, notes=v.notes, decisions=v.decisions,
        tier=lambda t: TIER_LABELS.get(t, t), decision=decision_label, change_text=_change_text,
        num=fmt_int, money=format_money, link=link, line=one_line, note_meta=_note_meta, decided=_decided,
    )


def render_report(data: ReportData) -> RenderedReport:
    """Markdown, HTML (charts embedded), the snapshot to freeze, and the chart PNGs."""
    view = _view(data)
    return RenderedReport(markdown=render_markdown(data, view), html=render_html(data, view),
                          snapshot=snapshot(data.themes), charts=dict(view.charts))
