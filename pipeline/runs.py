"""Which analysis run is the current one: the single definition the API, the CLI and the report share."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from models.tables import AnalysisRun, Opportunity


def latest_scored_run_select() -> Select[tuple[int]]:
    """The id of the latest succeeded full or incremental analysis that scored opportunities: the current one.

    Newest run first with an EXISTS probe, so the answer comes from the first few runs instead of a scan
    of every opportunity ever scored.
    """
    scored = select(Opportunity.id).where(Opportunity.run_id == AnalysisRun.id).exists()
    return (select(AnalysisRun.id)
            .where(AnalysisRun.status == "succeeded", AnalysisRun.kind.in_(("full", "incremental")), scored)
            .order_by(AnalysisRun.id.desc()).limit(1))


def latest_scored_run_id(session: Session) -> int | None:
    """The current analysis run (see :func:`latest_scored_run_select`), or None before the first."""
    return session.scalar(latest_scored_run_select())
