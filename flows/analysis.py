"""The analysis flow: embed, signals, themes, scores — each a Prefect task over the same Analyzer steps.

A run is incremental by default (new items join the nearest theme). The flow itself decides when a full
re-clustering is due: when asked, when there is no theme yet, when the last successful full run is older than
``full_recluster_days`` (weekly by default), or when the pool of items left unassigned since that run has
reached ``recluster_pool_size``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from flows.embedding import ModelSpec, embedder_for, run_embed_batches, task_runner_setting
from models.db import engine_from_settings, make_session_factory, session_scope
from models.settings import Settings
from models.tables import AnalysisRun, Theme, utcnow
from pipeline.analysis import AnalysisSummary, Analyzer, new_unassigned
from pipeline.runs import claim_analysis


def build_analyzer(settings: Settings, engine: Engine | None = None) -> Analyzer:
    """An Analyzer wired from settings: database (``engine``, or one from settings), embedding model, thresholds."""
    factory = make_session_factory(engine or engine_from_settings(settings))
    # One embedder per configuration and process: the API's job runner runs every analysis in the API
    # process, and loading the model again per run would cost more than embedding an hour's new texts.
    return Analyzer(factory, settings, embedder_for(ModelSpec.from_settings(settings)))


@dataclass(frozen=True)
class ReclusterDecision:
    """Whether this run re-clusters everything, and why."""

    full: bool
    reason: str  # asked, no-themes, no-full-run, weekly, pool, incremental
    last_full_at: dt.datetime | None
    pool: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_full_at"] = self.last_full_at.isoformat() if self.last_full_at else None
        return out


def decide_recluster(session: Session, settings: Settings, *, asked: bool = False,
                     now: dt.datetime | None = None) -> ReclusterDecision:
    """Full re-clustering or incremental run, from the runs and assignments on record.

    The pool counts only items ingested since the last successful full run started and still unassigned:
    items that run itself left as noise do not count, so a noisy corpus does not re-cluster every hour.
    """
    now = now or utcnow()
    last_full = session.execute(
        select(AnalysisRun.started_at, AnalysisRun.finished_at)
        .where(AnalysisRun.kind == "full", AnalysisRun.status == "succeeded")
        .order_by(AnalysisRun.finished_at.desc()).limit(1)
    ).first()
    last_full_at = last_full[1] if last_full else None
    pool = new_unassigned(session)

    def decision(full: bool, reason: str) -> ReclusterDecision:
        return ReclusterDecision(full=full, reason=reason, last_full_at=last_full_at, pool=pool)

    if asked:
        return decision(True, "asked")
    if session.scalar(select(Theme.id).where(Theme.status == "active").limit(1)) is None:
        return decision(True, "no-themes")
    if last_full_at is None:
        return decision(True, "no-full-run")
    days = settings.full_recluster_days
    if days > 0 and now - last_full_at >= dt.timedelta(days=days):
        return decision(True, "weekly")
    if pool >= settings.recluster_pool_size:
        return decision(True, "pool")
    return decision(False, "incremental")


def begin_run(factory: sessionmaker[Session], decision: ReclusterDecision,
              run_id: int | None = None, *, stale_run_hours: float) -> AnalysisSummary:
    """Record the run: adopt the queued ``analysis_run`` row ``run_id`` (a job from the API) or add one.

    Raises :class:`~pipeline.runs.AnalysisBusy` while another analysis runs (one runs at a time).
    """
    kind = "full" if decision.full else "incremental"
    run_id = claim_analysis(factory, kind, run_id=run_id, stale_after=dt.timedelta(hours=stale_run_hours))
    return AnalysisSummary(run_id=run_id, kind=kind)


# Database and model I/O can fail transiently (locks, a restarting server): retry those steps.
@task(name="embed-new-texts", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def embed_new_texts(analyzer: Analyzer, summary: AnalysisSummary) -> int:
    count = analyzer.embed(summary)
    get_run_logger().info("embedded %d new texts", count)
    return count


@task(name="item-signals", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def item_signals(analyzer: Analyzer, summary: AnalysisSummary) -> int:
    count = analyzer.signals(summary)
    get_run_logger().info("signals computed for %d items", count)
    return count


@task(name="update-themes", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def update_themes(analyzer: Analyzer, summary: AnalysisSummary) -> int:
    analyzer.themes(summary)
    get_run_logger().info("%s run: %d items, %d assigned, %d unassigned, %d themes born", summary.kind,
                          summary.items, summary.assigned, summary.unassigned, summary.born)
    return summary.assigned


@task(name="score-opportunities", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def score_themes(analyzer: Analyzer, summary: AnalysisSummary) -> int:
    count = analyzer.scores(summary)
    get_run_logger().info("scored %d opportunities", count)
    return count


def _embed(analyzer: Analyzer, summary: AnalysisSummary, settings: Settings) -> None:
    if task_runner_setting(settings):
        # Batches as tasks on the configured Dask cluster; same table, same skip-what-exists rule.
        summary.embedded = run_embed_batches(settings)
    else:
        embed_new_texts(analyzer, summary)


@flow(name="analyze", log_prints=False)
def analyze(full: bool = False, run_id: int | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Analyse what is new; re-cluster everything when ``full`` or when the flow finds it due.

    Args:
        full: force a full re-clustering (theme ids survive); otherwise :func:`decide_recluster` chooses.
        run_id: a queued ``analysis_run`` row to run as (API jobs); a new row otherwise.
        settings: defaults to the environment's.

    Returns:
        The run summary, with ``decision`` (full or not, and why).
    """
    settings = settings or Settings()
    started = time.perf_counter()
    engine = engine_from_settings(settings)
    analyzer = build_analyzer(settings, engine)
    try:
        with analyzer.factory() as session:
            decision = decide_recluster(session, settings, asked=full)
            queued = session.get(AnalysisRun, run_id) if run_id is not None else None
            params = (queued.stats or {}).get("params") if queued is not None else None
        get_run_logger().info("analysis: %s run (%s; %d unassigned since the last full run)",
                              "full" if decision.full else "incremental", decision.reason, decision.pool)
        summary = begin_run(analyzer.factory, decision, run_id, stale_run_hours=settings.stale_run_hours)
        try:
            steps = (("embed", lambda: _embed(analyzer, summary, settings)),
                     ("signals", lambda: item_signals(analyzer, summary)),
                     ("themes", lambda: update_themes(analyzer, summary)),
                     ("scores", lambda: score_themes(analyzer, summary)))
            for name, step in steps:
                t0 = time.perf_counter()
                step()
                summary.steps[name] = time.perf_counter() - t0
        except BaseException as exc:
            analyzer.fail(summary, exc)
            raise
        summary.seconds = time.perf_counter() - started
        result = analyzer.finish(summary).as_dict()
        result["decision"] = decision.as_dict()
        with session_scope(analyzer.factory) as session:
            session.execute(update(AnalysisRun).where(AnalysisRun.id == summary.run_id).values(
                stats={**result, **({"params": params} if params else {})}))
    finally:
        engine.dispose()
    return result
