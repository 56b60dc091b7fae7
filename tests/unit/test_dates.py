"""Unit tests for bot.conversation.dates: typed dates in every accepted form, in ASCII,
Eastern Arabic-Indic and Persian digits, plus properties checked against independent oracles."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation.dates import DateWords, days_until, parse_date

SETTINGS = settings(database=None, deadline=None)
TODAY = date(2026, 5, 14)
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")

SPANISH = DateWords(today=("hoy",), tomorrow=("mañana",))
FRENCH = DateWords(today=("aujourd'hui",), tomorrow=("demain",))
ARABIC = DateWords(today=("اليوم",), tomorrow=("غدا",))
RUSSIAN = DateWords(today=("сегодня",), tomorrow=("завтра",))
FARSI = DateWords(today=("امروز",), tomorrow=("فردا",))
PORTUGUESE = DateWords(today=("hoje",), tomorrow=("amanhã",))
TURKISH = DateWords(today=("bugün",), tomorrow=("yarın",))

dates_1950_2150 = st.dates(min_value=date(1950, 1, 1), max_value=date(2150, 12, 31))
any_today = st.dates(min_value=date(1950, 1, 1), max_value=date(2150, 12, 31))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ISO and year-first
        ("2026-12-03", date(2026, 12, 3)),
        ("2026/12/03", date(2026, 12, 3)),
        ("2026.12.03", date(2026, 12, 3)),
        ("2026-1-3", date(2026, 1, 3)),
        ("1900-01-01", date(1900, 1, 1)),
        ("2200-12-31", date(2200, 12, 31)),
        ("2024-02-29", date(2024, 2, 29)),
        # day first, with a year
        ("3/12/2026", date(2026, 12, 3)),
        ("03/12/2026", date(2026, 12, 3)),
        ("3.12.26", date(2026, 12, 3)),
        ("3-12-2027", date(2027, 12, 3)),
        ("13/1/00", date(2000, 1, 13)),
        ("1/2/99", date(2099, 2, 1)),
        ("29/2/2028", date(2028, 2, 29)),
        # day first, without a year (TODAY is 2026-05-14)
        ("3/12", date(2026, 12, 3)),
        ("03.12", date(2026, 12, 3)),
        ("3-12", date(2026, 12, 3)),
        ("14/5", date(2026, 5, 14)),
        ("13/5", date(2027, 5, 13)),
        ("3/1", date(2027, 1, 3)),
        ("12/5", date(2027, 5, 12)),
        # surrounding spaces and one trailing full stop
        ("  3/12  ", date(2026, 12, 3)),
        ("3.12.", date(2026, 12, 3)),
        ("3.12.2026.", date(2026, 12, 3)),
        ("2026-12-03 .", date(2026, 12, 3)),
        ("\t3/12\n", date(2026, 12, 3)),
        ("\u00a03/12\u00a0", date(2026, 12, 3)),
        # relative
        ("+0", TODAY),
        ("+1", date(2026, 5, 15)),
        ("+7", date(2026, 5, 21)),
        ("+366", TODAY + timedelta(days=366)),
        ("+007", date(2026, 5, 21)),
        ("today", TODAY),
        ("Today.", TODAY),
        ("TOMORROW", date(2026, 5, 15)),
        (" tomorrow ", date(2026, 5, 15)),
    ],
)
def test_accepted_forms(text: str, expected: date) -> None:
    """Each documented form gives exactly the expected date."""
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Eastern Arabic-Indic digits
        ("٢٠٢٦-١٢-٠٣", date(2026, 12, 3)),
        ("٣/١٢/٢٠٢٦", date(2026, 12, 3)),
        ("٣/١٢", date(2026, 12, 3)),
        ("٣.١٢.٢٦", date(2026, 12, 3)),
        ("+٧", date(2026, 5, 21)),
        # Persian digits
        ("۲۰۲۶/۱۲/۰۳", date(2026, 12, 3)),
        ("۳/۱۲/۲۰۲۶", date(2026, 12, 3)),
        ("۰۳.۱۲", date(2026, 12, 3)),
        ("+۱۰", date(2026, 5, 24)),
        # mixed digit systems
        ("3/۱۲/٢٠٢٦", date(2026, 12, 3)),
        # Arabic separators
        ("٣،١٢", date(2026, 12, 3)),
        ("٣؍١٢؍٢٠٢٦", date(2026, 12, 3)),
        ("۳٫۱۲٫۲۶", date(2026, 12, 3)),
        # invisible direction marks that RTL keyboards insert
        ("\u200f٣/١٢/٢٠٢٦\u200f", date(2026, 12, 3)),
        ("\u200e۳/۱۲\u200e", date(2026, 12, 3)),
        ("\u061c3/12", date(2026, 12, 3)),
    ],
)
def test_arabic_and_persian_digits_and_separators(text: str, expected: date) -> None:
    """Eastern Arabic-Indic and Persian digits, Arabic separators and bidi marks are accepted."""
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(
    ("words", "text", "expected"),
    [
        (SPANISH, "hoy", TODAY),
        (SPANISH, "Mañana", date(2026, 5, 15)),
        (SPANISH, "manana", date(2026, 5, 15)),
        (SPANISH, "MAÑANA.", date(2026, 5, 15)),
        (FRENCH, "Aujourd'hui", TODAY),
        (FRENCH, "aujourd\u2019hui", TODAY),
        (FRENCH, "demain", date(2026, 5, 15)),
        (ARABIC, "اليوم", TODAY),
        (ARABIC, "غدا", date(2026, 5, 15)),
        (ARABIC, "غداً", date(2026, 5, 15)),
        (ARABIC, "\u200fغدا\u200f", date(2026, 5, 15)),
        (RUSSIAN, "Сегодня", TODAY),
        (RUSSIAN, "ЗАВТРА", date(2026, 5, 15)),
        (FARSI, "امروز", TODAY),
        (FARSI, "فردا", date(2026, 5, 15)),
        (PORTUGUESE, "Hoje", TODAY),
        (PORTUGUESE, "amanha", date(2026, 5, 15)),
        (TURKISH, "BUGÜN", TODAY),
        (TURKISH, "Yarın", date(2026, 5, 15)),
        (TURKISH, "YARIN", date(2026, 5, 15)),
        (DateWords(tomorrow=("pasado mañana",)), "Pasado   mañana", date(2026, 5, 15)),
        (DateWords(today=("today", "tdy")), "tdy", TODAY),
    ],
)
def test_words_in_each_language(words: DateWords, text: str, expected: date) -> None:
    """The caller's words match ignoring case, accents, apostrophe style and spacing."""
    assert parse_date(text, TODAY, words) == expected


