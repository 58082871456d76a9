"""Readable theme labels and representative quotes.

:class:`ThemeLabeler` ranks the words and two-word phrases of each theme by class-based TF-IDF
(c-TF-IDF, as in BERTopic): a term scores high when it is frequent in the theme and rare across the
others. The top phrases become the keywords and a short label such as "SSO login / SAML".
:func:`representative_quotes` picks, per theme, the items nearest its centroid without near-duplicates.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

log = logging.getLogger(__name__)

# Placeholders the redaction step writes in place of PII: "[EMAIL]", "[PHONE]", "<CARD>", "{IBAN}"...
# Stripped before tokenising, or "[EMAIL]" would count as the real word "email".
PLACEHOLDER = re.compile(r"[\[<{][A-Z][A-Z0-9_]*[\]>}]")

# At least two word characters including one letter: drops pure numbers, keeps "2fa", "s3", "ios".
TOKEN_PATTERN = r"(?u)\b(?=\w*[^\W\d_])\w{2,}\b"

# Words that appear in feedback about anything, so they never describe a theme.
FEEDBACK_STOP_WORDS: frozenset[str] = frozenset([
    "hi", "hello", "hey", "dear", "thanks", "thank", "thx", "ty", "cheers", "regards", "best", "kind",
    "sincerely", "appreciate", "appreciated", "please", "pls", "plz", "sorry", "ok", "okay", "yes", "yeah",
    "yep", "hope", "great", "good", "nice", "awesome", "team", "teams", "issue", "issues", "problem",
    "problems", "customer", "customers", "client", "clients", "just", "like", "need", "needs", "needed",
    "want", "wants", "wanted", "really", "actually", "basically", "still", "also", "maybe", "would",
    "could", "should", "might", "must", "get", "gets", "got", "getting", "make", "makes", "made", "let",
    "lets", "know", "knows", "think", "feel", "felt", "see", "seen", "look", "looking", "use", "used",
    "using", "way", "ways", "thing", "things", "something", "anything", "stuff", "lot", "lots", "bit",
    "today", "yesterday", "tomorrow", "able", "unable", "trying", "tried", "try", "help", "helps",
    "helped", "seems", "seem", "ticket", "tickets", "request", "requests", "question", "questions",
    "reply", "following", "follow", "regarding", "asap", "soon", "currently", "sure", "said", "says",
    "told", "don", "doesn", "didn", "isn", "aren", "wasn", "won", "wouldn", "couldn", "shouldn", "ve",
    "ll", "re", "im", "ive", "etc", "via", "eg", "ie",
])


def _normalise_text(text: str) -> str:
    """Key for spotting the same quote twice: lower case, letters and digits only."""
    return " ".join(re.findall(r"\w+", PLACEHOLDER.sub(" ", text).lower()))


def _preprocess(text: str) -> str:
    return PLACEHOLDER.sub(" ", text).lower()


def _closed_stop_words(words: Iterable[str]) -> frozenset[str]:
    """Stop words plus the tokens they split into ("don't" -> "don"), as the tokeniser sees them."""
    tokeniser = re.compile(TOKEN_PATTERN)
    out = set()
    for word in words:
        out.add(word.lower())
        out.update(tokeniser.findall(_preprocess(word)))
    return frozenset(out)


class _Phrases:
    """CountVectorizer's analyzer: the word n-grams of a text that contain no stop word.

    scikit-learn's own analyzer drops stop words first and then joins the words left, so "an XLSX export
    instead of only CSV" gives the phrase "instead csv", which nobody wrote; here an n-gram is words that
    stand next to each other in the text.
    """

    def __init__(self, stop_words: Iterable[str], ngram_range: tuple[int, int]) -> None:
        self.stop_words = frozenset(stop_words)
        self.ngram_range = ngram_range
        self._tokens = re.compile(TOKEN_PATTERN)

    def __call__(self, text: str) -> list[str]:
        words = self._tokens.findall(_preprocess(text))
        content = [w not in self.stop_words for w in words]
        low, high = self.ngram_range
        out = [w for w, keep in zip(words, content, strict=True) if keep] if low <= 1 else []
        for n in range(max(low, 2), high + 1):
            out += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1) if all(content[i:i + n])]
        return out


class ThemeLabeler:
    """Keywords and a short label per theme from class-based TF-IDF.

    Args:
        top_n_words: keywords kept per theme.
        ngram_range: word n-gram sizes to consider.
        min_df: minimum number of documents a term must appear in (lowered automatically when the
            corpus is smaller).
        stop_words: ``"english"``, an explicit list, or None.
        extra_stop_words: added to ``stop_words``; None means :data:`FEEDBACK_STOP_WORDS`.
        max_label_chars: the label is cut to this length at a word boundary.
        max_label_phrases: how many key phrases the label joins (1 or 2 reads best).
        bigram_ratio: a bigram replaces its leading unigram in the label when it scores at least this
            share of the unigram's score.
        fallback_label: label of a theme with no distinctive words.

    Attributes:
        classes_: theme labels seen in ``fit`` (noise ``-1`` excluded), ascending.
        keywords_: theme -> top keywords, best first.
        scores_: theme -> c-TF-IDF scores of ``keywords_``.
        labels_: theme -> readable label.
        vectorizer_: the fitted ``CountVectorizer``.
    """

    def __init__(
        self,
        *,
        top_n_words: int = 8,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 2,
        stop_words: str | Sequence[str] | None = "english",
        extra_stop_words: Sequence[str] | None = None,
        max_label_chars: int = 60,
        max_label_phrases: int = 2,
        bigram_ratio: float = 0.6,
        fallback_label: str = "Miscellaneous",
    ) -> None:
        self.top_n_words = top_n_words
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.stop_words = stop_words
        self.extra_stop_words = extra_stop_words
        self.max_label_chars = max_label_chars
        self.max_label_phrases = max_label_phrases
        self.bigram_ratio = bigram_ratio
        self.fallback_label = fallback_label

    def _stop_words(self) -> list[str]:
        base: set[str] = set()
        if self.stop_words == "english":
            base |= set(ENGLISH_STOP_WORDS)
        elif isinstance(self.stop_words, str):
            raise ValueError(f"stop_words must be 'english', a list of words or None, got {self.stop_words!r}")
        elif self.stop_words is not None:
            base |= set(self.stop_words)
        base |= set(FEEDBACK_STOP_WORDS if self.extra_stop_words is None else self.extra_stop_words)
        return sorted(_closed_stop_words(base))

    def _vectorise(self, texts: Sequence[str]) -> tuple[CountVectorizer, sp.csr_matrix] | None:
        """Term counts, or None when every word is a stop word."""
        min_df = max(1, min(self.min_df, len(texts)))
        while True:
            vectorizer = CountVectorizer(analyzer=_Phrases(self._stop_words(), self.ngram_range),
                                         min_df=min_df, dtype=np.float64)
            try:
                return vectorizer, vectorizer.fit_transform(texts).tocsr()
            except ValueError:
                # "no terms remain" on tiny corpora: retry with every term; "empty vocabulary" at
                # min_df=1 means only stop words and placeholders were left.
                if min_df == 1:
                    return None
                min_df = 1

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> ThemeLabeler:
        """Learn keywords and labels.

        Args:
            texts: one text per item.
            labels: ``(n,)`` theme per item; ``-1`` (unassigned) gets no label but still counts as
                background when weighing how common a term is.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != len(texts):
            raise ValueError(f"labels must be 1-D with one entry per text: {labels.shape} for {len(texts)} texts")
        if self.top_n_words < 1:
            raise ValueError("top_n_words must be at least 1")
        labels = labels.astype(np.int64)
        self.classes_ = np.unique(labels[labels >= 0])
        self.keywords_: dict[int, list[str]] = {}
        self.scores_: dict[int, list[float]] = {}
        self.labels_: dict[int, str] = {}
        vectorised = self._vectorise(texts) if any(str(t).strip() for t in texts) else None
        if vectorised is None:
            self.vectorizer_ = None
            for theme in self.classes_.tolist():
                self.keywords_[theme], self.scores_[theme] = [], []
                self.labels_[theme] = self.fallback_label
            return self

        vectorizer, counts = vectorised
        self.vectorizer_ = vectorizer
        terms = vectorizer.get_feature_names_out()

        # One row per class, noise included as a class of its own so common words are down-weighted.
        class_values, class_index = np.unique(labels, return_inverse=True)
        membership = sp.csr_matrix(
            (np.ones(len(labels)), (class_index, np.arange(len(labels)))),
            shape=(len(class_values), len(labels)),
        )
        class_counts = (membership @ counts).toarray()  # (classes, vocabulary), small and dense
        words_per_class = class_counts.sum(axis=1, keepdims=True)
        tf = np.divide(class_counts, words_per_class, out=np.zeros_like(class_counts),
                       where=words_per_class > 0)
        term_totals = class_counts.sum(axis=0)
        avg_words = float(words_per_class.mean())
        idf = np.log1p(avg_words / np.maximum(term_totals, 1.0))
        ctfidf = tf * idf

        texts_arr = np.asarray(texts, dtype=object)
        by_class = np.split(np.argsort(class_index, kind="stable"),
                            np.cumsum(np.bincount(class_index, minlength=len(class_values)))[:-1])
        for row, theme in enumerate(class_values.tolist()):
            if theme < 0:
                continue
            scores = ctfidf[row]
            # Stable sort on the alphabetical vocabulary: ties break the same way every run.
            order = np.argsort(-scores, kind="stable")
            order = order[scores[order] > 0][: max(self.top_n_words, 20)]
            candidates = [(str(terms[i]), float(scores[i])) for i in order]
            keywords = candidates[: self.top_n_words]
            self.keywords_[theme] = [t for t, _ in keywords]
            self.scores_[theme] = [round(s, 6) for _, s in keywords]
            self.labels_[theme] = self._label(candidates, texts_arr[by_class[row]])
        log.info("labelled %d themes from %d texts (%d terms)", len(self.labels_), len(texts), len(terms))
        return self

    def _label(self, candidates: list[tuple[str, float]], theme_texts: np.ndarray) -> str:
        """Join the top 1-2 phrases, preferring a bigram over the unigram it contains."""
        if not candidates:
            return self.fallback_label
        phrases: list[str] = []
        used: set[str] = set()
        unigram_score = {t: s for t, s in candidates if " " not in t}
        for term, score in candidates:
            if len(phrases) >= self.max_label_phrases:
                break
            words = term.split()
            if len(words) == 1:
                # A strong bigram whose words are both strong says more ("sso login" over "sso"); one with a
                # weak word ("add audit") does not, and neither does one repeating a word the label has: the
                # unigram then stands on its own ("AI / Summaries", not "AI" and a later, weaker phrase).
                floor = self.bigram_ratio * score
                for other, other_score in candidates:
                    other_words = other.split()
                    if (len(other_words) == 2 and term in other_words and len(set(other_words)) == 2
                            and not any(_stem(w) in used for w in other_words)
                            and other_score >= floor
                            and all(unigram_score.get(w, 0.0) >= floor for w in other_words)):
                        term, words = other, other_words
                        break
            stems = [_stem(w) for w in words]
            if any(w in used for w in stems) or len(set(stems)) < len(stems):
                continue  # "Dashboard / Dashboards" says one thing twice
            phrases.append(term)
            used.update(stems)
        surface = _surface_forms({w for phrase in phrases for w in phrase.split()}, theme_texts)
        pretty = []
        for phrase in phrases:
            words = [surface.get(w, w) for w in phrase.split()]
            if words[0].islower():  # "iOS" and "SAML" keep their own spelling
                words[0] = words[0][:1].upper() + words[0][1:]
            pretty.append(" ".join(words))
        label = pretty[0]
        for extra in pretty[1:]:
            if len(label) + 3 + len(extra) <= self.max_label_chars:
                label = f"{label} / {extra}"
        if len(label) > self.max_label_chars:
            label = label[: self.max_label_chars].rsplit(" ", 1)[0].rstrip(" /")
        return label or self.fallback_label


