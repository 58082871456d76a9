"""Theme identity over time: match a fresh clustering to the themes that already exist.

A full re-clustering produces anonymous clusters. :func:`match_themes` decides which existing theme each
new cluster continues (Hungarian assignment on centroid cosine similarity, blended with member overlap
when memberships are known) and records the lineage between the two runs: births, merges, splits,
archivals and marked growth. It is a pure step: ids, arrays and sets in, a :class:`ThemeMatch` out; the
database layer applies it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

log = logging.getLogger(__name__)

EventKind = Literal["born", "grew", "merged", "split", "archived"]


@dataclass(frozen=True)
class ThemeRef:
    """What an event is about: an existing theme (``theme_id``), a new cluster (``cluster``), or both.

    ``cluster`` is a row of the new clustering; when ``theme_id`` is None the theme does not exist yet
    and gets its id when the cluster is saved.
    """

    theme_id: int | None = None
    cluster: int | None = None

    def __post_init__(self) -> None:
        if self.theme_id is None and self.cluster is None:
            raise ValueError("a ThemeRef needs a theme_id, a cluster, or both")


@dataclass(frozen=True)
class ThemeEventSpec:
    """One lineage event to store as a ``theme_event`` row.

    Kinds and what ``theme_ref`` and ``detail`` hold:

    - ``born``: a new cluster that continues no theme. ``theme_ref.cluster`` only; detail has the best
      old theme and its similarity, if any.
    - ``split``: a new cluster carved out of an old theme that lives on elsewhere. ``theme_ref.cluster``
      only; ``detail["parent"]`` is the parent theme id (set it as ``parent_id``).
    - ``merged``: an old theme absorbed by another. ``theme_ref.theme_id`` is the absorbed theme;
      ``detail["into"]`` the surviving theme id (set ``status="merged"``, ``merged_into_id``).
    - ``archived``: an old theme that no new cluster continues. ``theme_ref.theme_id`` only.
    - ``grew``: a kept theme whose membership grew markedly. Both fields; detail has ``before``/``after``.
    """

    kind: EventKind
    theme_ref: ThemeRef
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ThemeMatch:
    """How a new clustering maps onto existing themes.

    Attributes:
        assignments: per new cluster, the old theme id it keeps, or None when it needs a new theme.
        similarity: per new cluster, centroid cosine similarity to the theme it keeps (None when born).
        events: lineage to record, in a stable order: merges, then per new cluster, then archivals.
        kept_locked: ids of locked themes that no new cluster continues; they must stay active (the
            database layer keeps them while they still have pinned members).
    """

    assignments: list[int | None]
    similarity: list[float | None]
    events: list[ThemeEventSpec]
    kept_locked: list[int]

    @property
    def merged_into(self) -> dict[int, int]:
        """Absorbed old theme id -> surviving theme id."""
        return {e.theme_ref.theme_id: e.detail["into"] for e in self.events
                if e.kind == "merged" and e.theme_ref.theme_id is not None}

    @property
    def split_parents(self) -> dict[int, int]:
        """New cluster row -> parent theme id, for clusters split off an old theme."""
        return {e.theme_ref.cluster: e.detail["parent"] for e in self.events
                if e.kind == "split" and e.theme_ref.cluster is not None}

    @property
    def archived(self) -> list[int]:
        """Old theme ids that vanished."""
        return [e.theme_ref.theme_id for e in self.events
                if e.kind == "archived" and e.theme_ref.theme_id is not None]

    @property
    def born(self) -> list[int]:
        """New cluster rows that start a theme of their own (not split children)."""
        return [e.theme_ref.cluster for e in self.events
                if e.kind == "born" and e.theme_ref.cluster is not None]


def _unit_rows(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_themes, dim), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)


def _flatten(members: Sequence[Collection[int]], name: str) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.fromiter((len(s) for s in members), dtype=np.int64, count=len(members))
    items = np.fromiter((int(i) for s in members for i in s), dtype=np.int64, count=int(sizes.sum()))
    owner = np.repeat(np.arange(len(members), dtype=np.int64), sizes)
    if np.unique(items).size != items.size:
        raise ValueError(f"{name}: an item belongs to more than one theme; memberships must be disjoint")
    return items, owner


def _overlap(old_members: Sequence[Collection[int]], new_members: Sequence[Collection[int]]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection counts over the items both runs know.

    New items cannot vouch for an old theme and items that left cannot vouch for a new cluster, so
    overlap is measured on the items present in both memberships.

    Returns:
        ``(inter (m, k), old_sizes (m,), new_sizes (k,))`` restricted to the common items.
    """
    m, k = len(old_members), len(new_members)
    old_items, old_owner = _flatten(old_members, "old_members")
    new_items, new_owner = _flatten(new_members, "new_members")
    order = np.argsort(old_items, kind="stable")
    old_sorted, old_owner_sorted = old_items[order], old_owner[order]
    pos = np.searchsorted(old_sorted, new_items)
    pos_clipped = np.minimum(pos, max(old_sorted.size - 1, 0))
    common = (pos < old_sorted.size) & (old_sorted[pos_clipped] == new_items) if old_sorted.size else (
        np.zeros(new_items.size, dtype=bool))
    pairs = old_owner_sorted[pos_clipped[common]] * k + new_owner[common]
    inter = np.bincount(pairs, minlength=m * k).reshape(m, k).astype(np.float64)
    return inter, inter.sum(axis=1), inter.sum(axis=0)


