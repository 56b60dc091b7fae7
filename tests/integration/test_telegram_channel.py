"""The real TelegramChannel (real PTB Application, real httpx) against the fake Bot API.

Receiving: updates are handed over in order and confirmed to Telegram only after ``handle``
returned; a failure or a crash means the update comes again. Sending: every platform failure
maps to retry / refused / unknown. No log line carries the token, a user id or a text.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from bot.channels.telegram import TelegramChannel
from bot.config import TelegramConfig
from bot.core.clock import FakeClock
from bot.core.messages import (
    Address,
    Choice,
    Delivered,
    DeliveryRefused,
    DeliveryRetry,
    DeliveryUnknown,
    InboundMessage,
    OutboundMessage,
)
from bot.errors import ChannelStartError
from bot.observability import QUIET_LOGGERS
from tests.fakes.telegram_api import TOKEN, FakeBotApi

USER = 246813579
OTHER = 975318642
TEXT = "I was detained for 6 hours at the border"
TEXT2 = "They took my phone"
BAD_TOKEN = "7000000001:AAF-wrong-token-000000000000000000000"
SECRET = "s3cret-Token_for-tests"
HOOK_PATH = "/tg/hook"
CLOCK = FakeClock()


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Capture every log record at DEBUG (third-party loggers at WARNING, as in production)
    and fail if any carries the token, a user id or a text the test registered."""
    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    caplog.set_level(logging.DEBUG)
    secrets = [TOKEN, BAD_TOKEN, str(USER), str(OTHER), TEXT, TEXT2, SECRET]
    yield secrets
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    logged = caplog.text
    for secret in secrets:
        assert secret not in logged


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    """A running fake Bot API."""
    async with FakeBotApi() as api:
        yield api


@pytest.fixture
async def make(fake: FakeBotApi) -> AsyncIterator[Callable[..., TelegramChannel]]:
    """Build channels against the fake with short timeouts; stops them all at the end."""
    made: list[TelegramChannel] = []

    def build(**options: Any) -> TelegramChannel:
        options.setdefault("base_url", fake.base_url)
        options.setdefault("poll_timeout", 2)
        options.setdefault("request_timeout", 2.0)
        options.setdefault("stop_timeout", 2.0)
        options.setdefault("clock", CLOCK)
        channel = TelegramChannel(options.pop("token", TOKEN), **options)
        made.append(channel)
        return channel

    yield build
    for channel in made:
        await channel.stop()


class Inbox:
    """A ``handle``: records messages; ``behaviour`` may raise or block for one message."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.behaviour: Callable[[InboundMessage], Awaitable[None]] | None = None
        self._changed = asyncio.Event()

    async def __call__(self, message: InboundMessage) -> None:
        if self.behaviour is not None:
            await self.behaviour(message)
        self.messages.append(message)
        self._changed.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list[InboundMessage]:
        """Wait until ``count`` messages were handled; return them."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def text_message(update: dict[str, Any], sender: int, text: str) -> InboundMessage:
    """The InboundMessage the channel must produce for a private text ``update``."""
    return InboundMessage(
        sender=Address("telegram", str(sender)),
        text=text,
        dedup_key=f"update:{update['update_id']}",
        received_at=CLOCK.now(),
        platform_message_id=str(update["message"]["message_id"]),
        language_hint=update["message"]["from"]["language_code"],
    )


def to(user: int, text: str, **fields: Any) -> OutboundMessage:
    """An outbound message for a Telegram user."""
    return OutboundMessage(Address("telegram", str(user)), text, outbox_id="ob-1", **fields)


