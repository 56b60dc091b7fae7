"""Paging through rotas: whoever is on call when a step fires, hand-offs between steps, holes
that page the operators, and the `oncall` command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from tests.harness import Harness

CONFIG = """
[database]
url = "{url}"

[keys]
dir = "{keys}"

[languages]
offered = ["en"]

[[responders]]
name = "alice"
console = true

[[responders]]
name = "bob"
console = true

[[responders]]
name = "carol"
console = true

[[responders]]
name = "dave"
telegram = 444000444

[[operators]]
name = "olga"
console = true

[[rotas]]
name = "primary"
members = ["alice", "bob"]
zone = "Europe/Berlin"
handoff = "09:00"
shift = "daily"
start = "2026-01-05"

[[rotas]]
name = "nights"
members = ["dave"]
zone = "America/Bogota"
handoff = "20:00"

[paging.critical]
steps = [
  {{ notify = ["rota:primary"], wait = "30m" }},
  {{ notify = ["rota:nights"], wait = "5m" }},
  {{ notify = ["carol"], wait = "5m" }},
]

[paging.high]
steps = [{{ notify = ["rota:primary"], wait = "1h" }}]

[paging.medium]
steps = [{{ notify = ["rota:primary"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["rota:primary"], wait = "8h" }}]
"""
# 2026-01-05 is a Monday; alice's first shift runs until Tuesday 09:00 Berlin (08:00 UTC).
MONDAY_NIGHT = datetime(2026, 1, 6, 7, 45, tzinfo=UTC)


@pytest.fixture
async def h(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """A harness whose clock starts 15 minutes before the primary rota's hand-off."""
    harness = await Harness.create(tmp_path, CONFIG, pg_database)
    harness.clock = FakeClock(MONDAY_NIGHT)
    await harness.restart()
    try:
        yield harness
        harness.expect_nothing()
    finally:
        if harness.app is not None:
            await harness.stop()


async def test_the_page_goes_to_whoever_is_on_call_when_the_step_fires(h: Harness) -> None:
    """Alice is on call at the SOS; the ladder's repeat after the 09:00 Berlin hand-off would
    page bob — and `oncall` shows both facts."""
    ref = await _sos(h, "alice")
    await h.say("oncall", "carol")
    report = h.inbox["carol"].pop(0)
    assert "primary: alice\n  from Tue 06 Jan 09:00 Europe/Berlin: bob" in report
    assert "critical: alice" in report
    await h.say(f"ack {ref}", "alice")
    h.inbox.clear()
    h.clock.advance(timedelta(minutes=20))  # now after the hand-off
    await _sos_again(h, "bob")


async def test_a_step_with_nobody_reachable_moves_on_at_once_and_pages_the_operators(
    h: Harness,
) -> None:
    """The nights rota's only member is on Telegram, which this instance does not run: the
    step is passed over without waiting, carol is paged at once, and the operator hears that
    the rota has a hole."""
    await _sos(h, "alice")
    await h.advance(timedelta(minutes=30))
    h.expect_page("carol")
    h.expect("olga", r"^ALERT \(defender-intake\)\nNobody could be paged at step 2 of the critical")


async def _sos(h: Harness, first: str) -> str:
    await h.say("SOS")
    ref = h.expect_page(first)
    h.expect("defender", "Help is being alerted")
    h.expect("defender", "what is happening")
    return ref


async def _sos_again(h: Harness, first: str, defender: str = "second-defender") -> None:
    await h.say("SOS", defender)
    h.expect_page(first)
    h.inbox.clear()


DST_CONFIG = CONFIG.replace('handoff = "09:00"', 'handoff = "02:30"')
SPRING_FORWARD = datetime(2026, 3, 29, 0, 50, tzinfo=UTC)  # 01:50 in Berlin, clocks jump at 02:00


async def test_a_handoff_on_the_spring_forward_night_pages_the_right_person(
    tmp_path: Path, pg_database: str | None
) -> None:
    """The 02:30 hand-off does not exist in Berlin on 29 March 2026; it happens at 03:00 local
    (01:00 UTC). An SOS ten minutes before pages the outgoing person; one five minutes after
    pages the incoming one."""
    h = await Harness.create(tmp_path, DST_CONFIG, pg_database)
    h.clock = FakeClock(SPRING_FORWARD)
    await h.restart()
    try:
        assert h.app is not None
        rota = h.config.rota("primary")
        assert rota is not None
        from bot.paging.rota import on_call

        before, after = (
            on_call(rota, SPRING_FORWARD),
            on_call(rota, SPRING_FORWARD + timedelta(minutes=15)),
        )
        assert before != after
        await _sos(h, before[0])
        h.clock.advance(timedelta(minutes=9))
        await _sos_again(h, before[0], "d2")  # 00:59 UTC: still before the hand-off
        h.clock.advance(timedelta(minutes=6))
        await _sos_again(h, after[0], "d3")  # 01:05 UTC = 03:05 Berlin: after it
        h.inbox.clear()
    finally:
        await h.stop()
