"""Time as a dependency: every decision takes ``now`` from a :class:`Clock`, so tests can
move time by hand and nothing reads the wall clock behind the engine's back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time (timezone-aware, UTC)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the wall-clock time in UTC."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to; used by tests and scenario runs."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 3, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """Return the current fake time."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by ``delta`` (never backwards) and return the new time."""
        if delta < timedelta(0):
            raise ValueError("a FakeClock never goes backwards")
        self._now += delta
        return self._now


def to_millis(moment: datetime) -> int:
    """Return ``moment`` as integer epoch milliseconds (how the database stores times)."""
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    """Return the aware UTC datetime for integer epoch milliseconds."""
    return datetime.fromtimestamp(millis / 1000, UTC)
