"""Tests for ingest.cleaning: HTML, quoted replies, signatures, whitespace, PII redaction."""

from __future__ import annotations

import hashlib
import re
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.cleaning import (
    CleanedText,
    clean_text,
    content_hash,
    html_to_text,
    normalize_whitespace,
    redact_pii,
    strip_quoted_replies,
    strip_signature,
)

ZENDESK_TICKET = """Hi Groundswell team,

Our finance team exports the pipeline report every Monday and the CSV export times out
once we go past 10k rows. Could you add a background export that emails a link?

Best regards,
Dana Whitfield
Head of Revenue Operations | Northwind Traders
+1 415 555 0132

On Mon, Nov 23, 2026 at 9:14 AM Groundswell Support <support@groundswell.io> wrote:
> Hi Dana,
>
> Thanks for reaching out. Which report is it?
>
> > Older quoted text
"""

OUTLOOK_REPLY = """The SSO login loop is back since this morning, nobody in our EU office can sign in.

Thanks,
Marc

________________________________
From: Groundswell Support <support@groundswell.io>
Sent: Tuesday, November 24, 2026 10:02 AM
To: Marc Dubois <marc@contoso.fr>
Subject: RE: SSO issue

Hi Marc, we deployed a fix yesterday.
"""


# ------------------------------------------------------------------------------------------------
# html_to_text
# ------------------------------------------------------------------------------------------------


def test_html_blocks_lists_breaks_and_entities() -> None:
    html = (
        "<html><head><title>Ticket</title><style>p {color: red}</style></head><body>"
        "<p>Hi&nbsp;team &amp; friends,</p><div>The export is <b>slow</b>:<br>it takes 5&ndash;10 min.</div>"
        "<ul><li>CSV</li><li>XLSX &lt;large&gt;</li></ul><script>alert('x')</script>"
        "<ol><li>first</li><li>second</li></ol><p>Caf&eacute; &#9731; &#x1F600;</p></body></html>"
    )
    assert html_to_text(html) == (
        "Hi team & friends,\n\nThe export is slow:\nit takes 5–10 min.\n\n- CSV\n- XLSX <large>\n\n"
        "- first\n- second\n\nCafé ☃ 😀"
    )


def test_html_whitespace_is_collapsed_like_a_browser() -> None:
    assert html_to_text("<p>one\n   two</p>\n\n<p>three</p>") == "one two\n\nthree"
    assert html_to_text("<div>line one</div>\n  <div>line two</div><div><br></div><div>after gap</div>") == (
        "line one\nline two\n\nafter gap"
    )
    assert html_to_text("plain   text\nwith lines") == "plain text with lines"


def test_html_blockquote_becomes_quoted_lines_that_get_stripped() -> None:
    html = (
        '<div dir="ltr">Still broken for us.</div><br><div class="gmail_quote"><div class="gmail_attr">'
        "On Tue, Nov 24, 2026 at 10:00 AM Support &lt;support@groundswell.io&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote"><div>Can you retry?</div><div>Thanks</div></blockquote></div>'
    )
    text = html_to_text(html)
    assert "> Can you retry?\n> Thanks" in text
    assert clean_text(html, is_html=True).text == "Still broken for us."


def test_html_malformed_declarations_do_not_raise() -> None:
    assert html_to_text("<![if !supportLists]>-<![endif]>Item <![foo]> one").strip() != ""
    assert "Item" in html_to_text("<p>Item<![foo]>")


def test_html_is_detected_only_when_clearly_html() -> None:
    assert clean_text("<p>Export fails</p><p>Please fix</p>").text == "Export fails\n\nPlease fix"
    assert clean_text("line one<br>line two").text == "line one\nline two"
    # A plain sentence that mentions a tag is not HTML.
    assert clean_text("The <p> tag is rendered literally & looks odd").text == (
        "The <p> tag is rendered literally & looks odd"
    )


# ------------------------------------------------------------------------------------------------
# strip_quoted_replies
# ------------------------------------------------------------------------------------------------


def test_gmail_chain_is_cut() -> None:
    out = strip_quoted_replies(ZENDESK_TICKET)
    assert "Thanks for reaching out" not in out
    assert "wrote:" not in out
    assert "background export" in out


def test_attribution_wrapped_over_lines_is_cut() -> None:
    text = (
        "Please prioritise the Slack integration.\n\n"
        "On Mon, Nov 23, 2026 at 9:14 AM Groundswell Support <\nsupport@groundswell.io> wrote:\n\n"
        "Hi, what would you like?"
    )
    assert strip_quoted_replies(text).strip() == "Please prioritise the Slack integration."


