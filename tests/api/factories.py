"""Small factories for the rows the API reads; each flushes so ids are known, none commits."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api.routes.keys import create_key
from ingest.accounts import name_key
from models.tables import (
    Account,
    AnalysisRun,
    Embedding,
    Feedback,
    Opportunity,
    Report,
    Source,
    Theme,
    ThemeAssignment,
    ThemeStat,
    utcnow,
)

_seq = itertools.count(1)


def make_key(session: Session, role: str, name: str | None = None) -> str:
    _, secret = create_key(session, name=name or f"{role}-user", role=role)
    return secret


def make_source(session: Session, name: str = "zendesk-main", kind: str = "zendesk") -> Source:
    source = Source(name=name, kind=kind, config={})
    session.add(source)
    session.flush()
    return source


def make_account(session: Session, name: str, *, segment: str | None = "enterprise", arr: float = 10_000.0,
                 lifecycle: str = "customer", domain: str | None = None, open_pipeline: float = 0.0) -> Account:
    account = Account(name=name, name_key=name_key(name), domain=domain, segment=segment, arr=arr,
                      lifecycle=lifecycle, open_pipeline=open_pipeline)
    session.add(account)
    session.flush()
    return account


def make_feedback(session: Session, source: Source, text: str, *, account: Account | None = None,
                  kind: str = "ticket", occurred_at: dt.datetime | None = None, submitted_by: str | None = None,
                  competitors: Sequence[str] = ()) -> Feedback:
    n = next(_seq)
    item = Feedback(
        source_id=source.id, external_id=f"ext-{n}", kind=kind, text=text,
        content_hash=hashlib.sha256(text.encode()).hexdigest(), account_id=account.id if account else None,
        submitted_by=submitted_by, occurred_at=occurred_at or utcnow() - dt.timedelta(days=n % 30),
        competitors=list(competitors),
    )
    session.add(item)
    session.flush()
    return item


def make_theme(session: Session, label: str, *, trend: str | None = "stable", size: int = 0,
               keywords: Sequence[str] = (), status: str = "active") -> Theme:
    theme = Theme(label=label, trend=trend, size=size, keywords=list(keywords), status=status)
    session.add(theme)
    session.flush()
    return theme


def assign(session: Session, item: Feedback, theme: Theme, *, similarity: float = 0.8, method: str = "cluster",
           pinned: bool = False) -> ThemeAssignment:
    row = ThemeAssignment(feedback_id=item.id, theme_id=theme.id, similarity=similarity, method=method,
                          pinned=pinned)
    session.add(row)
    session.flush()
    return row


def make_run(session: Session, *, kind: str = "full", status: str = "succeeded") -> AnalysisRun:
    run = AnalysisRun(kind=kind, status=status, finished_at=utcnow() if status == "succeeded" else None)
    session.add(run)
    session.flush()
    return run


def make_opportunity(session: Session, theme: Theme, run: AnalysisRun, *, score: float, rank: int,
                     segment: str = "all", momentum: float = 0.5, tier: str = "important") -> Opportunity:
    opp = Opportunity(theme_id=theme.id, run_id=run.id, segment=segment, score=score, rank=rank, tier=tier,
                      components={"reach": 0.5, "revenue": 0.4, "momentum": momentum},
                      metrics={"accounts": 2}, rationale=f"{theme.label}: 2 accounts, score {score:.0f}")
    session.add(opp)
    session.flush()
    return opp


def make_stats(session: Session, theme: Theme, counts: Sequence[int], *, end: dt.date | None = None) -> None:
    """Weekly stats ending at the Monday of ``end`` (default this week), oldest first."""
    end = end or dt.date.today()
    monday = end - dt.timedelta(days=end.weekday())
    for i, items in enumerate(counts):
        start = monday - dt.timedelta(weeks=len(counts) - 1 - i)
        iso = start.isocalendar()
        session.add(ThemeStat(theme_id=theme.id, week=f"{iso.year}-W{iso.week:02d}", week_start=start,
                              items=items, accounts=max(0, items // 2), arr=1000.0 * items))
    session.flush()


def make_embedding(session: Session, item: Feedback, vector: np.ndarray, model: str) -> None:
    existing = session.get(Embedding, (item.content_hash, model))
    if existing is None:
        session.add(Embedding(content_hash=item.content_hash, model=model, dim=int(vector.shape[0]),
                              vector=np.asarray(vector, dtype=np.float32).tobytes()))
        session.flush()


def make_report(session: Session, week: str = "2026-W10") -> Report:
    report = Report(week=week, markdown=f"# Report {week}\n\nTop themes.", html=f"<h1>Report {week}</h1>")
    session.add(report)
    session.flush()
    return report


@dataclass
class World:
    """A small coherent data set: two themes with items, accounts, stats, a scored run and a report."""

    source: Source
    accounts: list[Account]
    themes: list[Theme]
    items: list[Feedback]
    run: AnalysisRun
    report: Report
    extra: dict[str, Any] = field(default_factory=dict)


def make_world(session: Session, embedder: Any = None) -> World:
    source = make_source(session)
    acme = make_account(session, "Acme Corp", segment="enterprise", arr=120_000.0, domain="acme.com")
    globex = make_account(session, "Globex", segment="smb", arr=8_000.0, domain="globex.com")
    initech = make_account(session, "Initech", segment="enterprise", arr=0.0, lifecycle="prospect",
                           open_pipeline=50_000.0)
    export = make_theme(session, "export to excel", trend="emerging", size=3, keywords=["export", "excel"])
    sso = make_theme(session, "single sign on", trend="stable", size=2, keywords=["sso", "okta"])
    texts = [
        ("Export to Excel times out on large reports", acme, export, ["Productboard"]),
        ("We need excel export with formatting", globex, export, []),
        ("Excel export is broken for big files", initech, export, ["Canny"]),
        ("Please add SSO with Okta", acme, sso, []),
        ("Single sign on via SAML is a blocker", initech, sso, []),
    ]
    items = []
    for text, account, theme, competitors in texts:
        item = make_feedback(session, source, text, account=account, competitors=competitors)
        assign(session, item, theme)
        items.append(item)
        if embedder is not None:
            make_embedding(session, item, embedder.encode([text])[0], embedder.name)
    run = make_run(session)
    make_opportunity(session, export, run, score=82.0, rank=1, momentum=0.9)
    make_opportunity(session, sso, run, score=55.0, rank=2, momentum=0.1)
    make_opportunity(session, export, run, score=80.0, rank=1, segment="enterprise")
    make_stats(session, export, [0, 1, 1, 2, 4, 7])
    make_stats(session, sso, [3, 2, 3, 2, 2, 3])
    report = make_report(session)
    return World(source=source, accounts=[acme, globex, initech], themes=[export, sso], items=items, run=run,
                 report=report)
