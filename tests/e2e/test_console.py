"""The real console channel wired to the real app, driven with a controllable clock: what a
person at the terminal sees, line by line."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

from bot.app import open_app
from bot.channels.console import ConsoleChannel
from bot.config import load_config
from bot.core.clock import FakeClock
from db.crypto import ensure_development_keyring
from tests.harness import write_config


async def test_console_transcript_sos_escalation_and_ack(tmp_path: Path) -> None:
    """Typed lines become messages; every output line names its recipient; time moves only
    when the test says so."""
    config = load_config(write_config(tmp_path))
    keyring, _ = ensure_development_keyring(config.keys.dir, {})
    clock = FakeClock()
    out = io.StringIO()
    console = ConsoleChannel(io.StringIO(), out, ["alice", "bob", "carol"], clock.now)
    app = await open_app(config, keyring, clock, {"console": console})
    try:

        async def type_line(line: str, number: int) -> list[str]:
            message = console.parse(line, number)
            if message is not None:
                await app.receive(message)
                await app.drain()
            lines = out.getvalue().splitlines()
            out.seek(0)
            out.truncate()
            return lines

        lines = await type_line("SOS", 1)
        ref = lines[0].removeprefix("[to alice] CRITICAL case ")
        assert lines == [
            f"[to alice] CRITICAL case {ref}",
            "[to alice] SOS alert",
            f"[to alice] Reply: ack {ref}",
            f"[to defender] Help is being alerted now. Your case reference is {ref}.",
            "[to defender] If you can, tell us in a few words what is happening.",
            "[to defender] (Reply skip to skip.)",
        ]
        clock.advance(timedelta(minutes=2))
        await app.tick()
        await app.drain()
        assert out.getvalue().splitlines()[0] == f"[to bob] CRITICAL case {ref}"
        out.seek(0)
        out.truncate()
        assert await type_line("@nobody ack " + ref, 2) == [
            "[shell] nobody called @nobody is configured for the console "
            "(responders here: @alice, @bob, @carol); the line was not sent"
        ]
        lines = await type_line(f"@Bob ack {ref.lower()}", 3)
        assert f"[to bob] You have case {ref} (CRITICAL, opened 2m ago)." in lines
        assert f"[to defender] A responder has your case {ref} and will contact you here." in lines
        assert f"[to alice] Case {ref} was taken by bob. No action needed." in lines
        clock.advance(timedelta(hours=3))
        await app.tick()
        await app.drain()
        assert out.getvalue() == ""
    finally:
        await app.close()


async def test_a_conversation_resumes_after_a_restart(tmp_path: Path) -> None:
    """The session is stored after every step: after a restart the intake continues where it
    was, with the earlier answers kept."""
    from tests.harness import Harness

    h = await Harness.create(tmp_path)
    try:
        await h.say("/start")
        await h.say("9")  # something else or advice
        await h.say("Border guards keep my passport")
        h.inbox.clear()
        await h.restart()
        await h.say("Grodno")
        h.expect("defender", "What help do you need")
        await h.say("1 2")
        h.expect("defender", "What human rights work")
        for _ in range(3):
            await h.say("skip")
            h.inbox["defender"].clear()
        await h.say("yes")
        ref = h.expect_page("carol", tier="MEDIUM")  # relocation help asked for
        h.expect("defender", ref)
        await h.say(f"ack {ref}", who="carol")
        details = h.inbox["carol"].pop(0)
        assert "Why this tier: relocation needed" in details
        assert "Border guards keep my passport" in details and "Grodno" in details
        assert (
            "What help do you need: A lawyer or legal aid, Relocation to a safer place" in details
        )
        h.inbox.clear()
    finally:
        await h.stop()


def test_backoff_doubles_and_is_capped() -> None:
    """Retry waits double from 2 s and never exceed five minutes."""
    from bot.outbox import backoff

    assert [backoff(n).total_seconds() for n in range(1, 5)] == [2, 4, 8, 16]
    assert backoff(50) == timedelta(minutes=5)
