"""Theme labels from class-based TF-IDF, and representative quotes."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from pipeline.embedding import HashingEmbedder
from pipeline.labeling import ThemeLabeler, representative_quotes

THEMES = {
    0: ["Our SSO login fails with SAML from Okta", "SAML assertion rejected during SSO login",
        "cannot finish SSO login, the SAML response is invalid", "SSO login loops after the SAML redirect"],
    1: ["CSV export is missing the totals column", "the CSV export times out on large reports",
        "CSV export should include invoice dates", "CSV export writes dates in the wrong format"],
    2: ["the iOS app crash on startup", "app crash on iOS when opening settings",
        "after the upgrade the iOS app crash never stops", "iOS app crash while uploading photos"],
    3: ["email notifications arrive twice", "no email notifications for new comments",
        "turn off email notifications for mentions", "email notifications are delayed by hours"],
}
FILLER = ["Hi team, thanks!", "Please help, reach me at [EMAIL] or [PHONE].", "Just need this fixed, customer issue.",
          "Card [CARD] IBAN [IBAN] from [IP], see [URL].", "Ticket 48213, thanks a lot", ""]


def corpus(per_theme: int = 40, noise: int = 10, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for theme, lines in THEMES.items():
        for _ in range(per_theme):
            texts.append(f"{rng.choice(FILLER)} {rng.choice(lines)} {rng.integers(100, 99999)}")
            labels.append(theme)
    for _ in range(noise):
        texts.append(f"{rng.choice(FILLER)} the weather in Lisbon was lovely")
        labels.append(-1)
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def fitted() -> ThemeLabeler:
    texts, labels = corpus()
    return ThemeLabeler().fit(texts, labels)


def test_labels_name_each_theme_by_its_distinctive_words(fitted: ThemeLabeler) -> None:
    labels = {t: label.lower() for t, label in fitted.labels_.items()}
    assert "sso" in labels[0] or "saml" in labels[0]
    assert "csv" in labels[1] and "export" in labels[1]
    assert "crash" in labels[2] or "ios" in labels[2]
    assert "notifications" in labels[3]
    assert fitted.labels_[0] == "SSO login / SAML"  # bigram over its unigrams, acronyms as written
    assert "iOS" in " ".join(fitted.keywords_[2]) or "ios" in fitted.keywords_[2]
    assert set(fitted.keywords_) == {0, 1, 2, 3}  # noise gets no label
    assert list(fitted.classes_) == [0, 1, 2, 3]


def test_acronym_spelling_comes_from_the_texts(fitted: ThemeLabeler) -> None:
    assert "iOS" in fitted.labels_[2] or "App crash" in fitted.labels_[2]
    assert "IOS" not in fitted.labels_[2] and "Ios" not in fitted.labels_[2]


def test_placeholders_numbers_and_filler_never_become_keywords(fitted: ThemeLabeler) -> None:
    banned = {"phone", "card", "iban", "ip", "url", "hi", "thanks", "team", "please", "issue", "customer",
              "just", "need", "ticket", "lisbon"}
    for theme, words in fitted.keywords_.items():
        tokens = {w for phrase in words for w in phrase.split()}
        assert not tokens & banned, (theme, words)
        assert not any(re.fullmatch(r"\d+", w) for w in tokens), words
        if theme != 3:
            # "[EMAIL]" is a placeholder, not the word email: only the notifications theme says email.
            assert "email" not in tokens, (theme, words)
    assert "email" in {w for phrase in fitted.keywords_[3] for w in phrase.split()}


def test_placeholders_concentrated_in_one_theme_are_still_removed() -> None:
    # Every invitation text carries redacted addresses, so an unstripped "[EMAIL]" would top that theme.
    invites = [f"invite [EMAIL] and [EMAIL] to workspace, call [PHONE] seat {i}" for i in range(20)]
    exports = [f"export dashboard to pdf report {i}" for i in range(20)]
    labeler = ThemeLabeler().fit(invites + exports, np.repeat([0, 1], 20))
    tokens = {w for phrase in labeler.keywords_[0] for w in phrase.split()}
    assert {"invite", "workspace"} <= tokens
    assert not tokens & {"email", "phone"}


def test_two_word_phrases_are_words_written_next_to_each_other() -> None:
    # Dropping "of only" first would join "instead" and "csv" into a phrase nobody wrote.
    exports = [f"we would love an xlsx export instead of only csv for report {i}" for i in range(20)]
    invites = [f"invite guests to the workspace from the admin page {i}" for i in range(20)]
    labeler = ThemeLabeler(top_n_words=30).fit(exports + invites, np.repeat([0, 1], 20))
    assert "xlsx export" in labeler.keywords_[0]
    written = {" ".join(pair) for text in exports + invites for pair in itertools.pairwise(text.split())}
    for theme in (0, 1):
        assert all(k in written for k in labeler.keywords_[theme] if " " in k), labeler.keywords_[theme]


def test_label_shape(fitted: ThemeLabeler) -> None:
    for label in fitted.labels_.values():
        assert 0 < len(label) <= 60
        words = [w.lower() for w in re.findall(r"\w+", label)]
        assert len(words) == len(set(words)), label
        assert label[0].isupper()
    assert all(len(words) == 8 for words in fitted.keywords_.values())
    assert all(s == sorted(s, reverse=True) for s in fitted.scores_.values())


def test_fit_is_deterministic_and_order_free(fitted: ThemeLabeler) -> None:
    texts, labels = corpus()
    again = ThemeLabeler().fit(texts, labels)
    assert again.labels_ == fitted.labels_ and again.keywords_ == fitted.keywords_
    perm = np.random.default_rng(1).permutation(len(texts))
    shuffled = ThemeLabeler().fit([texts[i] for i in perm], labels[perm])
    assert shuffled.labels_ == fitted.labels_ and shuffled.keywords_ == fitted.keywords_


def test_label_length_limit_cuts_at_a_word() -> None:
    texts = ["supercalifragilistic onboarding checklist wizard"] * 3 + ["other words entirely here"] * 3
    labeler = ThemeLabeler(max_label_chars=25).fit(texts, np.array([0, 0, 0, 1, 1, 1]))
    for label in labeler.labels_.values():
        assert len(label) <= 25 and not label.endswith(" ")


def test_tiny_and_empty_corpora() -> None:
    one = ThemeLabeler().fit(["billing portal broken"], np.array([0]))  # min_df falls back to 1
    assert "billing" in one.labels_[0].lower() or "portal" in one.labels_[0].lower()
    only_filler = ThemeLabeler(min_df=1).fit(["thanks team", "hi please"], np.array([0, 1]))
    assert only_filler.labels_ == {0: "Miscellaneous", 1: "Miscellaneous"}
    assert only_filler.keywords_ == {0: [], 1: []}


def test_labels_must_match_texts() -> None:
    with pytest.raises(ValueError, match="one entry per text"):
        ThemeLabeler().fit(["a", "b"], np.array([0]))
    with pytest.raises(ValueError, match="stop_words"):
        ThemeLabeler(stop_words="french").fit(["a b", "c d"], np.array([0, 0]))


# --- representative quotes ---------------------------------------------------------------------------

def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_quotes_are_nearest_the_centroid_without_duplicates() -> None:
    texts, labels = corpus(per_theme=30)
    X = HashingEmbedder(dim=64).encode(texts)
    k = 4
    centroids = unit(np.stack([X[labels == t].mean(axis=0) for t in range(k)]))
    quotes = representative_quotes(X, labels, centroids, texts)
    assert set(quotes) == set(range(k))
    for theme, rows in quotes.items():
        assert 3 <= len(rows) <= 5
        assert all(labels[r] == theme for r in rows)
        members = np.flatnonzero(labels == theme)
        sims = X[members] @ centroids[theme]
        lengths = np.array([len(texts[i].strip()) for i in members])
        adjusted = sims - 0.03 * ((lengths < 40) | (lengths > 300))
        # The first quote is the best by adjusted similarity (ties between equal vectors may go either way).
        assert adjusted[int(np.flatnonzero(members == rows[0])[0])] >= adjusted.max() - 1e-6
        normalised = [" ".join(re.findall(r"\w+", re.sub(r"\[[A-Z]+\]", " ", texts[r]).lower())) for r in rows]
        assert len(set(normalised)) == len(rows)
        pair = X[rows] @ X[rows].T
        assert np.all(pair[np.triu_indices(len(rows), 1)] <= 0.92)


def test_quotes_skip_near_duplicates_and_fill_to_the_minimum() -> None:
    base = unit(np.array([1.0, 0.0, 0.0, 0.0]))
    nudge = unit(np.array([0.99, 0.05, 0.0, 0.0]))  # cosine ~0.9987 to base
    other = unit(np.array([0.8, 0.6, 0.0, 0.0]))
    third = unit(np.array([0.8, 0.0, 0.6, 0.0]))
    X = np.stack([base, base, nudge, other, third])
    texts = ["Login with SAML fails for every user in our org",
             "login with saml fails for every user in our org!",  # same text once normalised
             "Login with SAML fails for all users in our organisation",
             "SAML metadata upload rejects our certificate file",
             "Okta group mapping does not sync to roles on login"]
    labels = np.zeros(5, dtype=int)
    centroid = base[None, :]
    assert representative_quotes(X, labels, centroid, texts) == {0: [0, 3, 4]}
    # With only two distinct directions the near-duplicate comes back to reach min_quotes.
    assert representative_quotes(X[:4], labels[:4], centroid, texts[:4]) == {0: [0, 3, 2]}
    assert representative_quotes(X[:4], labels[:4], centroid, texts[:4], min_quotes=2) == {0: [0, 3]}


def test_quotes_prefer_readable_lengths_in_close_races() -> None:
    X = unit(np.array([[1.0, 0.10], [1.0, 0.12], [1.0, 0.9]]))
    texts = ["SSO pls", "Our SSO login fails every morning after the SAML certificate rotated",
             "Completely different complaint about the billing page layout"]
    labels = np.array([0, 0, 0])
    centroid = unit(np.array([[1.0, 0.0]]))
    assert representative_quotes(X, labels, centroid, texts, n=1) == {0: [1]}
    assert representative_quotes(X, labels, centroid, texts, n=1, length_penalty=0.0) == {0: [0]}


def test_quotes_ignore_unassigned_and_check_shapes() -> None:
    X = unit(np.eye(3))
    texts = ["alpha beta gamma", "delta epsilon", "zeta eta"]
    assert representative_quotes(X, np.array([-1, 0, -1]), X[:1], texts) == {0: [1]}
    assert representative_quotes(X, np.array([-1, -1, -1]), X[:1], texts) == {}
    with pytest.raises(ValueError, match="no centroid"):
        representative_quotes(X, np.array([0, 1, 2]), X[:1], texts)
    with pytest.raises(ValueError, match="one entry per item"):
        representative_quotes(X, np.array([0, 0]), X[:1], texts)


def test_label_does_not_repeat_a_word_in_its_plural() -> None:
    import numpy as np

    from pipeline.labeling import ThemeLabeler

    texts = (["dashboard loads slowly", "dashboards are slow to load", "the dashboard takes ages to load",
              "slow dashboards every morning", "dashboard load time is terrible", "our dashboards load slowly"] * 3
             + ["export to csv fails", "csv export is broken", "cannot export csv files", "csv export times out",
                "export csv button does nothing", "large csv export fails"] * 3)
    labels = np.array([0] * 18 + [1] * 18)
    label = ThemeLabeler().fit(texts, labels).labels_[0].lower()
    words = [w for part in label.split(" / ") for w in part.split()]
    assert not ("dashboard" in words and "dashboards" in words), label


def test_a_strong_word_is_not_lost_to_a_phrase_repeating_the_label() -> None:
    # "summaries" pairs with "ai" in the bigram "ai summaries"; once "AI" leads the label, that bigram repeats
    # it. The second phrase used to be skipped for it, and the label took a later, weaker word instead.
    import numpy as np

    from pipeline.labeling import ThemeLabeler

    labeler = ThemeLabeler()
    candidates = [("ai", 1.0), ("summaries", 0.7), ("ai summaries", 0.5), ("ai assistant", 0.45), ("threads", 0.3)]
    texts = np.array(["when will AI summaries be available", "an AI assistant that summarizes long threads"])
    assert labeler._label(candidates, texts) == "AI / Summaries"