def test_outlook_from_sent_header_and_rule_are_cut() -> None:
    out = strip_quoted_replies(OUTLOOK_REPLY)
    assert "deployed a fix" not in out
    assert "From:" not in out and "____" not in out
    assert out.startswith("The SSO login loop is back")


def test_original_message_separator_is_cut() -> None:
    text = "Dark mode please.\n\n-----Original Message-----\nFrom: a@b.com\nSent: today\nOld stuff"
    assert strip_quoted_replies(text).strip() == "Dark mode please."


def test_french_and_german_attributions_are_cut() -> None:
    fr = "Toujours en panne.\n\nLe lun. 23 nov. 2026 à 09:14, Support <support@groundswell.io> a écrit :\n> Bonjour"
    de = "Geht immer noch nicht.\n\nAm 23.11.2026 um 09:14 schrieb Support <support@groundswell.io>:\nHallo"
    assert strip_quoted_replies(fr).strip() == "Toujours en panne."
    assert strip_quoted_replies(de).strip() == "Geht immer noch nicht."


def test_zendesk_reply_marker_cuts_below() -> None:
    text = "Thanks, that fixed it.\n##- Please type your reply above this line -##\nAgent said hi"
    assert strip_quoted_replies(text).strip() == "Thanks, that fixed it."


def test_bottom_posted_reply_keeps_the_answer() -> None:
    text = (
        "On Mon, Nov 23, 2026 at 9:14 AM Support <support@groundswell.io> wrote:\n"
        "> Which browser do you use?\n> Any extensions?\n\nChrome 131, no extensions."
    )
    assert strip_quoted_replies(text).strip() == "Chrome 131, no extensions."


def test_quote_blocks_go_but_single_greater_than_lines_stay() -> None:
    text = "> quoted one\n> quoted two\nMy answer.\n>50% of our users see the error."
    assert strip_quoted_replies(text) == "My answer.\n>50% of our users see the error."


def test_body_sentences_that_look_like_headers_are_kept() -> None:
    text = "On Monday our CFO wrote:\nwe need SOC 2 reports before renewal."
    assert strip_quoted_replies(text) == text
    forwarded = (
        "FYI, customer feedback below.\n\n---------- Forwarded message ---------\n"
        "From: Jane <jane@acme.com>\nDate: Tue, Nov 24, 2026\nSubject: Fwd: exports\n\nExports are too slow."
    )
    assert strip_quoted_replies(forwarded) == forwarded


def test_text_that_is_only_a_quote_is_kept() -> None:
    text = "On Mon, Nov 23, 2026 at 9:14 AM Jane <jane@acme.com> wrote:\nThe export is broken."
    assert strip_quoted_replies(text) == text


# ------------------------------------------------------------------------------------------------
# strip_signature
# ------------------------------------------------------------------------------------------------


def test_sign_off_block_is_removed() -> None:
    text = (
        "The API rate limit is too low for our sync.\n\n"
        "Best regards,\nDana\nHead of RevOps | Northwind\n+1 415 555 0132"
    )
    assert strip_signature(text) == "The API rate limit is too low for our sync."


@pytest.mark.parametrize(
    "tail",
    [
        "-- \nJohn Smith\nAcme Corp",
        "--\nJohn Smith",
        "Sent from my iPhone",
        "Thanks,\nJohn\n\nSent from my iPhone",
        "Cheers - Bob",
        "Thank you!",
        "Get Outlook for iOS",
        "Cordialement,\nMarc Dubois",
    ],
)
def test_signature_variants(tail: str) -> None:
    assert strip_signature(f"Please add SAML support.\n\n{tail}") == "Please add SAML support."


def test_signature_never_removes_the_body() -> None:
    assert strip_signature("Thanks,\nJohn") == "Thanks,\nJohn"
    assert strip_signature("Sent from my iPhone") == "Sent from my iPhone"
    # What follows the sign-off is content, not a signature.
    long_tail = "Thanks.\nAlso the mobile app crashes every time I open a report with more than fifty charts in it."
    assert strip_signature(long_tail) == long_tail
    question = "Works now.\nThanks,\nAny idea when the fix ships?"
    assert strip_signature(question) == question
    postscript = "Love it.\nCheers,\nAna\nP.S. dark mode!"
    assert strip_signature(postscript) == postscript
    assert strip_signature("Thanks for the quick fix, it works") == "Thanks for the quick fix, it works"


# ------------------------------------------------------------------------------------------------
# normalize_whitespace
# ------------------------------------------------------------------------------------------------


