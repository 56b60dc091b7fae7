"""The console channel: a local terminal where one person plays the defender and, with
``@name``, any responder configured with ``console = true``. No token, no account, no network.

Input: each line is said by the demo defender, unless it starts with ``@NAME`` — then it is
said by responder NAME. Output: every line shows whom it is for, e.g. ``[to alice] ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TextIO

from bot.core.messages import Address, InboundMessage, OutboundMessage

DEFENDER = "defender"
_SPEAKER = re.compile(r"^@(\S+)(?:\s+(.*))?$", re.DOTALL)


class ConsoleChannel:
    """Reads lines from ``stdin`` and prints messages to ``stdout``.

    Args:
        stdin: where lines come from (a terminal or a script).
        stdout: where messages go; flushed after every line.
        responders: names of the responders who may speak here with ``@name``.
        now: the clock function stamping received lines.
    """

    name = "console"

    def __init__(
        self,
        stdin: TextIO,
        stdout: TextIO,
        responders: Iterable[str],
        now: Callable[[], datetime],
    ) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._responders = {name.casefold(): name for name in responders}
        self._now = now
        self._run = secrets.token_hex(8)  # dedup keys are unique per run of the shell

    async def send(self, message: OutboundMessage) -> None:
        """Print ``message``, every line prefixed with its recipient, and flush (a deletion
        without text prints nothing: a terminal cannot unprint a line)."""
        if message.kind == "scrub" and not message.text:
            return
        who = message.recipient.identity
        lines = message.text.split("\n") or [""]
        self._stdout.write("".join(f"[to {who}] {line}\n" for line in lines))
        self._stdout.flush()

    def note(self, text: str) -> None:
        """Print a note from the shell itself (not a message), e.g. an unknown speaker."""
        self._stdout.write(f"[shell] {text}\n")
        self._stdout.flush()

    def parse(self, line: str, number: int) -> InboundMessage | None:
        """Turn one input line into a message, or print why it cannot be one and return None."""
        line = line.rstrip("\n")
        speaker = DEFENDER
        match = _SPEAKER.match(line)
        if match:
            name = self._responders.get(match.group(1).casefold())
            if name is None:
                known = ", ".join("@" + n for n in self._responders.values()) or "none"
                self.note(
                    f"nobody called @{match.group(1)[:32]} is configured for the console "
                    f"(responders here: {known}); the line was not sent"
                )
                return None
            speaker, line = name, match.group(2) or ""
        return InboundMessage(
            sender=Address(self.name, speaker),
            text=line,
            dedup_key=f"{self._run}:{number}",
            received_at=self._now(),
        )

    async def listen(self, handle: Callable[[InboundMessage], Awaitable[None]]) -> None:
        """Read lines until end of input, handing each message to ``handle`` in order.

        Lines are read by a daemon thread, so a blocked terminal read never keeps the process
        alive after Ctrl-C.
        """
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:
            try:
                for line in iter(self._stdin.readline, ""):
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            except (OSError, ValueError):  # stdin closed under us
                pass
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may already be closed
                    loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        number = 0
        while (line := await lines.get()) is not None:
            number += 1
            message = self.parse(line, number)
            if message is not None:
                await handle(message)
