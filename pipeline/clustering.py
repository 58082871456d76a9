"""Theme discovery: cluster unit-length embeddings into an automatically chosen number of themes.

The recipe, in order (each step is plain numpy / scipy / scikit-learn):

1. **Sample** at most ``max_hierarchy_size`` items for discovery, so the cost is bounded at any ``n``.
2. **View** (when the texts come along and the model's tokenizer is known): texts sharing a word the model does
   not know, such as a product name it reads in pieces, are pulled together (see :mod:`pipeline.unknown_words`).
   Steps 3-6 run on that view, its unsmoothed rows standing for the raw rows of step 6; steps 7-9 always run on
   the model's own rows, so predict() and incremental runs need nothing of the view.
3. **Smooth**: replace each sampled vector by the mean of its ``n_neighbors`` cosine neighbours. This
   denoises paraphrases toward their local mode and sharpens the cluster structure.
4. **Ward tree** on the smoothed vectors, cut at a geometric grid of theme counts.
5. **Refine** each candidate cut with Lloyd (k-means) iterations started from the cut's centroids.
6. **Choose k** by the cosine silhouette of each refined candidate on the *raw* (unsmoothed) rows, with a
   parsimony rule: the smallest k whose silhouette is within ``k_tolerance`` (relative) of the best,
   or a coarser k where the silhouette curve has a prominent peak (a valley of at least ``k_tolerance``
   before it rises again) that trails the best by at most ``peak_tolerance`` per halving of k. Tiny tight
   clusters (templates, near-identical phrasings) score high silhouettes, so a curve often rises again
   past the theme level; a slack that grows with log(k_best / k) keeps a clear theme level from losing
   to a level with ten times more clusters by a few thousandths, while close competitors still need to
   be close.
   Scoring the partition that would be returned, on the data itself, avoids the bias of scoring the
   smoothed rows, whose silhouette is inflated for clusters about ``n_neighbors`` in size. Silhouette
   alone tends to over-split; parsimony is the usual "simplest model close to the best" choice and is
   not tuned to any dataset.
7. **Merge** themes whose centroids are nearly parallel: while two themes' centroids (on the raw rows) have a
   cosine similarity of at least ``merge_similarity``, the closest pair becomes one theme. The cosine leaves
   out each theme's self-pairs (see :func:`merge_close_themes`), so it does not depend on the themes'
   sizes: two loose themes of a few rows each compare as the same two themes would with many rows. Silhouette
   splits a large intent into several adjacent themes when its phrasings form sub-modes (DSTC11 finance:
   one loan intent in several themes); most distinct intents stay below 0.80, though not all (CLINC150's
   ``calendar`` and ``calendar_update`` are merged). The threshold is on the cosine scale of the product's
   embedding model (all-MiniLM-L6-v2); ``None`` turns the step off.
8. **Assign** every item to its nearest theme centroid on the *raw* rows (blocked, so 1M x 384 fits in
   memory), with a couple of Lloyd passes on all items when the discovery ran on a sample; themes smaller
   than ``min_theme_size`` are dissolved into their neighbours. Smoothing finds the themes but blurs the
   borders between small neighbouring ones, so the final labels come from the unsmoothed vectors, by the
   same rule that :meth:`ThemeClusterer.predict` and incremental runs apply.
9. **Outliers**: an item whose similarity to its centroid falls below its theme's Tukey fence
   (Q1 - ``outlier_fence`` x IQR) is left unassigned (label ``-1``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from pipeline.unknown_words import WordPieces, mean_pairwise_cosine, unknown_word_view

log = logging.getLogger(__name__)

_N_CANDIDATES = 24  # theme counts tried, on a geometric grid
_BLOCK = 16384  # rows per block in the dense products; bounds the n x k temporaries


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def assign_to_centroids(X: np.ndarray, centroids: np.ndarray,
                        threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Assign each row to its most similar centroid (cosine), or to none when below ``threshold``.

    Used for incremental runs: new items join an existing theme when similar enough, else wait in the pool.

    Args:
        X: ``(n, d)`` unit rows.
        centroids: ``(k, d)`` unit rows; ``k`` may be 0.
        threshold: minimum cosine similarity to join a theme.

    Returns:
        ``labels`` ``(n,)`` int64 with ``-1`` where the best similarity is below ``threshold``, and
        ``similarities`` ``(n,)`` float32, the best similarity (``-1`` when there are no centroids).
    """
    X = np.asarray(X, dtype=np.float32)
    centroids = np.asarray(centroids, dtype=np.float32)
    n = X.shape[0]
    if centroids.ndim != 2 or (n and centroids.shape[0] and centroids.shape[1] != X.shape[1]):
        raise ValueError(
            f"centroids must be (k, {X.shape[1] if X.ndim == 2 else 'd'}); got shape {centroids.shape}"
        )
    labels = np.full(n, -1, dtype=np.int64)
    sims = np.full(n, -1.0, dtype=np.float32)
    if n == 0 or centroids.shape[0] == 0:
        return labels, sims
    for start in range(0, n, _BLOCK):
        block = X[start:start + _BLOCK] @ centroids.T
        best = block.argmax(axis=1)
        labels[start:start + _BLOCK] = best
        sims[start:start + _BLOCK] = block[np.arange(block.shape[0]), best]
    labels[sims < threshold] = -1
    return labels, sims


