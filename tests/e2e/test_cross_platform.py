"""Cases that cross platforms, with fake devices on Telegram and Signal (the real adapters
have their own tests against fake platform servers): the defender always hears back where
they wrote, responders are recognised only by their configured addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.messages import Address
from tests.harness import Harness
from tests.walks import HIGH_THREAT

CONFIG = """
[database]
url = "{url}"

[keys]
dir = "{keys}"

[languages]
offered = ["en"]

[[responders]]
name = "alice"
signal = "+4915550001"

[[responders]]
name = "bob"
telegram = 222000222

[paging.critical]
steps = [{{ notify = ["alice"], wait = "2m" }}, {{ notify = ["bob"], wait = "3m" }}]
repeat = 0

[paging.high]
steps = [{{ notify = ["bob"], wait = "10m" }}]

[paging.medium]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["bob"], wait = "8h" }}]
"""
ALICE_UUID = "5a0c1f7e-0000-4000-8000-00000000a11c"
TG_DEFENDER = "telegram:777000777"
SIGNAL_DEFENDER = "signal:9d3b6c52-0000-4000-8000-0000000000d1"


@pytest.fixture
async def h(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """A harness with fake Telegram and Signal devices besides the console."""
    harness = await Harness.create(tmp_path, CONFIG, pg_database, ("telegram", "signal"))
    try:
        yield harness
        harness.expect_nothing()
    finally:
        if harness.app is not None:
            await harness.stop()


async def test_telegram_sos_paged_on_signal_acked_on_signal_told_on_telegram(h: Harness) -> None:
    """A Telegram defender's SOS pages alice on Signal; her ack (from her uuid, recognised by
    her configured number) reaches the defender back on Telegram."""
    await h.say("SOS", who=TG_DEFENDER)
    h.expect("777000777", "not end-to-end encrypted")
    ref = h.expect_page("+4915550001")
    h.expect("777000777", f"Your case reference is {ref}")
    h.expect("777000777", "what is happening")
    await h.say(
        f"ack {ref}", who=f"signal:{ALICE_UUID}", aliases=(Address("signal", "+4915550001"),)
    )
    h.expect(ALICE_UUID, rf"^You have case {ref}")
    h.expect("777000777", rf"A responder has your case {ref}")


async def test_signal_sos_escalates_to_telegram_and_is_acked_there(h: Harness) -> None:
    """A Signal defender's SOS escalates to bob on Telegram; his ack reaches the defender on
    Signal; Signal defenders get no Telegram warning."""
    await h.say("SOS", who=SIGNAL_DEFENDER)
    ref = h.expect_page("+4915550001")
    defender = SIGNAL_DEFENDER.split(":", 1)[1]
    h.expect(defender, f"Your case reference is {ref}")
    h.expect(defender, "what is happening")
    await h.advance(timedelta(minutes=2))
    h.expect_page("222000222")
    await h.say(f"ack {ref}", who="telegram:222000222")
    h.expect("222000222", rf"^You have case {ref}")
    h.expect(defender, rf"A responder has your case {ref}")
    h.expect("+4915550001", rf"Case {ref} was taken by bob")


async def test_strangers_writing_responder_commands_learn_nothing(h: Harness) -> None:
    """Someone not in the config who writes `ack REF` or `cases` is treated as a defender:
    they get the intake, and the case stays untaken."""
    await h.say("SOS", who=SIGNAL_DEFENDER)
    ref = h.expect_page("+4915550001")
    h.inbox.clear()
    for text in (f"ack {ref}", "cases"):
        await h.say(text, who="telegram:555000555")
    texts = h.inbox.pop("555000555")
    assert ref not in " ".join(texts)
    assert any("What is happening" in t for t in texts)
    await h.advance(timedelta(minutes=2))
    h.expect_page("222000222")  # nobody took it: the ladder goes on


async def test_telegram_warning_is_shown_once(h: Harness) -> None:
    """The encryption warning comes before the first answer on Telegram, and only once."""
    await h.say("hello", who=TG_DEFENDER)
    first = h.inbox.pop("777000777")
    assert "not end-to-end encrypted" in first[0] and "emergency line" in first[1]
    await h.say("/help", who=TG_DEFENDER)
    assert not any("end-to-end" in t for t in h.inbox.pop("777000777"))


async def test_stored_intake_clears_the_telegram_chat(h: Harness) -> None:
    """After the intake is stored, a scrub deletes the defender's messages and ours from the
    Telegram chat and leaves a neutral note with the reference."""
    ids = iter(range(1, 100))
    for text in HIGH_THREAT:
        await h.say(text, who=TG_DEFENDER, platform_message_id=str(next(ids)))
    ref = h.expect_page("222000222", tier="HIGH")
    h.inbox.clear()
    telegram = h.extra_channels[0]
    assert telegram.scrubs == []
    await h.advance(timedelta(seconds=21))
    (scrub,) = telegram.scrubs
    assert scrub.text.startswith(f"Received. Reference {ref}. For your safety this chat was")
    inbound = {str(n) for n in range(1, len(HIGH_THREAT) + 1)}
    assert inbound <= set(scrub.delete_ids)
    # and what we sent: the warning, the intro and every question
    assert len(scrub.delete_ids) >= 2 * len(HIGH_THREAT) + 1
    await h.say(f"ack {ref}", who="telegram:222000222")
    h.inbox.clear()
    await h.advance(timedelta(minutes=1))
    assert len(telegram.scrubs) == 1  # nothing scrubbed twice
