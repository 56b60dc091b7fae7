"""The real Telegram and Signal adapters wired to the real app, against the fake Bot API and
the fake signal-cli-rest-api (both follow ../shared/contracts/ and inject faults)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.app import App, open_app
from bot.channels.signal import SignalChannel
from bot.channels.telegram import TelegramChannel
from bot.config import load_config
from bot.core.clock import SystemClock
from bot.core.messages import InboundMessage
from db.crypto import ensure_development_keyring
from tests.fakes.signal_api import ACCOUNT, FakeSignalApi
from tests.fakes.telegram_api import TOKEN, FakeBotApi
from tests.harness import write_config
from tests.walks import HIGH_THREAT

ALICE_NUMBER, ALICE_UUID = "+4915550001", "5a0c1f7e-0000-4000-8000-00000000a11c"
BOB = 222000222
TG_DEFENDER = 777000777
SIGNAL_DEFENDER = "9d3b6c52-0000-4000-8000-0000000000d1"

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

[telegram]
delete_delay = "1s"

[paging.critical]
steps = [{{ notify = [FIRST], wait = "1h" }}]

[paging.high]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.medium]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["bob"], wait = "8h" }}]
"""


async def until(condition: Callable[[], object], what: str, timeout: float = 10) -> None:
    """Wait until ``condition()`` is truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Platforms:
    """The app, its two real channels, and the two fake platforms."""

    app: App
    telegram: FakeBotApi
    signal: FakeSignalApi
    channels: dict[str, TelegramChannel | SignalChannel]

    def tg_texts(self, chat: int) -> list[str]:
        """What the bot sent to a Telegram chat."""
        return self.telegram.chat(chat).sent_texts()

    def signal_texts(self, recipient: str) -> list[str]:
        """What the bot sent to a Signal recipient."""
        return [b["message"] for b in self.signal.sent if b["recipients"] == [recipient]]


async def start_platforms(
    tmp_path: Path,
    telegram: FakeBotApi,
    signal: FakeSignalApi,
    first: str,
    handle: Callable[[App], Callable[[InboundMessage], object]] | None = None,
) -> Platforms:
    """Open the app and start both real channels against the fakes."""
    config = load_config(write_config(tmp_path, CONFIG.replace("FIRST", f'"{first}"')))
    keyring, _ = ensure_development_keyring(config.keys.dir, {})
    channels: dict[str, TelegramChannel | SignalChannel] = {
        "telegram": TelegramChannel(
            # the one-message-a-second pacing per chat has its own tests; a fifth of it here
            TOKEN,
            base_url=telegram.base_url,
            poll_timeout=1,
            stop_timeout=0.5,
            per_chat_interval=0.2,
        ),
        "signal": SignalChannel(
            signal.url, ACCOUNT, "poll", None, poll_interval=0.05, stop_grace=0.5
        ),
    }
    app = await open_app(config, keyring, SystemClock(), channels)
    await app.recover()
    app.start_background()
    for channel in channels.values():
        await channel.start(handle(app) if handle else app.receive)  # type: ignore[arg-type]
    return Platforms(app, telegram, signal, channels)


async def stop_platforms(p: Platforms) -> None:
    """Stop the channels, then the app."""
    for channel in p.channels.values():
        await channel.stop()
    await p.app.close()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeBotApi, FakeSignalApi]]:
    """Both fake platforms, running."""
    async with FakeBotApi() as telegram, FakeSignalApi() as signal:
        yield telegram, signal


async def test_telegram_sos_paged_and_acked_on_signal(
    tmp_path: Path, fakes: tuple[FakeBotApi, FakeSignalApi]
) -> None:
    """Telegram defender SOS → alice paged on Signal → ack on Signal → defender told on
    Telegram."""
    telegram, signal = fakes
    p = await start_platforms(tmp_path, telegram, signal, "alice")
    try:
        telegram.user_says(TG_DEFENDER, "SOS")
        await until(lambda: p.signal_texts(ALICE_NUMBER), "alice's page")
        page = p.signal_texts(ALICE_NUMBER)[0]
        ref = page.split("\n")[0].removeprefix("CRITICAL case ")
        await until(lambda: len(p.tg_texts(TG_DEFENDER)) >= 3, "the defender's replies")
        warning, opened, question = p.tg_texts(TG_DEFENDER)[:3]
        assert "not end-to-end encrypted" in warning
        assert f"Your case reference is {ref}" in opened and "what is happening" in question
        signal.deliver_text(ALICE_UUID, ALICE_NUMBER, f"ack {ref}")
        await until(
            lambda: any("A responder has your case" in t for t in p.tg_texts(TG_DEFENDER)),
            "the defender hearing it is taken",
        )
        # Each channel has its own sender: alice's answer on Signal may come a moment later.
        await until(lambda: p.signal_texts(ALICE_UUID), "alice's case details")
        assert p.signal_texts(ALICE_UUID)[0].startswith(f"You have case {ref}")
    finally:
        await stop_platforms(p)


async def test_signal_sos_paged_and_acked_on_telegram(
    tmp_path: Path, fakes: tuple[FakeBotApi, FakeSignalApi]
) -> None:
    """Signal defender SOS → bob paged on Telegram → ack on Telegram → defender told on
    Signal; the Signal defender is never shown the Telegram warning."""
    telegram, signal = fakes
    telegram.chat(BOB)  # bob once wrote /start to the bot, so it may write to him
    p = await start_platforms(tmp_path, telegram, signal, "bob")
    try:
        signal.deliver_text(SIGNAL_DEFENDER, None, "SOS")
        await until(lambda: p.tg_texts(BOB), "bob's page")
        ref = p.tg_texts(BOB)[0].split("\n")[0].removeprefix("CRITICAL case ")
        telegram.user_says(BOB, f"ack {ref}")
        await until(
            lambda: any("A responder has your case" in t for t in p.signal_texts(SIGNAL_DEFENDER)),
            "the defender hearing it is taken",
        )
        assert not any("end-to-end" in t for t in p.signal_texts(SIGNAL_DEFENDER))
    finally:
        await stop_platforms(p)


async def test_a_crash_between_receipt_and_processing_loses_nothing_and_doubles_nothing(
    tmp_path: Path, fakes: tuple[FakeBotApi, FakeSignalApi]
) -> None:
    """The update is stored in the inbox, then the process dies before processing it (so it
    is never confirmed to Telegram). After a restart it is processed once: recovery handles
    it, and Telegram's redelivery is recognised as a duplicate."""
    telegram, signal = fakes

    def store_only(app: App) -> Callable[[InboundMessage], object]:
        async def handle(message: InboundMessage) -> None:
            async with app.store.transaction() as tx:
                await tx.inbox_add(message, app.clock.now())
            raise RuntimeError("the process dies here")  # never processed, never confirmed

        return handle

    p = await start_platforms(tmp_path, telegram, signal, "alice", store_only)
    telegram.user_says(TG_DEFENDER, "SOS")
    stored: list[int] = []

    async def wait_until_stored() -> None:
        while not stored:
            async with p.app.store.transaction() as tx:
                if await tx.inbox_pending():
                    stored.append(1)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait_until_stored(), 10)
    await stop_platforms(p)
    assert telegram.pending_ids(), "the update must not have been confirmed"
    p = await start_platforms(tmp_path, telegram, signal, "alice")
    try:
        await until(lambda: p.signal_texts(ALICE_NUMBER), "the page after recovery")
        await until(lambda: not telegram.pending_ids(), "the redelivered update confirmed")
        await asyncio.sleep(1.5)
        assert len(p.signal_texts(ALICE_NUMBER)) == 1
        assert sum("Your case reference" in t for t in p.tg_texts(TG_DEFENDER)) == 1
    finally:
        await stop_platforms(p)


