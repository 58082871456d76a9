"""Semantic search: cosine similarity of a query vector against every stored embedding of one model.

The vectors of a model are loaded once into a float32 matrix and reused until the embedding table
changes (its row count or newest ``created_at`` for that model), so a search over 100k items is one
matrix product instead of a table scan; concurrent searches share one product (see :class:`_ScoreBatcher`).
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


@dataclass(eq=False, slots=True)
class _Query:
    matrix: _Matrix
    vector: np.ndarray  # (dim,) float32
    scores: np.ndarray | None = None  # (n,) float32, once computed


class _ScoreBatcher:
    """Scores concurrent queries against a matrix in one matrix-matrix product.

    A product reads the whole matrix (150 MB for 100k vectors of 384 floats), so one query at a time is
    bound by memory bandwidth; queries that arrive while a product runs wait and are scored together in
    the next one, which reads the matrix once for all of them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Query] = []
        self._busy = False

    def scores(self, matrix: _Matrix, vector: np.ndarray) -> np.ndarray:
        query = _Query(matrix, np.ascontiguousarray(vector, dtype=np.float32).reshape(-1))
        with self._cond:
            self._waiting.append(query)
            while self._busy and query.scores is None:
                self._cond.wait()
            if query.scores is not None:
                return query.scores
            self._busy = True  # this thread scores everything waiting, its own query included
            batch, self._waiting = self._waiting, []
        try:
            for m in {id(q.matrix): q.matrix for q in batch}.values():
                group = [q for q in batch if q.matrix is m]
                product = m.vectors @ np.stack([q.vector for q in group], axis=1)  # (n, b)
                for j, q in enumerate(group):
                    q.scores = np.ascontiguousarray(product[:, j])
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        assert query.scores is not None
        return query.scores


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
        self._batcher = _ScoreBatcher()

    def _version(self, session: Session, model: str) -> tuple[int, Any]:
        # Two statements: with both aggregates in one, SQLite reads every row's created_at instead of
        # taking the max from the end of the (model, created_at) index.
        count = session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model == model))
        newest = session.scalar(select(func.max(Embedding.created_at)).where(Embedding.model == model))
        return int(count or 0), newest

    def matrix(self, session: Session, model: str) -> _Matrix:
        """The model's matrix; rebuilt when the table changed since it was loaded.

        Once loaded, at most one request at a time checks for changes (every ``recheck_s``); the others keep
        using the loaded matrix meanwhile instead of queueing behind the check.
        """
        now = time.monotonic()
        cached = self._matrices.get(model)
        if cached is not None and (now - self._checked.get(model, 0.0) < self.recheck_s
                                   or not self._lock.acquire(blocking=False)):
            return cached
        if cached is None:
            self._lock.acquire()  # nothing to serve yet: wait for whoever loads it
        try:
            cached = self._matrices.get(model)
            if cached is not None and time.monotonic() - self._checked.get(model, 0.0) < self.recheck_s:
                return cached
            version = self._version(session, model)
            if cached is None or cached.version != version:
                cached = self._load(session, model, version)
                self._matrices[model] = cached
            self._checked[model] = time.monotonic()
            return cached
        finally:
            self._lock.release()

    def _load(self, session: Session, model: str, version: tuple[int, Any]) -> _Matrix:
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
        return _Matrix(version=version, hashes=hashes, vectors=vectors)

    def search(self, session: Session, model: str, query: np.ndarray, filters: FeedbackFilters, *,
               limit: int = 20) -> list[SearchHit]:
        """Items whose text is nearest the query, best first; several items with one text all match.

        A filter is applied in SQL to the best candidates, widening the candidate set until ``limit`` items
        pass or every vector was considered.
        """
        m = self.matrix(session, model)
        if m.vectors.shape[0] == 0 or query.shape[-1] != m.vectors.shape[1]:
            return []
        scores = self._batcher.scores(m, query)
        n = scores.shape[0]
        want = limit * 5
        ranked: list[tuple[float, int]] = []
        while True:
            k = min(n, want)
            top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
            by_hash = {str(m.hashes[i]): float(scores[i]) for i in top}
            keys = list(by_hash)
            ranked = []
            for start in range(0, len(keys), 5000):  # bounded IN lists (SQLite's variable limit)
                # Ids and hashes only: the candidates outnumber the hits, and whole rows (with their
                # account, source and JSON columns) are loaded below for the hits alone.
                stmt = filters.apply(select(Feedback.id, Feedback.content_hash)
                                     .where(Feedback.content_hash.in_(keys[start:start + 5000])))
                ranked.extend((by_hash[h], fid) for fid, h in session.execute(stmt).tuples())
            if len(ranked) >= limit or k >= n:
                break
            want *= 10
        ranked = sorted(set(ranked), key=lambda h: (-h[0], h[1]))[:limit]
        rows = {f.id: f for f in session.scalars(
            select(Feedback).where(Feedback.id.in_([fid for _, fid in ranked]))).unique()}
        hits = [(s, rows[fid]) for s, fid in ranked if fid in rows]
        outs = feedback_outs(session, [f for _, f in hits])
        return [SearchHit(score=round(s, 6), feedback=o) for (s, _), o in zip(hits, outs, strict=True)]
