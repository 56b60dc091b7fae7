"""Fixtures of the fuzz tests: one real app per test (SQLite file, or PostgreSQL when
INTAKE_TEST_PG_URL is set), fed every example of that test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.messages import Address, InboundMessage
from bot.core.text import without_lone_surrogates
from tests.harness import Harness


@pytest.fixture
async def fuzz_harness(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """The harness app with console responders and recording Telegram and Signal devices."""
    harness = await Harness.create(tmp_path, url=pg_database, channels=("telegram", "signal"))
    try:
        yield harness
    finally:
        await harness.stop()


def stored_address(address: Address) -> Address:
    """The address as the app keeps it (lone surrogates replaced)."""
    return Address(address.channel, without_lone_surrogates(address.identity))


async def stored_session(h: Harness, address: Address) -> dict[str, Any]:
    """The stored conversation of the defender at ``address`` (decrypted; empty if none)."""
    assert h.app is not None
    async with h.app.store.transaction() as tx:
        defender = await tx.defender_for(stored_address(address), h.clock.now())
    return dict(defender.session or {})


async def compromised(h: Harness, address: Address) -> bool:
    """True when the defender at ``address`` is marked compromised (duress or seized): the
    bot then answers nothing, by design."""
    return bool((await stored_session(h, address)).get("compromised"))


class Answered:
    """A channel's ``handle`` around the real app: hands each message to ``App.receive`` and
    then checks that its sender was answered (unless the message was a duplicate, or the
    sender's device was already marked compromised). A missing answer is noted in
    ``problems`` rather than raised, so that the channel's own error handling cannot hide
    it."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.handled: list[InboundMessage] = []
        self.silent: set[Address] = set()  # senders whose device is marked compromised
        self.problems: list[str] = []

    async def __call__(self, message: InboundMessage) -> None:
        assert self.h.app is not None
        sender = stored_address(message.sender)
        fresh = await self.h.app.receive(message)
        self.handled.append(message)
        await self.h.collect()
        answers = self.h.inbox.pop(sender.identity, [])
        if fresh and sender not in self.silent and not answers:
            self.problems.append(f"no answer on {sender.channel} to {message!r}")
        if await compromised(self.h, sender):
            self.silent.add(sender)
        else:
            self.silent.discard(sender)
