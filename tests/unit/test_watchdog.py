"""The watchdog's checks: a pure function of a snapshot and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.paging.watchdog import OpenCaseState, Snapshot, check

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
GRACE = timedelta(seconds=30)


def case(state: str | None, due: datetime | None = None, taken: bool = False) -> OpenCaseState:
    """An open critical case K7Q2 in the given escalation state."""
    return OpenCaseState("c1", "K7Q2", "critical", taken, state, due)


def test_a_healthy_snapshot_has_no_problems() -> None:
    """An active ladder with a future due time and an empty outbox is fine."""
    assert check(Snapshot([case("active", NOW + timedelta(minutes=2))], 0, None), NOW, GRACE) == []


def test_an_overdue_ladder_means_the_engine_stalled() -> None:
    """A due time more than the grace in the past is reported; within the grace it is not."""
    late = Snapshot([case("active", NOW - timedelta(seconds=31))], 0, None)
    on_time = Snapshot([case("active", NOW - timedelta(seconds=29))], 0, None)
    assert [p.key for p in check(late, NOW, GRACE)] == ["overdue:c1"]
    assert check(on_time, NOW, GRACE) == []


def test_an_exhausted_or_missing_ladder_on_an_untaken_case_is_reported() -> None:
    """Nobody acked the whole ladder, or nothing pages for an open case: both are problems."""
    for state, key in (
        ("exhausted", "exhausted:c1"),
        (None, "noladder:c1"),
        ("cancelled", "noladder:c1"),
    ):
        problems = check(Snapshot([case(state)], 0, None), NOW, GRACE)
        assert [p.key for p in problems] == [key]
        assert "K7Q2" in problems[0].text


def test_a_taken_case_is_not_a_problem_whatever_its_ladder() -> None:
    """Once a responder has the case, its ladder being stopped is expected."""
    assert check(Snapshot([case("acked", taken=True)], 0, None), NOW, GRACE) == []


def test_stuck_outbox_rows_are_reported_with_their_age() -> None:
    """Rows stuck in the outbox give one problem naming how many and since when."""
    problems = check(Snapshot([], 3, NOW - timedelta(minutes=7)), NOW, GRACE)
    assert [p.key for p in problems] == ["outbox"]
    assert "3 message(s)" in problems[0].text and "7 min" in problems[0].text
