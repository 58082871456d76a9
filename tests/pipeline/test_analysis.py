"""The analysis run on a real database: themes keep their identity and human curation survives."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from ingest.demo import generate_demo
from ingest.demo_loader import load_demo
from models.settings import Settings
from models.tables import (
    Account,
    AnalysisRun,
    Embedding,
    Feedback,
    Opportunity,
    Theme,
    ThemeAssignment,
    ThemeEvent,
    ThemeStat,
)
from pipeline.analysis import RELABEL_GROWTH, AnalysisSummary, Analyzer
from pipeline.clustering import ThemeClusterer
from pipeline.embedding import HashingEmbedder

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


@pytest.fixture
def demo(sessions):
    data = generate_demo(weeks=10, accounts=40, seed=3, now=NOW)
    return data


class MemoEmbedder:
    """The real model, each text encoded once per test session."""

    def __init__(self) -> None:
        from pipeline.embedding import SentenceEmbedder

        self.inner = SentenceEmbedder()
        self.memo: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    def encode(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            self.memo.update(zip(todo, self.inner.encode(todo), strict=True))
        return np.stack([self.memo[t] for t in texts]) if texts else self.inner.encode([])

    def word_pieces(self, words):
        return self.inner.word_pieces(words)


@pytest.fixture(scope="session")
def real_embedder() -> MemoEmbedder:
    return MemoEmbedder()


def analyzer(sessions, settings: Settings, embedder=None) -> Analyzer:
    return Analyzer(sessions, settings, embedder or HashingEmbedder(128))


def assignments(sessions) -> dict[int, int]:
    with sessions() as s:
        return dict(s.execute(select(ThemeAssignment.feedback_id, ThemeAssignment.theme_id)).tuples().all())


def themes(sessions) -> dict[int, tuple[str, str]]:
    with sessions() as s:
        return {t.id: (t.label, t.status) for t in s.scalars(select(Theme))}


def test_first_run_builds_themes_scores_and_stats(sessions, settings, demo) -> None:
    load_demo(sessions, demo)
    summary = analyzer(sessions, settings).run(now=NOW)
    assert summary.kind == "full"
    assert summary.items == len({r.external_id for _, r in demo.items})
    assert summary.themes >= 5
    assert summary.unassigned_share <= 0.25
    with sessions() as s:
        assert s.scalar(select(AnalysisRun.status).where(AnalysisRun.id == summary.run_id)) == "succeeded"
        assert s.scalar(select(func.count()).select_from(Opportunity)) > 0
        assert s.scalar(select(func.count()).select_from(ThemeStat)) > 0
        assert s.scalar(select(func.count()).select_from(Feedback).where(Feedback.needs_analysis)) == 0
        assert s.scalar(select(func.count()).select_from(ThemeEvent).where(ThemeEvent.kind == "born")) == summary.themes
        labelled = s.scalars(select(Theme).where(Theme.status == "active")).all()
        assert all(t.label and t.keywords and 1 <= len(t.quotes) <= 5 for t in labelled)


def test_full_rerun_on_same_data_keeps_ids_and_labels(sessions, settings, demo) -> None:
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    before_assign, before_themes = assignments(sessions), themes(sessions)
    analyzer(sessions, settings).run(full=True, now=NOW)
    assert assignments(sessions) == before_assign
    assert themes(sessions) == before_themes


@pytest.mark.slow
def test_ten_percent_new_items_keep_old_items_theme_ids(sessions, settings, demo, real_embedder) -> None:
    items = list(demo.items)
    cut = int(len(items) / 1.1)
    demo.items = items[:cut]
    load_demo(sessions, demo)
    analyzer(sessions, settings, real_embedder).run(now=NOW)
    before = assignments(sessions)
    demo.items = items
    load_demo(sessions, demo)
    analyzer(sessions, settings, real_embedder).run(full=True, now=NOW)
    after = assignments(sessions)
    kept = sum(1 for fid, tid in before.items() if after.get(fid) == tid)
    assert kept / len(before) >= 0.90


def test_incremental_run_assigns_new_items_without_reclustering(sessions, settings, demo) -> None:
    items = list(demo.items)
    demo.items = items[:-50]
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    before = assignments(sessions)
    demo.items = items
    load_demo(sessions, demo)
    summary = analyzer(sessions, settings).run(now=NOW)
    assert summary.kind == "incremental" and summary.embedded > 0
    after = assignments(sessions)
    assert all(after.get(fid) == tid for fid, tid in before.items())
    assert len(after) > len(before)


def test_curation_survives_full_reclustering(sessions, settings, demo) -> None:
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    with sessions.begin() as s:
        active = s.scalars(select(Theme).where(Theme.status == "active").order_by(Theme.size.desc())).all()
        renamed, target, archived = active[0], active[1], active[2]
        renamed.label_override = "Single sign-on for enterprise"
        archived.status = "archived"
        moved = s.scalars(select(ThemeAssignment).where(ThemeAssignment.theme_id == renamed.id)).first()
        moved.theme_id, moved.pinned, moved.method = target.id, True, "manual"
        ids = renamed.id, target.id, archived.id, moved.feedback_id
    analyzer(sessions, settings).run(full=True, now=NOW)
    renamed_id, target_id, archived_id, moved_id = ids
    with sessions() as s:
        assert s.get(Theme, renamed_id).label_override == "Single sign-on for enterprise"
        assert s.get(Theme, renamed_id).status == "active"
        assert s.get(Theme, archived_id).status == "archived"
        pin = s.get(ThemeAssignment, moved_id)
        assert pin.theme_id == target_id and pin.pinned


def test_crash_mid_run_then_rerun_equals_clean_run(sessions, settings, demo, monkeypatch) -> None:
    load_demo(sessions, demo)
    crashing = analyzer(sessions, settings)

    def boom(*_a, **_k):
        raise RuntimeError("killed")

    monkeypatch.setattr(crashing, "_label", boom)
    with pytest.raises(RuntimeError):
        crashing.run(now=NOW)
    with sessions() as s:
        assert s.scalar(select(AnalysisRun.status)) == "failed"
    analyzer(sessions, settings).run(full=True, now=NOW)
    crashed_then_rerun = (assignments(sessions), themes(sessions))
    # A clean database with one clean run gives the same themes.
    with sessions.begin() as s:
        for table in (ThemeAssignment, ThemeEvent, ThemeStat, Opportunity):
            s.execute(table.__table__.delete())
        s.execute(Theme.__table__.delete())
    analyzer(sessions, settings).run(full=True, now=NOW)
    clean_assign, clean_themes = assignments(sessions), themes(sessions)
    assert list(clean_assign.values()).__len__() == len(crashed_then_rerun[0])
    # Ids differ after the wipe; compare partitions and labels instead.
    def partition(assign: dict[int, int]) -> set[frozenset[int]]:
        groups: dict[int, set[int]] = {}
        for fid, tid in assign.items():
            groups.setdefault(tid, set()).add(fid)
        return {frozenset(g) for g in groups.values()}

    assert partition(clean_assign) == partition(crashed_then_rerun[0])
    assert sorted(label for label, _ in clean_themes.values()) == sorted(
        label for label, _ in crashed_then_rerun[1].values())


def analyse_all_but_the_last(sessions, settings: Settings, demo, n: int) -> None:
    """Analyse the demo without its last ``n`` items, mark every theme's label, keywords and quotes stale,
    then store those items, not yet analysed."""
    items = list(demo.items)
    demo.items = items[:-n]
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    with sessions.begin() as s:
        for theme in s.scalars(select(Theme)):
            theme.label, theme.keywords, theme.quotes = f"stale {theme.id}", [], []
    demo.items = items
    load_demo(sessions, demo)


@pytest.mark.parametrize("growth", [RELABEL_GROWTH, 0.01])
def test_incremental_run_relabels_only_themes_that_grew(sessions, settings, demo, growth, monkeypatch) -> None:
    monkeypatch.setattr("pipeline.analysis.RELABEL_GROWTH", growth)
    analyse_all_but_the_last(sessions, settings, demo, 30)
    before = assignments(sessions)
    summary = analyzer(sessions, settings).run(now=NOW)
    assert summary.kind == "incremental"
    after = assignments(sessions)
    gained: dict[int, int] = {}
    for fid, tid in after.items():
        if fid not in before:
            gained[tid] = gained.get(tid, 0) + 1
    assert gained, "the new items joined no theme"
    with sessions() as s:
        labels = {t.id: (t.label, t.size) for t in s.scalars(select(Theme))}
    relabelled = 0
    for tid, (label, size) in labels.items():
        grew = gained.get(tid, 0) >= growth * size
        assert label.startswith("stale ") != grew, (tid, label, size, gained.get(tid, 0))
        relabelled += grew
    if growth < 0.05:
        assert relabelled > 0
    # The counts still cover the whole corpus, not only the items read in this run.
    assert summary.items == len(after) + summary.unassigned
    assert summary.assigned == len(after)


def test_incremental_relabel_reads_vectors_of_the_relabelled_themes_only_and_labels_alike(
        sessions, settings, demo, monkeypatch) -> None:
    # The relabel reads every text (c-TF-IDF) but only the stale themes' vectors, looked up by key; its
    # labels, keywords and quotes are what labelling from the whole corpus with its vectors gives.
    monkeypatch.setattr("pipeline.analysis.RELABEL_GROWTH", 0.01)
    analyse_all_but_the_last(sessions, settings, demo, 30)
    az = analyzer(sessions, settings)
    reads: list[dict[str, bool]] = []
    load = Analyzer._load_corpus
    monkeypatch.setattr(Analyzer, "_load_corpus", lambda self, **kw: reads.append(kw) or load(self, **kw))
    az.run(now=NOW)
    assert reads == [{"unassigned_only": True}, {"with_vectors": False}]  # never every vector
    monkeypatch.setattr(Analyzer, "_load_corpus", load)

    def labelled() -> dict[int, tuple[str, list[str], list[int]]]:
        with sessions() as s:
            return {t.id: (t.label, t.keywords, t.quotes) for t in s.scalars(select(Theme))
                    if not t.label.startswith("stale ")}

    relabelled = labelled()
    assert relabelled and all(quotes for _, _, quotes in relabelled.values())
    with sessions.begin() as s:
        for theme in s.scalars(select(Theme).where(Theme.id.in_(relabelled))):
            theme.label, theme.keywords, theme.quotes = f"stale {theme.id}", [], []
    az._label(az._load_corpus(), only=set(relabelled))  # every vector in memory, as before
    assert labelled() == relabelled


def test_themes_born_from_the_pool_are_labelled(sessions, settings, demo) -> None:
    # One planted theme arrives only after the first analysis: its items form a theme of their own.
    late = Counter(demo.truth.values()).most_common(1)[0][0]
    items = list(demo.items)
    demo.items = [(src, r) for src, r in items if demo.truth[r.external_id] != late]
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    demo.items = items
    load_demo(sessions, demo)
    settings.recluster_pool_size = 10
    summary = analyzer(sessions, settings).run(now=NOW)
    assert summary.kind == "incremental" and summary.born > 0
    with sessions() as s:
        born = s.scalars(select(Theme).join(ThemeEvent, ThemeEvent.theme_id == Theme.id).where(
            ThemeEvent.kind == "born", ThemeEvent.run_id == summary.run_id)).all()
        assert len(born) == summary.born
        assert all(t.label and t.keywords and t.quotes for t in born), [(t.id, t.label) for t in born]


def test_old_noise_alone_does_not_recluster_the_pool(sessions, settings, demo) -> None:
    load_demo(sessions, demo)
    first = analyzer(sessions, settings).run(now=NOW)
    assert first.unassigned > 0
    settings.recluster_pool_size = 1  # any unassigned item would trigger, were old noise counted
    summary = analyzer(sessions, settings).run(now=NOW)
    assert summary.kind == "incremental" and summary.born == 0
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(ThemeEvent).where(
            ThemeEvent.run_id == summary.run_id)) == 0


def test_items_stored_after_the_embed_step_wait_for_the_next_run(sessions, settings, demo) -> None:
    items = list(demo.items)
    demo.items = items[:-40]
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    demo.items = items[:-20]
    load_demo(sessions, demo)
    run = analyzer(sessions, settings)
    summary = run.begin()
    run.embed(summary)
    run.signals(summary)
    demo.items = items
    load_demo(sessions, demo)  # a writer that went on while the run embedded: these items have no vector yet
    run.themes(summary)
    with sessions() as s:
        corpus = s.scalar(select(func.count()).select_from(Feedback).where(Feedback.duplicate_of.is_(None)))
        waiting = set(s.scalars(select(Feedback.id).where(
            Feedback.duplicate_of.is_(None), ~select(Embedding.content_hash).where(
                Embedding.content_hash == Feedback.content_hash, Embedding.model == run.embedder.name).exists())))
    assert summary.kind == "incremental" and waiting
    assert not waiting & assignments(sessions).keys()
    assert summary.items == corpus - len(waiting) and summary.assigned == len(assignments(sessions))
    run.scores(summary, now=NOW)
    run.finish(summary)  # one analysis runs at a time: the next starts once this one has ended

    after = analyzer(sessions, settings).run(now=NOW)
    assert after.items == corpus and after.embedded > 0
    assert after.assigned + after.unassigned == corpus


def stored_scores(sessions, run_id: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """What the scores step stores, row ids and timestamps aside: weekly rows, the run's opportunities, trends."""
    with sessions() as s:
        weekly = sorted(
            (r.theme_id, r.week, r.week_start, r.items, r.accounts, r.arr, r.open_pipeline, r.sentiment, r.intents,
             r.sources)
            for r in s.scalars(select(ThemeStat))
        )
        opportunities = sorted(
            (r.theme_id, r.segment, r.score, r.rank, r.tier, r.components, r.metrics, r.rationale)
            for r in s.scalars(select(Opportunity).where(Opportunity.run_id == run_id))
        )
        trends = sorted((t.id, t.status, t.trend) for t in s.scalars(select(Theme)))
    return weekly, opportunities, trends


