"""Semantic search: cosine similarity of a query vector against every stored embedding of one model.

The vectors of a model are loaded once into a float32 matrix and reused until the embedding table
changes (its row count or newest ``created_at`` for that model), so a search over 100k items is one
matrix-vector product instead of a table scan.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.queries import FeedbackFilters, feedback_outs
from api.schemas import SearchHit
from models.tables import Embedding, Feedback


@dataclass(slots=True)
class _Matrix:
    version: tuple[int, Any]
    hashes: np.ndarray  # (n,) object array of content hashes
    vectors: np.ndarray  # (n, dim) float32, unit rows


class VectorIndex:
    """In-memory matrices of stored embeddings, one per model.

    Args:
        recheck_s: how long a loaded matrix is trusted before the table is checked for changes.
    """

    def __init__(self, *, recheck_s: float = 2.0) -> None:
        self.recheck_s = recheck_s
        self._matrices: dict[str, _Matrix] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def _version(self, session: Session, model: str) -> tuple[int, Any]:
        count, newest = session.execute(
            select(func.count(), func.max(Embedding.created_at)).where(Embedding.model == model)
        ).one()
        return int(count), newest

    def matrix(self, session: Session, model: str) -> _Matrix:
        with self._lock:
            cached = self._matrices.get(model)
            now = time.monotonic()
            if cached is not None and now - self._checked.get(model, 0.0) < self.recheck_s:
                return cached
            version = self._version(session, model)
            if cached is None or cached.version != version:
                rows = session.execute(
                    select(Embedding.content_hash, Embedding.dim, Embedding.vector).where(Embedding.model == model)
                ).all()
                dims = {dim for _, dim, _ in rows}
                dim = max(dims) if dims else 0
                hashes = np.empty(len(rows), dtype=object)
                vectors = np.zeros((len(rows), dim), dtype=np.float32)
                for i, (content_hash, row_dim, blob) in enumerate(rows):
                    hashes[i] = content_hash
                    if row_dim == dim and len(blob) == 4 * dim:
                        vectors[i] = np.frombuffer(blob, dtype=np.float32)
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                np.divide(vectors, norms, out=vectors, where=norms > 0)
                cached = _Matrix(version=version, hashes=hashes, vectors=vectors)
                self._matrices[model] = cached
            self._checked[model] = now
            return cached

    def search(self, session: Session, model: str, query: np.ndarray, filters: FeedbackFilters, *,
               limit: int = 20) -> list[SearchHit]:
        """Items whose text is nearest the query, best first; several items with one text all match.

        A filter is applied in SQL to the best candidates, widening the candidate set until ``limit`` items
        pass or every vector was considered.
        """
        m = self.matrix(session, model)
        if m.vectors.shape[0] == 0 or query.shape[-1] != m.vectors.shape[1]:
            return []
        scores = m.vectors @ query.astype(np.float32).reshape(-1)
        n = scores.shape[0]
        want = limit * 5
        hits: list[tuple[float, Feedback]] = []
        while True:
            k = min(n, want)
            top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            by_hash = {str(m.hashes[i]): float(scores[i]) for i in top}
            keys = list(by_hash)
            items: list[Feedback] = []
            for start in range(0, len(keys), 5000):  # bounded IN lists (SQLite's variable limit)
                stmt = filters.apply(select(Feedback).where(Feedback.content_hash.in_(keys[start:start + 5000])))
                items.extend(session.scalars(stmt).unique())
            hits = sorted(((by_hash[f.content_hash], f) for f in items), key=lambda h: (-h[0], h[1].id))
            if len(hits) >= limit or k >= n:
                break
            want *= 10
        hits = hits[:limit]
        outs = feedback_outs(session, [f for _, f in hits])
        return [SearchHit(score=round(s, 6), feedback=o) for (s, _), o in zip(hits, outs, strict=True)]