def _smooth(X: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Mean of each row and its ``n_neighbors`` nearest rows (cosine), renormalised. ``X`` is small."""
    n = X.shape[0]
    k = min(n_neighbors, n - 1)
    if k < 1:
        return X
    out = np.empty_like(X)
    for start in range(0, n, 4096):
        sims = X[start:start + 4096] @ X.T
        idx = np.argpartition(-sims, k, axis=1)[:, :k + 1]  # includes the row itself
        out[start:start + 4096] = X[idx].mean(axis=1)
    return _normalise(out)


def _cluster_sums(X: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster vector sums ``(k, d)`` (float64) and counts ``(k,)``; rows labelled ``-1`` are skipped."""
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], _BLOCK):
        lab = labels[start:start + _BLOCK]
        keep = lab >= 0
        rows = np.flatnonzero(keep)
        onehot = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (lab[keep], rows)),
                               shape=(k, lab.shape[0]))
        sums += onehot @ X[start:start + _BLOCK]
    counts = np.bincount(labels[labels >= 0], minlength=k)
    return sums, counts


def cosine_silhouette(X: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Exact mean silhouette with cosine distance, in O(n k d) via cluster sums (unit rows).

    Args:
        X: ``(n, d)`` unit rows; labels ``(n,)`` in ``0..k-1``.
        rows: optional subset of rows whose silhouettes are averaged (clusters still use all rows).
    """
    k = int(labels.max()) + 1
    if k < 2:
        return 0.0
    sums, counts = _cluster_sums(X, labels, k)
    rows = np.arange(X.shape[0]) if rows is None else rows
    xr, lr = X[rows].astype(np.float64), labels[rows]
    dots = xr @ sums.T
    size = counts[lr].astype(np.float64)
    own = dots[np.arange(rows.size), lr]
    a = 1.0 - (own - (xr * xr).sum(axis=1)) / np.maximum(size - 1, 1)
    means = dots / np.maximum(counts, 1)
    means[np.arange(rows.size), lr] = -np.inf
    b = 1.0 - means.max(axis=1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[size <= 1] = 0.0
    return float(s.mean())


# Mean pairwise cosine below which a theme's rows count as unrelated (sentence embeddings of one theme sit
# well above it; unrelated texts near it), the floor of ``w`` in the merge's cosine.
LOOSEST_WITHIN = 0.05


def _unbiased_norms(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``n * sqrt(w)`` per theme: the length of its row sum with the ``n`` self-pairs taken out.

    ``w`` = (|sum|^2 - n) / (n (n - 1)) is the theme's mean pairwise similarity (unit rows); a theme of one
    row keeps its plain length. ``w`` is floored at ``LOOSEST_WITHIN``: dividing by the ``sqrt(w)`` of a
    theme whose rows are hardly alike at all would turn the noise of its cross-pair mean into a cosine far
    above 1, and such a theme merged into a tight one by chance (4 in 10 random draws of 20 unrelated rows
    beside two themes of 30). Empty themes get a tiny floor.
    """
    within = mean_pairwise_cosine(sums, counts)
    return np.maximum(counts * np.sqrt(np.clip(within, LOOSEST_WITHIN, None)), 1e-12)


def merge_close_themes(X: np.ndarray, labels: np.ndarray, similarity: float | None) -> np.ndarray:
    """Merge themes, closest pair first, while their centroids' cosine similarity is at least ``similarity``.

    Each merge replaces the pair by one theme whose centroid is the mean of all its rows, so the next
    comparison is against the merged theme, as in average-centroid agglomeration.

    The cosine is taken without each theme's self-pairs: the squared length of a theme's mean row is
    ``1/n + (n-1)/n * w`` (``w`` its mean pairwise similarity), so the plain centroid cosine is shrunk by
    ``1/n`` and judges two small or loose themes less similar than the same two themes with more rows. With
    ``w`` in place of that squared length the cosine is the unbiased estimate (mean cross-pair similarity
    over ``sqrt(w_a * w_b)``), the same for a theme of 15 rows as for the same theme of 1,500, so whether
    two themes merge no longer depends on how many rows each happened to get.

    Args:
        X: ``(n, d)`` unit rows; ``labels`` ``(n,)`` in ``0..k-1`` (``-1`` rows are ignored and kept).
        similarity: merge threshold on that cosine; ``None`` merges nothing. The cosine can exceed 1 for
            two themes whose rows are more alike across than within, so even 1 still merges those.

    Returns:
        ``(n,)`` int64 labels renumbered ``0..k'-1`` (a merged theme takes the lower id's place), ``k' <= k``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if labels.size else 0
    if similarity is None or k < 2:
        return labels.copy()
    sums, counts = _cluster_sums(X, labels, k)
    alive = counts > 0
    centroids = sums / _unbiased_norms(sums, counts)[:, None]
    sims = centroids @ centroids.T
    sims[~alive, :] = -np.inf
    sims[:, ~alive] = -np.inf
    np.fill_diagonal(sims, -np.inf)
    parent = np.arange(k)
    while True:
        a, b = divmod(int(np.argmax(sims)), k)
        if not sims[a, b] >= similarity:
            break
        keep, gone = min(a, b), max(a, b)
        parent[parent == gone] = keep
        alive[gone] = False
        sums[keep] += sums[gone]
        counts[keep] += counts[gone]
        centroids[keep] = sums[keep] / _unbiased_norms(sums[keep:keep + 1], counts[keep:keep + 1])[0]
        row = centroids @ centroids[keep]
        row[~alive] = -np.inf
        row[keep] = -np.inf
        sims[gone, :] = -np.inf
        sims[:, gone] = -np.inf
        sims[keep, :] = row
        sims[:, keep] = row
    valid = labels >= 0
    out = np.full(labels.shape, -1, dtype=np.int64)
    out[valid] = np.unique(parent[labels[valid]], return_inverse=True)[1]
    return out


def _prominence(scores: dict[int, float], k: int) -> float:
    """How far the curve falls after ``k`` before it climbs above ``scores[k]`` again (or ends).

    The topographic prominence, one-sided toward finer counts: a real level is separated from the next
    higher one by a valley, however many grid points the valley spans, while a wiggle is not.
    """
    low = scores[k]
    for finer in sorted(f for f in scores if f > k):
        if scores[finer] > scores[k]:
            break
        low = min(low, scores[finer])
    return scores[k] - low


def choose_theme_count(scores: dict[int, float], *, tolerance: float = 0.05, peak_tolerance: float = 0.04) -> int:
    """The number of themes to keep, given a silhouette score per candidate count.

    Parsimony first: the smallest count within ``tolerance`` (relative) of the best score. But silhouette
    curves of feedback are often two-humped: a peak at the level of themes, then a rise again at the level
    of near-identical phrasings (templates, auto-replies, copy-pasted text), which can edge ahead because
    tiny tight clusters score high silhouettes. A coarser count is preferred to the best when it is

    * a peak: higher than the previous candidate;
    * a real level, not a wiggle: its prominence (the valley before the curve rises above it again) is at
      least the ``tolerance`` slack;
    * close enough for its scale: it trails the best by at most ``peak_tolerance`` (relative) per halving
      of the theme count. A flat slack would let a few thousandths of silhouette decide between 23 themes
      and 270; silhouette drifts up with k as clusters shrink, so the slack grows with ``log2(k_best / k)``
      instead, and a level with ten times fewer themes may trail by about 13%, one with 1.5 times fewer
      by about 2%.

    The smallest such peak wins; without one, the parsimony choice stands.
    """
    if not scores:
        raise ValueError("no candidate theme counts were scored")
    ks = sorted(scores)
    best_k = max(ks, key=lambda k: scores[k])
    best = scores[best_k]
    chosen = min(k for k in ks if scores[k] >= best - tolerance * abs(best))
    for left, k in zip(ks, ks[1:], strict=False):
        if k >= chosen:
            break
        slack = peak_tolerance * float(np.log2(best_k / k)) * abs(best)
        if scores[k] > scores[left] and _prominence(scores, k) >= tolerance * abs(best) and scores[k] >= best - slack:
            return k
    return chosen


class ThemeClusterer(ClusterMixin, BaseEstimator):
    """Discover themes in unit-length embeddings, choosing the number of themes itself.

    Args:
        min_theme_size: smallest theme kept; smaller clusters are dissolved into their neighbours.
        n_neighbors: neighbours averaged when smoothing the discovery sample.
        k_tolerance: relative silhouette slack (scored on the raw rows); the smallest k within it of the
            best k is chosen.
        peak_tolerance: relative silhouette slack per halving of the theme count: a coarser level (a
            prominent local peak) that trails the best by at most this much per halving is preferred to the
            choice above, so template-level clusters do not win by sheer tightness (see
            :func:`choose_theme_count`).
        merge_similarity: themes whose centroids (on the raw rows) have at least this cosine similarity are
            merged after k is chosen, closest pair first (see :func:`merge_close_themes`); ``None`` keeps
            every theme. On the cosine scale of all-MiniLM-L6-v2; another model may need another value.
        outlier_fence: Tukey fence multiplier on each theme's similarity IQR; lower leaves more unassigned.
        max_hierarchy_size: at most this many items (sampled) build the tree that picks the themes.
        refine_iter: Lloyd iterations after the cut.
        seed: random seed (sampling and k-means); equal seeds give equal results.
        word_pieces: how many pieces the embedding model's tokenizer reads each word in; with it and the texts,
            discovery runs on :func:`pipeline.unknown_words.unknown_word_view`. ``None`` leaves that view out.
        word_pull: weight of that view's pull (0 leaves it out).

    Attributes:
        labels_: ``(n,)`` int64 theme per item, ``-1`` when unassigned.
        centroids_: ``(n_themes_, d)`` float32 unit rows.
        similarities_: ``(n,)`` float32 cosine similarity of each item to its theme centroid (before outliers).
        n_themes_: number of themes found.
        unassigned_share_: share of items left unassigned, in ``[0, 1]``.
        unknown_words_: the words the discovery view pulled texts together by (empty without it).
    """

    def __init__(self, *, min_theme_size: int = 5, n_neighbors: int = 15, k_tolerance: float = 0.05,
                 peak_tolerance: float = 0.04, merge_similarity: float | None = 0.80, outlier_fence: float = 3.0,
                 max_hierarchy_size: int = 6000, refine_iter: int = 10, seed: int = 42,
                 word_pieces: WordPieces | None = None, word_pull: float = 0.5) -> None:
        self.min_theme_size = min_theme_size
        self.n_neighbors = n_neighbors
        self.k_tolerance = k_tolerance
        self.peak_tolerance = peak_tolerance
        self.merge_similarity = merge_similarity
        self.outlier_fence = outlier_fence
        self.max_hierarchy_size = max_hierarchy_size
        self.refine_iter = refine_iter
        self.seed = seed
        self.word_pieces = word_pieces
        self.word_pull = word_pull

    # -- steps -------------------------------------------------------------------------------------

    def _candidate_ks(self, n: int) -> np.ndarray:
        upper = max(2, n // max(self.min_theme_size, 1))
        return np.unique(np.geomspace(2, upper, _N_CANDIDATES).round().astype(int))

    def _discover(self, sample: np.ndarray, Xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Labels ``(m,)`` for the discovery sample, with k chosen by silhouette parsimony.

        The tree is built on the smoothed rows ``Xs``, but each candidate is refined first and then scored
        on the raw rows ``sample``: smoothing pulls every row toward its ``n_neighbors`` nearest, which
        inflates the silhouette of clusters about that size and so favours over-splitting.
        """
        m = Xs.shape[0]
        ks = self._candidate_ks(m)
        # Euclidean distances of unit rows from one BLAS product (scipy's pdist is far slower here)
        gram = Xs @ Xs.T
        np.fill_diagonal(gram, 1.0)
        dist = np.sqrt(np.clip(2.0 - 2.0 * gram, 0.0, None), out=gram)
        condensed = squareform(dist, checks=False).astype(np.float64)
        del gram, dist
        tree = linkage(condensed, method="ward")
        del condensed
        rows = rng.choice(m, size=min(m, 2000), replace=False)
        cuts: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        for k in ks:
            cut = fcluster(tree, int(k), criterion="maxclust") - 1
            k_real = int(cut.max()) + 1
            if k_real < 2 or k_real in cuts:
                continue
            labels = self._refine(Xs, cut, k_real)
            cuts[k_real] = labels
            scores[k_real] = cosine_silhouette(sample, labels, rows)
        if not cuts:
            return np.zeros(m, dtype=np.int64)
        k = choose_theme_count(scores, tolerance=self.k_tolerance, peak_tolerance=self.peak_tolerance)
        best = max(scores.values())
        log.info("theme count %d chosen (silhouette %.3f, best %.3f)", k, scores[k], best)
        return cuts[k]

    def _refine(self, Xs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
        """Lloyd iterations from the centroids of ``labels``; returns ``(m,)`` int64."""
        if self.refine_iter > 0:
            sums, _ = _cluster_sums(Xs, labels, k)
            init = _normalise(sums.astype(np.float32))
            with warnings.catch_warnings():
                # fine candidates can hold exact duplicates after smoothing; an emptied cluster is harmless
                # here (it scores as absent and is dissolved later), so sklearn's warning is only noise
                warnings.simplefilter("ignore", ConvergenceWarning)
                labels = KMeans(k, init=init, n_init=1, max_iter=self.refine_iter,
                                random_state=self.seed).fit_predict(Xs)
        return labels.astype(np.int64)

    def _centroids(self, X: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sums, counts = _cluster_sums(X, labels, k)
        keep = counts > 0
        return _normalise(sums[keep].astype(np.float32)), counts[keep]

    def _mark_outliers(self, labels: np.ndarray, sims: np.ndarray) -> np.ndarray:
        labels = labels.copy()
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        for members in np.split(order, bounds):
            if members.size < 4 or labels[members[0]] < 0:
                continue
            q1, q3 = np.percentile(sims[members], [25, 75])
            fence = q1 - self.outlier_fence * (q3 - q1)
            labels[members[sims[members] < fence]] = -1
        return labels

    # -- estimator ---------------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: None = None, texts: Sequence[str] | None = None) -> ThemeClusterer:
        """Find themes in ``X`` ``(n, d)`` (rows are L2-normalised here if they are not already).

        Args:
            texts: the ``n`` texts the rows were embedded from, in the same order; with ``word_pieces`` they
                give discovery its view of the words the model does not know.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (n, d) array of embeddings; got shape {X.shape}")
        if texts is not None and len(texts) != X.shape[0]:
            raise ValueError(f"texts must match the rows of X: {len(texts)} texts for {X.shape[0]} rows")
        if self.min_theme_size < 1:
            raise ValueError(f"min_theme_size must be >= 1; got {self.min_theme_size}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values; drop or re-embed those rows")
        norms = np.linalg.norm(X, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            X = _normalise(X)
        n = X.shape[0]
        rng = np.random.default_rng(self.seed)
        log.info("theme discovery on %d items started", n)
        self.unknown_words_: list[str] = []

        if n < 2 * self.min_theme_size:
            labels = np.zeros(n, dtype=np.int64)  # too few items to split into two themes
        else:
            sampled = n > self.max_hierarchy_size
            rows = np.sort(rng.choice(n, self.max_hierarchy_size, replace=False)) if sampled else None
            sample = X[rows] if sampled else X
            view = sample
            if texts is not None and self.word_pieces is not None and self.word_pull > 0:
                sample_texts = [texts[i] for i in rows] if rows is not None else list(texts)
                view, self.unknown_words_ = unknown_word_view(sample, sample_texts, self.word_pieces,
                                                              pull=self.word_pull)
                if self.unknown_words_:
                    log.info("discovery view: texts pulled together by %d words the model reads in pieces (%s)",
                             len(self.unknown_words_), ", ".join(self.unknown_words_[:10]))
            sample_labels = self._discover(view, _smooth(view, self.n_neighbors), rng)
            # Silhouette may split one theme into adjacent sub-modes; themes with nearly parallel centroids
            # on the raw rows are one theme.
            found = int(sample_labels.max()) + 1
            sample_labels = merge_close_themes(sample, sample_labels, self.merge_similarity)
            kept = int(sample_labels.max()) + 1
            if kept < found:
                # Worth seeing: with an embedding model whose cosines run high this merges far too much.
                log.info("%d themes merged into %d (centroid cosine >= %.2f; GROUNDSWELL_THEME_MERGE_SIMILARITY)",
                         found, kept, self.merge_similarity)
            # Every item, sampled or not, joins its nearest theme centroid on the raw rows: the discovery
            # labels were settled on the smoothed rows, which blur the borders between small neighbouring
            # themes, and the nearest-centroid rule is the one predict() and incremental runs apply.
            centroids, _ = self._centroids(sample, sample_labels, int(sample_labels.max()) + 1)
            labels, _ = assign_to_centroids(X, centroids)
            if sampled:
                for _ in range(2):  # Lloyd passes on all items settle the sampled centroids
                    centroids, _ = self._centroids(X, labels, centroids.shape[0])
                    labels, _ = assign_to_centroids(X, centroids)
        # dissolve themes below the minimum size into their nearest surviving neighbour
        k = int(labels.max()) + 1
        sums, counts = _cluster_sums(X, labels, k)
        big = counts >= self.min_theme_size
        if not big.any():
            big[np.argmax(counts)] = True
        centroids = _normalise(sums[big].astype(np.float32))
        renumber = np.full(k, -1, dtype=np.int64)
        renumber[big] = np.arange(int(big.sum()))
        labels = renumber[labels]
        orphans = np.flatnonzero(labels < 0)
        if orphans.size:
            labels[orphans] = assign_to_centroids(X[orphans], centroids)[0]
        sims = np.empty(n, dtype=np.float32)
        for start in range(0, n, _BLOCK):
            block = slice(start, start + _BLOCK)
            sims[block] = np.einsum("ij,ij->i", X[block], centroids[labels[block]])
        self.centroids_ = centroids
        self.labels_ = self._mark_outliers(labels, sims)
        self.similarities_ = sims
        self.n_themes_ = int(centroids.shape[0])
        self.unassigned_share_ = float(np.mean(self.labels_ == -1))
        log.info("theme discovery done: %d themes, %.1f%% unassigned", self.n_themes_,
                 100 * self.unassigned_share_)
        return self

    def predict(self, X: np.ndarray, threshold: float = 0.0) -> np.ndarray:
        """Nearest learned theme for new rows ``(n, d)``; ``-1`` below ``threshold``. Returns ``(n,)``."""
        check_is_fitted(self, "centroids_")
        return assign_to_centroids(_normalise(np.asarray(X, dtype=np.float32)), self.centroids_,
                                   threshold)[0]