def free_port() -> int:
    """A port nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------------------- start


async def test_start_checks_the_bot_and_keeps_pending_updates(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """start() calls getMe, then deleteWebhook without dropping pending updates."""
    channel = make()
    await channel.start(Inbox())
    assert fake.calls_of("getMe") == [{}]
    assert fake.calls_of("deleteWebhook") == [{}]
    await channel.stop()
    await channel.stop()  # idempotent


async def test_a_refused_token_fails_start_without_showing_it(
    make: Callable[..., TelegramChannel],
) -> None:
    """A 401 on getMe is a ChannelStartError naming the token problem, not the token."""
    channel = make(token=BAD_TOKEN)
    with pytest.raises(ChannelStartError) as caught:
        await channel.start(Inbox())
    message = str(caught.value)
    assert "token" in message
    assert BAD_TOKEN not in message
    assert BAD_TOKEN.split(":")[1] not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    await channel.stop()  # nothing to stop, no error


async def test_an_unreachable_api_fails_start(make: Callable[..., TelegramChannel]) -> None:
    """Nothing listening at base_url: ChannelStartError saying it cannot reach the API."""
    channel = make(base_url=f"http://127.0.0.1:{free_port()}/bot")
    with pytest.raises(ChannelStartError, match="cannot reach") as caught:
        await channel.start(Inbox())
    assert TOKEN not in str(caught.value)


def test_from_config_builds_the_configured_channel() -> None:
    """from_config takes token, base_url, mode and the webhook settings from the config."""
    config = TelegramConfig(enabled=True, token=TOKEN, base_url="http://127.0.0.1:1/bot")
    assert TelegramChannel.from_config(config).name == "telegram"
    with pytest.raises(ChannelStartError, match="token"):
        TelegramChannel.from_config(TelegramConfig())


# ---------------------------------------------------------------------------- polling


async def test_updates_are_handed_over_in_order_with_exact_fields(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """Private text messages become InboundMessages in update order."""
    first = fake.user_says(USER, "/start")
    second = fake.user_says(USER, TEXT)
    third = fake.user_says(OTHER, TEXT2)
    inbox = Inbox()
    channel = make()
    await channel.start(inbox)
    assert await inbox.wait(3) == [
        text_message(first, USER, "/start"),
        text_message(second, USER, TEXT),
        text_message(third, OTHER, TEXT2),
    ]
    assert fake.calls_of("getUpdates")[0]["allowed_updates"] == ["message", "callback_query"]


async def test_an_update_is_confirmed_only_after_handle_returned(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """While handle runs the update is still held by Telegram; if handle fails, the same
    update is fetched again and confirmed only once handled."""
    first = fake.user_says(USER, TEXT)
    second = fake.user_says(USER, TEXT2)
    failures: list[str] = []
    held_during_handle: list[bool] = []

    async def fail_once(message: InboundMessage) -> None:
        held_during_handle.append(first["update_id"] in fake.pending_ids())
        if not failures:
            failures.append(message.dedup_key)
            raise RuntimeError("database is down")

    inbox = Inbox()
    inbox.behaviour = fail_once
    channel = make()
    await channel.start(inbox)
    handled = await inbox.wait(2)
    assert failures == [f"update:{first['update_id']}"]
    assert [m.dedup_key for m in handled] == [
        f"update:{first['update_id']}",
        f"update:{second['update_id']}",
    ]
    assert held_during_handle[:2] == [True, True]
    await until(lambda: fake.pending_ids() == [])


async def test_a_crash_before_handle_returned_delivers_the_update_again(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """A channel stopped while handle never finishes (a crash, as far as Telegram knows)
    leaves the update unconfirmed: the next channel receives it again."""
    update = fake.user_says(USER, TEXT)
    started = asyncio.Event()

    async def hang(message: InboundMessage) -> None:
        started.set()
        await asyncio.Event().wait()

    stuck = Inbox()
    stuck.behaviour = hang
    crashed = make(stop_timeout=0.2)
    await crashed.start(stuck)
    await asyncio.wait_for(started.wait(), 5)
    await crashed.stop()
    assert stuck.messages == []
    assert fake.pending_ids() == [update["update_id"]]

    inbox = Inbox()
    await make().start(inbox)
    assert await inbox.wait(1) == [text_message(update, USER, TEXT)]


async def test_stop_finishes_the_update_in_hand_and_confirms_it(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """stop() waits for the update in hand, then confirms it with getUpdates(timeout=0): a
    new poller does not receive it again."""
    update = fake.user_says(USER, TEXT)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(message: InboundMessage) -> None:
        started.set()
        await release.wait()

    inbox = Inbox()
    inbox.behaviour = slow
    channel = make()
    await channel.start(inbox)
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(channel.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()
    release.set()
    await stopping
    assert len(inbox.messages) == 1
    assert fake.calls_of("getUpdates")[-1] == {
        "offset": update["update_id"] + 1,
        "timeout": 0,
        "limit": 1,
        "allowed_updates": ["message", "callback_query"],
    }
    assert fake.pending_ids() == []

    later = Inbox()
    await make().start(later)
    newer = fake.user_says(USER, TEXT2)
    assert await later.wait(1) == [text_message(newer, USER, TEXT2)]


async def test_non_text_group_edited_and_service_updates(
    fake: FakeBotApi, make: Callable[..., TelegramChannel], caplog: pytest.LogCaptureFixture
) -> None:
    """A photo is handed over with text "" (or its caption's words); group and service
    messages are ignored (and confirmed, so they do not block the queue); edits are not even
    fetched."""
    group = fake.group_says(USER, -100200300, TEXT2)
    photo = fake.user_sends_photo(USER)
    captioned = fake.user_sends_photo(USER, caption=TEXT2)
    edit = fake.user_edits(USER, photo["message"]["message_id"], TEXT2)
    service = fake.user_sends(USER, {"message_auto_delete_timer_changed": {"x": 86400}})
    last = fake.user_says(USER, TEXT)
    inbox = Inbox()
    channel = make()
    await channel.start(inbox)
    assert await inbox.wait(3) == [
        text_message(photo, USER, ""),
        text_message(captioned, USER, TEXT2),
        text_message(last, USER, TEXT),
    ]
    await until(lambda: fake.pending_ids() == [])
    for update, reason in ((group, "not_private"), (service, "service")):
        assert f"update_id={update['update_id']} reason={reason}" in caplog.text
    # edits are not among allowed_updates: Telegram never sends them to this poller
    assert f"update_id={edit['update_id']}" not in caplog.text


async def test_a_button_press_carries_data_and_label_and_is_answered(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """A callback query becomes a message with the button's data and label; the query is
    answered after handle returned."""
    fake.user_says(USER, "/start")
    answered_during_handle: list[int] = []
    inbox = Inbox()
    channel = make(per_chat_interval=0)
    await channel.start(inbox)
    await inbox.wait(1)
    delivered = await channel.send(
        to(
            USER,
            "How urgent is this?",
            choices=(Choice("In danger now", "f1:s2:urgent"), Choice("Within 24h", "f1:s2:soon")),
        )
    )
    question = int(delivered.message_ids[0])

    async def check(message: InboundMessage) -> None:
        answered_during_handle.append(len(fake.answered_callbacks))

    inbox.behaviour = check
    press = fake.user_presses(USER, question, "f1:s2:soon")
    pressed = (await inbox.wait(2))[1]
    assert pressed == InboundMessage(
        sender=Address("telegram", str(USER)),
        text="Within 24h",
        dedup_key=f"update:{press['update_id']}",
        received_at=CLOCK.now(),
        platform_message_id=str(question),
        button="f1:s2:soon",
        language_hint="en",  # the fake user's app language (Telegram's language_code)
    )
    await until(lambda: len(fake.answered_callbacks) == 1)
    assert answered_during_handle == [0]
    assert fake.answered_callbacks[0]["callback_query_id"] == press["callback_query"]["id"]


async def test_polling_survives_server_errors_floods_conflicts_and_restarts(
    fake: FakeBotApi, make: Callable[..., TelegramChannel], caplog: pytest.LogCaptureFixture
) -> None:
    """5xx, 429 (retry_after honoured), 409 and a server restart on getUpdates: the loop
    backs off and carries on; nothing is lost."""
    fake.fail_next("getUpdates", 1, "500")
    fake.fail_next("getUpdates", 1, "429", retry_after=1)
    fake.fail_next("getUpdates", 1, "409")
    inbox = Inbox()
    channel = make()
    await channel.start(inbox)
    first = fake.user_says(USER, TEXT)
    assert await inbox.wait(1) == [text_message(first, USER, TEXT)]
    calls = fake.calls
    polls = [c.at for c in calls if c.method == "getUpdates"]
    assert polls[2] - polls[1] >= 0.95  # retry_after honoured
    await fake.restart()
    second = fake.user_says(USER, TEXT2)
    assert (await inbox.wait(2))[1] == text_message(second, USER, TEXT2)
    assert "telegram.poll_conflict" in caplog.text


# ---------------------------------------------------------------------------- webhook


async def webhook_channel(
    make: Callable[..., TelegramChannel], inbox: Inbox
) -> tuple[TelegramChannel, str]:
    """Start a webhook channel on a free port; return it and its local URL."""
    channel = make(
        mode="webhook",
        webhook_url=f"https://intake.example.org{HOOK_PATH}",
        webhook_secret=SECRET,
        listen="127.0.0.1:0",
    )
    await channel.start(inbox)
    return channel, f"http://127.0.0.1:{channel.webhook_port}{HOOK_PATH}"


async def test_webhook_registers_and_refuses_a_missing_or_wrong_secret(
    fake: FakeBotApi, make: Callable[..., TelegramChannel], caplog: pytest.LogCaptureFixture
) -> None:
    """setWebhook carries the URL, secret and update kinds; requests without the right
    secret, or not JSON, are refused and never handled; an edit is acknowledged and
    ignored."""
    inbox = Inbox()
    _, url = await webhook_channel(make, inbox)
    assert fake.calls_of("setWebhook") == [
        {
            "url": f"https://intake.example.org{HOOK_PATH}",
            "secret_token": SECRET,
            "allowed_updates": ["message", "callback_query"],
            "max_connections": 1,
        }
    ]
    update = fake.user_says(USER, TEXT)
    assert await fake.deliver(update, url=url, secret=None) == 401
    assert await fake.deliver(update, url=url, secret="wrong-secret") == 403
    assert await fake.deliver(b"{not json", url=url) == 400
    assert await fake.deliver({"no": "update"}, url=url) == 400
    assert inbox.messages == []
    edit = fake.user_edits(USER, update["message"]["message_id"], TEXT2)
    assert await fake.deliver(edit, url=url) == 200
    assert inbox.messages == []
    assert f"update_id={edit['update_id']} reason=edited_message" in caplog.text


async def test_webhook_answers_200_only_after_handle_returned(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """A valid update is handled before the 200; a failing handle gives 500 (Telegram
    retries), and the retry is handled."""
    inbox = Inbox()
    _, url = await webhook_channel(make, inbox)
    update = fake.user_says(USER, TEXT)
    handled_before_answer: list[bool] = []

    async def slow_then_fail(message: InboundMessage) -> None:
        await asyncio.sleep(0.2)
        if not handled_before_answer:
            handled_before_answer.append(True)
            raise RuntimeError("database is down")

    inbox.behaviour = slow_then_fail
    assert await fake.deliver(update, url=url) == 500
    assert inbox.messages == []
    assert await fake.deliver(update, url=url) == 200
    assert inbox.messages == [text_message(update, USER, TEXT)]


# ---------------------------------------------------------------------------- sending


async def test_send_text_with_an_inline_keyboard(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """One button per row, callback_data = the choice's data; protected content."""
    fake.chat(USER)
    channel = make()
    await channel.start(Inbox())
    choices = (Choice("In danger now", "f1:s2:urgent"), Choice("Within 24h", "f1:s2:soon"))
    delivered = await channel.send(to(USER, "How urgent is this?", choices=choices))
    sent = fake.chat(USER).sent
    assert delivered == Delivered((str(sent[0].message_id),))
    assert sent[0].text == "How urgent is this?"
    assert sent[0].protect_content
    assert sent[0].reply_markup == {
        "inline_keyboard": [
            [{"text": "In danger now", "callback_data": "f1:s2:urgent"}],
            [{"text": "Within 24h", "callback_data": "f1:s2:soon"}],
        ]
    }


async def test_callback_data_over_64_bytes_is_refused(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """Data longer than 64 bytes (UTF-8) is a bug upstream: refused, nothing sent."""
    fake.chat(USER)
    channel = make()
    await channel.start(Inbox())
    with pytest.raises(DeliveryRefused):
        await channel.send(to(USER, "Pick", choices=(Choice("x", "é" * 33),)))
    assert fake.calls_of("sendMessage") == []


async def test_a_long_text_is_split_into_several_messages(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """Texts over 4096 characters go as several messages; every id is returned and the
    keyboard sits under the last part."""
    fake.chat(USER)
    channel = make()
    await channel.start(Inbox())
    text = "word " * 2000
    delivered = await channel.send(to(USER, text, choices=(Choice("OK", "ok"),)))
    sent = fake.chat(USER).sent
    assert len(delivered.message_ids) == len(sent) == 3
    assert delivered.message_ids == tuple(str(m.message_id) for m in sent)
    assert all(len(m.text) <= 4096 for m in sent)
    assert " ".join(m.text for m in sent) == text
    assert [m.reply_markup is not None for m in sent] == [False, False, True]


async def test_scrub_deletes_in_chunks_then_sends_the_note(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """scrub deletes both sides' messages (100 ids per call, unknown ids skipped), then
    sends the note, which is all that stays visible."""
    said = fake.user_says(USER, TEXT)["message"]["message_id"]
    channel = make(per_chat_interval=0)
    await channel.start(Inbox())
    reply = int((await channel.send(to(USER, TEXT2))).message_ids[0])
    ids = [said, reply, *range(reply + 1, reply + 149)]  # 150 ids, most never existed
    note = "This conversation was deleted from the chat."
    delivered = await channel.send(
        to(USER, note, kind="scrub", delete_ids=tuple(str(i) for i in ids))
    )
    calls = fake.calls_of("deleteMessages")
    assert [len(call["message_ids"]) for call in calls] == [100, 50]
    assert fake.chat(USER).deleted == [said, reply]
    assert fake.chat(USER).transcript() == [("bot", note)]
    assert delivered == Delivered((str(fake.chat(USER).sent[-1].message_id),))
    nothing = await channel.send(to(USER, "", kind="scrub", delete_ids=(str(said),)))
    assert nothing == Delivered(())


async def test_the_per_chat_and_overall_rate_limits_ask_for_a_retry(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """A second message to one chat within a second is DeliveryRetry(retry_after≈1), without
    a call; other chats go on until the overall rate is used up."""
    fake.chat(USER)
    fake.chat(OTHER)
    channel = make(overall_rate=2)
    await channel.start(Inbox())
    await channel.send(to(USER, TEXT))
    with pytest.raises(DeliveryRetry) as caught:
        await channel.send(to(USER, TEXT2))
    assert caught.value.retry_after is not None and 0.8 < caught.value.retry_after <= 1.0
    await channel.send(to(OTHER, TEXT2))
    fake.chat(3)
    with pytest.raises(DeliveryRetry) as caught:
        await channel.send(to(3, TEXT2))
    assert caught.value.retry_after is not None and 0.8 < caught.value.retry_after <= 1.0
    assert len(fake.calls_of("sendMessage")) == 2


async def test_a_flood_storm_passes_on_the_servers_retry_after(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """Every 429 becomes DeliveryRetry with the server's retry_after."""
    fake.chat(USER)
    fake.fail_next("sendMessage", 3, "429", retry_after=7)
    channel = make(per_chat_interval=0)
    await channel.start(Inbox())
    for _ in range(3):
        with pytest.raises(DeliveryRetry) as caught:
            await channel.send(to(USER, TEXT))
        assert caught.value.retry_after == 7
    await channel.send(to(USER, TEXT))
    assert fake.chat(USER).sent_texts() == [TEXT]


async def test_the_fakes_opt_in_flood_control_answers_429_as_telegram_does(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """With the fake's flood control on (and the channel's own limiter off), a message to a
    chat inside its interval, or one beyond the overall rate, gets Telegram's 429 with
    ``parameters.retry_after`` (whole seconds) and a Retry-After header; the channel passes
    the wait on as DeliveryRetry, and nothing refused reaches a chat."""
    fake.rate_limit, fake.per_chat_interval, fake.overall_rate = True, 3600.0, 2
    for chat in (USER, OTHER, 3):
        fake.chat(chat)
    channel = make(per_chat_interval=0, overall_rate=0)
    await channel.start(Inbox())
    await channel.send(to(USER, TEXT))
    with pytest.raises(DeliveryRetry) as caught:
        await channel.send(to(USER, TEXT2))  # the same chat again within the hour
    assert caught.value.retry_after == 3600
    await channel.send(to(OTHER, TEXT2))
    with pytest.raises(DeliveryRetry) as caught:
        await channel.send(to(3, TEXT2))  # a third message within a second: overall rate 2
    assert caught.value.retry_after == 1
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{fake.base_url}{TOKEN}/sendMessage", data={"chat_id": str(USER), "text": "x"}
        )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3600"
    assert response.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3600",
        "parameters": {"retry_after": 3600},
    }
    assert fake.rate_limited == 3
    assert fake.chat(USER).sent_texts() == [TEXT]
    assert fake.chat(OTHER).sent_texts() == [TEXT2]
    assert fake.chat(3).sent == []


async def test_blocked_and_unknown_chats_are_refused(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """403 (bot blocked) and 400 (chat not found) are DeliveryRefused; a non-numeric
    identity too."""
    fake.block(USER)
    channel = make(per_chat_interval=0)
    await channel.start(Inbox())
    with pytest.raises(DeliveryRefused):
        await channel.send(to(USER, TEXT))
    with pytest.raises(DeliveryRefused):
        await channel.send(to(OTHER, TEXT))
    with pytest.raises(DeliveryRefused):
        await channel.send(OutboundMessage(Address("telegram", "dana"), TEXT, outbox_id="x"))


@pytest.mark.parametrize(
    ("fault", "outcome", "arrived"),
    [
        ("hang", DeliveryUnknown, True),
        ("drop", DeliveryUnknown, True),
        ("invalid_json", DeliveryUnknown, True),
        ("500", DeliveryRetry, False),
        ("502", DeliveryRetry, False),
    ],
)
async def test_transport_failures_map_to_the_outbox_outcomes(
    fake: FakeBotApi,
    make: Callable[..., TelegramChannel],
    fault: str,
    outcome: type[Exception],
    arrived: bool,
) -> None:
    """A hang past the timeout, a dropped connection or an unreadable answer may have
    delivered (unknown); a server error certainly did not (retry)."""
    fake.chat(USER)
    fake.fail_next("sendMessage", 1, fault)
    channel = make(per_chat_interval=0, request_timeout=0.5)
    await channel.start(Inbox())
    with pytest.raises(outcome) as caught:
        await channel.send(to(USER, TEXT))
    assert type(caught.value) is outcome
    assert fake.chat(USER).sent_texts() == ([TEXT] if arrived else [])


async def test_no_connection_is_a_retry_and_not_started_too(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """Connection refused: certainly not delivered. A stopped channel asks for a retry."""
    fake.chat(USER)
    channel = make(per_chat_interval=0)
    with pytest.raises(DeliveryRetry):
        await channel.send(to(USER, TEXT))
    await channel.start(Inbox())
    await fake.stop()
    with pytest.raises(DeliveryRetry):
        await channel.send(to(USER, TEXT))
    await fake.start()
    await channel.send(to(USER, TEXT))
    assert fake.chat(USER).sent_texts() == [TEXT]


async def test_receive_failures_make_the_channel_unhealthy_until_it_recovers(
    fake: FakeBotApi, make: Callable[..., TelegramChannel]
) -> None:
    """While getUpdates keeps failing the channel reports a problem for the watchdog; once a
    poll succeeds again, it does not."""
    from bot.core.health import ReceiveHealth

    fake.fail_next("getUpdates", times=4, kind="500")
    channel = make()
    channel.health = ReceiveHealth("Telegram", unhealthy_after=0.05)
    await channel.start(Inbox())
    await until(lambda: channel.health.problem() is not None)
    await until(lambda: channel.health.problem() is None, timeout=15)
