"""One analysis run: the thin code that loads from the database, runs the pure steps and saves.

Order of a run (each step commits on its own, so a crash mid-run followed by a rerun converges):

1. embed texts that have no vector for the configured model;
2. per-item signals (sentiment, intent, flags, competitors) for items whose text changed;
3. themes: a full re-clustering (``full=True``, or when no theme exists yet) matched to the old themes so
   ids survive, or an incremental run that assigns new items to the nearest theme and clusters the
   pool of unassigned items once it is large enough;
4. labels, keywords and representative quotes;
5. weekly statistics, momentum and trend status;
6. opportunity scores for all accounts and per segment, stored per run.

Human curation survives every run: pinned assignments (moved items) are never overwritten, renamed
themes keep their override, archived themes stay archived, merged themes stay merged.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, DateTime, Result, Table, delete, func, select, type_coerce, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.db import session_scope
from models.settings import Settings
from models.tables import (
    Account,
    AnalysisRun,
    Embedding,
    Feedback,
    Opportunity,
    Source,
    Theme,
    ThemeAssignment,
    ThemeEvent,
    ThemeStat,
    utcnow,
)
from pipeline.clustering import ThemeClusterer, assign_to_centroids
from pipeline.embedding import Embedder
from pipeline.embedding_store import embed_missing, find_vectors, from_bytes, load_vectors, to_bytes
from pipeline.labeling import ThemeLabeler, representative_quotes
from pipeline.runs import claim_analysis
from pipeline.scoring import score_opportunities, segment_items
from pipeline.signals import FLAGS, CompetitorMatcher, SignalModel, detect_flags
from pipeline.stats import theme_momentum, weekly_item_counts, weekly_theme_stats
from pipeline.tracking import match_themes

log = logging.getLogger(__name__)

# Texts encoded (and committed) together. sentence-transformers sorts each call's texts by length to pad
# less, so small chunks cost real padding; a crash loses at most one chunk of work.
EMBED_COMMIT_TEXTS = 4096

# An incremental run relabels a theme that gained at least this share of its size (or was born in it).
RELABEL_GROWTH = 0.2

# Ids per DELETE statement, well under every backend's limit on bound parameters.
WRITE_CHUNK = 5000

# Rows per fetch when a step reads every item. Each batch of row objects is freed before the next is fetched, so
# they never pile up past the garbage collector's first threshold (700 new objects). A whole corpus of rows
# alive at once gets promoted to the oldest generation and sets off full collections of the process's heap,
# 0.3 s each in a process with a model loaded.
READ_BATCH = 250

# The stored columns of a weekly ``theme_stat`` row (its id aside), in the order ``save_weekly_stats`` writes.
STAT_COLUMNS = ("theme_id", "week", "week_start", "items", "accounts", "arr", "open_pipeline", "sentiment",
                "intents", "sources")

# Themes in these states take part in matching; merged themes live on in the theme they were merged into.
MATCHABLE = ("active", "archived")


@dataclass
class AnalysisSummary:
    run_id: int
    kind: str
    embedded: int = 0
    signals: int = 0
    items: int = 0
    assigned: int = 0
    unassigned: int = 0
    themes: int = 0
    born: int = 0
    opportunities: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def unassigned_share(self) -> float:
        return self.unassigned / self.items if self.items else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "kind": self.kind, "embedded": self.embedded, "signals": self.signals,
            "items": self.items, "assigned": self.assigned, "unassigned": self.unassigned,
            "unassigned_share": round(self.unassigned_share, 4), "themes": self.themes, "born": self.born,
            "opportunities": self.opportunities, "seconds": round(self.seconds, 2),
            "steps": {k: round(v, 3) for k, v in self.steps.items()},
        }


# Core tables for bulk inserts of plain dicts (executemany, no ORM objects).
_ASSIGNMENTS = cast(Table, ThemeAssignment.__table__)
_OPPORTUNITIES = cast(Table, Opportunity.__table__)
_STATS = cast(Table, ThemeStat.__table__)


def _centroid(theme: Theme) -> np.ndarray:
    """The stored centroid of an active theme (every analysed theme has one)."""
    if theme.centroid is None:
        raise ValueError(f"theme {theme.id} has no stored centroid; run a full analysis (groundswell analyze --full)")
    return from_bytes(theme.centroid)


@dataclass
class Corpus:
    """The items that take part in theming, in feedback-id order, with their vectors or their keys."""

    ids: np.ndarray  # (n,) int64 feedback ids
    texts: list[str]
    vectors: np.ndarray  # (n, d) float32 unit rows; (n, 0) when read without them
    hashes: list[str] = field(default_factory=list)  # content hashes, when read without the vectors

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class Analyzer:
    """Runs analyses for one database with one embedder.

    Args:
        factory: session factory of the database.
        settings: thresholds, weights, seeds.
        embedder: the embedding model (a fake in tests).
        clusterer: builds the clustering step; a keyword hook so tests and benchmarks can swap it.
        signal_model: per-item sentiment/intent model; built from the shipped seed data when omitted.
    """

    def __init__(self, factory: sessionmaker[Session], settings: Settings, embedder: Embedder, *,
                 clusterer: Callable[[], ThemeClusterer] | None = None,
                 signal_model: SignalModel | None = None) -> None:
        self.factory = factory
        self.settings = settings
        self.embedder = embedder
        self.make_clusterer = clusterer or (lambda: ThemeClusterer(
            min_theme_size=settings.min_theme_size, merge_similarity=settings.theme_merge_similarity,
            seed=settings.cluster_seed, word_pieces=getattr(embedder, "word_pieces", None),
            word_pull=settings.theme_word_pull))
        self._signal_model = signal_model
        self.competitors = CompetitorMatcher(settings.competitors)

    @property
    def signal_model(self) -> SignalModel:
        if self._signal_model is None:
            self._signal_model = SignalModel.from_seed(self.embedder)
        return self._signal_model

    # -- entry point ------------------------------------------------------------------------
    def begin(self, *, full: bool = False) -> AnalysisSummary:
        """Record a new run; a run is full when asked or when there is no theme to be incremental against.

        Raises :class:`~pipeline.runs.AnalysisBusy` while another analysis runs.
        """
        with self.factory() as session:
            if not full and session.scalar(select(Theme.id).where(Theme.status == "active").limit(1)) is None:
                full = True
        kind = "full" if full else "incremental"
        run_id = claim_analysis(self.factory, kind, stale_after=dt.timedelta(hours=self.settings.stale_run_hours))
        return AnalysisSummary(run_id=run_id, kind=kind)

    def embed(self, summary: AnalysisSummary) -> int:
        summary.embedded = embed_missing(
            self.factory, self.embedder, batch_size=EMBED_COMMIT_TEXTS)
        return summary.embedded

    def signals(self, summary: AnalysisSummary) -> int:
        summary.signals = self._signals()
        return summary.signals

    def themes(self, summary: AnalysisSummary) -> None:
        """Full run: cluster everything, match to old themes, label every theme.

        Incremental run: read only the unassigned items' vectors, assign them to the nearest theme,
        cluster what is left when enough new items wait, and relabel only the themes born or grown by
        :data:`RELABEL_GROWTH` in this run (the next full run relabels all).
        """
        if summary.kind == "full":
            corpus = self._load_corpus()
            self._full(corpus, summary)
            self._label(corpus)
        else:
            grown, born, sizes = self._incremental(self._load_corpus(unassigned_only=True), summary)
            stale = born | {tid for tid, added in grown.items()
                            if added >= RELABEL_GROWTH * max(1, sizes.get(tid, 0))}
            if stale:  # every text (c-TF-IDF weighs each theme against all), the stale themes' vectors only
                self._label(self._load_corpus(with_vectors=False), only=stale)
        with self.factory() as session:
            summary.items, summary.assigned = self._assignment_counts(session)
            summary.unassigned = summary.items - summary.assigned

    def scores(self, summary: AnalysisSummary, now: dt.datetime | None = None) -> int:
        self._stats_and_scores(summary, now or utcnow())
        return summary.opportunities

    def finish(self, summary: AnalysisSummary) -> AnalysisSummary:
        with session_scope(self.factory) as session:
            summary.themes = session.scalar(
                select(func.count(Theme.id)).where(Theme.status == "active")) or 0
            session.execute(update(AnalysisRun).where(AnalysisRun.id == summary.run_id).values(
                status="succeeded", finished_at=utcnow(), stats=summary.as_dict()))
        return summary

    def fail(self, summary: AnalysisSummary, exc: BaseException, *, patience_s: float = 60.0) -> None:
        """Mark the run failed. The failure may be the database going away, so keep trying for ``patience_s``:
        a run must not stay ``running`` because the database was down for a few seconds when it failed."""
        delay, deadline = 0.2, time.monotonic() + patience_s
        while True:
            try:
                with session_scope(self.factory) as session:
                    session.execute(update(AnalysisRun).where(AnalysisRun.id == summary.run_id).values(
                        status="failed", finished_at=utcnow(), error=f"{type(exc).__name__}: {exc}"[:2000]))
                return
            except OperationalError:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("analysis %d: cannot record the failure yet (database unreachable); retrying",
                            summary.run_id)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def run(self, *, full: bool = False, now: dt.datetime | None = None,
            progress: Callable[[str], None] | None = None) -> AnalysisSummary:
        """Every step in order, outside any orchestrator (the Prefect flow calls the same steps as tasks)."""

        started = time.perf_counter()
        summary = self.begin(full=full)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("embed", lambda: self.embed(summary)),
            ("signals", lambda: self.signals(summary)),
            ("themes", lambda: self.themes(summary)),
            ("scores", lambda: self.scores(summary, now)),
        ]
        try:
            for name, fn in steps:
                t0 = time.perf_counter()
                if progress is not None:
                    progress(name)
                log.info("analysis %d: %s started", summary.run_id, name)
                fn()
                summary.steps[name] = time.perf_counter() - t0
                log.info("analysis %d: %s done in %.2fs", summary.run_id, name, summary.steps[name])
        except BaseException as exc:
            self.fail(summary, exc)
            raise
        summary.seconds = time.perf_counter() - started
        return self.finish(summary)

    # -- steps ------------------------------------------------------------------------------
    def _signals(self) -> int:
        model_name = self.embedder.name
        with self.factory() as session:
            rows = session.execute(
                select(Feedback.id, Feedback.text, Feedback.kind, Feedback.content_hash)
                .join(Embedding, _has_vector(model_name))
                .where(Feedback.needs_analysis.is_(True)).order_by(Feedback.id)
            ).tuples().all()
        done = 0
        for start in range(0, len(rows), 2000):
            chunk = rows[start:start + 2000]
            with session_scope(self.factory) as session:
                vectors = load_vectors(session, model_name, [r[3] for r in chunk])
                texts = [r[1] for r in chunk]
                intents, sentiments = self.signal_model.intent_and_sentiment(texts, vectors)
                values = []
                for (fid, text, kind, _), intent, sentiment in zip(chunk, intents, sentiments, strict=True):
                    values.append({
                        "id": fid, "intent": str(intent), "sentiment": float(sentiment),
                        "flags": detect_flags(text, kind), "competitors": self.competitors.find(text),
                        "needs_analysis": False,
                    })
                session.execute(update(Feedback), values)
            done += len(chunk)
        return done

    def _load_corpus(self, *, unassigned_only: bool = False, with_vectors: bool = True) -> Corpus:
        """Items that take part in theming (not duplicates, with a vector); only those with no theme when
        ``unassigned_only``; with their content hashes instead of their vectors unless ``with_vectors``.

        The whole corpus comes with its vectors in one join. The unassigned items are a few among many, so
        they are found without touching the vectors (a join would have the database read every vector of the
        model to find theirs) and their vectors are then looked up by key.
        """
        with self.factory() as session:
            if unassigned_only:
                items = session.execute(
                    select(Feedback.id, Feedback.text, Feedback.content_hash)
                    .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
                    .where(Feedback.duplicate_of.is_(None), ThemeAssignment.feedback_id.is_(None))
                    .order_by(Feedback.id)
                ).tuples().all()
                found = find_vectors(session, self.embedder.name, [h for _, _, h in items])
                rows = [(fid, text, found[h]) for fid, text, h in items if h in found]
            elif not with_vectors:
                keys = session.execute(
                    select(Feedback.id, Feedback.text, Feedback.content_hash)
                    .where(Feedback.duplicate_of.is_(None),
                           _vector_stored(self.embedder.name))
                    .order_by(Feedback.id)
                ).tuples().all()
                return Corpus(ids=np.array([r[0] for r in keys], dtype=np.int64), texts=[r[1] for r in keys],
                              vectors=np.zeros((len(keys), 0), dtype=np.float32), hashes=[r[2] for r in keys])
            else:
                rows = list(session.execute(
                    select(Feedback.id, Feedback.text, Embedding.vector)
                    .join(Embedding, _has_vector(self.embedder.name))
                    .where(Feedback.duplicate_of.is_(None)).order_by(Feedback.id)
                ).tuples().all())
        return Corpus(ids=np.array([r[0] for r in rows], dtype=np.int64), texts=[r[1] for r in rows],
                      vectors=np.stack([from_bytes(r[2]) for r in rows]) if rows
                      else np.zeros((0, 1), dtype=np.float32))

    def _themes(self, session: Session, statuses: tuple[str, ...] = MATCHABLE) -> list[Theme]:
        return list(session.scalars(
            select(Theme).where(Theme.status.in_(statuses), Theme.model == self.embedder.name).order_by(Theme.id)))

    @staticmethod
    def _pinned(session: Session) -> dict[int, int]:
        return dict(session.execute(
            select(ThemeAssignment.feedback_id, ThemeAssignment.theme_id).where(ThemeAssignment.pinned.is_(True))
        ).tuples().all())

    def _full(self, corpus: Corpus, summary: AnalysisSummary) -> None:
        if len(corpus) == 0:
            return
        clusterer = self.make_clusterer().fit(corpus.vectors, texts=corpus.texts)
        labels = np.asarray(clusterer.labels_)
        centroids = np.asarray(clusterer.centroids_, dtype=np.float32)
        k = centroids.shape[0]
        with session_scope(self.factory) as session:
            old = self._themes(session)
            by_id = {t.id: t for t in old}
            pinned = self._pinned(session)
            ids = corpus.ids.tolist()
            # Memberships in feedback ids, pinned items left out: humans placed those, not the clustering.
            old_members: dict[int, set[int]] = {t.id: set() for t in old}
            for fid, tid in session.execute(
                    select(ThemeAssignment.feedback_id, ThemeAssignment.theme_id)
                    .where(ThemeAssignment.pinned.is_(False))).tuples():
                if tid in old_members:
                    old_members[tid].add(fid)
            new_members: list[set[int]] = [set() for _ in range(k)]
            for fid, lab in zip(ids, labels.tolist(), strict=True):
                if lab >= 0 and fid not in pinned:
                    new_members[lab].add(fid)
            merged_by_hand = set(session.scalars(select(Theme.merged_into_id).where(
                Theme.status == "merged", Theme.merged_into_id.is_not(None))))
            pinned_themes = set(pinned.values())
            locked = [t.id for t in old if t.label_override or t.status == "archived" or t.id in merged_by_hand
                      or t.id in pinned_themes]
            match = match_themes(
                np.stack([_centroid(t) for t in old]) if old else np.zeros((0, centroids.shape[1])),
                [t.id for t in old], centroids,
                threshold=self.settings.theme_match_threshold,
                old_members=[old_members[t.id] for t in old], new_members=new_members, locked_ids=locked,
            )
            labels = self._sticky_labels(corpus, labels, centroids, match.assignments, old_members)
            centroids = _member_centroids(corpus.vectors, labels, centroids)
            cluster_theme: list[int] = []
            for j, kept in enumerate(match.assignments):
                if kept is None:
                    theme = Theme(model=self.embedder.name, status="active")
                    session.add(theme)
                    session.flush()
                    summary.born += 1
                else:
                    theme = by_id[kept]
                theme.centroid = to_bytes(centroids[j])
                cluster_theme.append(theme.id)
            self._apply_events(session, match.events, cluster_theme, by_id, summary.run_id)
            # Replace machine assignments; pinned ones are the humans' and stay.
            session.execute(delete(ThemeAssignment).where(ThemeAssignment.pinned.is_(False)))
            sims = np.einsum("ij,ij->i", corpus.vectors, centroids[np.clip(labels, 0, None)]) if k else None
            now = utcnow()
            rows = [
                {"feedback_id": fid, "theme_id": cluster_theme[int(labels[i])],
                 "similarity": float(sims[i]) if sims is not None else 0.0,
                 "method": "cluster", "pinned": False, "run_id": summary.run_id, "assigned_at": now}
                for i, fid in enumerate(ids) if fid not in pinned and labels[i] >= 0
            ]
            for start in range(0, len(rows), 5000):
                session.execute(_ASSIGNMENTS.insert(), rows[start:start + 5000])
            self._refresh_sizes(session)

    def _sticky_labels(self, corpus: Corpus, labels: np.ndarray, centroids: np.ndarray,
                       kept: list[int | None], old_members: Mapping[int, set[int]]) -> np.ndarray:
        """Hysteresis: an item stays in its old theme unless another theme is clearly closer.

        Re-clustering moves borderline items back and forth between neighbouring themes from one run to
        the next; a margin of ``settings.reassign_margin`` in cosine similarity keeps them where they
        were, so theme ids and their evidence stay put while clear moves still happen.
        """
        margin = self.settings.reassign_margin
        column_of = {tid: j for j, tid in enumerate(kept) if tid is not None}
        pos = {int(fid): i for i, fid in enumerate(corpus.ids.tolist())}
        old_col = np.full(len(corpus), -1, dtype=np.int64)
        for tid, members in old_members.items():
            j = column_of.get(tid)
            if j is None:
                continue
            for fid in members:
                i = pos.get(fid)
                if i is not None:
                    old_col[i] = j
        rows = np.flatnonzero((old_col >= 0) & (old_col != labels))
        if rows.size == 0:
            return labels
        X = corpus.vectors[rows]
        sim_old = np.einsum("ij,ij->i", X, centroids[old_col[rows]])
        new_lab = labels[rows]
        sim_new = np.where(new_lab >= 0, np.einsum("ij,ij->i", X, centroids[np.clip(new_lab, 0, None)]), -np.inf)
        stay = (sim_old >= sim_new - margin) & (sim_old >= self.settings.assign_threshold)
        out = labels.copy()
        out[rows[stay]] = old_col[rows[stay]]
        return out

    @staticmethod
    def _apply_events(session: Session, events: list[Any], cluster_theme: list[int], by_id: Mapping[int, Theme],
                      run_id: int) -> None:
        """Store the lineage that matching found: births, growth, merges, splits, themes that dissolved."""
        for event in events:
            ref = event.theme_ref
            theme_id = ref.theme_id if ref.theme_id is not None else cluster_theme[ref.cluster]
            detail = _plain(dict(event.detail))
            if event.kind == "merged":
                theme = by_id[theme_id]
                if theme.status == "active":
                    theme.status, theme.merged_into_id = "merged", int(detail["into"])
            elif event.kind == "split":
                child = session.get(Theme, theme_id)
                if child is not None:
                    child.parent_id = int(detail["parent"])
            elif event.kind == "archived":
                theme = by_id[theme_id]
                if theme.status != "active":
                    continue  # archived by a person already: nothing new to record
                # Not a human's archive: the theme lost every item to re-clustering.
                theme.status = "retired"
                detail["reason"] = "no items left after re-clustering"
            session.add(ThemeEvent(theme_id=theme_id, kind=event.kind, run_id=run_id, detail=detail))

    def _incremental(self, pool: Corpus,
                     summary: AnalysisSummary) -> tuple[dict[int, int], set[int], dict[int, int]]:
        """Assign the unassigned items (``pool``) to themes; cluster the rest when enough new ones wait.

        Returns: items added per existing theme id, the ids of the themes born in this run, and every theme's
        size after it (empty when nothing was assigned).
        """
        added: dict[int, int] = {}
        born: set[int] = set()
        with session_scope(self.factory) as session:
            themes = self._themes(session, ("active",))
            if not themes or len(pool) == 0:
                return added, born, {}
            corpus = pool
            pool_idx = np.arange(len(pool), dtype=np.int64)
            centroids = np.stack([_centroid(t) for t in themes])
            labels, sims = assign_to_centroids(corpus.vectors[pool_idx], centroids,
                                               self.settings.assign_threshold)
            rows: list[dict[str, Any]] = [
                {"feedback_id": int(corpus.ids[i]), "theme_id": themes[int(lab)].id, "similarity": float(s),
                 "method": "nearest", "pinned": False, "run_id": summary.run_id, "assigned_at": utcnow()}
                for i, lab, s in zip(pool_idx.tolist(), labels.tolist(), sims.tolist(), strict=True) if lab >= 0
            ]
            if rows:
                session.execute(_ASSIGNMENTS.insert(), rows)
                for row in rows:
                    added[row["theme_id"]] = added.get(row["theme_id"], 0) + 1
            rest = pool_idx[np.asarray(labels) < 0]
            # Old noise waits in the pool too; only new arrivals decide whether it is worth clustering.
            if rest.size and new_unassigned(session) >= self.settings.recluster_pool_size:
                joined, born = self._cluster_pool(session, corpus, rest, themes, summary)
                for tid, n in joined.items():
                    added[tid] = added.get(tid, 0) + n
            sizes = self._refresh_sizes(session)
        return added, born, sizes

    def _cluster_pool(self, session: Session, corpus: Corpus, pool_idx: np.ndarray, themes: list[Theme],
                      summary: AnalysisSummary) -> tuple[dict[int, int], set[int]]:
        """New themes from the items no theme took; clusters close to a theme join it instead.

        Returns: items added per existing theme id, and the ids of the themes born here.
        """
        clusterer = self.make_clusterer().fit(corpus.vectors[pool_idx],
                                              texts=[corpus.texts[i] for i in pool_idx.tolist()])
        labels = np.asarray(clusterer.labels_)
        centroids = np.asarray(clusterer.centroids_, dtype=np.float32)
        old_centroids = np.stack([_centroid(t) for t in themes])
        rows: list[dict[str, Any]] = []
        added: dict[int, int] = {}
        born: set[int] = set()
        for j in range(centroids.shape[0]):
            members = pool_idx[labels == j]
            if members.size == 0:
                continue
            sim_to_old = old_centroids @ centroids[j]
            best = int(np.argmax(sim_to_old))
            if sim_to_old[best] >= self.settings.theme_match_threshold:
                theme_id = themes[best].id
                added[theme_id] = added.get(theme_id, 0) + int(members.size)
            else:
                theme = Theme(model=self.embedder.name, status="active", centroid=to_bytes(centroids[j]))
                session.add(theme)
                session.flush()
                session.add(ThemeEvent(theme_id=theme.id, kind="born", run_id=summary.run_id,
                                       detail={"size": int(members.size), "from": "pool"}))
                summary.born += 1
                theme_id = theme.id
                born.add(theme_id)
            member_sims = corpus.vectors[members] @ centroids[j]
            rows.extend(
                {"feedback_id": int(corpus.ids[i]), "theme_id": theme_id, "similarity": float(s),
                 "method": "cluster", "pinned": False, "run_id": summary.run_id, "assigned_at": utcnow()}
                for i, s in zip(members.tolist(), member_sims.tolist(), strict=True)
            )
        if rows:
            session.execute(_ASSIGNMENTS.insert(), rows)
        return added, born

    @staticmethod
    def _refresh_sizes(session: Session) -> dict[int, int]:
        """Store every theme's size (its assigned items). Returns: theme id -> size."""
        sizes = dict(session.execute(
            select(ThemeAssignment.theme_id, func.count()).group_by(ThemeAssignment.theme_id)).tuples().all())
        out = {}
        for theme in session.scalars(select(Theme)):
            theme.size = out[theme.id] = int(sizes.get(theme.id, 0))
        return out

    def _assignment_counts(self, session: Session) -> tuple[int, int]:
        """(items taking part in theming, those of them with a theme), in one pass.

        The vector is only checked for (its key is enough), so the database never reads the vectors.
        """
        items, assigned = session.execute(
            select(func.count(), func.count(ThemeAssignment.feedback_id)).select_from(Feedback)
            .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
            .where(Feedback.duplicate_of.is_(None),
                   _vector_stored(self.embedder.name))
        ).one()
        return int(items), int(assigned)

    def _label(self, corpus: Corpus, only: set[int] | None = None) -> None:
        """Label, keywords and quotes of every theme, or of the themes in ``only``.

        c-TF-IDF weighs a theme's words against all the others, so the labeler always sees every theme.
        """
        if len(corpus) == 0:
            return
        with session_scope(self.factory) as session:
            assign = dict(session.execute(
                select(ThemeAssignment.feedback_id, ThemeAssignment.theme_id)).tuples().all())
            themes = {t.id: t for t in self._themes(session, ("active", "archived"))}
            labels = np.array([assign.get(int(fid), -1) for fid in corpus.ids.tolist()], dtype=np.int64)
            labels = np.where(np.isin(labels, list(themes)), labels, -1)
            present = sorted(set(labels.tolist()) - {-1})
            if not present:
                return
            labeler = ThemeLabeler().fit(corpus.texts, labels)
            if only is not None:
                present = [tid for tid in present if tid in only]
                if not present:
                    return
            # Centroids and quotes need the vectors of the labelled themes' members only.
            members = np.flatnonzero(np.isin(labels, present))
            if corpus.vectors.shape[1] == 0:  # read without vectors: look those members' up by key
                found = find_vectors(session, self.embedder.name, [corpus.hashes[i] for i in members.tolist()])
                members = np.array([i for i in members.tolist() if corpus.hashes[i] in found], dtype=np.int64)
                vectors = np.stack([from_bytes(found[corpus.hashes[i]]) for i in members.tolist()])
            else:
                vectors = corpus.vectors[members]
            member_labels = labels[members]
            present = [tid for tid in present if np.any(member_labels == tid)]  # a vector gone since the read
            centroid_rows = []
            for tid in present:
                c = vectors[member_labels == tid].mean(axis=0)
                centroid_rows.append(c / (np.linalg.norm(c) or 1.0))
            # Quotes use positions 0..k-1; map theme ids to positions and back.
            pos = {tid: p for p, tid in enumerate(present)}
            pos_labels = np.array([pos[int(lab)] for lab in member_labels], dtype=np.int64)
            quotes = representative_quotes(vectors, pos_labels, np.stack(centroid_rows),
                                           [corpus.texts[i] for i in members.tolist()], n=5)
            for tid in present:
                theme = themes[tid]
                theme.label = labeler.labels_.get(tid, theme.label) or f"Theme {tid}"
                theme.keywords = list(labeler.keywords_.get(tid, []))
                theme.quotes = [int(corpus.ids[members[i]]) for i in quotes.get(pos[tid], [])]

    def _frames(self, session: Session) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``items`` (assigned to an active theme) and ``accounts`` in the input contract of :mod:`pipeline.stats`.

        Reading the corpus is most of the scores step on a large one, so the flags come out of the JSON in
        the database (no document decoded per item) and the frame is built column by column from rows read
        in small batches (see :data:`READ_BATCH`).
        """
        flags = [func.coalesce(Feedback.flags[flag].as_boolean(), False).label(flag) for flag in FLAGS]
        columns = read_columns(session.connection().execute(
            select(Feedback.id.label("feedback_id"), ThemeAssignment.theme_id, Feedback.account_id,
                   # Without the UTC decorator's call per row: SQLite's naive values are UTC, and pandas reads
                   # them as such below.
                   type_coerce(Feedback.occurred_at, DateTime()).label("occurred_at"),
                   Source.name.label("source"), Feedback.kind, Feedback.sentiment, Feedback.intent, *flags,
                   Feedback.submitted_by)
            .join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
            .join(Theme, Theme.id == ThemeAssignment.theme_id)
            .join(Source, Source.id == Feedback.source_id)
            .where(Theme.status == "active")
            # Item order, the same on every backend, so the statistics' float sums are too. On SQLite it also
            # makes the plan read the feedback table in order instead of jumping to each item of each theme.
            .order_by(Feedback.id)
        ))
        items = pd.DataFrame({
            "feedback_id": np.array(columns["feedback_id"], dtype=np.int64),
            "theme_id": np.array(columns["theme_id"], dtype=np.int64),
            "account_id": pd.array(columns["account_id"], dtype="Int64"),
            "occurred_at": pd.to_datetime(pd.Series(columns["occurred_at"], dtype=object), utc=True),
            "source": pd.Series(columns["source"]),
            "kind": pd.Series(columns["kind"]),
            "sentiment": pd.Series(columns["sentiment"], dtype=np.float64),
            "intent": pd.Series(columns["intent"]),
            "submitted_by": pd.Series(columns["submitted_by"]),
            **{flag: np.array(columns[flag], dtype=bool) for flag in FLAGS},
        })
        accounts = pd.DataFrame(session.execute(
            select(Account.id, Account.name, Account.segment, Account.arr, Account.lifecycle, Account.open_pipeline)
        ).tuples().all(), columns=["account_id", "name", "segment", "arr", "lifecycle", "open_pipeline"])
        accounts["account_id"] = accounts["account_id"].astype("Int64")
        return items, accounts

    def _stats_and_scores(self, summary: AnalysisSummary, now: dt.datetime) -> None:
        """Weekly statistics, trends and opportunity scores of every active theme, from all of its items.

        All of it is computed afresh: ranks span every theme, and momentum and recency move with ``now``. The
        work around it is kept small instead: the corpus is read in one cheap pass, only the weekly rows that
        changed are rewritten, and a segment's trend comes from its item counts alone, all momentum reads.
        """
        s = self.settings
        with session_scope(self.factory) as session:
            items, accounts = self._frames(session)
            # Replace, never add: a retried step (Prefect retries it) must leave one row per theme and segment.
            session.execute(delete(Opportunity).where(Opportunity.run_id == summary.run_id))
            if items.empty:
                session.execute(delete(ThemeStat))
                return
            weekly = weekly_theme_stats(items, accounts, now=now, tz=s.timezone)
            save_weekly_stats(session, weekly)
            momentum = theme_momentum(weekly, now=now, tz=s.timezone, window_weeks=s.momentum_window_weeks)
            trend = dict(zip(momentum["theme_id"].astype(int), momentum["status"], strict=True))
            for theme in session.scalars(select(Theme).where(Theme.status == "active")):
                theme.trend = trend.get(theme.id, "dormant")
            weights = s.score_weights.model_dump()
            segments = [None] + sorted({str(x) for x in accounts["segment"].dropna().unique()})
            rows = []
            for segment in segments:
                if segment is None:
                    seg_items, seg_momentum = items, momentum
                else:
                    # A segment's trend is its own: momentum from that segment's items only.
                    seg_items, _ = segment_items(items, accounts, segment)
                    if seg_items.empty:
                        continue
                    seg_momentum = theme_momentum(weekly_item_counts(seg_items, now=now, tz=s.timezone), now=now,
                                                  tz=s.timezone, window_weeks=s.momentum_window_weeks)
                scored = score_opportunities(seg_items, accounts, seg_momentum, now=now, weights=weights,
                                             pipeline_weight=s.pipeline_weight, segment=segment)
                strength = dict(zip(seg_momentum["theme_id"].astype(int), seg_momentum["emerging_strength"],
                                    strict=True))
                for r in scored.to_dict("records"):
                    metrics = dict(r["metrics"])
                    metrics["emerging_strength"] = float(strength.get(int(r["theme_id"]), 0.0))
                    rows.append({
                        "theme_id": int(r["theme_id"]), "run_id": summary.run_id, "segment": segment or "all",
                        "score": float(r["score"]), "rank": int(r["rank"]), "tier": str(r["tier"]),
                        "components": _plain(r["components"]), "metrics": _plain(metrics),
                        "rationale": str(r["rationale"]), "created_at": utcnow(),
                    })
            if rows:
                session.execute(_OPPORTUNITIES.insert(), rows)
            summary.opportunities = sum(1 for r in rows if r["segment"] == "all")


def save_weekly_stats(session: Session, weekly: pd.DataFrame) -> int:
    """Make ``theme_stat`` hold exactly the rows of ``weekly``, writing only the (theme, week) rows that differ.

    Between two runs most weeks of most themes stay as they were (new items mostly land in the current week);
    rewriting every row would cost the inserts, and on PostgreSQL the dead rows, of the whole history each
    run. A stored row is kept only when every value reads back the same (compared by ``repr``, so ``-0.0``
    and ``0.0`` or a reordered breakdown count as changes); otherwise it is deleted and written anew.

    Args:
        session: the step's session; nothing is committed here.
        weekly: ``weekly_theme_stats`` output for every theme that should have rows; other rows are deleted.

    Returns:
        Number of rows deleted plus rows inserted.
    """
    fresh: dict[tuple[int, str], dict[str, Any]] = {}
    for r in weekly.itertuples(index=False):
        fresh[(int(r.theme_id), r.week)] = {
            "theme_id": int(r.theme_id), "week": r.week, "week_start": r.week_start, "items": int(r.items),
            "accounts": int(r.accounts), "arr": float(r.arr), "open_pipeline": float(r.open_pipeline),
            "sentiment": None if pd.isna(r.sentiment) else float(r.sentiment),
            "intents": dict(r.intents), "sources": dict(r.sources),
        }
    columns = [getattr(ThemeStat, name) for name in STAT_COLUMNS]
    stale: list[int] = []
    kept: set[tuple[int, str]] = set()  # (theme, week) is unique in theme_stat
    for row in session.execute(select(ThemeStat.id, *columns)).mappings():
        key = (row["theme_id"], row["week"])
        new = fresh.get(key)
        if new is not None and repr([row[c] for c in STAT_COLUMNS]) == repr(list(new.values())):
            kept.add(key)
        else:
            stale.append(row["id"])
    for start in range(0, len(stale), WRITE_CHUNK):
        session.execute(delete(ThemeStat).where(ThemeStat.id.in_(stale[start:start + WRITE_CHUNK])))
    rows = [row for key, row in fresh.items() if key not in kept]
    if rows:
        session.execute(_STATS.insert(), rows)
    return len(stale) + len(rows)


def read_columns(result: Result[Any]) -> dict[str, list[Any]]:
    """The values of ``result`` column by column, fetched :data:`READ_BATCH` rows at a time.

    Returns:
        One list per column name, in row order.
    """
    names = list(result.keys())
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for rows in result.partitions(READ_BATCH):
        for name, values in zip(names, zip(*rows, strict=True), strict=True):
            columns[name].extend(values)
    return columns


def new_unassigned(session: Session) -> int:
    """Items ingested since the last successful full run started that have no theme (duplicates aside).

    Items a full run left as noise are not counted, so a noisy corpus does not re-cluster every run.
    """
    query = (select(func.count(Feedback.id))
             .outerjoin(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
             .where(ThemeAssignment.feedback_id.is_(None), Feedback.duplicate_of.is_(None)))
    last_full_start = session.scalar(
        select(AnalysisRun.started_at).where(AnalysisRun.kind == "full", AnalysisRun.status == "succeeded")
        .order_by(AnalysisRun.finished_at.desc()).limit(1))
    if last_full_start is not None:
        query = query.where(Feedback.ingested_at >= last_full_start)
    return int(session.scalar(query) or 0)


def _has_vector(model: str) -> ColumnElement[bool]:
    """Join condition of feedback to its vector. Items stored (or edited) after the embed step have none yet:
    concurrent writers never stop a run, and those items keep ``needs_analysis`` for the next one."""
    return (Embedding.content_hash == Feedback.content_hash) & (Embedding.model == model)


def _vector_stored(model: str) -> ColumnElement[bool]:
    """The feedback row's text has a ``model`` vector; only its key is checked, the vector is never read."""
    return select(Embedding.content_hash).where(_has_vector(model)).exists()


def _member_centroids(X: np.ndarray, labels: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Unit mean vector of each cluster's members; a cluster left empty keeps its ``fallback`` row."""
    out = fallback.copy()
    for j in range(fallback.shape[0]):
        members = X[labels == j]
        if members.shape[0]:
            c = members.mean(axis=0)
            out[j] = c / (np.linalg.norm(c) or 1.0)
    return out


def _plain(value: Any) -> Any:
    """JSON-safe copy of a value from a frame (numpy scalars, NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value
