"""Semantic search: cosine similarity of a query vector against the stored embeddings of one model.

A model's vectors are held in memory as one contiguous float32 matrix with a row per feedback item, the
rows grouped by theme, beside numpy columns of what search filters on (theme, account, source, kind,
occurred_at, submitted_by). A search turns its filters into a boolean mask, ranks the rows that pass, and
asks the database for the best few rows only, with the filters applied again in SQL, so an item the
snapshot still shows in a filter it has since left is never returned.

Up to ``exact_rows`` rows that pass the filters, every one is scored (one matrix product, shared by
concurrent searches, see :class:`_ScoreBatcher`). Beyond that the search is approximate: the query is
compared with each theme's centroid first and only the rows of the nearest themes are scored (contiguous
slices of the matrix), together with every item no theme holds yet. By default that is a twentieth of the
rows, and the ranking costs about a twentieth of an exact one (1 ms instead of 16 at 100k items of 384
dimensions); its recall against exact search is measured in the tests and by ``benchmarks.api_latency
--recall`` (0.96 on average at 100k demo items).

The snapshot is rebuilt when the embeddings, the feedback, the theme assignments or the analysis runs
change. A search checks for changes at most every ``recheck_s``, in a background thread, and keeps using
the snapshot it has until the new one is ready, so no request waits for a rebuild except the first (a
server builds it at startup, see ``create_app(warm_search=True)``). A search may therefore miss an item
stored or moved in the last few seconds; it never returns one that no longer passes its filters.

Each snapshot remembers the first ranked batch of its recent searches (``_Snapshot.rankings``), so a search
repeated under the same filters skips the ranking; its hits are read and filtered in SQL all the same.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.lru import LRU
from api.queries import FeedbackFilters, feedback_outs_by_id
from api.schemas import FeedbackOut, SearchHit
from api.timing import timed
from models.db import session_scope
from models.tables import AnalysisRun, Embedding, Feedback, Source, ThemeAssignment

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_US = dt.timedelta(microseconds=1)
NO_ID = -1  # no theme, no account, no submitter
RANKINGS_KEPT = 1024  # remembered rankings per snapshot
MAX_BATCH = 4096  # candidates checked in SQL at once (SQLite allows 32766 bound parameters)


def _micros(value: dt.datetime) -> int:
    return (value - EPOCH) // ONE_US


@dataclass(eq=False, slots=True)
class _Snapshot:
    """One model's searchable rows; never modified once built (a change builds a new one).

    Rows are sorted by (theme, feedback id); the items of no theme come first, rows ``[0, pool_end)``, and
    theme ``theme_ids[t]`` owns rows ``[starts[t], starts[t + 1])``.
    """

    version: tuple[Any, ...]
    built_at: float
    ids: np.ndarray  # (n,) int64 feedback ids
    vectors: np.ndarray  # (n, dim) float32, unit rows, C-contiguous
    themes: np.ndarray  # (n,) int64, NO_ID when unassigned
    accounts: np.ndarray  # (n,) int64, NO_ID when none
    sources: np.ndarray  # (n,) int64
    kinds: np.ndarray  # (n,) int32 codes of kind_codes
    kind_codes: dict[str, int]
    occurred: np.ndarray  # (n,) int64 microseconds since the epoch, UTC
    submitters: np.ndarray  # (n,) int32 codes of submitter_codes, NO_ID when none
    submitter_codes: dict[str, int]
    pool_end: int
    theme_ids: np.ndarray  # (t,) int64
    starts: np.ndarray  # (t + 1,) int64
    centroids: np.ndarray  # (t, dim) float32, unit rows
    # The first ranked batch of recent searches, by (query vector, filters, limit, exact): the snapshot never
    # changes, so a repeated search ranks the same rows; its hits are still read and filtered in SQL.
    rankings: LRU[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=lambda: LRU(RANKINGS_KEPT))

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def build_snapshot(rows: list[tuple[Any, ...]], version: tuple[Any, ...] = ()) -> _Snapshot:
    """A snapshot of ``(id, source_id, account_id, kind, occurred_at, submitted_by, theme_id, vector bytes)``.

    Vectors of another length than the most common one (a model whose output size changed) are left out.
    """
    lengths: dict[int, int] = {}
    for row in rows:
        lengths[len(row[7])] = lengths.get(len(row[7]), 0) + 1
    width = max(lengths, key=lambda k: lengths[k]) if lengths else 0
    rows = [r for r in rows if len(r[7]) == width and width > 0]
    dim = width // 4
    n = len(rows)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    themes = np.fromiter((NO_ID if r[6] is None else r[6] for r in rows), dtype=np.int64, count=n)
    order = np.lexsort((ids, themes))  # by theme, then id; the unassigned (-1) first
    rows = [rows[i] for i in order]
    ids, themes = ids[order], themes[order]
    vectors = np.frombuffer(b"".join(r[7] for r in rows), dtype=np.float32).reshape(n, dim).copy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    kind_codes: dict[str, int] = {}
    submitter_codes: dict[str, int] = {}
    kinds = np.fromiter((kind_codes.setdefault(r[3], len(kind_codes)) for r in rows), dtype=np.int32, count=n)
    submitters = np.fromiter((NO_ID if r[5] is None else submitter_codes.setdefault(r[5], len(submitter_codes))
                              for r in rows), dtype=np.int32, count=n)
    pool_end = int(np.searchsorted(themes, 0))
    theme_ids, first = np.unique(themes[pool_end:], return_index=True)
    starts = np.append(first + pool_end, n).astype(np.int64)
    if len(theme_ids):
        centroids = np.add.reduceat(vectors[pool_end:], starts[:-1] - pool_end, axis=0)
        c_norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        np.divide(centroids, c_norms, out=centroids, where=c_norms > 0)
    else:
        centroids = np.zeros((0, dim), dtype=np.float32)
    return _Snapshot(
        version=version, built_at=time.monotonic(), ids=ids, vectors=vectors, themes=themes,
        accounts=np.fromiter((NO_ID if r[2] is None else r[2] for r in rows), dtype=np.int64, count=n),
        sources=np.fromiter((r[1] for r in rows), dtype=np.int64, count=n),
        kinds=kinds, kind_codes=kind_codes,
        occurred=np.fromiter((_micros(r[4]) for r in rows), dtype=np.int64, count=n),
        submitters=submitters, submitter_codes=submitter_codes, pool_end=pool_end,
        theme_ids=theme_ids.astype(np.int64), starts=starts, centroids=np.ascontiguousarray(centroids, np.float32),
    )


@dataclass(eq=False, slots=True)
class _Query:
    vectors: np.ndarray
    vector: np.ndarray  # (dim,) float32
    scores: np.ndarray | None = None  # (n,) float32, once computed


class _ScoreBatcher:
    """Scores concurrent queries against a whole matrix in one matrix-matrix product.

    A product reads the whole matrix (150 MB for 100k vectors of 384 floats), so one query at a time is
    bound by memory bandwidth; queries that arrive while a product runs wait and are scored together in
    the next one, which reads the matrix once for all of them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Query] = []
        self._busy = False

    def scores(self, vectors: np.ndarray, vector: np.ndarray) -> np.ndarray:
        query = _Query(vectors, vector)
        with self._cond:
            self._waiting.append(query)
            while self._busy and query.scores is None:
                self._cond.wait()
            if query.scores is not None:
                return query.scores
            self._busy = True  # this thread scores everything waiting, its own query included
            batch, self._waiting = self._waiting, []
        try:
            for m in {id(q.vectors): q.vectors for q in batch}.values():
                group = [q for q in batch if q.vectors is m]
                product = m @ np.stack([q.vector for q in group], axis=1)  # (n, b)
                for j, q in enumerate(group):
                    q.scores = np.ascontiguousarray(product[:, j])
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        assert query.scores is not None
        return query.scores


