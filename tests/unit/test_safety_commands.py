"""Unit and property tests for bot.safety.commands: the pure decisions behind codes,
check-ins and trusted contacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.safety.commands import (
    CodeMatch,
    Contact,
    match_code,
    normalise_code,
    parse_contact,
    parse_deadline,
    parse_duration,
    parse_zone,
    safety_command,
)

NOW = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # the night before Europe's spring-forward
SETTINGS = settings(database=None, deadline=None)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30m", 30), ("2h", 120), ("1h30m", 90), ("1d", 1440), ("45", 45), ("90 min", 90)],
)
def test_durations(text: str, minutes: int) -> None:
    """Durations the way people write them."""
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["0m", "8d", "", "soon", "2x", "-5m", "1.5h"])
def test_not_durations(text: str) -> None:
    """Zero, over a week, and words are not durations."""
    assert parse_duration(text) is None


def test_zones_and_offsets() -> None:
    """Zone names in any case, UTC, and fixed offsets; nonsense is refused."""
    assert parse_zone("europe/istanbul") == "Europe/Istanbul"
    assert parse_zone("Asia/Kabul") == "Asia/Kabul"
    assert parse_zone("+03:00") == "UTC+03:00"
    assert parse_zone("UTC-4") == "UTC-04:00"
    assert parse_zone("utc") == "UTC"
    for bad in ("Mars/Olympus", "+15:00", "Istanbul", "+3:75"):
        assert parse_zone(bad) is None


def test_clock_time_is_the_next_one_in_the_defenders_zone_across_dst() -> None:
    """18:00 asked at 23:30 Berlin time is tomorrow's 18:00 Berlin time, after the clocks
    went forward (16:00 UTC, not 17:00)."""
    deadline = parse_deadline("18:00", NOW, "Europe/Berlin")
    assert not isinstance(deadline, str)
    assert deadline.due_at.astimezone(UTC) == datetime(2026, 3, 29, 16, 0, tzinfo=UTC)
    assert deadline.shown == "2026-03-29 18:00 (Europe/Berlin)"
    assert parse_deadline("18:00", NOW, None) == "checkin_needs_tz"
    assert parse_deadline("tonight", NOW, "Europe/Berlin") == "checkin_usage"


@SETTINGS
@given(
    st.integers(0, 23),
    st.integers(0, 59),
    st.sampled_from(["Europe/Berlin", "America/Bogota", "Asia/Kabul", "UTC+05:30"]),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_a_clock_deadline_is_always_in_the_next_day(
    hour: int, minute: int, zone: str, naive: datetime
) -> None:
    """Whatever the moment and zone, HH:MM is after now and at most a day (plus a DST
    hour) ahead."""
    now = naive.replace(tzinfo=UTC)
    deadline = parse_deadline(f"{hour}:{minute:02d}", now, zone)
    assert not isinstance(deadline, str)
    assert now < deadline.due_at <= now + timedelta(hours=25)


def test_codes_compare_normalised() -> None:
    """Case, surrounding and repeated spaces and Unicode forms do not matter."""
    assert normalise_code("  Blue   SKY ") == "blue sky"
    assert normalise_code("Cafe\u0301") == normalise_code("Café")


@SETTINGS
@given(st.text(min_size=1), st.booleans(), st.booleans())
def test_code_matching_is_decided_by_digests_only(typed: str, safe: bool, duress: bool) -> None:
    """With no codes set nothing is compared; a typed code equal to the duress digest is
    DURESS, to the safe digest SAFE, else WRONG — whatever the text."""
    plan = {"safe_code": "S" if safe else None, "duress_code": "D" if duress else None}
    if not safe and not duress:
        assert match_code(typed, "S", plan) is CodeMatch.NONE_SET
        return
    assert match_code(typed, "X", plan) is CodeMatch.WRONG
    assert match_code("", None, plan) is CodeMatch.MISSING
    if duress:
        assert match_code(typed, "D", plan) is CodeMatch.DURESS
    if safe:
        assert match_code(typed, "S", plan) is CodeMatch.SAFE


def test_contacts() -> None:
    """Signal numbers with spaces or dashes, Telegram ids, the Arabic comma; bad input
    names what is wrong."""
    assert parse_contact("Maria, +49 170-1234567, auto, Call Ana") == Contact(
        "Maria", "signal", "+491701234567", True, "Call Ana"
    )
    assert parse_contact("Dad، telegram:123456789، ask، Stay calm, I am fine") == Contact(
        "Dad", "telegram", "123456789", False, "Stay calm, I am fine"
    )
    assert parse_contact("Maria, 0170 1234567, auto, hi") == "contact_bad_address"
    assert parse_contact("Maria, +491701234567, sometimes, hi") == "contact_usage"
    assert parse_contact("Maria, +491701234567") == "contact_usage"


def test_safety_commands_are_recognised() -> None:
    """/cancel is a safety command only with a code after it; others always."""
    assert safety_command("/cancel") is None
    command = safety_command("/cancel  Blue Sky ")
    assert command is not None and (command.name, command.argument) == ("/cancel", "Blue Sky")
    assert safety_command("/safe@intake_bot red") is not None
    assert safety_command("/start") is None
    assert safety_command("plan") is None
