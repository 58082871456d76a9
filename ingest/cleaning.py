"""Text cleaning and PII redaction applied to every feedback item before it is stored.

Everything here is a pure function on strings, fast enough to run inline in the ingest path
(a few microseconds for a typical plain-text item): regexes are compiled once, each step has a
cheap fast path, and nothing loops over characters in Python.

:func:`clean_text` runs the whole chain: HTML to text, quoted reply chains, signature, whitespace,
then redaction. Its output is a fixed point: cleaning cleaned text changes nothing, so a re-synced
item keeps its content hash and is not embedded again.

It lives in ``ingest`` rather than ``pipeline`` because redaction must happen before storage and
``ingest`` may import only ``models``.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = [
    "CleanedText",
    "clean_text",
    "content_hash",
    "html_to_text",
    "normalize_whitespace",
    "redact_pii",
    "strip_quoted_replies",
    "strip_signature",
]

# --------------------------------------------------------------------------------------------------
# Whitespace
# --------------------------------------------------------------------------------------------------

# Anything normalize_whitespace must rewrite besides plain spaces: line-break variants, C0/C1 controls
# (tab and newline excepted), lone surrogates (json.loads("\"\\ud800\"") makes them), BOM, zero-width space.
_ODD_CHARS_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\u200b\ud800-\udfff]")
_LINE_BREAKS_RE = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_DROPPED_CHARS_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff\u200b\ud800-\udfff]")
# What str.isspace() calls blank once line breaks and controls are gone: space, tab, NBSP and friends.
_BLANK = "\t \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
_ODD_BLANK_RE = re.compile(f"[{_BLANK.replace(' ', '')}]")
# Runs of two or more blanks, or any single blank that is not a plain space.
_BLANKS_RE = re.compile(f"[{_BLANK}]{{2,}}|{_ODD_BLANK_RE.pattern}")
_LINE_EDGE_RE = re.compile(r" ?\n ?")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    """NFC-normalise, drop control characters, collapse blanks and blank lines, strip.

    Tabs and other Unicode blanks become one space, every line-break variant becomes ``\\n``, lines
    lose their leading and trailing blanks and at most one empty line separates paragraphs.
    """
    if _ODD_CHARS_RE.search(text):
        # Line breaks first (\r\n is one break), then removal, then NFC, so that removing a control
        # character can never leave a decomposed sequence behind.
        text = _DROPPED_CHARS_RE.sub("", _LINE_BREAKS_RE.sub("\n", text))
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if "  " in text or (not text.isascii() or "\t" in text) and _ODD_BLANK_RE.search(text):
        text = _BLANKS_RE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _LINE_EDGE_RE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES_RE.sub("\n\n", text)
    return text.strip()


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

# Elements that start on a new line, and those that also stand apart by an empty line.
_LINE_TAGS = frozenset(
    {
        *("article", "aside", "dd", "details", "div", "dt", "fieldset", "figcaption", "footer", "form"),
        *("header", "li", "main", "nav", "section", "summary", "tbody", "thead", "tfoot", "tr"),
    }
)
_PARAGRAPH_TAGS = frozenset(
    {"address", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ol", "p", "pre", "table", "ul"}
)
_CELL_TAGS = frozenset({"td", "th"})
_SKIPPED_TAGS = frozenset({"script", "style", "title", "noscript", "template"})
_HTML_WHITESPACE_RE = re.compile(r"\s+")
_ANY_TAG_RE = re.compile(r"<[^>]*>")
# Markup that only HTML has. A lone "<p>" in a sentence about HTML is not enough; a closing block
# tag, a <br> or an <html>/<body> element is. Never spans a line, so removing lines cannot create one.
_HTML_HINT_RE = re.compile(
    r"<(?:br|hr)[ \t]*/?>"
    r"|</(?:p|div|li|ul|ol|table|tr|td|th|h[1-6]|blockquote|span|a|b|i|u|strong|em|font|pre|section|html|body)[ \t]*>"
    r"|<(?:html|body)\b",
    re.IGNORECASE,
)
_MAX_HTML_PASSES = 4


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document, one buffer per open ``<blockquote>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._buffers: list[list[str]] = [[]]
        self._newlines = [1]  # line breaks at the end of each buffer; 1 = at the start of a line
        self._skipping = 0
        self._in_pre = 0

    def _append(self, text: str) -> None:
        self._buffers[-1].append(text)
        stripped = text.rstrip("\n")
        self._newlines[-1] = len(text) - len(stripped) + (0 if stripped else self._newlines[-1])

    def _break(self, lines: int) -> None:
        if self._newlines[-1] < lines:
            self._append("\n" * (lines - self._newlines[-1]))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag == "br":
            self._append("\n")
        elif tag == "blockquote":
            self._break(2)
            self._buffers.append([])
            self._newlines.append(1)
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._break(2 if tag in _PARAGRAPH_TAGS else 1)
            self._in_pre += tag == "pre"
            if tag == "li":
                self._append("- ")
        elif tag in _CELL_TAGS:
            self._append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "blockquote":
            if len(self._buffers) > 1:
                self._close_blockquote()
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._break(2 if tag in _PARAGRAPH_TAGS else 1)
            if tag == "pre":
                self._in_pre = max(0, self._in_pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if not self._in_pre:
            data = _HTML_WHITESPACE_RE.sub(" ", data)
            if self._newlines[-1]:
                data = data.lstrip(" ")
        if data:
            self._append(data)

    def _close_blockquote(self) -> None:
        # Quoted mail is rendered the way plain-text mail quotes it, so strip_quoted_replies sees it.
        quoted = normalize_whitespace("".join(self._buffers.pop()))
        self._newlines.pop()
        if quoted:
            self._append("\n".join(f"> {line}" if line else ">" for line in quoted.split("\n")))
            self._break(2)

    def text(self) -> str:
        while len(self._buffers) > 1:
            self._close_blockquote()
        return "".join(self._buffers[0])


def html_to_text(html_text: str) -> str:
    """Render HTML as plain text.

    Block elements and ``<br>`` become line breaks, list items become ``- `` lines, ``<blockquote>``
    lines get a ``> `` prefix, script/style/title are dropped and entities are unescaped.
    """
    if "<" not in html_text and "&" not in html_text:
        return " ".join(html_text.split())
    parser = _TextExtractor()
    try:
        parser.feed(html_text)
        parser.close()
        text = parser.text()
    except AssertionError:
        # html.parser gives up on some malformed declarations ("<![foo]>"); fall back to dropping tags.
        text = html.unescape(_ANY_TAG_RE.sub(" ", html_text))
    return normalize_whitespace(text)


def _html_to_clean_text(text: str) -> str:
    """HTML to normalised text that no longer looks like HTML (escaped markup is unwrapped too)."""
    for _ in range(_MAX_HTML_PASSES):
        text = normalize_whitespace(html_to_text(text))
        if not _HTML_HINT_RE.search(text):
            return text
    while _HTML_HINT_RE.search(text):  # markup escaped more than _MAX_HTML_PASSES times
        text = _HTML_HINT_RE.sub(" ", text)
    return normalize_whitespace(text)


# --------------------------------------------------------------------------------------------------
# Quoted replies
# --------------------------------------------------------------------------------------------------


def _may_hold_quotes(text: str) -> bool:
    """A cheap test before the regexes: no reply header or quote exists without one of these."""
    return (
        ">" in text
        or "wrote:" in text
        or "From" in text
        or "riginal" in text
        or "RIGINAL" in text
        or "crit" in text
        or "schrieb" in text
        or "escrib" in text
        or "De:" in text
        or "De :" in text
        or "##-" in text
    )


# An attribution line ("On <date> <someone> wrote:"), wrapped over at most three lines.
_ATTRIBUTION = r"(?:{intro})[ \t](?:[^\n]*\n){{0,2}}?[^\n]*?{verb}[ \t]*$"
_REPLY_HEADER_RE = re.compile(
    r"^[ \t]*(?:"
    + r"(?P<attribution>"
    + "|".join(
        (
            _ATTRIBUTION.format(intro="On", verb=r"\bwrote:"),
            _ATTRIBUTION.format(intro="Le", verb=r"\ba[ \t]+écrit[ \t]?:"),
            _ATTRIBUTION.format(intro="Am", verb=r"\bschrieb\b[^\n]*:"),
            _ATTRIBUTION.format(intro="El", verb=r"\bescribió[ \t]?:"),
        )
    )
    + r")"
    + r"|(?P<original>-{2,}[ \t]*(?i:original message)[ \t]*-{2,})"
    + r"|(?P<outlook>\*?(?:From|De)[ \t]?:\*?[ \t]+[^\n]+\n(?:[^\n]*\n){0,3}?"
    + r"[ \t]*\*?(?:Sent|Date|Envoyé)[ \t]?:\*?[ \t]+[^\n]+$)"
    + r"|(?P<zendesk>##-[^\n]*-##)"
    + r")",
    re.MULTILINE,
)
# Attribution lines carry a date or an address; "On Monday Sarah wrote:" in a body does not count.
_ATTRIBUTION_EVIDENCE_RE = re.compile(r"@|\d:\d\d|\b(?:19|20)\d\d\b")
_FORWARD_MARKER_RE = re.compile(r"forwarded message|^[ \t]*\*?subject:\*?[ \t]*(?:fwd?|tr)\b", re.I | re.M)
_LEADING_QUOTES_RE = re.compile(r"\A(?:[ \t]*\n)*(?:[ \t]*>[^\n]*(?:\n[ \t]*)*)+")
# Two or more consecutive "> " lines. A single ">50% of users" line is content, not a quote.
_QUOTE_BLOCK_RE = re.compile(r"^(?:[ \t]*>(?:[ >\t][^\n]*)?(?:\n|\Z)){2,}", re.MULTILINE)
_TRAILING_RULE_RE = re.compile(r"(?:\n[ \t]*(?:_{5,}|-{5,}|={5,}|\*{5,})[ \t]*)+\s*\Z")
_MAX_ATTRIBUTION_CHARS = 400


def strip_quoted_replies(text: str) -> str:
    """Remove quoted reply chains.

    An Outlook header ("-----Original Message-----", "From: ... Sent: ..."), a Zendesk
    "##- Please type your reply above this line -##" marker, or an attribution line ("On <date>
    <someone> wrote:", also French, German and Spanish) followed by unprefixed text cuts everything
    from there down. An attribution followed by ``>`` lines (bottom posting) removes only the header
    and the quote, keeping the reply below. Blocks of two or more ``>`` lines go anywhere.
    Forwarded messages are kept: there the quoted part is usually the customer's own words.
    If nothing would be left, the text is returned unchanged.
    """
    if not _may_hold_quotes(text):
        return text
    out = text
    pos = 0
    while match := _REPLY_HEADER_RE.search(out, pos):
        if not _is_reply_header(out, match):
            pos = match.start() + 1
            continue
        before, after = out[: match.start()], out[match.end() :]
        if match.lastgroup == "attribution" and after.lstrip(" \t\n").startswith(">"):
            after = _LEADING_QUOTES_RE.sub("", after, count=1)
            out = before + after
            pos = len(before)
            continue
        out = _TRAILING_RULE_RE.sub("", before)
        break
    out = _QUOTE_BLOCK_RE.sub("", out)
    if out == text:
        return text
    return out if out.strip() else text


def _is_reply_header(text: str, match: re.Match[str]) -> bool:
    header = match.group()
    if match.lastgroup == "attribution":
        return len(header) <= _MAX_ATTRIBUTION_CHARS and bool(_ATTRIBUTION_EVIDENCE_RE.search(header))
    if match.lastgroup == "outlook":
        # A forwarded mail has the same header block; only its marker or "Subject: Fwd:" tells them apart.
        above = text[max(0, match.start() - 200) : match.start()]
        below = text[match.start() : match.end() + 300]
        return not (_FORWARD_MARKER_RE.search(above) or _FORWARD_MARKER_RE.search(below))
    return True


# --------------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------------

_SIGN_OFFS = (
    r"best|best regards|kind regards|warm regards|warmest regards|regards|best wishes|all the best"
    r"|many thanks|thanks(?: again| so much| a lot| in advance)?|thank you(?: so much| again| in advance)?"
    r"|thanks for (?:your|the) (?:help|time|support)|thx|cheers|sincerely|yours(?: truly| sincerely)?"
    r"|br|cordialement|bien cordialement|bien à vous|merci(?: beaucoup)?|mit freundlichen grüßen"
    r"|viele grüße|liebe grüße|beste grüße|saludos|un saludo|atentamente"
)
_MOBILE_FOOTERS = (
    r"sent from my [\w ]{2,30}|sent from (?:outlook|mail|yahoo mail|gmail)\b[\w .]{0,40}"
    r"|get outlook for \w+|envoyé de mon \w+|von meinem \w+ gesendet"
)
# A sign-off line, optionally with the sender's name after it: "Thanks,", "Cheers - Bob", "Best, Ana Lima".
_SIGN_OFF_LINE_RE = re.compile(
    rf"(?i:{_SIGN_OFFS})[ \t]*[,.!:;-]*(?:[ \t]*[A-Z][\w.'-]*(?:[ \t][A-Z][\w.'-]*){{0,2}}[ \t]*[,.!]*)?"
)
_SIGNATURE_START_RE = re.compile(rf"--[ \t]*|(?i:{_MOBILE_FOOTERS})[ \t]*[.!]?")
_SIGNATURE_HINT_RE = re.compile(rf"^[ \t]*(?:--[ \t]*$|{_SIGN_OFFS}|{_MOBILE_FOOTERS})", re.I | re.M)
_POSTSCRIPT_RE = re.compile(r"p\.?s\b", re.I)
_SIGNATURE_TAIL_CHARS = 800  # only the end of a text can hold a signature
_SIGNATURE_WINDOW_LINES = 8  # a sign-off must be among the last non-blank lines...
_SIGNATURE_MAX_LINES = 6  # ...followed by at most this many short lines
_SIGNATURE_MAX_LINE_CHARS = 80


def strip_signature(text: str) -> str:
    """Remove a trailing signature: a ``--`` delimiter, "Sent from my iPhone", or a sign-off.

    Conservative: the block below the delimiter or sign-off must be a few short lines with no
    question and no P.S., and at least one line of body must remain above it.
    """
    for _ in range(10):
        stripped = _strip_signature_once(text)
        if stripped is text:
            break
        text = stripped
    return text


def _strip_signature_once(text: str) -> str:
    if not _SIGNATURE_HINT_RE.search(text, max(0, len(text) - _SIGNATURE_TAIL_CHARS)):
        return text
    lines = text.split("\n")
    window: list[int] = []  # indexes of the last non-blank lines, top to bottom
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].strip():
            window.insert(0, index)
            if len(window) == _SIGNATURE_WINDOW_LINES:
                break
    for position, index in enumerate(window):
        line = lines[index].strip()
        if not (_SIGNATURE_START_RE.fullmatch(line) or _SIGN_OFF_LINE_RE.fullmatch(line)):
            continue
        block = [lines[i].strip() for i in window[position + 1 :]]
        if not _looks_like_signature_block(block):
            continue
        has_body = position > 0 or any(previous.strip() for previous in lines[:index])
        if has_body:
            return "\n".join(lines[:index]).rstrip()
    return text


def _looks_like_signature_block(block: list[str]) -> bool:
    return len(block) <= _SIGNATURE_MAX_LINES and all(
        len(line) <= _SIGNATURE_MAX_LINE_CHARS and not line.endswith("?") and not _POSTSCRIPT_RE.match(line)
        for line in block
    )


# --------------------------------------------------------------------------------------------------
# PII redaction
# --------------------------------------------------------------------------------------------------

# Most patterns below open with a character class and check what precedes it with a lookbehind
# placed after that first character: the regex engine can then skip ahead to candidate characters
# instead of trying every position, which keeps redaction at a few microseconds per item.
# Those lookbehinds also refuse "]": right after a placeholder a second pass must see the same
# "glued" context the first pass saw when the redacted digits were still there.

# An address is found from its "@domain" part; the local part is then read backwards from the "@".
_EMAIL_DOMAIN_RE = re.compile(r"@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,}")
_EMAIL_LOCAL_CHARS_OR_UNDERSCORE = frozenset("._%+-_")
_IBAN_RE = re.compile(r"[A-Z](?<![A-Za-z0-9\]][A-Z])[A-Z][0-9][0-9](?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_IBAN_LETTERS = str.maketrans({chr(code): str(code - 55) for code in range(ord("A"), ord("Z") + 1)})
# Gate for everything numeric: four digits in a row or with single separators between them.
_DIGIT_CLUSTER_RE = re.compile(r"[0-9](?:[ .()/:+-]?[0-9]){3}")
# A whole run of at least 13 digits with single spaces or dashes between them; layout and Luhn decide.
_CARD_RUN_RE = re.compile(r"[0-9](?<![0-9][0-9])(?<![0-9][ -][0-9])(?:[ -]?+[0-9]){12,}+")
_DIGIT_GROUP_RE = re.compile(r"[0-9]+")
_LUHN_DOUBLED = {str(d): (2 * d - 9 if d > 4 else 2 * d) for d in range(10)}
# Four dotted numbers, not "v1.2.3.4" or "version 1.2.3.4", not part of a longer dotted number;
# octets are checked in Python.
_IPV4_RE = re.compile(
    r"[0-9](?<![\w.\]][0-9])(?<![Vv]ersion [0-9])(?<![Vv]er [0-9])(?<![Bb]uild [0-9])"
    r"[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\w|\.[0-9])"
)
_IPV6_HINT_RE = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_RE = re.compile(
    r"(?<![\w:.\]])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}+(?:\.[0-9]{1,3}){0,3}(?![\w:]|\.[0-9])"
)
_PHONE_RE = re.compile(
    r"""
    [+(0-9](?<![\w+.,/:@\]-][+(0-9])      # first character, not inside a word, price, date, version or time
    (?:
        (?<=\+)[0-9]{1,3}+(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]++)){1,6}+    # +44 20 7946 0958, +1 (415) 555-0132
      | (?<=\()[0-9]{3}\)[ .-]?[0-9]{3}[ .-]?[0-9]{4}                   # (415) 555-0132
      | (?<=1)[ .-]?\([0-9]{3}\)[ .-]?[0-9]{3}[ .-]?[0-9]{4}            # 1 (415) 555-0132
      | (?<=1)[ .-][0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}                   # 1-800-555-0199
      | (?<=[0-9])[0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4}                    # 415-555-0132, 415.555.0132
      | (?<=0)[0-9]++(?:[ .-][0-9]++){0,4}+                             # 0612345678, 06 12 34 56 78
    )
    (?![\w]|[.,/:-]?[0-9])
    """,
    re.VERBOSE,
)

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ip": "[IP]",
    "phone": "[PHONE]",
}


def redact_pii(text: str) -> str:
    """Replace e-mail addresses, phone numbers, card numbers, IBANs and IP addresses by placeholders.

    Cards must pass the Luhn check and look like a card (13-19 digits, bare or in 4-digit groups);
    IBANs must pass the mod-97 check. Dates, versions, prices, years and order numbers stay.
    """
    return _redact(text)[0]


def _redact(text: str) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    if "@" in text:
        text = _redact_emails(text, counts)
    numeric = _DIGIT_CLUSTER_RE.search(text) is not None
    if numeric:
        text = _count_sub(_IBAN_RE, "iban", text, counts, validate=_redact_iban)
        text = _count_sub(_CARD_RUN_RE, "card", text, counts, validate=_redact_cards)
        if "." in text:
            text = _count_sub(_IPV4_RE, "ip", text, counts, validate=_redact_ipv4)
    if ":" in text and _IPV6_HINT_RE.search(text):
        text = _count_sub(_IPV6_RE, "ip", text, counts, validate=_redact_ipv6)
    if numeric:
        text = _count_sub(_PHONE_RE, "phone", text, counts, validate=_redact_phone)
    return text, counts


def _redact_emails(text: str, counts: dict[str, int]) -> str:
    pieces: list[str] = []
    copied = 0  # text[:copied] is already in pieces
    for match in _EMAIL_DOMAIN_RE.finditer(text):
        start = at = match.start()
        # A per-character walk, but only over the local part of an actual address.
        while start > copied and (text[start - 1].isalnum() or text[start - 1] in _EMAIL_LOCAL_CHARS_OR_UNDERSCORE):
            start -= 1
        if start < at:
            pieces += [text[copied:start], PLACEHOLDERS["email"]]
            copied = match.end()
    if not pieces:
        return text
    counts["email"] = len(pieces) // 2
    pieces.append(text[copied:])
    return "".join(pieces)


def _count_sub(
    pattern: re.Pattern[str],
    kind: str,
    text: str,
    counts: dict[str, int],
    validate: Callable[[str], tuple[str, int]] | None = None,
) -> str:
    """Replace matches of ``pattern`` by the placeholder; ``validate(match_text)`` -> (replacement, hits)."""
    pieces: list[str] = []
    copied = 0  # text[:copied] is already in pieces
    hits = 0
    for match in pattern.finditer(text):
        if validate is None:
            replacement, found = PLACEHOLDERS[kind], 1
        else:
            replacement, found = validate(match.group())
        if found:
            pieces += [text[copied : match.start()], replacement]
            copied = match.end()
            hits += found
    if not hits:
        return text
    counts[kind] = counts.get(kind, 0) + hits
    pieces.append(text[copied:])
    return "".join(pieces)


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def _redact_iban(candidate: str) -> tuple[str, int]:
    # The pattern may have swallowed a following upper-case word; drop trailing chunks until it checks.
    chunks = candidate.split(" ")
    for keep in range(len(chunks), 0, -1):
        if _iban_ok("".join(chunks[:keep])):
            rest = " ".join(chunks[keep:])
            return PLACEHOLDERS["iban"] + (" " + rest if rest else ""), 1
    return candidate, 0


def _luhn_ok(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[d] for d in digits[-2::-2])
    return total % 10 == 0


def _card_layout_ok(lengths: list[int]) -> bool:
    if len(lengths) == 1:
        return True
    if lengths in ([4, 6, 5], [4, 6, 4]):  # Amex, Diners
        return True
    return all(length == 4 for length in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _redact_cards(run: str) -> tuple[str, int]:
    """Redact every card inside a run of digit groups ("qty 2 4111 1111 1111 1111" holds one)."""
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP_RE.finditer(run)]
    pieces: list[str] = []
    done = 0  # end of the text already copied to pieces
    found = 0
    start_group = 0
    while start_group < len(groups):
        digits = 0
        for end_group in range(start_group, len(groups)):
            digits += groups[end_group][1] - groups[end_group][0]
            if digits > 19:
                break
            if digits < 13:
                continue
            lengths = [end - start for start, end in groups[start_group : end_group + 1]]
            span_start, span_end = groups[start_group][0], groups[end_group][1]
            if _card_layout_ok(lengths) and _luhn_ok(run[span_start:span_end].replace(" ", "").replace("-", "")):
                pieces += [run[done:span_start], PLACEHOLDERS["card"]]
                done = span_end
                found += 1
                start_group = end_group
                break
        start_group += 1
    if not found:
        return run, 0
    pieces.append(run[done:])
    return "".join(pieces), found


def _redact_ipv4(candidate: str) -> tuple[str, int]:
    for octet in candidate.split("."):
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0"):
            return candidate, 0
    return PLACEHOLDERS["ip"], 1


def _redact_ipv6(candidate: str) -> tuple[str, int]:
    if candidate.count(":") < 2 or not any(map(str.isdigit, candidate)):
        return candidate, 0
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return candidate, 0
    return PLACEHOLDERS["ip"], 1


def _redact_phone(candidate: str) -> tuple[str, int]:
    digits = sum(map(str.isdigit, candidate))
    if candidate.startswith("+"):
        ok = 8 <= digits <= 15
    elif candidate.isdigit():  # a bare national number: 0612345678
        ok = 10 <= digits <= 11
    else:
        ok = 9 <= digits <= 11
    return (PLACEHOLDERS["phone"], 1) if ok else (candidate, 0)


# --------------------------------------------------------------------------------------------------
# The whole chain
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CleanedText:
    """A cleaned feedback text, what it was cleaned from, and how many items of each PII kind it lost."""

    text: str
    raw: str
    redactions: dict[str, int] = field(default_factory=dict)


def clean_text(text: str, *, is_html: bool = False, redact: bool = True) -> CleanedText:
    """Clean a feedback text for storage: HTML, quoted replies, signature, whitespace, then PII.

    Args:
        text: The text as the source gave it.
        is_html: Treat the text as HTML. Without it, HTML is still detected when the text clearly
            holds markup (a closing block tag, ``<br>``, ``<html>`` or ``<body>``).
        redact: Replace PII by placeholders (see :func:`redact_pii`).

    Returns:
        The cleaned text, the raw text, and the number of redactions per kind (only kinds found).
        ``clean_text(result.text).text == result.text``.
    """
    cleaned = normalize_whitespace(text)
    if is_html or _HTML_HINT_RE.search(cleaned):
        cleaned = _html_to_clean_text(cleaned)
    cleaned = _strip_boilerplate(cleaned)
    counts: dict[str, int] = {}
    if redact:
        redacted, counts = _redact(cleaned)
        if counts:
            # Shorter lines can make a tail look like a signature now; settle it so a second pass agrees.
            cleaned = _strip_boilerplate(redacted)
            if cleaned != redacted:
                counts = {kind: min(n, cleaned.count(PLACEHOLDERS[kind])) for kind, n in counts.items()}
                counts = {kind: n for kind, n in counts.items() if n}
    return CleanedText(text=cleaned, raw=text, redactions=counts)


def _strip_boilerplate(text: str) -> str:
    """Quoted replies and signature until nothing changes; ``text`` must be normalised already."""
    for _ in range(50):
        stripped = strip_signature(strip_quoted_replies(text))
        if stripped is text:
            return text
        stripped = normalize_whitespace(stripped)
        if stripped == text:
            return text
        text = stripped
    return text


def content_hash(text: str) -> str:
    """SHA-256 hex digest of the whitespace-normalised text; equal hashes need no new embedding."""
    return hashlib.sha256(normalize_whitespace(text).encode("utf-8")).hexdigest()
