"""Channel health as the watchdog sees it: how long receiving has been failing."""

from __future__ import annotations

import time


class ReceiveHealth:
    """Tracks since when a channel's receive loop has been failing without a success."""

    def __init__(self, name: str, unhealthy_after: float = 60.0) -> None:
        self._name = name
        self._after = unhealthy_after
        self._failing_since: float | None = None

    def failed(self) -> None:
        """Record a failed receive attempt (the first one starts the clock)."""
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def succeeded(self) -> None:
        """Record a successful receive: the channel is healthy again."""
        self._failing_since = None

    def problem(self) -> str | None:
        """Return why the channel is unhealthy, or None while it is fine."""
        if self._failing_since is None:
            return None
        failing = time.monotonic() - self._failing_since
        if failing < self._after:
            return None
        return (
            f"{self._name} cannot receive messages: every attempt has failed for "
            f"{int(failing // 60)} min. Defenders writing there are not being heard."
        )