def _stem(word: str) -> str:
    """A crude singular: enough to see that "dashboards" repeats "dashboard" (not a general stemmer)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _surface_forms(words: Iterable[str], texts: np.ndarray, sample: int = 2000) -> dict[str, str]:
    """How the theme's own texts usually spell each word, when that is not plain lower case ("SAML", "iOS")."""
    words = sorted(set(words))
    if not words or len(texts) == 0:
        return {}
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    seen: dict[str, Counter[str]] = {w: Counter() for w in words}
    for found in pattern.findall(PLACEHOLDER.sub(" ", "\n".join(str(t) for t in texts[:sample]))):
        seen[found.lower()][found] += 1
    out = {}
    for word, forms in seen.items():
        if not forms:
            continue
        # Most common spelling, ties to the lower-case one; a sentence-initial capital ("Login") is not
        # a real spelling, so only all-caps or inner-capital forms are kept.
        form, _ = max(forms.items(), key=lambda kv: (kv[1], kv[0] == word))
        if form != word and (form.isupper() or any(ch.isupper() for ch in form[1:])):
            out[word] = form
    return out


def representative_quotes(
    X: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    texts: Sequence[str],
    *,
    n: int = 5,
    min_quotes: int = 3,
    dedup_threshold: float = 0.92,
    readable_chars: tuple[int, int] = (40, 300),
    length_penalty: float = 0.03,
) -> dict[int, list[int]]:
    """Pick the items that best show what each theme is about.

    Items are ranked by cosine similarity to their theme's centroid, minus ``length_penalty`` when the
    text is outside ``readable_chars`` (so a readable sentence wins a close race against a two-word
    reply or a pasted log). Walking down that ranking, an item is skipped when its normalised text
    was already taken or it is a near-duplicate (cosine above ``dedup_threshold``) of one taken.
    When that leaves fewer than ``min_quotes``, near-duplicates with different text fill the gap.

    Args:
        X: ``(n_items, d)`` unit-length embeddings.
        labels: ``(n_items,)`` theme row per item, ``-1`` for unassigned.
        centroids: ``(k, d)`` unit-length centroids; row ``t`` belongs to theme ``t``.
        texts: one text per item.
        n: quotes wanted per theme.
        min_quotes: fewer than this and near-duplicates are allowed back.
        dedup_threshold: cosine similarity above which two quotes count as the same.
        readable_chars: preferred text length range.
        length_penalty: score taken off texts outside ``readable_chars``.

    Returns:
        theme -> item row indices, best first (at most ``n``; every theme in ``labels`` present).
    """
    X = np.asarray(X)
    labels = np.asarray(labels).astype(np.int64)
    centroids = np.asarray(centroids)
    if X.ndim != 2 or centroids.ndim != 2 or X.shape[1] != centroids.shape[1]:
        raise ValueError(f"X {X.shape} and centroids {centroids.shape} must be 2-D with the same width")
    if labels.shape != (X.shape[0],) or len(texts) != X.shape[0]:
        raise ValueError("X, labels and texts must have one entry per item")
    if labels.size and labels.max() >= centroids.shape[0]:
        raise ValueError(f"label {labels.max()} has no centroid row (centroids has {centroids.shape[0]})")
    if n < 1:
        raise ValueError("n must be at least 1")

    valid = np.flatnonzero(labels >= 0)
    if valid.size == 0:
        return {}
    sims = np.einsum("ij,ij->i", X[valid], centroids[labels[valid]], dtype=np.float64)
    lengths = np.fromiter((len(texts[i].strip()) for i in valid.tolist()), dtype=np.int64, count=valid.size)
    lo, hi = readable_chars
    score = sims - length_penalty * ((lengths < lo) | (lengths > hi))
    # One sort for all themes: by theme, then best score first, then row for determinism.
    order = np.lexsort((valid, -score, labels[valid]))
    ranked = valid[order]
    ranked_labels = labels[ranked]
    starts = np.flatnonzero(np.r_[True, ranked_labels[1:] != ranked_labels[:-1]])
    ends = np.r_[starts[1:], ranked.size]

    quotes: dict[int, list[int]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        theme = int(ranked_labels[start])
        chosen: list[int] = []
        near_dups: list[int] = []
        seen_text: set[str] = set()
        for row in ranked[start:end].tolist():
            key = _normalise_text(texts[row])
            if not key or key in seen_text:
                continue
            if chosen and float(np.max(X[chosen] @ X[row])) > dedup_threshold:
                near_dups.append(row)
                continue
            seen_text.add(key)
            chosen.append(row)
            if len(chosen) >= n:
                break
        if len(chosen) < min_quotes:
            for row in near_dups:
                key = _normalise_text(texts[row])
                if key in seen_text:
                    continue
                seen_text.add(key)
                chosen.append(row)
                if len(chosen) >= min_quotes:
                    break
        quotes[theme] = chosen
    return quotes
