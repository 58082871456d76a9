"""Per-item signals: intent, sentiment, rule-based flags and competitor mentions.

Intent and sentiment are small scikit-learn estimators fitted on sentence embeddings of the labelled seed
examples shipped in ``pipeline/seed_data/intent_seed.jsonl`` (written for this project); a few lexical cues
(question mark, "please add", "crash"...) can be appended to the embedding so the classifier also sees the
surface form that short texts carry their intent in. Flags and competitor mentions are regular expressions:
cheap, explainable and easy to tune by configuration.

Typical use::

    model = SignalModel.from_seed(SentenceEmbedder())
    signals = model.signals(texts, kinds=kinds, embeddings=vectors, competitors=matcher)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from pipeline.embedding import Embedder

log = logging.getLogger(__name__)

INTENTS: tuple[str, ...] = ("bug_report", "feature_request", "complaint", "praise", "question")
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
FLAGS: tuple[str, ...] = ("churn_risk", "deal_blocker", "security")
SALES_KINDS = frozenset({"call_note", "field_note"})
SEED_FILE = "intent_seed.jsonl"


# --------------------------------------------------------------------------------------------- seed data


@dataclass(frozen=True)
class SeedExample:
    """One labelled example: ``intent`` in :data:`INTENTS`, ``sentiment`` in :data:`SENTIMENTS`."""

    text: str
    intent: str
    sentiment: str
    kind: str = "ticket"


def load_seed(path: str | Path | None = None) -> list[SeedExample]:
    """Read labelled examples from a JSONL file (default: the seed shipped with the package).

    Raises:
        ValueError: a line is not JSON or carries an unknown intent or sentiment (the line number is given).
    """
    if path is None:
        text = resources.files("pipeline").joinpath("seed_data", SEED_FILE).read_text(encoding="utf-8")
        where = f"pipeline/seed_data/{SEED_FILE}"
    else:
        text = Path(path).read_text(encoding="utf-8")
        where = str(path)
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example = SeedExample(
                text=row["text"],
                intent=row["intent"],
                sentiment=row["sentiment"],
                kind=row.get("kind", "ticket"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}:{number}: expected a JSON object with text, intent, sentiment") from exc
        if example.intent not in INTENTS or example.sentiment not in SENTIMENTS:
            raise ValueError(
                f"{where}:{number}: intent must be one of {INTENTS} and sentiment one of {SENTIMENTS}, "
                f"got {example.intent!r} / {example.sentiment!r}"
            )
        examples.append(example)
    return examples


# ----------------------------------------------------------------------------------------- lexical cues


def _alternatives(*parts: str) -> str:
    """One regex alternation from readable pieces."""
    return "|".join(parts)


_CUES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # question
        r"\?",
        r"^\W*(?:hi|hello|hey)?\W*(?:quick (?:question|q)\W*)?"
        r"(?:how|what|where|when|why|which|who|is|are|can|could|do|does|did|will|should|any way)\b",
        # feature request
        r"\b(?:"
        + _alternatives(
            r"please (?:add|allow|support|let|make|bring)",
            r"would (?:be|love)",
            r"it'?d be",
            "wish",
            r"feature (?:request|idea)",
            r"(?:can|could) (?:you|we) (?:add|get|make|support)",
            r"add (?:a|an|the|support|an option|the ability)",
            r"(?:ability|option|way) to",
            "support for",
            "suggestion",
            "would make it",
            r"hoping (?:for|you)",
            r"(?:only|just) missing",
            r"if (?:it|you) (?:had|added)",
            r"once you add",
            r"needs? (?:a|an) (?:way|option|setting)",
        )
        + r")\b",
        # bug report
        r"\b(?:"
        + _alternatives(
            r"crash\w*",
            "error",
            "bug",
            "broken",
            r"freez\w*",
            "hangs?",
            "stuck",
            "blank",
            "not working",
            r"(?:doesn'?t|does not|won'?t|can'?t|cannot|never) "
            r"(?:work|open|load|save|sync|arrive|show|fire|update|ring|play)\w*",
            r"fail\w*",
            "wrong",
            r"since (?:the|this|last|yesterday|update|version)",
            r"after (?:the|this|an?) (?:latest )?update",
            r"[45]\d\d",
        )
        + r")\b",
        # praise
        r"\b(?:"
        + _alternatives(
            "love",
            "great",
            "amazing",
            "awesome",
            "excellent",
            "fantastic",
            "brilliant",
            "perfect",
            "best",
            r"thank\w*",
            "kudos",
            "happy",
            r"recommend\w*",
            "impressed",
            "smooth",
            "intuitive",
            "5 stars",
            "five stars",
        )
        + r")\b",
        # complaint
        r"\b(?:"
        + _alternatives(
            "expensive",
            "overpriced",
            r"pric\w+",
            "paywall",
            "ads",
            r"spam\w*",
            "refund",
            "charged",
            "support",
            r"disappoint\w*",
            "terrible",
            "awful",
            "horrible",
            "waste",
            "useless",
            r"frustrat\w*",
            "slow",
            "clunky",
            "confusing",
            "unacceptable",
            "ridiculous",
            "rude",
        )
        + r")\b",
    )
)


def lexical_cues(texts: Sequence[str]) -> np.ndarray:
    """Binary surface cues per text (question form, request phrasing, defect words, praise, grievance).

    Returns:
        ``(len(texts), 6)`` float32 array of 0/1.
    """
    out = np.zeros((len(texts), len(_CUES)), dtype=np.float32)
    for i, text in enumerate(texts):
        for j, cue in enumerate(_CUES):
            if cue.search(text):
                out[i, j] = 1.0
    return out


def signal_features(
    embeddings: np.ndarray, texts: Sequence[str] | None = None, *, cue_weight: float = 0.5
) -> np.ndarray:
    """Embeddings, with the weighted :func:`lexical_cues` appended when ``texts`` are given.

    Returns:
        ``(n, dim)`` or ``(n, dim + 6)`` float32.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if texts is None or cue_weight == 0:
        return embeddings
    if len(texts) != len(embeddings):
        raise ValueError(f"got {len(texts)} texts for {len(embeddings)} embeddings; pass one text per row")
    return np.hstack([embeddings, cue_weight * lexical_cues(texts)])