def test_normalize_whitespace() -> None:
    text = "\ufeff  Hello\t\tworld\x00\r\n\r\n\r\n\n  second\u00a0 line \x07\u2028third\n\n\n"
    assert normalize_whitespace(text) == "Hello world\n\nsecond line\nthird"


def test_normalize_composes_nfc_and_drops_lone_surrogates() -> None:
    assert normalize_whitespace("Cafe\u0301") == "Caf\u00e9"
    assert normalize_whitespace("a\ud800b") == "ab"  # json.loads('"\\ud800"') can produce these


def test_normalize_blank_set_matches_str_isspace() -> None:
    blanks = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if chr(cp).isspace())
    assert normalize_whitespace(f"a{blanks}b") in {"a b", "a\nb", "a\n\nb"}
    for char in blanks:
        # Each blank becomes a space or a line break, except the C0 separators \x1c-\x1f, which go.
        assert normalize_whitespace(f"x{char}{char}y") in {"x y", "x\ny", "x\n\ny", "xy"}


# ------------------------------------------------------------------------------------------------
# redact_pii
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.doe+crm@acme-corp.co.uk now", "mail [EMAIL] now"),
        ("call +1 415 555 0132 today", "call [PHONE] today"),
        ("call (415) 555-0132.", "call [PHONE]."),
        ("call 415-555-0132 or 1-800-555-0199", "call [PHONE] or [PHONE]"),
        ("UK office +44 20 7946 0958", "UK office [PHONE]"),
        ("London 020 7946 0958", "London [PHONE]"),
        ("portable 0612345678 ou 06 12 34 56 78", "portable [PHONE] ou [PHONE]"),
        ("Paris +33 6 12 34 56 78", "Paris [PHONE]"),
        ("card 4111 1111 1111 1111 exp 12/28", "card [CARD] exp 12/28"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("card 4111111111111111", "card [CARD]"),
        ("amex 3782 822463 10005", "amex [CARD]"),
        ("qty 2 4111 1111 1111 1111", "qty 2 [CARD]"),
        ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [IBAN] please"),
        ("IBAN GB82WEST12345698765432.", "IBAN [IBAN]."),
        ("IBAN DE89 3704 0044 0532 0130 00 THANKS", "IBAN [IBAN] THANKS"),
        ("from 192.168.1.10 and 10.0.0.255.", "from [IP] and [IP]."),
        ("v6 2001:db8::8a2e:370:7334 and ::1 and fe80::1", "v6 [IP] and [IP] and [IP]"),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "full [IP]"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "released on 2026-11-26 at 10:30:00",
        "dates 26.11.2026, 11/26/2026 and 2026-11-26 2026-11-27 2026-11-28",
        "we run version 2.13.0, v2.3.1 and v1.2.3.4 and version 10.0.0.1",
        "it costs $1,200 or €1.200,50 per seat, 12,000,000 total",
        "order 12345678 and ticket #987654",
        "invalid card 4111 1111 1111 1112",
        "invalid IBAN GB82 WEST 1234 5698 7654 33",
        "not an ip 256.1.1.1 or 1.2.3.4.5 or 01.02.03.04",
        "time 10:30:45, mac 00:1A:2B:3C:4D:5E, std::vector",
        "since 1999, in 2026, Q3 2025, 3 of 4 users, 50% faster",
        "user@localhost and @mention",
    ],
)
def test_does_not_redact(text: str) -> None:
    assert redact_pii(text) == text


# ------------------------------------------------------------------------------------------------
# clean_text
# ------------------------------------------------------------------------------------------------


def test_clean_zendesk_ticket_end_to_end() -> None:
    result = clean_text(ZENDESK_TICKET + "\nCall me: +44 20 7946 0958 or dana@northwind.com")
    assert isinstance(result, CleanedText)
    assert result.text == (
        "Hi Groundswell team,\n\n"
        "Our finance team exports the pipeline report every Monday and the CSV export times out\n"
        "once we go past 10k rows. Could you add a background export that emails a link?"
    )
    assert result.raw.startswith("Hi Groundswell team,")
    assert result.redactions == {}  # the phone and address were below the quote, not redacted content


def test_clean_counts_redactions_kept_in_text() -> None:
    result = clean_text("Reach me at ana@acme.io or +1 415 555 0132; card 4111 1111 1111 1111.")
    assert result.text == "Reach me at [EMAIL] or [PHONE]; card [CARD]."
    assert result.redactions == {"email": 1, "phone": 1, "card": 1}


def test_clean_without_redaction() -> None:
    result = clean_text("mail ana@acme.io", redact=False)
    assert result.text == "mail ana@acme.io" and result.redactions == {}


