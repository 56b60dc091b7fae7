"""A GoAlert-style scenario harness: the real app on a real SQLite file, a fake clock, and fake
devices that record every message. Each scenario must consume every message it receives:
an unexpected message fails the test at teardown."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.app import App, open_app
from bot.config import Config, load_config
from bot.core.clock import FakeClock
from bot.core.messages import Address, Delivered, InboundMessage, OutboundMessage
from db.crypto import KeyRing, ensure_development_keyring
from tests.databases import default_url

TEST_CONFIG = """
[database]
url = "{url}"

[keys]
dir = "{keys}"

# One language: the language offer on first contact has its own tests (test_languages.py).
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

[paging.critical]
steps = [
  {{ notify = ["alice"], wait = "2m" }},
  {{ notify = ["bob"], wait = "3m" }},
  {{ notify = ["alice", "bob", "carol"], wait = "5m" }},
]
repeat = 1

[paging.high]
steps = [{{ notify = ["bob"], wait = "10m" }}, {{ notify = ["carol"], wait = "10m" }}]
repeat = 0

[paging.medium]
steps = [{{ notify = ["carol"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["carol"], wait = "8h" }}]
"""


def write_config(directory: Path, body: str = TEST_CONFIG, url: str | None = None) -> Path:
    """Write a test config with keys under ``directory`` and the database at ``url`` (default:
    a SQLite file in ``directory``, or a fresh PostgreSQL database when the whole run is on
    PostgreSQL); return its path."""
    path = directory / "config.toml"
    url = url or default_url(directory)
    path.write_text(body.format(url=url, keys=directory / "keys"))
    return path


class RecordingChannel:
    """A fake device: records what it is asked to send (returning platform message ids like a
    real chat would), optionally failing on demand."""

    def __init__(self, name: str = "console") -> None:
        self.name = name
        self.sent: list[OutboundMessage] = []
        self.scrubs: list[OutboundMessage] = []
        self.fail_with: Callable[[OutboundMessage], Exception | None] | None = None
        self._next_id = 1000

    async def send(self, message: OutboundMessage) -> Delivered:
        """Record ``message`` or raise what ``fail_with`` returns for it."""
        if self.fail_with is not None:
            error = self.fail_with(message)
            if error is not None:
                raise error
        if message.kind == "scrub":
            self.scrubs.append(message)
        self.sent.append(message)
        self._next_id += 1
        return Delivered((str(self._next_id),))


@dataclass
class Harness:
    """Drives one app through a scenario."""

    directory: Path
    config: Config
    keyring: KeyRing
    clock: FakeClock = field(default_factory=FakeClock)
    channel: RecordingChannel = field(default_factory=RecordingChannel)
    extra_channels: tuple[RecordingChannel, ...] = ()
    app: App | None = None
    inbox: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _lines: int = 0

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "postgresql" if self.config.database.url.startswith("postgresql") else "sqlite"

    @classmethod
    async def create(
        cls,
        directory: Path,
        body: str = TEST_CONFIG,
        url: str | None = None,
        channels: tuple[str, ...] = (),
    ) -> Harness:
        """Build a harness with development keys in ``directory`` and its own database (a
        SQLite file in ``directory`` unless ``url`` is given), with fake devices on the
        console and on each of ``channels``."""
        config = load_config(write_config(directory, body, url))
        keyring, _ = ensure_development_keyring(config.keys.dir, {})
        harness = cls(
            directory=directory,
            config=config,
            keyring=keyring,
            extra_channels=tuple(RecordingChannel(name) for name in channels),
        )
        await harness.start()
        return harness

    async def start(self) -> None:
        """(Re)start the app on the same database, as a process restart would."""
        channels = {c.name: c for c in (self.channel, *self.extra_channels)}
        self.app = await open_app(self.config, self.keyring, self.clock, channels)
        await self.app.recover()
        await self.app.tick()
        await self.collect()

    async def stop(self) -> None:
        """Stop the app (as a clean shutdown would)."""
        assert self.app is not None
        await self.app.close()
        self.app = None

    async def restart(self) -> None:
        """Stop and start again on the same database."""
        await self.stop()
        await self.start()

    async def collect(self) -> None:
        """Send everything due and file what the fake devices received by recipient."""
        assert self.app is not None
        await self.app.drain()
        for channel in (self.channel, *self.extra_channels):
            for message in channel.sent:
                if message.kind != "scrub":
                    self.inbox[message.recipient.identity].append(message.text)
            channel.sent.clear()

    def message(
        self, text: str, who: str = "defender", key: str | None = None, **extra: Any
    ) -> InboundMessage:
        """Build the message ``who`` sends (a fresh dedup key unless ``key`` is given); ``who``
        may be ``channel:identity`` for another channel than the console."""
        self._lines += 1
        channel, _, identity = who.partition(":") if ":" in who else ("console", "", who)
        return InboundMessage(
            sender=Address(channel, identity),
            text=text,
            dedup_key=key or f"line-{self._lines}",
            received_at=self.clock.now(),
            **extra,
        )

    async def say(self, text: str, who: str = "defender", **extra: Any) -> None:
        """``who`` sends ``text``; everything it causes is delivered."""
        assert self.app is not None
        await self.app.receive(self.message(text, who, **extra))
        await self.collect()

    async def advance(self, delta: timedelta) -> None:
        """Move the clock forward, run the escalation tick, deliver what it queued."""
        assert self.app is not None
        self.clock.advance(delta)
        await self.app.tick()
        await self.collect()

    def expect(self, who: str, pattern: str) -> re.Match[str]:
        """Consume ``who``'s oldest unread message, which must match ``pattern`` (regex)."""
        queue = self.inbox.get(who) or []
        assert queue, f"{who} received nothing; expected {pattern!r}; others: {dict(self.inbox)}"
        text = queue.pop(0)
        match = re.search(pattern, text)
        assert match, f"{who} received {text!r}, expected {pattern!r}"
        return match

    def expect_page(self, who: str, tier: str = "CRITICAL") -> str:
        """Consume a page to ``who`` and return its case reference."""
        match = self.expect(who, rf"^{tier} case ([A-Z0-9]{{4}})(?: \(repeat\))?\n")
        text_ref = match.group(1)
        return text_ref

    def expect_nothing(self) -> None:
        """Assert that nobody has an unread message."""
        unread = {who: texts for who, texts in self.inbox.items() if texts}
        assert not unread, f"unexpected messages: {unread}"
