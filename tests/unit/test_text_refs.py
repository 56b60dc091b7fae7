"""Unit tests for bot.core.text (cleaning input) and bot.core.refs (case references)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.refs import ALPHABET, LENGTH, new_reference, normalise_reference
from bot.core.text import clean_input

SETTINGS = settings(database=None, deadline=None)
ARABIC = "أنا في خطر، الشرطة أمام منزلي"
FARSI = "می‌خواهم با یک وکیل صحبت کنم"  # contains a ZWNJ (U+200C) after می
KEPT_FORMAT = {"\u200c", "\u200d", "\u200e", "\u200f"}


# --- clean_input ---------------------------------------------------------------------------


def test_control_characters_removed() -> None:
    """NUL, BEL, ESC and DEL are removed and the removal is reported."""
    result = clean_input("a\x00b\x07c\x1b[31md\x7fe", 100)
    assert result.text == "abc[31mde"
    assert result.stripped_controls is True
    assert result.truncated is False


def test_newline_and_tab_kept() -> None:
    """Newlines and tabs inside the text are kept and nothing is reported stripped."""
    result = clean_input("line one\n\tline two", 100)
    assert result.text == "line one\n\tline two"
    assert result.stripped_controls is False


@pytest.mark.parametrize("raw", ["a\r\nb", "a\rb"])
def test_carriage_returns_become_newlines(raw: str) -> None:
    """CRLF and lone CR become a single newline rather than being dropped."""
    assert clean_input(raw, 100).text == "a\nb"


@pytest.mark.parametrize("mark", sorted(KEPT_FORMAT))
def test_joiners_and_direction_marks_kept(mark: str) -> None:
    """ZWNJ, ZWJ, LRM and RLM are kept inside the text."""
    result = clean_input(f"ab{mark}cd", 100)
    assert result.text == f"ab{mark}cd"
    assert result.stripped_controls is False


@pytest.mark.parametrize("mark", ["\u200b", "\ufeff", "\u202e", "\u2066", "\ue000"])
def test_other_format_and_private_characters_removed(mark: str) -> None:
    """Zero-width space, BOM, bidi overrides/isolates and private-use characters are removed."""
    result = clean_input(f"ab{mark}cd", 100)
    assert result.text == "abcd"
    assert result.stripped_controls is True


@pytest.mark.parametrize("text", [ARABIC, FARSI, "Кыргызстан", "ትግራይ", "中文 求助"])
def test_non_latin_text_preserved(text: str) -> None:
    """Arabic, Farsi (with its ZWNJ) and other scripts come through unchanged."""
    result = clean_input(text, 2000)
    assert result.text == text
    assert result.stripped_controls is False


def test_farsi_zwnj_survives() -> None:
    """The ZWNJ inside the Farsi sample is really there and is kept."""
    assert "\u200c" in FARSI
    assert "\u200c" in clean_input(FARSI, 2000).text


def test_nfc_normalisation() -> None:
    """A decomposed e + combining acute becomes the single precomposed character."""
    assert clean_input("cafe\u0301", 100).text == "caf\u00e9"
    assert clean_input("\u1100\u1161", 100).text == "\uac00"


def test_surrounding_whitespace_trimmed() -> None:
    """Spaces and newlines around the text are trimmed."""
    assert clean_input("  \n hello \t\n", 100).text == "hello"


def test_truncation() -> None:
    """Text longer than max_chars is cut to max_chars and reported truncated."""
    result = clean_input("x" * 2500, 2000)
    assert result.text == "x" * 2000
    assert result.truncated is True


def test_exact_length_not_truncated() -> None:
    """Text of exactly max_chars is kept whole and not reported truncated."""
    result = clean_input("x" * 2000, 2000)
    assert len(result.text) == 2000
    assert result.truncated is False


def test_truncation_counts_after_trimming() -> None:
    """Surrounding whitespace does not count toward the limit."""
    result = clean_input("   " + "x" * 10 + "   ", 10)
    assert result.text == "x" * 10
    assert result.truncated is False


def test_truncation_trims_cut_end() -> None:
    """A cut that ends in whitespace drops that whitespace."""
    result = clean_input("abc   def", 5)
    assert result.text == "abc"
    assert result.truncated is True


@SETTINGS
@given(raw=st.text(), max_chars=st.integers(min_value=0, max_value=50))
def test_clean_input_guarantees(raw: str, max_chars: int) -> None:
    """The result is at most max_chars long and has no Cc character but newline and tab."""
    result = clean_input(raw, max_chars)
    assert len(result.text) <= max_chars
    controls = {ch for ch in result.text if unicodedata.category(ch) == "Cc"}
    assert controls <= {"\n", "\t"}, repr(result.text)
    assert all(
        ch in KEPT_FORMAT
        for ch in result.text
        if unicodedata.category(ch) in {"Cf", "Cs", "Co", "Cn"}
    )
    assert result.text == result.text.strip()


@SETTINGS
@given(raw=st.text(alphabet=st.characters(categories=["L", "M", "N", "P", "Zs"])))
def test_clean_input_keeps_ordinary_text(raw: str) -> None:
    """Text without control or format characters is only normalised and trimmed."""
    result = clean_input(raw, 10_000)
    assert result.text == unicodedata.normalize("NFC", raw).strip()
    assert result.stripped_controls is False
    assert result.truncated is False


def test_result_is_nfc_after_removal() -> None:
    """Removing a zero-width space between e and a combining acute still yields NFC text."""
    result = clean_input("cafe\u200b\u0301", 100)
    assert result.text == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", result.text)


# --- references ----------------------------------------------------------------------------


def test_alphabet_has_no_ambiguous_characters() -> None:
    """The alphabet has 30 distinct upper-case symbols and none of O 0 I 1 L U."""
    assert len(ALPHABET) == len(set(ALPHABET)) == 30
    assert not set(ALPHABET) & set("O0I1LU")
    assert ALPHABET.upper() == ALPHABET


def test_new_reference_shape() -> None:
    """new_reference returns 4 characters, all from ALPHABET."""
    for _ in range(200):
        ref = new_reference()
        assert len(ref) == LENGTH == 4
        assert set(ref) <= set(ALPHABET)
        assert normalise_reference(ref) == ref


def test_new_reference_varies() -> None:
    """new_reference is random: 50 draws are not all the same."""
    assert len({new_reference() for _ in range(50)}) > 1


@pytest.mark.parametrize(
    "typed",
    ["K7Q2", "k7q2", "K7q2", "#k7q2.", " #K7Q2 ", "(k7q2)", "K7Q2!", "'k7q2'", "[K7Q2],"],
)
def test_normalise_accepts_case_and_decoration(typed: str) -> None:
    """Any case and surrounding punctuation are accepted and give the canonical form."""
    assert normalise_reference(typed) == "K7Q2"


@pytest.mark.parametrize("typed", ["", "#", "K7Q", "K7Q22", "K7 Q2", "K7Q2K7Q2"])
def test_normalise_rejects_wrong_length(typed: str) -> None:
    """Anything that is not 4 symbols after trimming is rejected."""
    assert normalise_reference(typed) is None


@pytest.mark.parametrize("bad", ["O", "0", "I", "1", "L", "U", "o", "i", "l", "u"])
def test_normalise_rejects_ambiguous_characters(bad: str) -> None:
    """References containing O, 0, I, 1, L or U (in any case) are rejected."""
    assert normalise_reference(f"K7{bad}2") is None


@SETTINGS
@given(text=st.text(max_size=12))
def test_normalise_result_always_valid(text: str) -> None:
    """normalise_reference returns None or 4 characters from ALPHABET."""
    result = normalise_reference(text)
    assert result is None or (len(result) == LENGTH and set(result) <= set(ALPHABET))


@SETTINGS
@given(
    ref=st.text(alphabet=ALPHABET, min_size=LENGTH, max_size=LENGTH),
    lower=st.booleans(),
    prefix=st.sampled_from(["", "#", " ", "("]),
    suffix=st.sampled_from(["", ".", "!", ")", " "]),
)
def test_normalise_round_trip(ref: str, lower: bool, prefix: str, suffix: str) -> None:
    """Every valid reference, in either case and decorated, normalises back to itself."""
    typed = prefix + (ref.lower() if lower else ref) + suffix
    assert normalise_reference(typed) == ref