def weekly_row_ids(sessions) -> dict[tuple[int, str], int]:
    with sessions() as s:
        return {(tid, week): rid for rid, tid, week in s.execute(select(ThemeStat.id, ThemeStat.theme_id,
                                                                            ThemeStat.week)).tuples()}


@pytest.mark.parametrize("days_later", [0, 4], ids=["same-week", "next-week"])
def test_incremental_scores_equal_a_from_scratch_recompute(sessions, settings, demo, days_later) -> None:
    items = list(demo.items)
    demo.items = items[:-40]
    load_demo(sessions, demo)
    analyzer(sessions, settings).run(now=NOW)
    demo.items = items
    load_demo(sessions, demo)
    with sessions.begin() as s:
        # Changes that reach back into old weeks: one old item's sentiment, one paying account's ARR.
        edited = s.scalars(select(Feedback).join(ThemeAssignment, ThemeAssignment.feedback_id == Feedback.id)
                           .where(Feedback.sentiment.is_not(None)).order_by(Feedback.occurred_at)).first()
        edited.sentiment = 0.95 if edited.sentiment < 0 else -0.95
        edited_theme = s.scalar(select(ThemeAssignment.theme_id).where(ThemeAssignment.feedback_id == edited.id))
        edited_at = edited.occurred_at
        customer = s.scalars(select(Account).where(Account.lifecycle == "customer").order_by(Account.id)).first()
        customer.arr += 12_345.0
    before = weekly_row_ids(sessions)
    later = NOW + dt.timedelta(days=days_later)

    summary = analyzer(sessions, settings).run(now=later)

    assert summary.kind == "incremental" and summary.embedded > 0
    incremental = stored_scores(sessions, summary.run_id)
    after = weekly_row_ids(sessions)
    kept = {key for key, rid in after.items() if before.get(key) == rid}
    assert kept, "every weekly row was rewritten"
    edited_week = next(week for (tid, week, start, *_) in incremental[0]
                       if tid == edited_theme and start <= edited_at.date() < start + dt.timedelta(days=7))
    assert (edited_theme, edited_week) not in kept, "a changed weekly row was kept"

    # From scratch: no weekly rows, no opportunities, no trends; the same run and instant.
    with sessions.begin() as s:
        s.execute(delete(ThemeStat))
        s.execute(delete(Opportunity).where(Opportunity.run_id == summary.run_id))
        s.execute(update(Theme).values(trend=None))
    analyzer(sessions, settings).scores(AnalysisSummary(run_id=summary.run_id, kind="full"), later)

    assert stored_scores(sessions, summary.run_id) == incremental
    assert incremental[0] and incremental[1] and all(trend for _, status, trend in incremental[2]
                                                       if status == "active")
    # Nothing changed since: a rerun of the step (a Prefect retry) rewrites no weekly row.
    unchanged = weekly_row_ids(sessions)
    analyzer(sessions, settings).scores(AnalysisSummary(run_id=summary.run_id, kind="full"), later)
    assert weekly_row_ids(sessions) == unchanged
    assert stored_scores(sessions, summary.run_id) == incremental


