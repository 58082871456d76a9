"""What the embedding model reads: feedback text with the fillers of spoken English taken out.

Feedback from calls, chats and call notes is spoken language written down: "Hi I was you know driving
and I just had this like random thought like oh when was the last time I paid off my car loan". Its
filled pauses ("um", "uh"), discourse markers ("you know", "I mean", "oh", "yeah", a comma-set "like"),
hedges ("kind of", "actually", "basically") and stutters ("on my on my") say nothing about what the
customer wants, yet a sentence embedding averages over every token, so two requests about different
things told in the same chatty way come out closer than they are. Taking those words out before
embedding sharpens the themes of conversational feedback and leaves written feedback as it is (a text
with none of them is passed through unchanged, byte for byte).

The rules keep the words where they carry meaning: "do you know how ...", "what I mean is", "what kind
of account", "I'd like to" and "I like it" are left alone. Only the text the model reads changes; the
stored text, the quotes, labels and keywords keep every word the customer wrote.

The rules apply to sentence-transformers models (:class:`pipeline.embedding.SentenceEmbedder`), for
stored feedback and search queries alike, not to the hashing test embedder. Vectors stored before them
(migration 0005) stay where the text has no fillers, as they embed the same either way; the vectors of
texts the rules change are dropped and embedded again by the next run. Changing what these rules take out
needs a migration of its own that drops the vectors of the texts the change reads differently.
"""

from __future__ import annotations

import re

# Words before "you know" / "I mean" that make them a verb with an object ("do you know how", "what I
# mean is") rather than a filler.
_ASKING = frozenset(("do", "does", "did", "don't", "didn't", "doesn't", "would", "will", "won't", "can", "could",
                     "should", "might", "may", "if", "whether", "what", "how", "let", "to", "when", "where", "why",
                     "who"))
# Words after them that make them a verb ("you know me", "you know the process", "I mean it").
_OBJECT = frozenset(("me", "my", "mine", "him", "her", "it", "them", "us", "our", "your", "what", "how", "where",
                     "when", "why", "who", "which", "whether", "if", "about", "anything", "everything", "something",
                     "nothing", "the", "a", "an", "that", "this", "these", "those", "to", "of", "more", "much", "any"))
# Words before "kind of" / "sort of" that make them a hedge ("I kind of need", "it's sort of broken"); after
# anything else they are a noun ("what kind of account", "a certain sort of fuel") and stay.
_HEDGED = frozenset(("i", "you", "we", "they", "he", "she", "it", "it's", "that's", "i'm", "we're", "they're", "is",
                     "was", "are", "were", "am", "be", "been", "just", "really", "and", "but", "so"))

# Every candidate, found by one scan of plain alternatives; whether a marker or a hedge goes depends on the
# words around it (decided in Python, at the few places the scan stops: lookbehinds tried at every position
# made the scan about four times slower).
_CANDIDATES = re.compile(
    r"(?:\b(?:um+|uh+|uhm+|erm+|hmm+|mhm|yeah|ok so|okay so|so yeah|actually|basically|literally)\b"  # always
    r"|\b(?-i:[Oo]h)\b"                           # "oh" ("OH" is Ohio)
    r"|(?<![\w'-])like(?=,)"                       # "like," as a marker, not "AJAX-like,"
    r"|(?P<marker>\b(?:you know|i mean)\b)"        # depends on the words around it
    r"|(?P<hedge>\b(?:kind|sort) of\b)"             # depends on the word before it
    r")(?P<punct>[,.]?)",
    re.IGNORECASE,
)
_LAST_WORD = re.compile(r"([\w']+)\s+$")
_FIRST_WORD = re.compile(r"\s+(\w+)")  # "it" of "it's": "you know it's" stays, as "you know it" does
_BEFORE = 24  # characters looked at for the word before a candidate


def _word_before(text: str, start: int) -> str:
    found = _LAST_WORD.search(text, max(0, start - _BEFORE), start)
    return found.group(1).lower() if found else ""


def _drop(match: re.Match[str]) -> str:
    """``""`` where the candidate is a filler, the match itself where it carries meaning."""
    text = match.string
    if match.group("marker"):
        if match.group("punct") == ",":  # set off by a comma: "I need, you know, a loan"
            return ""
        after = _FIRST_WORD.match(text, match.end("marker"))
        if _word_before(text, match.start()) in _ASKING or (after and after.group(1).lower() in _OBJECT):
            return match.group(0)
    elif match.group("hedge") and _word_before(text, match.start()) not in _HEDGED:
        return match.group(0)
    return ""


# A word, or two or three, said twice in a row: "on my on my cards", "I I guess". Letters only, so
# "version 2 2" and "1 1" stay.
_STUTTER = re.compile(r"\b([^\W\d_]+(?:\s+[^\W\d_]+){0,2})(\s+\1\b)+", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]{2,}")  # the gaps a removal leaves; line breaks stay


def embedding_text(text: str) -> str:
    """``text`` as the embedding model should read it: spoken-language fillers and stutters taken out.

    Returns ``text`` itself when nothing was taken out, and never an empty string (a text of nothing but
    fillers is kept whole).
    """
    stripped = text
    for _ in range(5):  # a removal can bring a stutter together ("I and I I just"): until nothing changes
        again = _STUTTER.sub(r"\1", _CANDIDATES.sub(_drop, stripped))
        if again == stripped:
            break
        stripped = _SPACES.sub(" ", again)
    if stripped == text:
        return text
    stripped = stripped.strip().lstrip(", ")
    return stripped if stripped else text
