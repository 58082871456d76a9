"""The hourly pipeline: sync every source, then analyse what is new.

A failing source never stops the others (``ingest_all`` isolates each) nor the analysis: the items of the
sources that did sync, and everything stored before, still deserve fresh themes and scores.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.analysis import analyze
from flows.ingest import ingest_all
from models.settings import Settings


@flow(name="pipeline", log_prints=False)
def pipeline(full: bool = False) -> dict[str, Any]:
    """Ingest all enabled sources, then run the analysis (incremental unless a full re-clustering is due).

    Args:
        full: force a full re-clustering.

    Returns:
        ``sources`` (one summary per source), ``failed`` (names of sources that failed), ``inserted`` and
        ``updated`` (items over all sources), ``ingest_error`` (when the ingest flow itself failed, else None)
        and ``analysis`` (the analysis summary).
    """
    settings = Settings()
    logger = get_run_logger()
    summaries: list[dict[str, Any]] = []
    ingest_error: str | None = None
    ingest_state = ingest_all(settings=settings, return_state=True)
    if ingest_state.is_completed():
        summaries = ingest_state.result()
    else:
        # Not one source but the whole ingest failed (say the source table could not be read): analyse anyway.
        exc = ingest_state.result(raise_on_failure=False)
        ingest_error = f"{type(exc).__name__}: {exc}"
        logger.error("ingest failed, analysing what is stored: %s", ingest_error)
    failed = [str(s.get("source")) for s in summaries if s.get("status") != "ok"]
    if failed:
        logger.warning("%d of %d sources failed: %s", len(failed), len(summaries), ", ".join(failed))
    analysis = analyze(full=full, settings=settings)
    return {
        "sources": summaries,
        "failed": failed,
        "inserted": sum(int(s.get("inserted") or 0) for s in summaries),
        "updated": sum(int(s.get("updated") or 0) for s in summaries),
        "ingest_error": ingest_error,
        "analysis": analysis,
    }
