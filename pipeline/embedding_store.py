"""Vectors per (content hash, model) in the `embedding` table: a text is embedded once per model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db import insert_for, session_scope
from models.tables import Embedding, Feedback, utcnow
from pipeline.embedding import Embedder

log = logging.getLogger(__name__)

# Hashes per lookup, well under every backend's limit on bound parameters.
LOOKUP_CHUNK = 5000


def to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes, dim: int | None = None) -> np.ndarray:
    vec = np.frombuffer(blob, dtype=np.float32)
    if dim is not None and vec.shape[0] != dim:
        raise ValueError(f"stored vector has {vec.shape[0]} dimensions, expected {dim}")
    return vec


def missing_hashes(session: Session, model: str,
                   feedback_ids: Sequence[int] | None = None) -> list[tuple[str, str]]:
    """(content hash, text) of feedback whose text has no vector for ``model`` yet, in a stable order; only
    among ``feedback_ids`` when given."""
    stmt = (select(Feedback.content_hash, Feedback.text)
            .outerjoin(Embedding, (Embedding.content_hash == Feedback.content_hash) & (Embedding.model == model))
            .where(Embedding.content_hash.is_(None)))
    if feedback_ids is not None:
        stmt = stmt.where(Feedback.id.in_(feedback_ids))
    rows = session.execute(stmt.order_by(Feedback.content_hash)).tuples()
    seen: dict[str, str] = {}
    for content_hash, text in rows:
        seen.setdefault(content_hash, text)
    return list(seen.items())


def store_embeddings(session: Session, model: str, pairs: Iterable[tuple[str, np.ndarray]]) -> None:
    """Insert (content hash, vector) rows for ``model``; a key another writer stored meanwhile (the API embeds
    notes as they arrive, an analysis embeds what is missing) keeps its vector and is not an error."""
    now = utcnow()
    rows = [{"content_hash": h, "model": model, "dim": int(v.shape[0]), "vector": to_bytes(v), "created_at": now}
            for h, v in pairs]
    if rows:
        table = Embedding.__table__
        session.execute(insert_for(session)(table).on_conflict_do_nothing(
            index_elements=[table.c.content_hash, table.c.model]), rows)


def embed_missing(factory: sessionmaker[Session], embedder: Embedder, *, batch_size: int = 4096,
                  progress: Callable[[int], None] | None = None) -> int:
    """Embed every stored text that has no vector for this model; each batch commits on its own.

    A crash loses at most the batches in flight; the next call carries on where it stopped.

    Returns:
        Number of texts embedded.
    """
    with factory() as session:
        todo = missing_hashes(session, embedder.name)
    return embed_pairs(factory, embedder, todo, batch_size=batch_size, progress=progress)


def embed_pairs(factory: sessionmaker[Session], embedder: Embedder, todo: Sequence[tuple[str, str]], *,
                batch_size: int = 4096, progress: Callable[[int], None] | None = None,
                write_lock: AbstractContextManager[Any] | None = None) -> int:
    """Embed ``(content hash, text)`` pairs and store their vectors; each batch commits on its own.

    Batch k is written by a helper thread while batch k + 1 is encoded, so a fast encoder (a GPU) does
    not wait on the database. Vectors are written by :func:`store_embeddings`, so a key another writer
    stored meanwhile is left as it is.

    Args:
        write_lock: held around each batch's write transaction (the API's SQLite writer queue).

    Returns:
        Number of texts encoded (vectors already stored by someone else included).
    """
    done = 0

    def store(batch: Sequence[tuple[str, str]], vectors: np.ndarray) -> None:
        with write_lock or nullcontext(), session_scope(factory) as session:
            store_embeddings(session, embedder.name, zip([h for h, _ in batch], vectors, strict=True))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding-store") as writer:
        pending: tuple[Future[None], int] | None = None
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            vectors = embedder.encode([text for _, text in batch])
            if pending is not None:
                pending[0].result()
                done += pending[1]
                if progress is not None:
                    progress(pending[1])
            pending = (writer.submit(store, batch, vectors), len(batch))
        if pending is not None:
            pending[0].result()
            done += pending[1]
            if progress is not None:
                progress(pending[1])
    if done:
        log.info("embedded %d new texts with %s", done, embedder.name)
    return done


def find_vectors(session: Session, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
    """The stored ``model`` vectors of ``hashes``, looked up by key; a hash with no vector is left out.

    A run mostly reads the vectors of a few new texts: looking them up costs a few rows each, where
    filtering the model's every vector would read them all.
    """
    wanted = list(dict.fromkeys(hashes))
    found: dict[str, bytes] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        found.update(session.execute(
            select(Embedding.content_hash, Embedding.vector)
            .where(Embedding.model == model, Embedding.content_hash.in_(wanted[start:start + LOOKUP_CHUNK]))
        ).tuples().all())
    return found


def load_vectors(session: Session, model: str, hashes: Sequence[str]) -> np.ndarray:
    """Vectors for ``hashes`` in that order.

    Returns:
        ``(len(hashes), dim)`` float32.

    Raises:
        KeyError: a hash has no stored vector for ``model``.
    """
    found = find_vectors(session, model, hashes)
    missing = set(hashes) - found.keys()
    if missing:
        raise KeyError(f"{len(missing)} texts have no {model} vector yet; run the embedding step first")
    if not hashes:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([from_bytes(found[h]) for h in hashes])
