"""Keeping left-to-right tokens readable inside right-to-left (Arabic, Farsi, ...) messages.

A case reference such as ``K7Q2``, a phone number, a URL, a command like ``/lang`` or a date
dropped into an Arabic sentence is reordered by the Unicode bidi algorithm in ways that make
it unreadable (``+353 1 21 00 489`` can come out as ``489 00 21 1 +353``). Wrapping each such
token in LEFT-TO-RIGHT ISOLATE (U+2066) ... POP DIRECTIONAL ISOLATE (U+2069) makes the
renderer lay it out left to right as one unit, and the surrounding sentence treats it as a
single neutral character.
"""

from __future__ import annotations

import re

LRI = "\u2066"  # LEFT-TO-RIGHT ISOLATE
RLI = "\u2067"  # RIGHT-TO-LEFT ISOLATE
FSI = "\u2068"  # FIRST STRONG ISOLATE
PDI = "\u2069"  # POP DIRECTIONAL ISOLATE
ISOLATE_OPENERS = frozenset({LRI, RLI, FSI})
ISOLATE_CHARS = frozenset({LRI, RLI, FSI, PDI})

RTL_LANGUAGES: frozenset[str] = frozenset(
    {"ar", "fa", "he", "ur", "ps", "ckb", "yi", "dv", "sd", "ug"}
)

# Characters of bidi class B (paragraph separators): an isolate never extends past one.
_PARAGRAPH_SEPARATORS = frozenset({"\n", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2029"})
# A run of ASCII printable non-space characters; it is a token if it has a letter or digit.
_RUN = re.compile(r"[!-~]+")
_ALNUM = re.compile(r"[A-Za-z0-9]")
# Sentence punctuation that belongs to the surrounding text when it ends a token.
_TRAILING = frozenset(".,;:!?")
# A phone number so far (``+353 1 21``) and a further digit group that may extend it.
_PHONE = re.compile(r"\+?[0-9]+(?: [0-9]+)*")
_DIGIT_GROUP = re.compile(r"[0-9]+")


def is_rtl(language: str) -> bool:
    """Return True when ``language`` is written right to left.

    Guarantees: only the base code counts, case-insensitively, so ``fa``, ``fa-IR``,
    ``FA_ir`` and ``ar-EG`` are right to left exactly when their base code is in
    ``RTL_LANGUAGES``; anything else (including the empty string) is False.
    """
    base = language.strip().replace("_", "-").split("-", 1)[0].lower()
    return base in RTL_LANGUAGES


def _core(text: str, start: int, end: int) -> tuple[int, int]:
    """Return the part of the run ``text[start:end]`` that goes inside the isolate.

    Trailing ``.,;:!?`` are left outside, as is a trailing ``)`` or a leading ``(`` that has
    no partner inside the run (so ``(K7Q2)`` stays whole but ``K7Q2)`` loses its ``)``).
    The run contains an ASCII letter or digit, which is never stripped.
    """
    changed = True
    while changed:
        changed = False
        core = text[start:end]
        last = core[-1]
        if last in _TRAILING or (last == ")" and core.count(")") > core.count("(")):
            end -= 1
            changed = True
        elif core[0] == "(" and core.count("(") > core.count(")"):
            start += 1
            changed = True
    return start, end


def _tokens(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) spans of the LTR tokens in ``text``, which has no isolates.

    Phone-number digit groups separated by exactly one space are merged into one span.
    """
    spans: list[tuple[int, int]] = []
    for match in _RUN.finditer(text):
        if not _ALNUM.search(match.group()):
            continue
        start, end = _core(text, match.start(), match.end())
        if spans:
            prev_start, prev_end = spans[-1]
            if (
                text[prev_end:start] == " "
                and _PHONE.fullmatch(text, prev_start, prev_end)
                and _DIGIT_GROUP.fullmatch(text, start, end)
            ):
                spans[-1] = (prev_start, end)
                continue
        spans.append((start, end))
    return spans


def _wrap(text: str) -> str:
    """Wrap every LTR token of ``text`` (a stretch outside any isolate) in LRI ... PDI."""
    parts: list[str] = []
    done = 0
    for start, end in _tokens(text):
        parts += [text[done:start], LRI, text[start:end], PDI]
        done = end
    parts.append(text[done:])
    return "".join(parts)


def isolate_ltr(text: str) -> str:
    """Wrap every left-to-right token of ``text`` in LRI (U+2066) ... PDI (U+2069).

    A token is a maximal run of ASCII printable non-space characters containing at least one
    ASCII letter or digit (``K7Q2``, ``12``, ``https://signal.org/download``, ``/lang``,
    ``2026-12-03``, ``18:00``), without its trailing ``.,;:!?`` and without an unpartnered
    trailing ``)`` or leading ``(``; digit groups joined by single spaces, optionally starting
    with ``+`` (``+353 1 21 00 489``), form one token.

    Guarantees:

    * every ASCII letter and digit of the result is inside an isolate;
    * text already inside an isolate (U+2066, U+2067 or U+2068 up to its matching U+2069, or
      to the end of the paragraph when unmatched, as in Unicode's bidi algorithm) is left
      alone, so ``isolate_ltr(isolate_ltr(t)) == isolate_ltr(t)``;
    * only LRI and PDI characters are added, so when ``text`` contains no U+2066..U+2069,
      removing those characters from the result gives back ``text`` exactly;
    * an added isolate contains only ASCII (printable characters and, inside phone numbers,
      spaces): Arabic, Persian and Arabic-Indic letters and digits are never wrapped.
    """
    parts: list[str] = []
    free_start = 0  # start of the stretch outside any isolate not yet written to parts
    depth = 0
    for index, char in enumerate(text):
        if char in ISOLATE_OPENERS:
            if depth == 0:
                parts.append(_wrap(text[free_start:index]))
                free_start = index
            depth += 1
        elif depth and (char == PDI or char in _PARAGRAPH_SEPARATORS):
            depth = 0 if char in _PARAGRAPH_SEPARATORS else depth - 1
            if depth == 0:
                # The isolate ends here: copy it verbatim, including this character.
                parts.append(text[free_start : index + 1])
                free_start = index + 1
    if depth:
        parts.append(text[free_start:])
    else:
        parts.append(_wrap(text[free_start:]))
    return "".join(parts)


def localise(text: str, language: str) -> str:
    """Return ``text`` ready to send to someone reading ``language``.

    Guarantees: for a right-to-left language (``is_rtl``) the result is ``isolate_ltr(text)``;
    for any other language it is ``text`` unchanged.
    """
    return isolate_ltr(text) if is_rtl(language) else text
