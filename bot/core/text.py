"""Cleaning what people type before anything else looks at it."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Characters kept although they are "control" or "format" characters: line breaks and tabs,
# and the bidi/joiner marks that Arabic, Farsi and Indic scripts need to render correctly.
_KEPT = {"\n", "\t", "\u200c", "\u200d", "\u200e", "\u200f"}


@dataclass(frozen=True, slots=True)
class CleanText:
    """The cleaned text and what cleaning had to do to it."""

    text: str
    truncated: bool
    stripped_controls: bool


def clean_input(raw: str, max_chars: int) -> CleanText:
    """Normalise user input: NFC, control characters removed, surrounding space trimmed,
    cut to ``max_chars`` characters.

    Guarantees the result has at most ``max_chars`` characters and contains no control
    characters other than newline and tab.
    """
    lines = raw.replace("\r\n", "\n").replace("\r", "\n")
    kept = [
        ch
        for ch in lines
        if ch in _KEPT or unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"}
    ]
    stripped = len(kept) != len(lines)
    text = unicodedata.normalize("NFC", "".join(kept)).strip()
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars].rstrip()
    return CleanText(text=text, truncated=truncated, stripped_controls=stripped)


def without_lone_surrogates(text: str) -> str:
    """Return ``text`` with every lone UTF-16 surrogate replaced by U+FFFD (a JSON payload
    may carry one as ``\\ud800``; UTF-8, and so encryption and hashing, cannot encode it).

    Guarantees the result encodes as UTF-8; a text without lone surrogates is returned as is.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