async def test_a_429_storm_delays_but_loses_and_doubles_nothing(
    tmp_path: Path, fakes: tuple[FakeBotApi, FakeSignalApi]
) -> None:
    """While Telegram answers 429 to every send, pages and replies wait for retry_after and
    then go out exactly once each, in order."""
    telegram, signal = fakes
    telegram.fail_next("sendMessage", times=6, kind="429", retry_after=1)
    telegram.chat(BOB)  # bob once wrote /start to the bot, so it may write to him
    p = await start_platforms(tmp_path, telegram, signal, "bob")
    try:
        signal.deliver_text(SIGNAL_DEFENDER, None, "SOS")
        await until(lambda: p.tg_texts(BOB), "bob's page after the storm", timeout=30)
        await asyncio.sleep(1.5)
        pages = [t for t in p.tg_texts(BOB) if t.startswith("CRITICAL")]
        assert len(pages) == 1
        assert len(telegram.calls_of("sendMessage")) >= 7
    finally:
        await stop_platforms(p)


async def test_a_stale_button_is_refused_kindly_and_the_question_asked_again(
    tmp_path: Path, fakes: tuple[FakeBotApi, FakeSignalApi]
) -> None:
    """A defender pressing a button of an earlier question is told so and sees the current
    question again, with fresh buttons; the press is answered."""
    telegram, signal = fakes
    p = await start_platforms(tmp_path, telegram, signal, "alice")
    try:
        telegram.user_says(TG_DEFENDER, "/start")
        await until(lambda: any(s.reply_markup for s in telegram.chat(TG_DEFENDER).sent), "buttons")
        first = next(s for s in telegram.chat(TG_DEFENDER).sent if s.reply_markup)
        buttons = first.reply_markup["inline_keyboard"]  # type: ignore[index]
        assert [row[0]["text"] for row in buttons][1:3] == [
            "Arrest, detention or abduction",
            "Physical attack or raid",
        ]
        telegram.user_presses(TG_DEFENDER, first.message_id, buttons[3][0]["callback_data"])
        await until(
            lambda: any(t.startswith("What kind of threat") for t in p.tg_texts(TG_DEFENDER)),
            "the next question",
        )
        telegram.user_presses(TG_DEFENDER, first.message_id, buttons[0][0]["callback_data"])
        await until(
            lambda: any("earlier question" in t for t in p.tg_texts(TG_DEFENDER)), "the refusal"
        )
        await until(lambda: len(telegram.answered_callbacks) == 2, "both presses answered")
        await until(
            lambda: p.tg_texts(TG_DEFENDER)[-1].startswith("What kind of threat"),
            "the current question asked again after the refusal",
        )
    finally:
        await stop_platforms(p)