def test_clean_outlook_reply() -> None:
    assert clean_text(OUTLOOK_REPLY).text == (
        "The SSO login loop is back since this morning, nobody in our EU office can sign in."
    )


def test_content_hash_is_stable_and_whitespace_blind() -> None:
    digest = content_hash("Export is slow")
    assert digest == content_hash("  Export   is slow \n") == content_hash("Export\tis slow")
    assert digest == hashlib.sha256(b"Export is slow").hexdigest()
    assert digest != content_hash("Export is fast")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------

EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
SIXTEEN_DIGITS = re.compile(r"(?<![0-9])[0-9]{16}(?![0-9])")
GROUPED_SIXTEEN = re.compile(r"(?<![0-9])[0-9]{4}(?:[ -][0-9]{4}){3}(?![0-9])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def luhn_complete(prefix15: str) -> str:
    return next(prefix15 + d for d in "0123456789" if luhn_ok(prefix15 + d))


FRAGMENTS = [
    "ana@acme.io",
    "x.y+z@sub.example.co.uk",
    "@",
    ".",
    "-",
    " ",
    "\n",
    "\n\n",
    "\t",
    ">",
    "> ",
    "-- ",
    "--",
    "+1 415 555 0132",
    "(415) 555-0132",
    "0612345678",
    "4111 1111 1111 1111",
    "4111111111111111",
    "GB82 WEST 1234 5698 7654 32",
    "192.168.1.10",
    "2001:db8::1",
    "2026-11-26",
    "v2.3.1",
    "$1,200",
    "On Mon, Nov 23, 2026 at 9:14 AM Bob <bob@x.com> wrote:",
    "From: Bob <bob@x.com>",
    "Sent: Monday",
    "-----Original Message-----",
    "Best regards,",
    "Thanks,",
    "Dana",
    "Sent from my iPhone",
    "<p>",
    "</p>",
    "<br>",
    "&amp;",
    "&lt;p&gt;",
    "&#13;",
    "&#8203;",
    "<blockquote>",
    "</div>",
    "<![foo]>",
    "\u200b",
    "\ufeff",
    "\x00",
    "\x85",
    "\u2028",
    "\r\n",
    "e\u0301",
    "\u0301",
    "مرحبا بالعالم",
    "שלום",
    "\u200f",
    "😀",
    "👩‍👩‍👧",
    "\u1100\u1161",
    "ﬁ",
    "Ⅻ",
    "٤١١١",
    "0",
    "1",
    "9",
    ":",
    "::",
]
weird_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=25).map("".join)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(st.one_of(st.text(), weird_text), st.booleans())
def test_clean_text_never_raises_and_is_idempotent(text: str, is_html: bool) -> None:
    first = clean_text(text, is_html=is_html)
    assert first.raw == text
    assert clean_text(first.text).text == first.text
    assert normalize_whitespace(first.text) == first.text
    assert content_hash(first.text) == content_hash(clean_text(first.text).text)


@PROPERTY_SETTINGS
@given(weird_text)
def test_cleaned_text_holds_no_email_and_no_card(text: str) -> None:
    cleaned = clean_text(text).text
    assert not EMAIL_PATTERN.search(cleaned)
    for match in SIXTEEN_DIGITS.finditer(cleaned):
        assert not luhn_ok(match.group())
    for match in GROUPED_SIXTEEN.finditer(cleaned):
        assert not luhn_ok(re.sub("[ -]", "", match.group()))


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=30),
    st.from_regex(r"[0-9]{15}", fullmatch=True),
    st.sampled_from(["", " ", "-"]),
    st.text(max_size=30),
)
def test_any_luhn_valid_card_is_redacted(before: str, prefix: str, separator: str, after: str) -> None:
    number = luhn_complete(prefix)
    card = separator.join(number[i : i + 4] for i in range(0, 16, 4))
    redacted = redact_pii(f"{before} {card} {after}")
    assert number not in re.sub("[ -]", "", redacted.replace(before, "").replace(after, ""))


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,8}){0,2}\.[a-z]{2,6}", fullmatch=True),
    st.text(max_size=20),
)
def test_any_email_is_redacted(local: str, domain: str, noise: str) -> None:
    assert not EMAIL_PATTERN.search(redact_pii(f"{noise} {local}@{domain} {noise}"))


@given(st.text())
def test_content_hash_is_stable(text: str) -> None:
    assert content_hash(text) == content_hash(text)
    assert content_hash(text) == content_hash(normalize_whitespace(text))
    assert content_hash(text) == content_hash(f"  {text}\n")


@given(st.text())
def test_redaction_is_idempotent(text: str) -> None:
    once = redact_pii(text)
    assert redact_pii(once) == once
