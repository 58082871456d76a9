"""The analysis flow: embed, signals, themes, scores — each a Prefect task over the same Analyzer steps."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.db import engine_from_settings, make_session_factory
from models.settings import Settings
from pipeline.analysis import AnalysisSummary, Analyzer
from pipeline.embedding import make_embedder


def build_analyzer(settings: Settings) -> Analyzer:
    """An Analyzer wired from settings: database, embedding model, thresholds."""
    factory = make_session_factory(engine_from_settings(settings))
    embedder = make_embedder(settings.embedding_model, device=settings.embedding_device,
                             batch_size=settings.embedding_batch_size, threads=settings.torch_threads)
    return Analyzer(factory, settings, embedder)


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
    get_run_logger().info("%d items, %d assigned, %d unassigned, %d themes born",
                          summary.items, summary.assigned, summary.unassigned, summary.born)
    return summary.assigned


@task(name="score-opportunities", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def score_themes(analyzer: Analyzer, summary: AnalysisSummary) -> int:
    count = analyzer.scores(summary)
    get_run_logger().info("scored %d opportunities", count)
    return count


@flow(name="analyze", log_prints=False)
def analyze(full: bool = False) -> dict[str, Any]:
    """Incremental analysis by default; ``full`` re-clusters everything (theme ids survive)."""
    import time

    started = time.perf_counter()
    analyzer = build_analyzer(Settings())
    summary = analyzer.begin(full=full)
    try:
        embed_new_texts(analyzer, summary)
        item_signals(analyzer, summary)
        update_themes(analyzer, summary)
        score_themes(analyzer, summary)
    except BaseException as exc:
        analyzer.fail(summary, exc)
        raise
    summary.seconds = time.perf_counter() - started
    return analyzer.finish(summary).as_dict()
