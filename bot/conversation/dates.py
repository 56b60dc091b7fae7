"""Understand a date typed in answer to a question such as "When is the next hearing?".

The answer comes from a stressed person on a phone, in any of the bot's languages, so the
parser is forgiving about what does not matter and strict about what does:

* Forgiving: surrounding spaces, one trailing full stop, invisible direction marks
  (common in Arabic and Farsi text), Eastern Arabic-Indic (U+0660-U+0669) and Persian
  (U+06F0-U+06F9) digits, the Arabic comma (U+060C), date separator (U+060D) and decimal
  separator (U+066B), and case, accents and apostrophe style in the "today" / "tomorrow" words.
* Strict: anything that is not one of the forms below, or names a date that does not exist,
  gives ``None`` so that the bot asks again rather than recording a wrong date.

Numeric dates are read **day first** (``3/12`` is 3 December), because our users are mostly
outside the US. Only a leading four-digit year switches to year-month-day (ISO ``2026-12-03``).
Years are Gregorian: a Solar Hijri (Jalali) or Hijri year such as ``1405`` falls outside the
accepted 1900-2200 range and is refused rather than misread.

Everything here is pure: no I/O and no clock; "today" is always passed in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["DateWords", "days_until", "parse_date"]

MIN_YEAR = 1900
MAX_YEAR = 2200
MAX_OFFSET_DAYS = 366

# Eastern Arabic-Indic and Persian digits to ASCII, Arabic separators to their ASCII look-alikes.
_DIGITS_AND_SEPARATORS = str.maketrans(
    {
        **{chr(0x0660 + i): str(i) for i in range(10)},
        **{chr(0x06F0 + i): str(i) for i in range(10)},
        "\u060c": "/",  # ARABIC COMMA
        "\u060d": "/",  # ARABIC DATE SEPARATOR
        "\u066b": ".",  # ARABIC DECIMAL SEPARATOR
    }
)

# Folded away when comparing words: letter variants that phones and keyboards mix freely.
_WORD_VARIANTS = str.maketrans(
    {
        "\u2019": "'",  # RIGHT SINGLE QUOTATION MARK, the typographic apostrophe
        "\u02bc": "'",  # MODIFIER LETTER APOSTROPHE
        "\u0131": "i",  # Turkish dotless i, so that YARIN (folds to "yarin") matches it
        "\u064a": "\u06cc",  # ي Arabic yeh -> Persian yeh
        "\u0649": "\u06cc",  # ى alef maksura -> Persian yeh
        "\u0643": "\u06a9",  # ك Arabic kaf -> Persian keheh
    }
)

_YEAR_FIRST = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})", re.ASCII)
_DAY_FIRST = re.compile(r"([0-9]{1,2})([-/.])([0-9]{1,2})(?:\2([0-9]{4}|[0-9]{2}))?", re.ASCII)
_OFFSET = re.compile(r"\+([0-9]{1,3})", re.ASCII)


@dataclass(frozen=True)
class DateWords:
    """The words meaning "today" and "tomorrow" in the defender's language.

    Supplied by the caller (typically from the flow texts of the session's language). They
    are compared after the same folding as the input (case, accents, apostrophe style,
    invisible marks), so ``("mañana",)`` also matches ``MANANA``.
    """

    today: tuple[str, ...] = ("today",)
    tomorrow: tuple[str, ...] = ("tomorrow",)


ENGLISH = DateWords()


def parse_date(text: str, today: date, words: DateWords = ENGLISH) -> date | None:
    """Read a typed answer as a calendar date, or return ``None``.

    Accepted, after ignoring surrounding spaces, invisible direction marks and one trailing
    full stop (digits may be ASCII, Eastern Arabic-Indic or Persian):

    * year first, only with a four-digit year: ``2026-12-03``, ``2026/12/03``, ``2026.12.03``;
    * day first: ``3/12``, ``03.12``, ``3-12``, ``3/12/2026``, ``3.12.26`` (a two-digit year
      ``yy`` means ``2000 + yy``); one separator kind per date (``/``, ``.`` or ``-``, where
      the Arabic comma and date separator count as ``/`` and the Arabic decimal separator
      as ``.``);
    * without a year: the first date on or after ``today``, within the next 366 days, with
      that day and month (``3/1`` on 2026-12-30 is 2027-01-03); ``29/2`` is ``None`` when
      the coming February has no 29th;
    * a word of ``words.today`` or ``words.tomorrow`` (compared ignoring case and accents);
    * ``+N`` with ``0 <= N <= 366``: ``today`` plus ``N`` days.

    Guarantees: the result is ``None`` for any other text, for a date that does not exist
    (``31/02``, month 13), for an explicit year outside 1900-2200, and for a text that
    matches both a "today" and a "tomorrow" word. A yearless or relative answer is always in
    ``[today, today + 366 days]``. Never raises for any ``str``, whatever ``today`` is.
    """
    cleaned = _clean(text)
    if not cleaned:
        return None
    try:
        return _parse_numeric(cleaned.translate(_DIGITS_AND_SEPARATORS), today) or _parse_word(
            cleaned, today, words
        )
    except (OverflowError, ValueError):  # arithmetic past date.max / before date.min
        return None


def days_until(when: date, today: date) -> int:
    """Return the signed number of days from ``today`` to ``when``.

    Guarantees: positive when ``when`` is in the future, 0 on the day itself, negative when
    it has passed; ``today + timedelta(days=days_until(when, today)) == when``.
    """
    return (when - today).days


def _clean(text: str) -> str:
    """Drop invisible format characters, surrounding spaces and one trailing full stop."""
    visible = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()
    if visible.endswith("."):
        visible = visible[:-1].rstrip()
    return visible


def _parse_numeric(text: str, today: date) -> date | None:
    """Parse the numeric forms (ASCII digits only, already normalised)."""
    if match := _YEAR_FIRST.fullmatch(text):
        year, _, month, day = match.groups()
        return _explicit(int(year), int(month), int(day))
    if match := _DAY_FIRST.fullmatch(text):
        day, _, month, year = match.groups()
        if year is None:
            return _yearless(int(month), int(day), today)
        full_year = 2000 + int(year) if len(year) == 2 else int(year)
        return _explicit(full_year, int(month), int(day))
    if match := _OFFSET.fullmatch(text):
        days = int(match.group(1))
        return today + timedelta(days=days) if days <= MAX_OFFSET_DAYS else None
    return None


def _parse_word(text: str, today: date, words: DateWords) -> date | None:
    """Match the folded text against the caller's "today" and "tomorrow" words."""
    folded = _fold(text)
    is_today = folded in {_fold(w) for w in words.today} - {""}
    is_tomorrow = folded in {_fold(w) for w in words.tomorrow} - {""}
    if is_today and not is_tomorrow:
        return today
    if is_tomorrow and not is_today:
        return today + timedelta(days=1)
    return None


def _fold(word: str) -> str:
    """Fold a word for comparison: compatibility forms, marks, case, spacing, letter variants."""
    decomposed = unicodedata.normalize("NFKD", word)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) not in {"Mn", "Cf"})
    return " ".join(bare.casefold().translate(_WORD_VARIANTS).split())


def _explicit(year: int, month: int, day: int) -> date | None:
    """The date with an explicit year, or None if it does not exist or is out of range."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    return _date_or_none(year, month, day)


def _yearless(month: int, day: int, today: date) -> date | None:
    """The coming occurrence of day/month: this year if not yet past, else next year."""
    year = today.year if (month, day) >= (today.month, today.day) else today.year + 1
    return _date_or_none(year, month, day)


def _date_or_none(year: int, month: int, day: int) -> date | None:
    """``date(year, month, day)``, or None where that raises."""
    try:
        return date(year, month, day)
    except ValueError:
        return None
