"""Words the embedding model does not know: a view of the vectors in which they count for discovery.

A sentence model reads a word missing from its vocabulary as pieces of other words: all-MiniLM-L6-v2 reads
"wordpress" as ``word ##press``, "magento" as ``mage ##nto``, "sharepoint" as ``share ##point``. Texts about one
such product then land wherever the rest of their words put them, and the products of one kind (four content
management systems, say) come out as one mixed theme. Texts naming one account or person, or the vendor's own
product, are no different to the model, and those must not make a theme.

What tells the two apart is how alike the texts that use the word are: texts naming one product are about the
same kind of thing, so they are far more alike than two texts drawn at random; texts naming one account are
about everything that account writes, hardly more alike than any two texts. So a word counts here when

* the model reads it in two or more pieces,
* at least ``min_texts`` texts and at most ``max_share`` of them use it, and
* the texts that use it are, on average, at least ``coherence_ratio`` times as alike (cosine) as two texts of
  the whole collection.

Each text that uses such words is then pulled toward the mean vector of the texts sharing each of them, which
moves texts about one product together without moving any other text. The view serves discovery only (see
:class:`pipeline.clustering.ThemeClusterer`): themes are still assigned on the model's own vectors, as
incremental runs assign them, so nothing about the view is stored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

# How many pieces the model's tokenizer cuts each word into (see SentenceEmbedder.word_pieces).
WordPieces = Callable[[Sequence[str]], Sequence[int]]

_WORD = re.compile(r"[a-z][a-z0-9]*[+#]*")  # c++ and c# are words of their own


def mean_pairwise_cosine(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean cosine of two distinct rows of each group of unit rows, from the group's row sum alone.

    ``|sum|^2`` counts every ordered pair once and each row with itself once, so ``(|sum|^2 - n) / (n (n - 1))``.

    Args:
        sums: ``(g, d)`` row sums; counts: ``(g,)`` rows in each group.

    Returns:
        ``(g,)`` float64; 1 for a group of one row.
    """
    n = np.asarray(counts, dtype=np.float64)
    squared = (sums * sums).sum(axis=1)
    return np.where(n > 1, (squared - n) / np.maximum(n * (n - 1), 1.0), 1.0)


def text_words(texts: Sequence[str]) -> list[set[str]]:
    """The distinct words of each text: lower case, starting with a letter, two characters or more."""
    return [{w for w in _WORD.findall(text.lower()) if len(w) >= 2} for text in texts]


def unknown_word_view(X: np.ndarray, texts: Sequence[str], word_pieces: WordPieces, *, pull: float = 0.5,
                      min_texts: int = 3, max_share: float = 0.5,
                      coherence_ratio: float = 2.5) -> tuple[np.ndarray, list[str]]:
    """``X`` with each text pulled toward the texts that share an unknown word with it (see the module).

    Args:
        X: ``(n, d)`` unit rows, one per text.
        texts: the ``n`` texts the rows were embedded from.
        word_pieces: how many pieces the model reads each word in.
        pull: weight of the mean of a text's word vectors (each a unit row) added to the text's own unit row.

    Returns:
        ``(n, d)`` float32 unit rows (``X`` itself when no word counts), and the words that count, sorted.
    """
    n = X.shape[0]
    if len(texts) != n:
        raise ValueError(f"texts must match the rows: {len(texts)} texts for {n} rows")
    words = text_words(texts)
    df = Counter(w for ws in words for w in ws)
    common = [w for w, c in df.items() if min_texts <= c <= max_share * n]
    if n < 2 or not common or pull <= 0:
        return X, []
    pieces = word_pieces(common)
    candidates = sorted(w for w, p in zip(common, pieces, strict=True) if p > 1)
    if not candidates:
        return X, []
    column = {w: j for j, w in enumerate(candidates)}
    rows, cols = [], []
    for i, ws in enumerate(words):
        for w in ws:
            j = column.get(w)
            if j is not None:
                rows.append(i)
                cols.append(j)
    uses = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n, len(candidates)))
    X64 = X.astype(np.float64)
    sums = np.asarray(uses.T @ X64)  # (words, d)
    counts = np.asarray(uses.sum(axis=0)).ravel()
    alike = mean_pairwise_cosine(sums, counts)
    overall = float(mean_pairwise_cosine(X64.sum(axis=0)[None, :], np.array([n]))[0])
    keep = np.flatnonzero(alike >= coherence_ratio * max(overall, 0.0))
    if not keep.size:
        return X, []
    uses = uses[:, keep]
    directions = sums[keep] / np.maximum(np.linalg.norm(sums[keep], axis=1, keepdims=True), 1e-12)
    per_text = np.asarray(uses.sum(axis=1)).ravel()
    toward = np.asarray(uses @ directions) / np.maximum(per_text, 1.0)[:, None]
    pulled = X64 + pull * toward
    pulled /= np.linalg.norm(pulled, axis=1, keepdims=True)
    return pulled.astype(np.float32), [candidates[j] for j in keep]