def match_themes(
    old_centroids: np.ndarray,
    old_ids: Sequence[int],
    new_centroids: np.ndarray,
    *,
    threshold: float = 0.8,
    old_members: Sequence[Collection[int]] | None = None,
    new_members: Sequence[Collection[int]] | None = None,
    locked_ids: Collection[int] = (),
    overlap_weight: float = 0.5,
    min_overlap: float = 1 / 3,
    majority: float = 0.5,
    min_split_share: float = 0.1,
    grow_ratio: float = 1.5,
    grow_min_items: int = 10,
    locked_bonus: float = 0.02,
) -> ThemeMatch:
    """Match new clusters to existing themes so that theme ids survive re-clustering.

    A pair (old theme, new cluster) may match when their centroids' cosine similarity reaches
    ``threshold`` or, with memberships, when the Jaccard overlap of their items reaches ``min_overlap``.
    Among those pairs the Hungarian assignment maximises cosine blended with Jaccard
    (``overlap_weight``), so one old id goes to at most one new cluster. Then:

    - an unmatched new cluster continues the unmatched old theme it mostly came from (a theme that
      moved too far for the centroid test still keeps its id when its members stay together);
    - an unmatched old theme whose majority of members (or, without memberships, whose nearest
      centroid) went to a kept cluster is ``merged`` into that cluster's theme; the largest theme of a
      merge survives because it wins the assignment, unless a locked theme is absorbed, in which case
      the locked one survives and the other is merged into it;
    - an unmatched new cluster drawn mostly from one old theme that lives on elsewhere is a ``split``
      child of it; any other unmatched cluster is ``born``;
    - an unmatched old theme is ``archived``, except locked ones, which are reported in
      ``kept_locked`` and never dropped here.

    Args:
        old_centroids: ``(m, d)`` centroids of the existing themes (normalised here).
        old_ids: the ``m`` theme ids, in row order; unique.
        new_centroids: ``(k, d)`` centroids of the new clusters (normalised here).
        threshold: minimum centroid cosine similarity for a match, in (0, 1].
        old_members: optional item ids per old theme (disjoint sets), row-aligned with ``old_ids``.
        new_members: optional item ids per new cluster (disjoint sets); give both or neither.
        locked_ids: themes a human curated (renamed, merged into): preferred in ties, never dropped.
        overlap_weight: weight of Jaccard overlap in the matching score when memberships are given.
        min_overlap: Jaccard overlap that allows a match on its own.
        majority: share of an old theme's common items that must land in one cluster for a merge, and
            share of a cluster's common items that must come from one theme for a split.
        min_split_share: share of the parent's common items a split child must hold.
        grow_ratio: ``new size / old size`` from which a kept theme gets a ``grew`` event.
        grow_min_items: minimum absolute growth for a ``grew`` event.
        locked_bonus: score added to a locked theme's admissible pairs.

    Returns:
        A :class:`ThemeMatch` whose ``assignments`` has one entry per new cluster.
    """
    old = _unit_rows(old_centroids, "old_centroids")
    new = _unit_rows(new_centroids, "new_centroids")
    m, k = old.shape[0], new.shape[0]
    ids = [int(i) for i in old_ids]
    if len(ids) != m:
        raise ValueError(f"old_ids has {len(ids)} ids for {m} old centroids; pass one id per row")
    if len(set(ids)) != m:
        raise ValueError("old_ids must be unique")
    if m and k and old.shape[1] != new.shape[1]:
        raise ValueError(f"centroid dimensions differ: old {old.shape[1]}, new {new.shape[1]}; "
                         "were they embedded with the same model?")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if (old_members is None) != (new_members is None):
        raise ValueError("pass both old_members and new_members, or neither")
    if old_members is not None and len(old_members) != m:
        raise ValueError(f"old_members has {len(old_members)} sets for {m} old themes")
    if new_members is not None and len(new_members) != k:
        raise ValueError(f"new_members has {len(new_members)} sets for {k} new clusters")
    locked = {int(i) for i in locked_ids}
    is_locked = np.array([i in locked for i in ids], dtype=bool)

    cos = old @ new.T if m and k else np.zeros((m, k))
    with_members = old_members is not None and new_members is not None
    inter = old_share = new_share = np.zeros((m, k))
    full_old = np.zeros(m, dtype=np.int64)
    full_new = np.zeros(k, dtype=np.int64)
    if old_members is not None and new_members is not None:
        inter, a, b = _overlap(old_members, new_members)
        union = a[:, None] + b[None, :] - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        admissible = (cos >= threshold) | (jaccard >= min_overlap)
        score = (1.0 - overlap_weight) * cos + overlap_weight * jaccard
        old_share = np.divide(inter, a[:, None], out=np.zeros_like(inter), where=a[:, None] > 0)
        new_share = np.divide(inter, b[None, :], out=np.zeros_like(inter), where=b[None, :] > 0)
        # Ranks a theme's claim on a cluster in merges and continuations: shared items, then size.
        claim = inter
        full_old = np.array([len(s) for s in old_members], dtype=np.int64)
        full_new = np.array([len(s) for s in new_members], dtype=np.int64)
    else:
        admissible = cos >= threshold
        score = cos.copy()
        claim = cos

    # Hungarian on admissible pairs only: inadmissible ones score 0 and are dropped afterwards, so they
    # never crowd out a real match. Admissible scores are > 0 (cosine >= threshold > 0 or Jaccard > 0).
    weights = np.where(admissible, score + locked_bonus * is_locked[:, None], 0.0)
    assign: list[int | None] = [None] * k  # new cluster -> old row
    if m and k:
        rows, cols = linear_sum_assignment(weights, maximize=True)
        for r, c in zip(rows, cols, strict=True):
            if admissible[r, c]:
                assign[int(c)] = int(r)

    # Where an old theme's members mostly went (merge target), and where a cluster mostly came from.
    owner_of_old: list[int | None] = [None] * m
    source_of_new: list[int | None] = [None] * k
    if m and k:
        if with_members:
            best_new = np.argmax(inter, axis=1)
            for r in range(m):
                if old_share[r, best_new[r]] >= majority:
                    owner_of_old[r] = int(best_new[r])
            best_old = np.argmax(inter, axis=0)
            for c in range(k):
                r = int(best_old[c])
                if new_share[r, c] >= majority and old_share[r, c] >= min_split_share:
                    source_of_new[c] = r
        else:
            best_new = np.argmax(cos, axis=1)
            for r in range(m):
                if cos[r, best_new[r]] >= threshold:
                    owner_of_old[r] = int(best_new[r])
            best_old = np.argmax(cos, axis=0)
            for c in range(k):
                if cos[best_old[c], c] >= threshold:
                    source_of_new[c] = int(best_old[c])

    def claim_key(r: int, c: int) -> tuple[bool, float, float]:
        return (bool(is_locked[r]), float(claim[r, c]), float(cos[r, c]))

    # Continuations: an unmatched cluster takes over the unmatched theme it mostly holds or came from;
    # strongest claims first so the outcome does not depend on cluster order.
    kept_rows = {r for r in assign if r is not None}
    claims: list[tuple[int, int]] = []
    for c in range(k):
        if assign[c] is not None:
            continue
        claims += [(r, c) for r in range(m) if r not in kept_rows and owner_of_old[r] == c]
        src = source_of_new[c]
        if src is not None and src not in kept_rows and owner_of_old[src] != c:
            claims.append((src, c))
    for r, c in sorted(claims, key=lambda rc: (claim_key(*rc), -rc[1], -rc[0]), reverse=True):
        if assign[c] is None and r not in kept_rows:
            assign[c] = r
            kept_rows.add(r)

    events: list[ThemeEventSpec] = []
    merged_into_row: dict[int, int] = {}
    kept_locked: list[int] = []

    # Merges: unmatched themes absorbed by a kept cluster; a locked absorbed theme takes the survivor role.
    for c in range(k):
        survivor = assign[c]
        if survivor is None:
            continue
        absorbed = [r for r in range(m)
                    if r not in kept_rows and r not in merged_into_row and owner_of_old[r] == c]
        if not absorbed:
            continue
        locked_absorbed = [r for r in absorbed if is_locked[r]]
        if locked_absorbed and not is_locked[survivor]:
            new_survivor = max(locked_absorbed, key=lambda r: claim_key(r, c))  # noqa: B023 - used at once
            absorbed = [r for r in absorbed if r != new_survivor] + [survivor]
            kept_rows.discard(survivor)
            kept_rows.add(new_survivor)
            assign[c] = survivor = new_survivor
        for r in sorted(absorbed):
            if is_locked[r]:
                continue  # reported in kept_locked below
            merged_into_row[r] = survivor
            detail: dict[str, Any] = {"into": ids[survivor], "cluster": c,
                                      "similarity": round(float(cos[r, c]), 4)}
            if with_members:
                detail["share"] = round(float(old_share[r, c]), 4)
            events.append(ThemeEventSpec("merged", ThemeRef(theme_id=ids[r]), detail))

    # Per new cluster: growth of kept themes, split children, births.
    similarity: list[float | None] = []
    for c in range(k):
        r = assign[c]
        if r is not None:
            similarity.append(round(float(cos[r, c]), 6))
            if with_members:
                before, after = int(full_old[r]), int(full_new[c])
                if after >= grow_ratio * before and after - before >= grow_min_items:
                    events.append(ThemeEventSpec("grew", ThemeRef(theme_id=ids[r], cluster=c),
                                                 {"before": before, "after": after}))
            continue
        similarity.append(None)
        src = source_of_new[c]
        if src is not None:
            parent = merged_into_row.get(src, src)
            detail = {"parent": ids[parent], "similarity": round(float(cos[src, c]), 4)}
            if with_members:
                detail["share"] = round(float(old_share[src, c]), 4)
            events.append(ThemeEventSpec("split", ThemeRef(cluster=c), detail))
        else:
            detail = {}
            if m:
                nearest = int(np.argmax(cos[:, c]))
                detail = {"nearest": ids[nearest], "similarity": round(float(cos[nearest, c]), 4)}
            events.append(ThemeEventSpec("born", ThemeRef(cluster=c), detail))

    # Old themes nobody continues.
    for r in range(m):
        if r in kept_rows or r in merged_into_row:
            continue
        if is_locked[r]:
            kept_locked.append(ids[r])
            continue
        detail = {}
        if k:
            nearest = int(np.argmax(cos[r]))
            detail = {"nearest_cluster": nearest, "similarity": round(float(cos[r, nearest]), 4)}
        events.append(ThemeEventSpec("archived", ThemeRef(theme_id=ids[r]), detail))

    result = ThemeMatch(
        assignments=[None if r is None else ids[r] for r in assign],
        similarity=similarity,
        events=events,
        kept_locked=kept_locked,
    )
    log.info("matched %d new clusters to %d themes: %d kept, %d born, %d split, %d merged, %d archived",
             k, m, sum(a is not None for a in result.assignments), len(result.born),
             len(result.split_parents), len(result.merged_into), len(result.archived))
    return result