async def test_a_stored_intake_is_cleared_from_the_telegram_chat(
    tmp_path: Path, fakes: tuple[FakeBotApi, FakeSignalApi]
) -> None:
    """Once the intake is stored, every message of the conversation — the defender's and the
    bot's — is deleted from the Telegram chat; only a neutral note with the reference stays.
    Bob's page on Telegram shows the type but not the place (Telegram is not end-to-end
    encrypted)."""
    telegram, signal = fakes
    telegram.chat(BOB)  # bob once wrote /start to the bot, so it may write to him
    p = await start_platforms(tmp_path, telegram, signal, "bob")
    try:
        chat = telegram.chat(TG_DEFENDER)
        for text in HIGH_THREAT[:-1]:
            telegram.user_says(TG_DEFENDER, text)
        await until(
            lambda: any("May we tell" in t for t in p.tg_texts(TG_DEFENDER)), "consents", 60
        )
        telegram.user_says(TG_DEFENDER, HIGH_THREAT[-1])
        await until(lambda: any("reference is" in t for t in p.tg_texts(TG_DEFENDER)), "ref", 20)
        await until(lambda: p.tg_texts(BOB), "bob's page")
        page = p.tg_texts(BOB)[0]
        ref = page.split("\n")[0].removeprefix("HIGH case ")
        assert page.split("\n")[1] == "A death threat" and "Kharkiv" not in page
        await until(lambda: len(chat.transcript()) == 1, "the chat cleared", timeout=15)
        ((side, note),) = chat.transcript()
        assert side == "bot" and note.startswith(f"Received. Reference {ref}.")
        # every message from the defender, and the bot's warning, intro and questions
        assert len(chat.deleted) >= 2 * len(HIGH_THREAT) + 1
    finally:
        await stop_platforms(p)