@pytest.mark.parametrize(
    ("words", "text"),
    [
        (SPANISH, "today"),  # English words are not implied when others are given
        (SPANISH, "tomorrow"),
        (FRENCH, "aujourd"),
        (ARABIC, "غد"),
        (DateWords(), "yesterday"),
        (DateWords(today=("",), tomorrow=("",)), ""),
        (DateWords(today=("",)), " . "),
        (DateWords(today=("",)), "\u0651"),  # a lone mark folds to nothing
        (DateWords(today=("\u064b",)), "\u0651"),  # so does a word made only of marks
        (DateWords(today=("same",), tomorrow=("same",)), "same"),  # ambiguous
    ],
)
def test_unknown_or_ambiguous_words_are_none(words: DateWords, text: str) -> None:
    """Words not supplied, empty words and words meaning both days give None."""
    assert parse_date(text, TODAY, words) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        ".",
        "..",
        "3/12..",
        "next tuesday",
        "3 December",
        "in 3 days",
        "3",
        "2026",
        "+",
        "+ 3",
        "+367",
        "+1000",
        "-3",
        "3/12/2026/1",
        "3/12.2026",
        "3/12-26",
        "2026-12/03",
        "3/12/202",
        "3/12/1",
        "3//12",
        "/3/12",
        "03/12/2026 10:00",
        "3/12 today",
        "١/٢/٣/٤",
        "३/१२",  # Devanagari digits are not among the accepted ones
        "３/１２",  # full-width digits neither
        "3⁄12",  # fraction slash is not a separator
        "3,12",
        "12/3/2026\x00",
    ],
)
def test_other_text_is_none(text: str) -> None:
    """Text that is not one of the documented forms gives None."""
    assert parse_date(text, TODAY) is None


