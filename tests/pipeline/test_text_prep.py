"""What the embedding model reads: spoken-language fillers out, words that carry meaning kept."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.embedding import SentenceEmbedder
from pipeline.text_prep import embedding_text


# What the rules take out is pinned here: a change to it also needs a migration that drops the stored vectors
# of the texts it reads differently, as migrations/versions/0005 did when the rules came in.
@pytest.mark.parametrize(("spoken", "read"), [
    ("Hi I was you know driving my car and I just had this like random thought like oh when did I pay my loan",
     "Hi I was driving my car and I just had this like random thought like when did I pay my loan"),
    ("I'd like to check the balance that I have on my on my cards.",
     "I'd like to check the balance that I have on my cards."),
    ("um, i'm not actually sure", "i'm not sure"),
    ("Yeah, hi, I need to cancel one of my plans", "hi, I need to cancel one of my plans"),
    ("Oh shoot, that would be even better", "shoot, that would be even better"),
    ("I need, you know, a loan", "I need, a loan"),
    ("I mean, the app is slow", "the app is slow"),
    ("I kind of need a new card", "I need a new card"),
    ("Uhh the export is basically broken", "the export is broken"),
    ("it it possible to take pto", "it possible to take pto"),
    ("yeah yeah ok so what now", "what now"),
    ("can you play the song that goes like, starships", "can you play the song that goes starships"),
])
def test_fillers_and_stutters_are_taken_out(spoken: str, read: str) -> None:
    assert embedding_text(spoken) == read


@pytest.mark.parametrize("text", [
    "do you know how i can change my insurance policy",    # "you know" as a verb with an object
    "what do you know about the meaning of life",
    "you know me by what name",
    "i need to change my policy, do you know how",
    "what I mean is the fee",
    "what kind of account do I need",                     # "kind of" as a noun
    "is there a certain sort of fuel needed",
    "I'd like to export to CSV",                          # "like" as a verb
    "I like it",
    "Rotating images, AJAX-like, in Ruby on Rails",
    "Hey I just moved to Dayton, OH, and need a new address",  # OH is Ohio
    "version 2 2 of the API returns 1 1",                 # numbers are not stutters
    "ER visit coverage for 5 mm stitches",
    "Single sign-on keeps failing for our contractors",
    "Tab\tand\nnewline  with  doubled spaces",            # nothing taken out: passed through byte for byte
    "",
])
def test_meaningful_and_written_text_is_left_as_it_is(text: str) -> None:
    assert embedding_text(text) == text


def test_a_text_of_nothing_but_fillers_is_kept_whole() -> None:
    assert embedding_text("Um") == "Um"
    assert embedding_text("yeah, ok so") == "yeah, ok so"


def test_line_breaks_survive_a_removal() -> None:
    spoken = "Agent: hello\nCustomer: um, my invoice is wrong"
    assert embedding_text(spoken) == "Agent: hello\nCustomer: my invoice is wrong"


class _Recorder:
    """Stands in for the loaded model: records what it was asked to read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.read += texts
        return np.eye(len(texts), 4, dtype=np.float32)


def test_the_sentence_embedder_reads_the_prepared_text() -> None:
    embedder = SentenceEmbedder(device="cpu")
    embedder._onnx, embedder._dim = _Recorder(), 4  # loaded: no model needed to see what it is given
    vectors = embedder.encode(["um, the CSV export is basically broken", "Single sign-on fails"])
    assert embedder._onnx.read == ["the CSV export is broken", "Single sign-on fails"]
    assert vectors.shape == (2, 4)


@pytest.mark.slow
def test_fillers_no_longer_pull_a_request_away_from_its_plain_wording() -> None:
    embedder = SentenceEmbedder(device="cpu")
    plain = "I want to set up automatic payments for my car loan"
    spoken = ("Yeah so um I was you know driving and like, oh I actually want to kind of set up automatic "
              "payments for my for my car loan")
    bare = embedder.torch_model().encode([plain, spoken], normalize_embeddings=True, convert_to_numpy=True)
    prepared = embedder.encode([plain, spoken])
    assert float(prepared[0] @ prepared[1]) > float(bare[0] @ bare[1]) + 0.02


def test_preparing_twice_changes_nothing_more() -> None:
    # taking one stutter out can bring another together: "I and I I just" -> "I and I just", not "I I just"
    spoken = "Well I had a I've been trying. I and I I just can't, you know, I I I I saw it in my in my mail"
    once = embedding_text(spoken)
    assert embedding_text(once) == once
    assert "I I" not in once and "my in my" not in once
