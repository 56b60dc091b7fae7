"""Receive health: a channel failing to receive for long enough becomes a watchdog problem."""

from __future__ import annotations

import pytest

from bot.core import health
from bot.core.health import ReceiveHealth


def test_failing_long_enough_is_a_problem_and_one_success_clears_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failures start a clock; past the threshold there is a problem naming the channel and
    the minutes; a success ends it; short failure bursts are not problems."""
    now = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: now[0])
    tracker = ReceiveHealth("Signal", unhealthy_after=60)
    assert tracker.problem() is None
    tracker.failed()
    now[0] += 59
    tracker.failed()
    assert tracker.problem() is None
    now[0] += 121
    problem = tracker.problem()
    assert (
        problem is not None and problem.startswith("Signal cannot receive") and "3 min" in problem
    )
    tracker.succeeded()
    assert tracker.problem() is None