@pytest.mark.parametrize(
    "text",
    [
        "31/02",
        "30/2/2026",
        "29/2/2026",
        "2026-02-29",
        "31/4",
        "31/04/2026",
        "1/13",
        "1/13/2026",
        "2026-13-01",
        "0/12",
        "3/0",
        "00/00",
        "32/1",
        "2026-00-10",
        "2026-12-00",
        "12/31/2026",  # US order: month 31 does not exist
        "1899-12-31",
        "2201-01-01",
        "31/12/1899",
        "1/1/2201",
        "0001-01-01",
        "9999-12-31",
        "1405/09/12",  # a Solar Hijri year is out of range, not misread
        "١٤٤٧/٠٦/٠٣",  # a Hijri year likewise
    ],
)
def test_impossible_or_out_of_range_dates_are_none(text: str) -> None:
    """Dates that do not exist, and explicit years outside 1900-2200, give None."""
    assert parse_date(text, TODAY) is None


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("3/1", date(2026, 12, 30), date(2027, 1, 3)),
        ("31/12", date(2026, 12, 31), date(2026, 12, 31)),
        ("30/12", date(2026, 12, 31), date(2027, 12, 30)),
        ("1/1", date(2026, 12, 31), date(2027, 1, 1)),
        ("1/1", date(2026, 1, 1), date(2026, 1, 1)),
        ("+1", date(2026, 12, 31), date(2027, 1, 1)),
        ("+366", date(2027, 3, 1), date(2028, 3, 1)),
        ("tomorrow", date(2026, 12, 31), date(2027, 1, 1)),
        ("tomorrow", date(2028, 2, 28), date(2028, 2, 29)),
        # 29 February: only when the coming February has one
        ("29/2", date(2028, 1, 10), date(2028, 2, 29)),
        ("29/2", date(2028, 2, 29), date(2028, 2, 29)),
        ("29/2", date(2027, 3, 1), date(2028, 2, 29)),
        ("29/2", date(2027, 1, 10), None),
        ("29/2", date(2028, 3, 1), None),
        ("29/2", date(2099, 6, 1), None),  # 2100 is not a leap year
        ("28/2", date(2027, 3, 1), date(2028, 2, 28)),
    ],
)
def test_year_rollover(text: str, today: date, expected: date | None) -> None:
    """Yearless and relative dates roll over into the next year, leap days included."""
    assert parse_date(text, today) == expected


@pytest.mark.parametrize("today", [date.max, date.max - timedelta(days=1), date.min])
@pytest.mark.parametrize("text", ["tomorrow", "+366", "3/1", "1/1", "today", "+0", "2026-1-1"])
def test_calendar_edges_never_raise(text: str, today: date) -> None:
    """At the very ends of the calendar an unreachable date is None, not an exception."""
    result = parse_date(text, today)
    assert result is None or date.min <= result <= date.max
    if today == date.max and text in {"tomorrow", "+366", "3/1"}:
        assert result is None


@pytest.mark.parametrize(
    "text", ["\ud800", "3/12\udfff", "\x00", "\ufeff", "\u200f\u200e", "\u0651"]
)
def test_malformed_or_invisible_text_is_none(text: str) -> None:
    """Lone surrogates, control characters and text that is only marks are just not dates."""
    assert parse_date(text, TODAY, ARABIC) is None


@pytest.mark.parametrize(
    ("when", "today", "expected"),
    [
        (date(2026, 5, 14), date(2026, 5, 14), 0),
        (date(2026, 5, 15), date(2026, 5, 14), 1),
        (date(2026, 5, 13), date(2026, 5, 14), -1),
        (date(2027, 1, 3), date(2026, 12, 30), 4),
        (date(2028, 3, 1), date(2028, 2, 28), 2),
        (date(2025, 5, 14), date(2026, 5, 14), -365),
    ],
)
def test_days_until(when: date, today: date, expected: int) -> None:
    """days_until is signed: positive ahead, negative behind."""
    assert days_until(when, today) == expected