def test_theme_merge_similarity_setting_reaches_the_clusterer(sessions, settings: Settings) -> None:
    assert analyzer(sessions, settings).make_clusterer().merge_similarity == 0.80
    stricter = settings.model_copy(update={"theme_merge_similarity": 0.9})
    assert analyzer(sessions, stricter).make_clusterer().merge_similarity == 0.9


class PiecesEmbedder(HashingEmbedder):
    """The hashing model with a tokenizer: it reads words of 12 letters or more in pieces."""

    def word_pieces(self, words):
        return [2 if len(w) >= 12 else 1 for w in words]


def test_theme_word_pull_setting_and_the_model_tokenizer_reach_the_clusterer(sessions, settings: Settings) -> None:
    embedder = PiecesEmbedder(128)
    made = analyzer(sessions, settings, embedder).make_clusterer()
    assert made.word_pull == 0.5 and made.word_pieces == embedder.word_pieces
    assert analyzer(sessions, settings).make_clusterer().word_pieces is None  # a model without a tokenizer
    off = settings.model_copy(update={"theme_word_pull": 0.0})
    assert analyzer(sessions, off, embedder).make_clusterer().word_pull == 0.0


def test_discovery_gets_each_item_text_beside_its_vector(sessions, settings, demo, monkeypatch) -> None:
    """The full run and the pool's re-clustering both hand the clusterer the texts in the order of the rows."""
    seen: list[tuple[np.ndarray, list[str]]] = []
    fit = ThemeClusterer.fit

    def recording(self, X, y=None, texts=None):
        seen.append((np.asarray(X).copy(), list(texts)))
        return fit(self, X, y, texts=texts)

    monkeypatch.setattr(ThemeClusterer, "fit", recording)
    late = Counter(demo.truth.values()).most_common(1)[0][0]
    items = list(demo.items)
    demo.items = [(src, r) for src, r in items if demo.truth[r.external_id] != late]
    load_demo(sessions, demo)
    embedder = PiecesEmbedder(128)
    analyzer(sessions, settings, embedder).run(now=NOW)
    demo.items = items
    load_demo(sessions, demo)
    settings.recluster_pool_size = 10
    summary = analyzer(sessions, settings, embedder).run(now=NOW)
    assert summary.kind == "incremental" and summary.born > 0
    assert len(seen) == 2
    with sessions() as s:
        stored = set(s.scalars(select(Feedback.text)))
    for X, texts in seen:
        assert len(texts) == len(X) and set(texts) <= stored
        np.testing.assert_allclose(X, embedder.encode(texts), atol=1e-6)