# ------------------------------------------------------------------------------------------- estimators


class _LogisticOnLabels(BaseEstimator):
    """Shared fit/predict of the two estimators: a logistic regression over a closed set of labels."""

    labels: tuple[str, ...] = ()
    label_kind = ""
    C: float
    max_iter: int

    def _fit(self, X: np.ndarray, y: Sequence[str], class_weight: str | None) -> None:
        unknown = sorted(set(y) - set(self.labels))
        if unknown:
            raise ValueError(f"unknown {self.label_kind} labels {unknown}; use {self.labels}")
        self.model_ = LogisticRegression(C=self.C, class_weight=class_weight, max_iter=self.max_iter)
        self.model_.fit(np.asarray(X), np.asarray(y))
        self.classes_ = self.model_.classes_
        self.n_features_in_ = self.model_.n_features_in_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Returns: ``(n, n_classes)`` probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Returns: ``(n,)`` labels among ``labels``."""
        check_is_fitted(self, "model_")
        return self.model_.predict(np.asarray(X))


class IntentClassifier(ClassifierMixin, _LogisticOnLabels):
    """Logistic regression from feature rows to one of :data:`INTENTS`.

    Args:
        C: inverse regularisation strength of the logistic regression.
        class_weight: passed to :class:`~sklearn.linear_model.LogisticRegression`.
        max_iter: solver iterations.
    """

    labels = INTENTS
    label_kind = "intent"

    def __init__(self, *, C: float = 4.0, class_weight: str | None = "balanced", max_iter: int = 2000) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: Sequence[str]) -> IntentClassifier:
        self._fit(X, y, self.class_weight)
        return self


class SentimentScorer(_LogisticOnLabels):
    """Three-way logistic regression (negative, neutral, positive) with a signed score.

    Deliberately no ``ClassifierMixin``: its ``score(X, y)`` means accuracy, here ``score(X)`` is sentiment.

    Args:
        C: inverse regularisation strength.
        max_iter: solver iterations.
    """

    labels = SENTIMENTS
    label_kind = "sentiment"

    def __init__(self, *, C: float = 2.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: Sequence[str]) -> SentimentScorer:
        self._fit(X, y, "balanced")
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """P(positive) − P(negative) per row.

        Returns:
            ``(n,)`` float64 in [-1, 1].
        """
        proba = self.predict_proba(X)
        classes = list(self.classes_)

        def column(label: str) -> np.ndarray:
            return proba[:, classes.index(label)] if label in classes else np.zeros(len(proba))

        return np.clip(column("positive") - column("negative"), -1.0, 1.0)


# ------------------------------------------------------------------------------------------------ flags

_NEGATORS = re.compile(r"\b(?:not|no|never|without|nothing|none|hardly|neither|nor)\b|n['’]t\b", re.IGNORECASE)
# A negator only counts when it sits in the same clause, at most this many words before the cue.
_NEGATION_WINDOW_WORDS = 3
_CLAUSE_BREAK = re.compile(r"[.;:!?,()\n]|\b(?:but|however|although|though|yet)\b", re.IGNORECASE)

# Capitalised words after "switch to"/"moving to" that are product screens, not vendors.
_NOT_VENDORS = frozenset(
    (  # noqa: SIM905 - a word list reads better as one string
        "the a an our their your my this that settings dark light list grid table board calendar view mode "
        "monthly annual yearly weekly daily new old premium pro enterprise business basic free standard "
        "version mobile desktop web i we it"
    ).split()
)

_CHURN = re.compile(
    _alternatives(
        r"\bchurn(?:ed|ing|s)?\b",
        r"\bcancel\w*\s+(?:\w+\s+){0,3}?(?:subscriptions?|accounts?|contracts?|plans?|licen[cs]es?|services?"
        r"|renewal|membership|seats?|everything|with you)\b",
        r"\b(?:going to|gonna|will|we'?ll|i'?ll|plan(?:ning)? to|want to|about to|might|may|considering"
        r"|decided to|thinking (?:of|about)|ready to|had to|(?:we|i) (?:are|am)|we'?re|i'?m)"
        r"\s+(?:(?!(?:not|never|no)\b)\w+\s+)?cancel\w*",
        r"\bcancell?ation\b",
        r"\bcancell?ed (?:after|our|my|the subscription|the contract)",
        r"\b(?:not|won'?t|will not|don'?t plan to|do not plan to|unlikely to|no longer)\s+(?:be\s+)?renew\w*",
        r"\bnon-?renewal\b",
        r"\b(?:evaluat|look|shop|explor|consider|assess|compar|review)\w*\s+(?:\w+\s+)?(?:alternatives?"
        r"|competitors?|other (?:options|vendors|tools|providers|solutions|platforms|products))\b",
        r"\bshopping around\b",
        r"\b(?:switch|mov|migrat|go|leav)\w*\s+(?:over\s+)?(?:to|for)\s+"
        r"(?:another|a different|other|a competitor|a cheaper)\b",
        r"\bterminat\w*\s+(?:the|our|their|my)\s+(?:contract|agreement|subscription|account)",
        r"\buninstall\w*\b",
        r"\bdeleting (?:the|this) app\b",
    ),
    re.IGNORECASE,
)
# "switch to Asana": a capitalised name after a move verb; checked case-sensitively on the name.
_SWITCH_TO_NAME = re.compile(
    r"\b(?:switch|mov|migrat|go)\w*\s+(?:over\s+|back\s+)?to\s+(?P<name>[A-Z][\w.!-]*)", re.IGNORECASE
)

_SIGN = r"(?:sign|buy|purchase|commit|move forward|proceed|close|approve|go live)\w*"
_DEAL_BLOCKER = re.compile(
    _alternatives(
        r"\b(?:deal[- ]?breakers?|show[- ]?stoppers?|blockers?|hard requirement|must[- ]have before)\b",
        r"\bblocking (?:the )?(?:deal|signature|purchase|renewal)\b",
        r"\b(?:won'?t|will not|can'?t|cannot|unable to|not able to|refuse to)\s+(?:\w+\s+){0,2}?"
        + _SIGN
        + r"\s+(?:\w+\s+){0,3}?(?:until|unless|without)\b",
        r"\b(?:need|needs|require|requires)\s+(?:\w+\s+){0,6}?before\s+"
        r"(?:(?:they|we|he|she|legal|procurement|security)\s+)?(?:can\s+)?" + _SIGN,
        r"\b(?:going|went|leaning|chose|choosing|picked|selected|signed)\s+(?:with|towards?|for)\s+"
        r"(?:a |the )?(?:competitor|another vendor|other vendor)\b",
        r"\blost (?:the deal|to)\b",
    ),
    re.IGNORECASE,
)
# With a competitor named in the same note, these phrases make it "the alternative".
_ALTERNATIVE = re.compile(
    r"\b(?:"
    + _alternatives(
        "instead",
        "alternative",
        "going with",
        "went with",
        r"leaning (?:towards?|to)",
        r"prefer\w*",
        "chose",
        "choosing",
        "picked",
        "selected",
        r"switch\w*",
        "moving to",
        "evaluating",
        "comparing",
        "bake-?off",
        r"vs\.?",
        "versus",
        "cheaper",
        "lost to",
        r"shortlist\w*",
    )
    + r")\b",
    re.IGNORECASE,
)
_SECURITY = re.compile(
    r"\b(?:"
    + _alternatives(
        r"vulnerab\w+",
        r"security (?:issue|hole|flaw|bug|incident|problem|breach|risk|concern|vulnerability|gap)s?",
        r"data (?:was |were |is |got |has been )?leak\w*",
        r"leak\w* (?:of )?(?:data|credentials?|passwords?|tokens?|(?:api )?keys?|pii|emails?|customer data"
        r"|personal data)",
        r"breach\w*",
        "xss",
        r"cross[- ]site (?:scripting|request)",
        "csrf",
        "sql injection",
        "injection attack",
        r"(?:auth\w*|2fa|mfa|sso|login|permission)s? bypass",
        r"bypass\w* (?:the )?(?:sso|2fa|mfa|login|authentication|permissions?|access control)",
        "privilege escalation",
        "remote code execution",
        "rce",
        r"cve-\d{4}-\d+",
        r"exploit\w*",
        r"unauthori[sz]ed access",
        r"exposed (?:\w+ )?(?:data|credentials|api keys?|tokens|passwords|pii|records)",
        r"session hijack\w*",
        r"(?:can|could) see (?:other|another) (?:customers?|users?|tenants?|compan\w+|accounts?)'?s? "
        r"(?:data|records)",
        "gdpr",
        "ccpa",
        "hipaa",
        "phishing",
        "malware",
        "ransomware",
        "idor",
        "open redirect",
    )
    + r")\b",
    re.IGNORECASE,
)


def _negated(text: str, start: int) -> bool:
    """True when a negator sits in the same clause within a few words before ``start``."""
    before = text[max(0, start - 120) : start]
    clause = _CLAUSE_BREAK.split(before)[-1]
    window = " ".join(clause.split()[-_NEGATION_WINDOW_WORDS:])
    return bool(_NEGATORS.search(window))


def _affirmed(pattern: re.Pattern[str], text: str) -> bool:
    return any(not _negated(text, m.start()) for m in pattern.finditer(text))


def _switches_to_vendor(text: str, competitors: CompetitorMatcher | None = None) -> bool:
    """A move to a vendor ("switch to Asana"): a capitalised non-screen name or a configured competitor."""
    for m in _SWITCH_TO_NAME.finditer(text):
        if _negated(text, m.start()):
            continue
        name = m.group("name")
        if name[0].isupper() and name.casefold().strip(".!-") not in _NOT_VENDORS:
            return True
        start = m.start("name")
        if competitors is not None and competitors.find(text[start : start + 60]):
            return True
    return False


def _normalise_kind(kind: str | None) -> str:
    return re.sub(r"[\s-]+", "_", (kind or "").strip().lower())


def detect_flags(
    text: str, kind: str | None = None, *, competitors: CompetitorMatcher | None = None
) -> dict[str, bool]:
    """Rule-based flags for one item.

    ``deal_blocker`` is only raised for sales notes (``kind`` ``call_note`` or ``field_note``); a named
    competitor counts as a blocker there when the note presents it as the alternative (needs ``competitors``).
    A cue preceded in its clause by a negator ("not a blocker", "no plans to cancel") does not flag.

    Returns:
        ``{"churn_risk": bool, "deal_blocker": bool, "security": bool}``.
    """
    text = text or ""
    named = competitors.find(text) if competitors is not None else []
    churn = _affirmed(_CHURN, text) or _switches_to_vendor(text, competitors if named else None)
    blocker = False
    if _normalise_kind(kind) in SALES_KINDS:
        blocker = _affirmed(_DEAL_BLOCKER, text) or (bool(named) and _affirmed(_ALTERNATIVE, text))
    return {"churn_risk": churn, "deal_blocker": blocker, "security": _affirmed(_SECURITY, text)}


# ---------------------------------------------------------------------------------------- competitors


class CompetitorMatcher:
    """Finds configured competitors in text with one compiled regular expression.

    Matching is case-insensitive, on word boundaries that also work for aliases with punctuation
    ("Aha!", "aha.io"): an alias must not be preceded or followed by a letter or digit. Whitespace inside an
    alias matches any run of whitespace.

    Args:
        competitors: canonical name -> aliases; the canonical name is always an alias of itself.
        case_sensitive: aliases that only match with exactly this case, for names that are also common
            words ("Notion", "Front").

    Raises:
        ValueError: an alias is empty or belongs to two canonical names.
    """

    def __init__(self, competitors: Mapping[str, Iterable[str]], *, case_sensitive: Collection[str] = ()) -> None:
        self.competitors = {name: list(aliases) for name, aliases in competitors.items()}
        self.case_sensitive = frozenset(case_sensitive)
        self._canonical: dict[str, str] = {}
        for name, aliases in self.competitors.items():
            for alias in [name, *aliases]:
                key = self._key(alias)
                if not key:
                    raise ValueError(f"competitor {name!r} has an empty alias; remove it from the configuration")
                owner = self._canonical.setdefault(key, name)
                if owner != name:
                    raise ValueError(f"alias {alias!r} is configured for both {owner!r} and {name!r}")
        exact = {" ".join(a.split()) for a in self.case_sensitive}
        # Longest first, so "aha.io" wins over "aha" at the same position.
        aliases = sorted(
            {" ".join(a.split()) for name, al in self.competitors.items() for a in [name, *al]},
            key=lambda a: (-len(a), a),
        )
        parts = []
        for alias in aliases:
            body = r"\s+".join(re.escape(word) for word in alias.split())
            parts.append(f"(?-i:{body})" if alias in exact else body)
        self._pattern: re.Pattern[str] | None = (
            re.compile(r"(?<![^\W_])(?:" + "|".join(parts) + r")(?![^\W_])", re.IGNORECASE) if parts else None
        )

    @staticmethod
    def _key(alias: str) -> str:
        return " ".join(alias.split()).casefold()

    def find(self, text: str) -> list[str]:
        """Canonical names mentioned in ``text``, each once, in order of first mention."""
        if self._pattern is None or not text:
            return []
        found: dict[str, None] = {}
        for match in self._pattern.finditer(text):
            name = self._canonical.get(self._key(match.group()))
            if name is not None:
                found.setdefault(name, None)
        return list(found)


# ----------------------------------------------------------------------------------------------- model


@dataclass
class ItemSignals:
    """Everything the pipeline stores per feedback item."""

    intent: str
    intent_confidence: float
    sentiment: float
    flags: dict[str, bool] = field(default_factory=dict)
    competitors: list[str] = field(default_factory=list)


_SEED_CACHE: dict[tuple[str, str, float, float, float], tuple[IntentClassifier, SentimentScorer]] = {}


class SignalModel:
    """Intent and sentiment estimators bound to the embedder whose vectors they were fitted on.

    Args:
        embedder: produces the vectors (used only when ``embeddings`` are not passed in).
        intent: a fitted :class:`IntentClassifier`.
        sentiment: a fitted :class:`SentimentScorer`.
        cue_weight: weight of the lexical cues appended to the embeddings; 0 uses embeddings only.
            Must be the value the estimators were fitted with.
    """

    def __init__(
        self, embedder: Embedder, intent: IntentClassifier, sentiment: SentimentScorer, *, cue_weight: float = 0.5
    ) -> None:
        self.embedder = embedder
        self.intent = intent
        self.sentiment = sentiment
        self.cue_weight = cue_weight

    @classmethod
    def from_seed(
        cls,
        embedder: Embedder,
        *,
        seed_path: str | Path | None = None,
        cue_weight: float = 0.5,
        intent_C: float = 4.0,
        sentiment_C: float = 2.0,
    ) -> SignalModel:
        """Embed the seed examples once per embedder name and fit both estimators (cached in memory)."""
        key = (embedder.name, str(seed_path or SEED_FILE), cue_weight, intent_C, sentiment_C)
        fitted = _SEED_CACHE.get(key)
        if fitted is None:
            examples = load_seed(seed_path)
            texts = [e.text for e in examples]
            log.info("fitting intent and sentiment on %d seed examples with %s", len(texts), embedder.name)
            X = signal_features(embedder.encode(texts), texts, cue_weight=cue_weight)
            fitted = (
                IntentClassifier(C=intent_C).fit(X, [e.intent for e in examples]),
                SentimentScorer(C=sentiment_C).fit(X, [e.sentiment for e in examples]),
            )
            _SEED_CACHE[key] = fitted
        return cls(embedder, *fitted, cue_weight=cue_weight)

    def features(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Returns: ``(len(texts), n_features)`` rows the estimators take."""
        if embeddings is None:
            embeddings = self.embedder.encode(texts)
        return signal_features(embeddings, texts, cue_weight=self.cue_weight)

    def predict_intent(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Returns: ``(n,)`` intent labels."""
        return self.intent.predict(self.features(texts, embeddings))

    def score_sentiment(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Returns: ``(n,)`` sentiment in [-1, 1]."""
        return self.sentiment.score(self.features(texts, embeddings))

    def intent_and_sentiment(
        self, texts: Sequence[str], embeddings: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``predict_intent`` and ``score_sentiment`` from one computation of the features (the cues scan every text).

        Returns:
            ``(n,)`` intent labels and ``(n,)`` sentiment in [-1, 1].
        """
        X = self.features(texts, embeddings)
        return self.intent.predict(X), self.sentiment.score(X)

    def signals(
        self,
        texts: Sequence[str],
        *,
        kinds: Sequence[str | None] | None = None,
        embeddings: np.ndarray | None = None,
        competitors: CompetitorMatcher | None = None,
    ) -> list[ItemSignals]:
        """Intent, sentiment, flags and competitors for each text.

        Args:
            texts: the (redacted) feedback texts.
            kinds: feedback kind per text (``ticket``, ``call_note``...); decides whether deal blockers apply.
            embeddings: ``(n, dim)`` vectors already computed for ``texts`` by the same embedder.
            competitors: the configured matcher, if any.
        """
        if len(texts) == 0:
            return []
        if kinds is not None and len(kinds) != len(texts):
            raise ValueError(f"got {len(kinds)} kinds for {len(texts)} texts; pass one kind per text or None")
        X = self.features(texts, embeddings)
        proba = self.intent.predict_proba(X)
        labels = self.intent.classes_[proba.argmax(axis=1)]
        scores = self.sentiment.score(X)
        out = []
        for i, text in enumerate(texts):
            kind = kinds[i] if kinds is not None else None
            out.append(
                ItemSignals(
                    intent=str(labels[i]),
                    intent_confidence=float(proba[i].max()),
                    sentiment=float(scores[i]),
                    flags=detect_flags(text, kind, competitors=competitors),
                    competitors=competitors.find(text) if competitors is not None else [],
                )
            )
        return out