@SETTINGS
@given(when=st.dates(), today=st.dates())
def test_days_until_steps_from_today_to_when(when: date, today: date) -> None:
    """Adding days_until to today lands exactly on the date."""
    assert today + timedelta(days=days_until(when, today)) == when


@SETTINGS
@given(d=dates_1950_2150, today=any_today)
def test_iso_round_trips(d: date, today: date) -> None:
    """Any ISO date parses to itself, whatever today is."""
    assert parse_date(d.isoformat(), today) == d


@SETTINGS
@given(d=dates_1950_2150, today=any_today, digits=st.sampled_from([ARABIC_INDIC, PERSIAN]))
def test_iso_round_trips_in_arabic_and_persian_digits(
    d: date, today: date, digits: dict[int, str]
) -> None:
    """The same holds when the ISO date is written in Eastern Arabic-Indic or Persian digits."""
    assert parse_date(d.isoformat().translate(digits), today) == d


@SETTINGS
@given(
    d=st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)),
    today=any_today,
    sep=st.sampled_from(["/", ".", "-"]),
)
def test_day_first_round_trips(d: date, today: date, sep: str) -> None:
    """Day/month/year, with or without leading zeros, parses to that date."""
    assert parse_date(f"{d.day}{sep}{d.month}{sep}{d.year}", today) == d
    assert parse_date(f"{d.day:02d}{sep}{d.month:02d}{sep}{d.year}", today) == d


@SETTINGS
@given(d=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), today=any_today)
def test_two_digit_years_are_this_century(d: date, today: date) -> None:
    """A two-digit year yy means 2000 + yy."""
    assert parse_date(f"{d.day}.{d.month}.{d.year % 100:02d}", today) == d


def first_on_or_after(today: date, day: int, month: int) -> date | None:
    """Oracle: walk the 366 days from today and return the first with this day and month."""
    for offset in range(366):
        candidate = today + timedelta(days=offset)
        if (candidate.day, candidate.month) == (day, month):
            return candidate
    return None


@SETTINGS
@given(d=st.dates(min_value=date(2000, 1, 1), max_value=date(2000, 12, 31)), today=any_today)
def test_yearless_is_the_next_occurrence_within_a_year(d: date, today: date) -> None:
    """Day/month parses to the first such date in [today, today + 366 days); 29/2 is None
    exactly when no 29 February falls in that window. (2000 is a leap year, so 29/2 is drawn.)"""
    result = parse_date(f"{d.day}/{d.month}", today)
    assert result == first_on_or_after(today, d.day, d.month)
    if result is not None:
        assert today <= result < today + timedelta(days=366)
        assert (result.day, result.month) == (d.day, d.month)
    else:
        assert (d.day, d.month) == (29, 2)


@SETTINGS
@given(n=st.integers(min_value=0, max_value=366), today=any_today)
def test_plus_n_is_n_days_ahead(n: int, today: date) -> None:
    """+N is today plus N days, for every N from 0 to 366."""
    assert parse_date(f"+{n}", today) == today + timedelta(days=n)
    assert parse_date(f"+{n}".translate(PERSIAN), today) == today + timedelta(days=n)


@SETTINGS
@given(n=st.integers(min_value=367, max_value=999), today=any_today)
def test_plus_n_beyond_a_year_is_none(n: int, today: date) -> None:
    """+N beyond 366 days is refused."""
    assert parse_date(f"+{n}", today) is None


@SETTINGS
@given(text=st.text(), today=st.dates())
def test_never_raises_on_arbitrary_text(text: str, today: date) -> None:
    """Any text with any today gives a date or None, never an exception."""
    result = parse_date(text, today)
    assert result is None or isinstance(result, date)


@SETTINGS
@given(
    text=st.text(alphabet=st.sampled_from("0123456789٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹/.-+،؍٫ \u200f")),
    today=st.dates(),
    words=st.builds(DateWords, st.tuples(st.text()), st.tuples(st.text())),
)
def test_never_raises_on_date_like_text(text: str, today: date, words: DateWords) -> None:
    """Text built from the characters the parser looks at never makes it raise either."""
    result = parse_date(text, today, words)
    assert result is None or isinstance(result, date)
