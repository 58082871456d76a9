"""Embedding batches as Prefect tasks, so they can run on a Dask cluster (prefect-dask) instead of in-process.

``settings.embedding_task_runner`` picks where ``encode_batch`` runs:

- empty: in this process, one batch after another (the analysis flow then uses its plain embed task);
- ``local:N``: a temporary ``distributed.LocalCluster`` of N worker processes on this machine;
- anything else: the address of a running Dask scheduler (``tcp://10.0.0.5:8786``), with GPU workers where present.

Workers only compute: each builds its embedder once per process and returns vectors; the flow stores them with
one commit per batch, so a crash loses at most the batches in flight and workers need no database access.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db import engine_from_settings, make_session_factory, session_scope
from models.settings import Settings
from models.tables import Embedding
from pipeline.embedding import Embedder, make_embedder
from pipeline.embedding_store import embed_missing, missing_hashes, store_embeddings

log = logging.getLogger(__name__)

DEFAULT_DASK_BATCH = 256


class TaskRunnerConfigError(ValueError):
    """``embedding_task_runner`` does not name a valid runner."""


@dataclass(frozen=True)
class ModelSpec:
    """What builds an embedder; hashable, so a worker keeps one embedder per spec."""

    model: str
    device: str = "auto"
    batch_size: int = 64
    threads: int = 0
    precision: str = "auto"
    runtime: str = "auto"

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelSpec:
        return cls(model=settings.embedding_model, device=settings.embedding_device,
                   batch_size=settings.embedding_batch_size, threads=settings.torch_threads,
                   precision=settings.embedding_precision, runtime=settings.embedding_runtime)

    def build(self) -> Embedder:
        return make_embedder(self.model, device=self.device, batch_size=self.batch_size, threads=self.threads,
                             precision=self.precision, runtime=self.runtime)


# One embedder per process and spec: loading a model costs seconds, a batch far less.
_EMBEDDERS: dict[ModelSpec, Embedder] = {}


def embedder_for(spec: ModelSpec) -> Embedder:
    embedder = _EMBEDDERS.get(spec)
    if embedder is None:
        embedder = _EMBEDDERS[spec] = spec.build()
    return embedder


def task_runner_setting(settings: Settings) -> str:
    return settings.embedding_task_runner.strip()


def dask_task_runner(value: str) -> Any:
    """The prefect-dask runner a non-empty ``embedding_task_runner`` value names.

    Raises:
        TaskRunnerConfigError: ``local:`` without a positive worker count.
    """
    from prefect_dask import DaskTaskRunner

    if value.startswith("local:"):
        count = value.partition(":")[2]
        if not count.isdigit() or int(count) < 1:
            raise TaskRunnerConfigError(
                f"bad GROUNDSWELL_EMBEDDING_TASK_RUNNER {value!r}: use local:N with N >= 1 workers, "
                "a scheduler address such as tcp://host:8786, or leave it empty")
        # One thread per worker process: torch parallelises inside a batch already.
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": int(count), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return DaskTaskRunner(address=value)


@task(name="encode-batch", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def encode_batch(texts: list[str], spec: ModelSpec) -> np.ndarray:
    """Embed one batch on whichever worker runs it.

    Returns:
        ``(len(texts), dim)`` float32, unit rows.
    """
    return embedder_for(spec).encode(texts)


def store_vectors(factory: sessionmaker[Session], model: str, pairs: Iterable[tuple[str, np.ndarray]]) -> int:
    """Store (content hash, vector) pairs for ``model`` in one transaction; hashes already stored are skipped.

    Skipping makes a retried or concurrent batch harmless: a vector is never computed into the table twice.

    Returns:
        Number of vectors added.
    """
    rows = list(pairs)
    if not rows:
        return 0
    with session_scope(factory) as session:
        present = set(session.scalars(select(Embedding.content_hash).where(
            Embedding.model == model, Embedding.content_hash.in_([h for h, _ in rows]))))
        fresh = [(h, v) for h, v in dict(rows).items() if h not in present]
        store_embeddings(session, model, fresh)  # one stored since the check keeps its vector
    return len(fresh)


def split(items: Sequence[tuple[str, str]], size: int) -> list[Sequence[tuple[str, str]]]:
    return [items[i:i + size] for i in range(0, len(items), max(size, 1))]


@flow(name="embed-batches")
def embed_batches(settings: Settings | None = None, batch_size: int = DEFAULT_DASK_BATCH) -> int:
    """Embed every stored text without a vector for the configured model, one task per batch.

    Run it with a task runner (``embed_batches.with_options(task_runner=dask_task_runner(...))``) to spread
    the batches over a cluster; on the default runner the batches run in threads of this process.

    Returns:
        Number of vectors stored.
    """
    settings = settings or Settings()
    spec = ModelSpec.from_settings(settings)
    engine = engine_from_settings(settings)
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            todo = missing_hashes(session, spec.model)
        batches = split(todo, batch_size)
        futures = [encode_batch.with_options(task_run_name=f"encode-batch-{i}").submit([t for _, t in batch], spec)
                   for i, batch in enumerate(batches)]
        stored = 0
        for batch, future in zip(batches, futures, strict=True):
            vectors = future.result()
            stored += store_vectors(factory, spec.model, zip([h for h, _ in batch], vectors, strict=True))
    finally:
        engine.dispose()
    get_run_logger().info("embedded %d texts in %d batches with %s", stored, len(batches), spec.model)
    return stored


def run_embed_batches(settings: Settings) -> int:
    """``embed_batches`` on the runner ``settings.embedding_task_runner`` names (Dask when set)."""
    value = task_runner_setting(settings)
    runner_flow = embed_batches.with_options(task_runner=dask_task_runner(value)) if value else embed_batches
    batch = max(settings.embedding_batch_size * 4, 64)
    return int(runner_flow(settings=settings, batch_size=batch))


@task(name="embed-arrivals", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def embed_stored_texts(settings: Settings) -> int:
    """Embed, in this process, every stored text without a vector for the configured model.

    Returns:
        Number of texts embedded.
    """
    engine = engine_from_settings(settings)
    try:
        return embed_missing(make_session_factory(engine), embedder_for(ModelSpec.from_settings(settings)))
    finally:
        engine.dispose()


def embed_arrivals(settings: Settings) -> int:
    """Embed what an ingest stored, on the runner ``embedding_task_runner`` names, so that search finds the new
    items before the next analysis. Which texts lack a vector is read from the tables, as the analysis does,
    so a crashed or skipped call is made up by the next one.

    Returns:
        Number of texts embedded.
    """
    if task_runner_setting(settings):
        return run_embed_batches(settings)
    return int(embed_stored_texts(settings))
