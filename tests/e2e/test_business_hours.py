"""The low tier waits for business hours, and an untouched case is raised a tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from tests.harness import TEST_CONFIG, Harness
from tests.walks import LOW_ADVICE

LOW_IN_HOURS = TEST_CONFIG.replace(
    '[paging.low]\nsteps = [{{ notify = ["carol"], wait = "8h" }}]',
    '[paging.low]\nsteps = [{{ notify = ["carol"], wait = "8h" }}]\n'
    'hours = "mon-fri 09:00-18:00 Europe/Berlin"\nraise_after = "24h"',
)
MONDAY_EARLY = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # 04:00 in Berlin
FRIDAY_EVENING = datetime(2026, 1, 9, 18, 30, tzinfo=UTC)  # 19:30 in Berlin


async def harness_at(tmp_path: Path, url: str | None, start: datetime) -> Harness:
    """A harness with business hours on the low tier, its clock at ``start``."""
    h = await Harness.create(tmp_path, LOW_IN_HOURS, url)
    h.clock = FakeClock(start)
    await h.restart()
    return h


@pytest.fixture
async def monday(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """Monday 04:00 in Berlin: before business hours."""
    h = await harness_at(tmp_path, pg_database, MONDAY_EARLY)
    try:
        yield h
        h.expect_nothing()
    finally:
        await h.stop()


async def low_intake(h: Harness) -> None:
    """A defender asks for advice about something past: a low case."""
    for answer in LOW_ADVICE:
        await h.say(answer)
    h.inbox.clear()


async def test_a_low_case_before_hours_waits_for_them(monday: Harness) -> None:
    """Opened at 04:00 Berlin, the low case pages nobody until 09:00 Berlin, then carol."""
    assert monday.app is not None
    await low_intake(monday)
    await monday.advance(timedelta(hours=4, minutes=59))
    monday.expect_nothing()
    await monday.advance(timedelta(minutes=1))
    monday.expect_page("carol", tier="LOW")


async def test_an_untouched_case_is_raised_after_the_set_time(
    tmp_path: Path, pg_database: str | None
) -> None:
    """Friday evening, after hours: the case would wait until Monday, but untouched for 24 h
    it is raised to medium on Saturday evening and paged on the medium ladder."""
    h = await harness_at(tmp_path, pg_database, FRIDAY_EVENING)
    try:
        await low_intake(h)
        await h.advance(timedelta(hours=23, minutes=59))
        h.expect_nothing()
        await h.advance(timedelta(minutes=1))
        ref = h.expect_page("carol", tier="MEDIUM")
        assert h.app is not None
        async with h.app.store.transaction() as tx:
            case = await tx.case_by_ref(ref)
            assert case is not None and case.tier == "medium"
            events = [e[3] for e in await tx.events_of(case.id) if e[1] == "case.retiered"]
        assert events == ["from=low to=medium untouched"]
        h.expect_nothing()
    finally:
        await h.stop()
