"""Unit tests for bot.core.bidi: isolating left-to-right tokens in right-to-left messages."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.bidi import RTL_LANGUAGES, is_rtl, isolate_ltr, localise

SETTINGS = settings(database=None, deadline=None, max_examples=300)
LRI, RLI, FSI, PDI = "\u2066", "\u2067", "\u2068", "\u2069"
ISOLATES = LRI + RLI + FSI + PDI
PARAGRAPH_SEPARATORS = "\n\r\x1c\x1d\x1e\x85\u2029"
ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")


def lri(token: str) -> str:
    """Return ``token`` wrapped in a left-to-right isolate."""
    return f"{LRI}{token}{PDI}"


def strip_isolates(text: str) -> str:
    """Return ``text`` without any isolate initiator or PDI."""
    return "".join(ch for ch in text if ch not in ISOLATES)


def isolate_depths(text: str) -> list[int]:
    """Return, per character, how many isolates enclose it (Unicode bidi pairing rules).

    An initiator counts for itself, a matched PDI for its own isolate; an unmatched PDI is
    outside, and a paragraph separator closes every open isolate.
    """
    depths: list[int] = []
    depth = 0
    for ch in text:
        if ch in LRI + RLI + FSI:
            depth += 1
            depths.append(depth)
        elif ch == PDI and depth:
            depths.append(depth)
            depth -= 1
        elif ch in PARAGRAPH_SEPARATORS:
            depth = 0
            depths.append(0)
        else:
            depths.append(depth)
    return depths


def added_isolate_contents(result: str) -> list[str]:
    """Return the contents of the isolates in ``result``, which must not nest."""
    contents = re.findall(f"{LRI}([^{ISOLATES}]*){PDI}", result)
    assert len(result) - len(strip_isolates(result)) == 2 * len(contents), repr(result)
    return contents


# Text made of the characters that matter here: ASCII token characters, spaces, Arabic and
# Persian letters and digits, joiners and marks, line breaks, and every isolate character.
MIXED = st.text(
    alphabet=st.sampled_from(
        list("K7Q2az09+-./:@_#%=?&~(),;!'\" ")
        + list(" \n\t")
        + list("نعمرقمیکپ")
        + list("۰۱۲٣٤،؟")
        + ["\u200c", "\u200e", "\u200f", "\u00a0"]
        + list(ISOLATES)
    ),
    max_size=60,
)
ANY_TEXT = st.one_of(MIXED, st.text(max_size=60))
NO_ISOLATES = ANY_TEXT.map(strip_isolates)


# --- is_rtl and localise -------------------------------------------------------------------


def test_rtl_languages_are_the_agreed_base_codes() -> None:
    """RTL_LANGUAGES is exactly the agreed set of base codes."""
    assert {"ar", "fa", "he", "ur", "ps", "ckb", "yi", "dv", "sd", "ug"} == RTL_LANGUAGES


@pytest.mark.parametrize(
    "language", [*sorted(RTL_LANGUAGES), "fa-IR", "ar-EG", "ar_SA", "FA", "He-il", " ur "]
)
def test_rtl_languages_and_region_variants(language: str) -> None:
    """Base RTL codes and their region variants, in any case, are right to left."""
    assert is_rtl(language) is True


@pytest.mark.parametrize("language", ["en", "en-GB", "de", "ru", "tr", "fr-CA", "", "arz", "f"])
def test_other_languages_are_not_rtl(language: str) -> None:
    """Left-to-right languages, the empty code and codes merely starting like one are not."""
    assert is_rtl(language) is False


def test_localise_isolates_for_rtl_language() -> None:
    """For Farsi, localise wraps the reference as isolate_ltr does."""
    text = "شماره پرونده شما K7Q2 است"
    assert localise(text, "fa-IR") == f"شماره پرونده شما {lri('K7Q2')} است"
    assert localise(text, "fa") == isolate_ltr(text)


@SETTINGS
@given(
    text=ANY_TEXT,
    language=st.sampled_from(["en", "en-GB", "de", "fr", "es", "ru", "tr", "zh-Hans", "sw"]),
)
def test_localise_leaves_non_rtl_text_unchanged(text: str, language: str) -> None:
    """For a left-to-right language the text comes back unchanged."""
    assert localise(text, language) == text


# --- isolate_ltr: examples -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Arabic: reference with a sentence full stop after it.
        ("رقم قضيتك هو K7Q2.", f"رقم قضيتك هو {lri('K7Q2')}."),
        # Farsi: reference in the middle of the sentence.
        ("شماره پرونده شما K7Q2 است", f"شماره پرونده شما {lri('K7Q2')} است"),
        # Phone numbers stay one token, with the + and internal single spaces.
        ("اتصل على +353 1 21 00 489 الآن", f"اتصل على {lri('+353 1 21 00 489')} الآن"),
        ("با +49 170 1234567 تماس بگیرید.", f"با {lri('+49 170 1234567')} تماس بگیرید."),
        # URL followed by an Arabic comma, command followed by a colon.
        (
            "حمّل Signal من https://signal.org/download، ثم اكتب /start:",
            f"حمّل {lri('Signal')} من {lri('https://signal.org/download')}، ثم اكتب "
            f"{lri('/start')}:",
        ),
        # Numbered list: the number is isolated, its dot stays outside.
        ("1. نعم\n2. لا", f"{lri('1')}. نعم\n{lri('2')}. لا"),
        # Farsi list with Persian digits: nothing to wrap.
        ("۱. بله\n۲. نه", "۱. بله\n۲. نه"),
        # Language code, ISO date and time.
        (
            "برای تغییر زبان /lang en بنویسید. جلسه 2026-12-03 ساعت 18:00 است؟",
            f"برای تغییر زبان {lri('/lang')} {lri('en')} بنویسید. جلسه {lri('2026-12-03')} "
            f"ساعت {lri('18:00')} است؟",
        ),
        # Trailing sentence punctuation (several characters) stays outside.
        ("هل هو K7Q2?!", f"هل هو {lri('K7Q2')}?!"),
        # Parentheses: a balanced pair stays inside, an unpartnered one outside.
        ("المرجع (K7Q2)", f"المرجع {lri('(K7Q2)')}"),
        ("(المرجع K7Q2)", f"(المرجع {lri('K7Q2')})"),
        ("(+353 1 21) هاتف", f"({lri('+353 1 21')}) هاتف"),
        # An LTR token touching Arabic letters is still split off from them.
        ("المرجعK7Q2فقط", f"المرجع{lri('K7Q2')}فقط"),
        # Punctuation alone is not a token.
        ("... -- ؟ !", "... -- ؟ !"),
        ("", ""),
    ],
)
def test_isolate_examples(text: str, expected: str) -> None:
    """Each LTR token is wrapped exactly as expected and the rest is untouched."""
    assert isolate_ltr(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Digit groups separated by more than one space, or by punctuation, are separate.
        ("12  34", f"{lri('12')}  {lri('34')}"),
        ("1, 2, 3", f"{lri('1')}, {lri('2')}, {lri('3')}"),
        # A + only starts a phone number; a word does not join the digit groups.
        ("12 +34", f"{lri('12')} {lri('+34')}"),
        ("K7Q2 12 34", f"{lri('K7Q2')} {lri('12 34')}"),
        ("+353 1x", f"{lri('+353')} {lri('1x')}"),
    ],
)
def test_phone_number_boundaries(text: str, expected: str) -> None:
    """Only digit groups joined by single spaces merge into one phone-number token."""
    assert isolate_ltr(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        f"رقم {lri('K7Q2')}.",
        f"{FSI}K7Q2{PDI} و {RLI}نعم 12{PDI}",
        f"{FSI}خارج {LRI}K7Q2{PDI} 12{PDI}",
        f"{FSI}بدون إغلاق 12 K7Q2",
    ],
)
def test_existing_isolates_left_alone(text: str) -> None:
    """Text already inside an isolate (nested, or unclosed to the paragraph end) is kept."""
    assert isolate_ltr(text) == text


def test_unclosed_isolate_ends_at_paragraph() -> None:
    """An unclosed isolate protects only its own paragraph; the next line is processed."""
    text = f"{FSI}12\nK7Q2 {PDI}34"
    assert isolate_ltr(text) == f"{FSI}12\n{lri('K7Q2')} {PDI}{lri('34')}"


# --- isolate_ltr: properties ---------------------------------------------------------------


@SETTINGS
@given(text=ANY_TEXT)
def test_idempotent(text: str) -> None:
    """Applying isolate_ltr twice gives the same as applying it once."""
    once = isolate_ltr(text)
    assert isolate_ltr(once) == once


@SETTINGS
@given(text=NO_ISOLATES)
def test_round_trip(text: str) -> None:
    """Without isolate characters in the input, removing them from the output restores it."""
    assert strip_isolates(isolate_ltr(text)) == text


@SETTINGS
@given(text=ANY_TEXT)
def test_only_isolates_are_added(text: str) -> None:
    """Whatever the input, the output is the input with only LRI and PDI characters added."""
    result = isolate_ltr(text)
    added = list(result)
    for ch in text:  # the input must be a subsequence of the output
        while added and added[0] != ch:
            assert added.pop(0) in (LRI, PDI), repr(result)
        assert added, repr(result)
        added.pop(0)
    assert set(added) <= {LRI, PDI}


@SETTINGS
@given(text=ANY_TEXT)
def test_every_ascii_alnum_is_isolated(text: str) -> None:
    """Every ASCII letter and digit of the result is inside an isolate."""
    result = isolate_ltr(text)
    depths = isolate_depths(result)
    for index, ch in enumerate(result):
        if ASCII_ALNUM.fullmatch(ch):
            assert depths[index] > 0, (index, repr(result))


@SETTINGS
@given(text=NO_ISOLATES)
def test_added_isolates_hold_only_ascii_tokens(text: str) -> None:
    """Each added isolate holds ASCII only, has a letter or digit, and is tightly cut."""
    for content in added_isolate_contents(isolate_ltr(text)):
        assert ASCII_ALNUM.search(content), repr(content)
        assert all(" " <= ch <= "~" for ch in content), repr(content)
        assert content == content.strip(), repr(content)
        assert "  " not in content, repr(content)
        assert content[-1] not in ".,;:!?", repr(content)


@SETTINGS
@given(text=NO_ISOLATES.filter(lambda t: not ASCII_ALNUM.search(t)))
def test_text_without_ascii_alnum_unchanged(text: str) -> None:
    """Text with no ASCII letter or digit (Arabic, Persian digits, punctuation) is unchanged."""
    assert isolate_ltr(text) == text


@SETTINGS
@given(
    phone=st.from_regex(r"\+?[0-9]{1,4}( [0-9]{1,7}){1,4}", fullmatch=True),
    end=st.sampled_from(["", ".", "،", " الآن", "?"]),
)
def test_phone_numbers_are_one_token(phone: str, end: str) -> None:
    """A phone number in an Arabic sentence becomes exactly one isolate."""
    assert isolate_ltr(f"اتصل على {phone}{end}") == f"اتصل على {lri(phone)}{end}"
