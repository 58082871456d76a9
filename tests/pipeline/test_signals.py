"""Tests for per-item signals: flags, competitor mentions, intent and sentiment."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from pipeline.embedding import HashingEmbedder
from pipeline.signals import (
    FLAGS,
    INTENTS,
    CompetitorMatcher,
    IntentClassifier,
    ItemSignals,
    SentimentScorer,
    SignalModel,
    detect_flags,
    lexical_cues,
    load_seed,
    signal_features,
)

ROOT = Path(__file__).resolve().parents[2]
HOLDOUT = ROOT / "benchmarks" / "data" / "intent_holdout.jsonl"

COMPETITORS = {
    "Productboard": ["productboard", "product board"],
    "Aha!": ["aha.io", "Aha"],
    "Canny": ["canny", "canny.io"],
    "Notion": [],
}


@pytest.fixture(scope="module")
def matcher() -> CompetitorMatcher:
    return CompetitorMatcher(COMPETITORS, case_sensitive=["Notion"])


# ---------------------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "text",
    [
        "If this isn't fixed by Friday we will cancel our subscription.",
        "How do I cancel my account?",
        "They are not renewing next year.",
        "Customer told us they won't renew the contract.",
        "We're evaluating alternatives for Q3.",
        "Procurement is looking at other vendors.",
        "Thinking about switching to Asana.",
        "They churned last quarter after the price change.",
        "High churn risk: champion left the company.",
        "Uninstalling, this is useless.",
    ],
)
def test_churn_risk_flags(text: str) -> None:
    assert detect_flags(text, "ticket")["churn_risk"]


@pytest.mark.parametrize(
    "text",
    [
        "No plans to cancel, they are very happy.",
        "They are not evaluating alternatives at this point.",
        "Customer will never cancel, they love it.",
        "The cancel button on the form does nothing.",
        "Please switch to dark mode by default.",
        "Switch to the list view and the page crashes.",
        "Renewal signed early with an upsell.",
        "",
    ],
)
def test_churn_risk_does_not_flag_negated_or_unrelated(text: str) -> None:
    assert not detect_flags(text, "ticket")["churn_risk"]


@pytest.mark.parametrize(
    "text",
    [
        "Won't sign until we have SCIM provisioning.",
        "SAML SSO is a deal breaker for them.",
        "Main blocker: no EU data residency.",
        "They need a SOC 2 report before they can sign.",
        "Legal requires a DPA before procurement can approve.",
        "Leaning towards a competitor because of price.",
        "Pricing isn't a problem, but the missing audit log is a blocker.",
    ],
)
def test_deal_blocker_flags_in_sales_notes(text: str) -> None:
    assert detect_flags(text, "call_note")["deal_blocker"]
    assert detect_flags(text, "field note")["deal_blocker"]


@pytest.mark.parametrize(
    "text",
    [
        "SSO is not a blocker for them.",
        "Pricing isn't a deal breaker.",
        "No blockers identified, legal is reviewing the MSA.",
        "Great call, they want to expand to two more teams.",
    ],
)
def test_deal_blocker_respects_negation(text: str) -> None:
    assert not detect_flags(text, "call_note")["deal_blocker"]


def test_deal_blocker_only_for_sales_notes() -> None:
    text = "This bug is a blocker for our release."
    assert not detect_flags(text, "ticket")["deal_blocker"]
    assert not detect_flags(text, None)["deal_blocker"]
    assert detect_flags(text, "call_note")["deal_blocker"]


def test_named_competitor_as_the_alternative_is_a_blocker(matcher: CompetitorMatcher) -> None:
    note = "Leaning towards Productboard because it's cheaper."
    assert detect_flags(note, "field_note", competitors=matcher)["deal_blocker"]
    # merely mentioning a competitor they use today is not a blocker
    assert not detect_flags("They use Productboard today and like our UI.", "field_note", competitors=matcher)[
        "deal_blocker"
    ]
    # without a matcher the competitor cannot be recognised
    assert not detect_flags(note, "field_note")["deal_blocker"]


def test_switching_to_a_lowercase_competitor_is_churn(matcher: CompetitorMatcher) -> None:
    assert detect_flags("we're moving to canny.io next month", "chat", competitors=matcher)["churn_risk"]


@pytest.mark.parametrize(
    "text",
    [
        "Found a stored XSS in the comment editor.",
        "Possible data leak: exports include other tenants' rows.",
        "I can see another customer's data in my dashboard!",
        "SSO bypass: users can log in with any password via the mobile app.",
        "Is this vulnerability (CVE-2024-3094) affecting you?",
        "We need to handle a GDPR deletion request.",
        "Your API leaked credentials in the error page.",
    ],
)
def test_security_flags(text: str) -> None:
    assert detect_flags(text, "ticket")["security"]


@pytest.mark.parametrize(
    "text",
    [
        "No security issues found.",
        "This is not a vulnerability, just a display glitch.",
        "The export button is greyed out.",
    ],
)
def test_security_respects_negation(text: str) -> None:
    assert not detect_flags(text, "ticket")["security"]


def test_flags_have_all_keys() -> None:
    assert set(detect_flags("anything", "review")) == set(FLAGS)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), kind=st.one_of(st.none(), st.sampled_from(["call_note", "ticket", ""])))
def test_detect_flags_never_raises(text: str, kind: str | None) -> None:
    flags = detect_flags(text, kind, competitors=CompetitorMatcher(COMPETITORS))
    assert set(flags) == set(FLAGS)
    assert all(isinstance(value, bool) for value in flags.values())


# ----------------------------------------------------------------------------------------- competitors


def test_competitor_aliases_fold_to_canonical_in_order_of_first_mention(matcher: CompetitorMatcher) -> None:
    text = "Compared CANNY.io with aha.io; Canny again, then product   board and Aha! last."
    assert matcher.find(text) == ["Canny", "Aha!", "Productboard"]


def test_competitor_word_boundaries(matcher: CompetitorMatcher) -> None:
    assert matcher.find("The cannyon trail was uncanny.") == []
    assert matcher.find("ahaha, that is funny") == []
    assert matcher.find("see www.aha.io/roadmaps") == ["Aha!"]
    assert matcher.find("We use canny.") == ["Canny"]
    assert matcher.find("Canny's widget") == ["Canny"]
    assert matcher.find("(productboard)") == ["Productboard"]


def test_competitor_case_insensitive_unless_configured(matcher: CompetitorMatcher) -> None:
    assert matcher.find("PRODUCTBOARD and Canny") == ["Productboard", "Canny"]
    assert matcher.find("I have no notion of what that means") == []
    assert matcher.find("They keep specs in Notion.") == ["Notion"]


def test_competitor_configuration_errors() -> None:
    with pytest.raises(ValueError, match="both"):
        CompetitorMatcher({"A": ["shared"], "B": ["Shared"]})
    with pytest.raises(ValueError, match="empty alias"):
        CompetitorMatcher({"A": ["  "]})
    assert CompetitorMatcher({}).find("anything") == []


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_competitor_find_never_raises(text: str) -> None:
    found = CompetitorMatcher(COMPETITORS, case_sensitive=["Notion"]).find(text)
    assert len(found) == len(set(found))
    assert set(found) <= set(COMPETITORS)


# ------------------------------------------------------------------------------------------ seed data


def test_shipped_seed_covers_every_intent() -> None:
    seed = load_seed()
    counts = Counter(example.intent for example in seed)
    assert set(counts) == set(INTENTS)
    assert min(counts.values()) >= 80
    assert len({example.text.lower() for example in seed}) == len(seed)


def test_holdout_does_not_overlap_the_seed() -> None:
    seed = {example.text.lower() for example in load_seed()}
    holdout = {example.text.lower() for example in load_seed(HOLDOUT)}
    assert len(holdout) >= 100
    assert not seed & holdout


def test_load_seed_reports_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    path.write_text(
        json.dumps({"text": "ok", "intent": "praise", "sentiment": "positive"})
        + "\n"
        + json.dumps({"text": "bad", "intent": "rant", "sentiment": "negative"})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"seed.jsonl:2"):
        load_seed(path)


# ---------------------------------------------------------------------------------------- estimators


@pytest.fixture(scope="module")
def seed_features() -> tuple[np.ndarray, list[str], list[str]]:
    seed = load_seed()
    texts = [example.text for example in seed]
    X = signal_features(HashingEmbedder(dim=64).encode(texts), texts)
    return X, [e.intent for e in seed], [e.sentiment for e in seed]


def test_lexical_cues_shape() -> None:
    cues = lexical_cues(["How do I export?", "Please add dark mode", "It crashes", "Love it", "Too expensive"])
    assert cues.shape == (5, 6)
    assert cues.dtype == np.float32
    assert cues[0, 0] == 1 and cues[1, 2] == 1 and cues[2, 3] == 1 and cues[3, 4] == 1 and cues[4, 5] == 1


def test_signal_features_checks_lengths() -> None:
    with pytest.raises(ValueError, match="one text per row"):
        signal_features(np.zeros((2, 4), dtype=np.float32), ["only one"])
    assert signal_features(np.zeros((2, 4)), None).shape == (2, 4)


def test_intent_classifier_shapes(seed_features: tuple[np.ndarray, list[str], list[str]]) -> None:
    X, intents, _ = seed_features
    classifier = IntentClassifier()
    assert classifier.fit(X, intents) is classifier
    assert sorted(classifier.classes_) == sorted(INTENTS)
    assert classifier.predict(X[:7]).shape == (7,)
    proba = classifier.predict_proba(X[:7])
    assert proba.shape == (7, len(INTENTS))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    # a bag-of-words fake still separates the seed it was fitted on
    assert (classifier.predict(X) == np.array(intents)).mean() > 0.7


def test_estimators_follow_sklearn_grammar(seed_features: tuple[np.ndarray, list[str], list[str]]) -> None:
    X, intents, _ = seed_features
    assert IntentClassifier(C=2.0).get_params()["C"] == 2.0
    assert clone(IntentClassifier(C=3.0)).C == 3.0
    with pytest.raises(NotFittedError):
        IntentClassifier().predict(X)
    with pytest.raises(NotFittedError):
        SentimentScorer().score(X)
    with pytest.raises(ValueError, match="unknown intent"):
        IntentClassifier().fit(X[:3], ["praise", "rant", "question"])


def test_sentiment_score_in_range(seed_features: tuple[np.ndarray, list[str], list[str]]) -> None:
    X, _, sentiments = seed_features
    scorer = SentimentScorer().fit(X, sentiments)
    scores = scorer.score(X)
    assert scores.shape == (len(X),)
    assert scores.min() >= -1.0 and scores.max() <= 1.0
    labels = np.array(sentiments)
    assert scores[labels == "positive"].mean() > scores[labels == "negative"].mean()


class CountingEmbedder(HashingEmbedder):
    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim)
        self.calls = 0

    @property
    def name(self) -> str:
        return f"counting-{self.dim}"

    def encode(self, texts):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().encode(texts)


def test_signal_model_from_seed_is_cached_and_reuses_embeddings(matcher: CompetitorMatcher) -> None:
    embedder = CountingEmbedder()
    first = SignalModel.from_seed(embedder)
    second = SignalModel.from_seed(embedder)
    assert first.intent is second.intent and embedder.calls == 1

    texts = [
        "The export crashes since the update, we will cancel our subscription.",
        "Leaning towards Productboard, SSO is a deal breaker.",
    ]
    vectors = embedder.encode(texts)
    calls = embedder.calls
    signals = first.signals(texts, kinds=["ticket", "call_note"], embeddings=vectors, competitors=matcher)
    assert embedder.calls == calls
    assert [type(s) for s in signals] == [ItemSignals, ItemSignals]
    assert all(s.intent in INTENTS and 0 < s.intent_confidence <= 1 and -1 <= s.sentiment <= 1 for s in signals)
    assert signals[0].flags["churn_risk"] and not signals[0].flags["deal_blocker"]
    assert signals[1].flags["deal_blocker"] and signals[1].competitors == ["Productboard"]
    assert first.signals([]) == []
    with pytest.raises(ValueError, match="one kind per text"):
        first.signals(texts, kinds=["ticket"])


def test_intent_and_sentiment_equal_the_two_separate_calls() -> None:
    embedder = CountingEmbedder()
    model = SignalModel.from_seed(embedder)
    texts = ["How do I export to CSV?", "Love the new dashboard!", "The sync fails every night, fix it."]
    vectors = embedder.encode(texts)
    intents, sentiments = model.intent_and_sentiment(texts, vectors)
    assert list(intents) == list(model.predict_intent(texts, vectors))
    assert sentiments.tolist() == model.score_sentiment(texts, vectors).tolist()


# ------------------------------------------------------------------------------------------ real model


@pytest.mark.slow
def test_real_model_gets_obvious_examples_right() -> None:
    from pipeline.embedding import SentenceEmbedder

    model = SignalModel.from_seed(SentenceEmbedder())
    examples = {
        "The app crashes every time I open the settings page.": "bug_report",
        "Please add an export to Google Sheets.": "feature_request",
        "Way too expensive and support never answers.": "complaint",
        "Absolutely love this app, it saves me hours every week!": "praise",
        "How do I change my billing email?": "question",
    }
    texts = list(examples)
    assert list(model.predict_intent(texts)) == list(examples.values())
    scores = model.score_sentiment(texts)
    assert scores[2] < -0.3 and scores[3] > 0.3