def _version_statement(model: str) -> Select[Any]:
    """What a snapshot depends on, in one round trip: each part an index lookup or one scan."""
    return select(
        select(func.count()).select_from(Embedding).where(Embedding.model == model).scalar_subquery(),
        select(func.max(Embedding.created_at)).where(Embedding.model == model).scalar_subquery(),
        select(func.count()).select_from(Feedback).scalar_subquery(),
        select(func.max(Feedback.id)).scalar_subquery(),
        select(func.max(Feedback.updated_at)).scalar_subquery(),
        select(func.count()).select_from(ThemeAssignment).scalar_subquery(),
        select(func.max(ThemeAssignment.assigned_at)).scalar_subquery(),
        select(func.max(AnalysisRun.id)).scalar_subquery(),
    )


class VectorIndex:
    """In-memory snapshots of the stored embeddings, one per model, and search over them.

    Args:
        sessions: read sessions for background refreshes; without it a search refreshes in its own session.
        recheck_s: how long a snapshot is trusted before the tables are checked for changes; 0 checks on
            every search and waits for the rebuild (tests use it to see a change at once).
        max_age_s: a snapshot older than this is rebuilt even when the checked counts did not move (an
            ingest that re-reads an item with a new account keeps its ``updated_at``).
        exact_rows: up to this many rows passing the filters, every one is scored.
        nprobe: fewest themes scored by an approximate search.
        probe_fraction: least share of the theme-held rows scored by an approximate search.
    """

    def __init__(self, sessions: sessionmaker[Session] | None = None, *, recheck_s: float = 2.0,
                 max_age_s: float = 600.0, exact_rows: int = 20_000, nprobe: int = 8,
                 probe_fraction: float = 0.05) -> None:
        self.sessions = sessions
        self.recheck_s = recheck_s
        self.max_age_s = max_age_s
        self.exact_rows = exact_rows
        self.nprobe = nprobe
        self.probe_fraction = probe_fraction
        self._snapshots: dict[str, _Snapshot] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()  # one check or rebuild at a time
        self._batcher = _ScoreBatcher()
        self.rebuilds = 0

    # -- freshness --------------------------------------------------------------------------------------
    def snapshot(self, db: Session | Connection, model: str) -> _Snapshot:
        """The model's snapshot, checked for changes every ``recheck_s`` (see the class docstring).

        A refresh reads in a session of ``sessions`` when given (``db`` may be a connection in autocommit,
        where a large read cannot stream), else in ``db``.
        """
        cached = self._snapshots.get(model)
        if cached is None or self.recheck_s <= 0:
            with self._lock:
                return self._refresh_in(db, model)
        if time.monotonic() - self._checked.get(model, 0.0) >= self.recheck_s and self._lock.acquire(blocking=False):
            self._checked[model] = time.monotonic()  # one check per interval, whoever gets here first
            if self.sessions is None:
                try:
                    return self._refresh(db, model)
                finally:
                    self._lock.release()
            threading.Thread(target=self._refresh_in_background, args=(model,), daemon=True,
                             name=f"vector-index-{model}").start()
        return cached

    def warm(self, model: str) -> None:
        """Build the model's snapshot now (a server calls it at startup, so no search waits for it)."""
        if self.sessions is None:
            raise ValueError("warming needs the sessions argument")
        with self._lock, session_scope(self.sessions) as session:
            self._refresh(session, model)

    def _refresh_in(self, db: Session | Connection, model: str) -> _Snapshot:  # the caller holds self._lock
        if self.sessions is None:
            return self._refresh(db, model)
        with session_scope(self.sessions) as session:
            return self._refresh(session, model)

    def _refresh_in_background(self, model: str) -> None:  # holds self._lock, taken by the caller
        try:
            assert self.sessions is not None
            with session_scope(self.sessions) as session:
                self._refresh(session, model)
        except Exception:  # the old snapshot keeps serving; the next interval tries again
            log.exception("refreshing the %s search snapshot failed", model)
        finally:
            self._lock.release()

    def _refresh(self, db: Session | Connection, model: str) -> _Snapshot:
        version = tuple(db.execute(_version_statement(model)).one())
        cached = self._snapshots.get(model)
        if cached is None or cached.version != version or time.monotonic() - cached.built_at > self.max_age_s:
            started = time.perf_counter()
            cached = self._load(db, model, version)
            self._snapshots[model] = cached
            self.rebuilds += 1
            log.info("search snapshot of %s: %d rows, %d themes, built in %.2fs", model, cached.size,
                     len(cached.theme_ids), time.perf_counter() - started)
        self._checked[model] = time.monotonic()
        return cached

    def _load(self, db: Session | Connection, model: str, version: tuple[Any, ...]) -> _Snapshot:
        stmt = (select(Feedback.id, Feedback.source_id, Feedback.account_id, Feedback.kind, Feedback.occurred_at,
                       Feedback.submitted_by, ThemeAssignment.theme_id, Embedding.vector)
                .join(Embedding, and_(Embedding.content_hash == Feedback.content_hash, Embedding.model == model))
                .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id))
        rows = [tuple(r) for r in db.execute(stmt.execution_options(yield_per=10_000))]
        return build_snapshot(rows, version)

    # -- search -------------------------------------------------------------------------------------------
    def search(self, db: Session | Connection, model: str, query: np.ndarray, filters: FeedbackFilters, *,
               limit: int = 20, exact: bool | None = None) -> list[SearchHit]:
        """Items whose text is nearest the query, best first (ties by id).

        Args:
            exact: score every row that passes the filters; None decides by their number (``exact_rows``).
        """
        with timed("snapshot"):
            snap = self.snapshot(db, model)
        if snap.size == 0 or query.shape[-1] != snap.dim:
            return []
        key = (np.ascontiguousarray(query, dtype=np.float32).tobytes(), filters, limit, exact)
        first = snap.rankings.get(key)
        if first is not None:
            found = self._hits(db, snap, [first], filters, limit)
            if len(found) >= limit:
                return _best(found, limit)
            # Fewer than asked for: rows left the filters (or the database) since the snapshot. Rank again.
        with timed("mask"):
            mask = self.mask(snap, filters, db)
        batches = self._ranked_batches(snap, query, mask, limit, exact)
        first = next(batches, None)
        if first is None:
            return []
        snap.rankings.put(key, first)
        found = self._hits(db, snap, itertools.chain([first], batches), filters, limit)
        return _best(found, limit)

    @staticmethod
    def _hits(db: Session | Connection, snap: _Snapshot, batches: Iterable[tuple[np.ndarray, np.ndarray]],
              filters: FeedbackFilters, limit: int) -> list[tuple[float, int, FeedbackOut]]:
        """Read ranked batches' rows from the database until ``limit`` of them pass ``filters``."""
        found: list[tuple[float, int, FeedbackOut]] = []
        for rows, scores in batches:
            ids = snap.ids[rows].tolist()
            with timed("rows"):  # the filters again, in SQL: the snapshot may be a few seconds old
                outs = feedback_outs_by_id(db, ids, filters)
            found += [(s, i, outs[i]) for i, s in zip(ids, scores.tolist(), strict=True) if i in outs]
            if len(found) >= limit:
                break
        return found

    def nearest(self, snap: _Snapshot, query: np.ndarray, *, limit: int = 20, exact: bool | None = None,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``limit`` best feedback ids and their scores, from the snapshot alone (no database).

        Returns: ``(k,)`` int64 ids and ``(k,)`` float32 scores, best first.
        """
        for rows, scores in self._ranked_batches(snap, query, mask, limit, exact):
            return snap.ids[rows][:limit], scores[:limit]
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)

    def mask(self, snap: _Snapshot, filters: FeedbackFilters, db: Session | Connection) -> np.ndarray | None:
        """Rows passing ``filters`` (None: all of them), as :meth:`FeedbackFilters.apply` would select."""
        conditions: list[Callable[[], np.ndarray]] = []
        none = np.zeros(snap.size, dtype=bool)
        if filters.theme is not None:
            conditions.append(lambda: snap.themes == filters.theme)
        if filters.account is not None:
            conditions.append(lambda: snap.accounts == filters.account)
        if filters.source is not None:
            source_id = (int(filters.source) if filters.source.isdigit() else
                         db.scalar(select(Source.id).where(Source.name == filters.source)))
            if source_id is None or source_id > np.iinfo(np.int64).max:
                return none
            conditions.append(lambda: snap.sources == source_id)
        if filters.kind is not None:
            kind = snap.kind_codes.get(filters.kind)
            if kind is None:
                return none
            conditions.append(lambda: snap.kinds == kind)
        if filters.submitted_by is not None:
            submitter = snap.submitter_codes.get(filters.submitted_by)
            if submitter is None:
                return none
            conditions.append(lambda: snap.submitters == submitter)
        since, until = filters.time_range()
        if since is not None:
            since_us = _micros(since)
            conditions.append(lambda: snap.occurred >= since_us)
        if until is not None:
            until_us = _micros(until)
            conditions.append(lambda: snap.occurred < until_us)
        mask: np.ndarray | None = None
        for condition in conditions:
            mask = condition() if mask is None else np.logical_and(mask, condition(), out=mask)
        return mask

    def _ranked_batches(self, snap: _Snapshot, query: np.ndarray, mask: np.ndarray | None, limit: int,
                        exact: bool | None) -> Any:
        """Rows and scores, best first, in growing batches: the caller stops once it has enough.

        An approximate ranking that runs out (its filters' rows are gone from the database, say) goes on
        with an exact one over the rows it did not yet hand out.
        """
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(q))
        if norm > 0:
            q = q / norm
        passing = snap.size if mask is None else int(np.count_nonzero(mask))
        if passing == 0:
            return
        approximate = (not exact) and (exact is False or passing > self.exact_rows) and len(snap.theme_ids) > 1
        handed: np.ndarray | None = None
        if approximate:
            with timed("score"):
                rows, scores = self._probe(snap, q, mask, limit)
            yield from _in_batches(rows, scores, snap.ids, limit)
            handed = rows
        with timed("score"):
            if mask is None and handed is None:
                rows, scores = np.arange(snap.size), self._batcher.scores(snap.vectors, q)
            else:
                keep = np.ones(snap.size, dtype=bool) if mask is None else mask.copy()
                if handed is not None:
                    keep[handed] = False
                rows = np.flatnonzero(keep)
                if rows.size == 0:
                    return
                if rows.size > snap.size // 3:
                    scores = self._batcher.scores(snap.vectors, q)[rows]
                else:
                    scores = snap.vectors[rows] @ q
        yield from _in_batches(rows, scores, snap.ids, limit)

    def _probe(self, snap: _Snapshot, q: np.ndarray, mask: np.ndarray | None,
               limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the unassigned items and of the themes nearest the query.

        Themes are taken nearest first until at least ``nprobe`` themes, ``probe_fraction`` of the
        theme-held rows and ``limit`` rows that pass the filters are in.
        """
        sizes = np.diff(snap.starts)
        if mask is None:
            passing = sizes
        else:
            passing = np.add.reduceat(mask[snap.pool_end:].astype(np.int64), snap.starts[:-1] - snap.pool_end)
        order = np.argsort(-(snap.centroids @ q), kind="stable")
        if mask is not None:
            order = order[passing[order] > 0]  # a theme none of whose rows pass is not worth a look
        enough = ((np.arange(1, len(order) + 1) >= self.nprobe)
                  & (np.cumsum(sizes[order]) >= self.probe_fraction * (snap.size - snap.pool_end))
                  & (np.cumsum(passing[order]) >= limit))
        taken = order[:int(np.argmax(enough)) + 1] if enough.any() else order
        spans = [(0, snap.pool_end)] if snap.pool_end else []
        spans += sorted((int(snap.starts[t]), int(snap.starts[t + 1])) for t in taken)
        if not spans:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = np.concatenate([np.arange(a, b) for a, b in spans])
        scores = np.concatenate([snap.vectors[a:b] @ q for a, b in spans])
        if mask is not None:
            keep = mask[rows]
            rows, scores = rows[keep], scores[keep]
        return rows, scores


def _best(found: list[tuple[float, int, FeedbackOut]], limit: int) -> list[SearchHit]:
    # Batches come best first, except after an approximate ranking ran out and an exact one went on.
    found.sort(key=lambda h: (-h[0], h[1]))
    return [SearchHit(score=round(s, 6), feedback=out) for s, _, out in found[:limit]]


def _in_batches(rows: np.ndarray, scores: np.ndarray, ids: np.ndarray, limit: int) -> Any:
    """``(rows, scores)`` best first (ties by feedback id): the best ``limit``, then larger batches.

    A batch is at most ``MAX_BATCH`` rows, which keeps the SQL ``IN`` list that checks it bounded.
    """
    done = 0
    want = min(limit, MAX_BATCH)
    while done < rows.size:
        k = min(rows.size, done + want)
        # Everything that can rank in the first k: the k best scores, and every row tied with the k-th.
        if k < rows.size:
            kth = np.partition(-scores, k - 1)[k - 1]
            part = np.flatnonzero(-scores <= kth)
        else:
            part = np.arange(rows.size)
        order = part[np.lexsort((ids[rows[part]], -scores[part]))][done:k]
        yield rows[order], scores[order]
        done = k
        want = min(want * 4, MAX_BATCH)
