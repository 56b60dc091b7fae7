"""The real SignalChannel (real httpx, real aiohttp websocket) against the fake
signal-cli-rest-api in tests/fakes/signal_api.py.

Every test also checks (autouse fixture) that nothing logged at DEBUG or above carries a phone
number, uuid or message text used here, with third-party loggers set as in production
(``bot.observability.QUIET_LOGGERS`` at WARNING).

Choice documented here: a connection dropped after the request was sent is DeliveryUnknown,
not DeliveryRetry. The research (§3.4, §7.3) shows the server keeps going without the client
(no context cancellation), so the message may well have been sent; a blind retry could page
twice, and the outbox's single repeat for unknown outcomes is the designed answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.channels.signal import SignalChannel, parse_item, split_batch
from bot.config import SignalConfig
from bot.core.messages import (
    Address,
    Choice,
    Delivered,
    DeliveryError,
    DeliveryRefused,
    DeliveryRetry,
    DeliveryUnknown,
    InboundMessage,
    OutboundMessage,
)
from bot.errors import ChannelStartError
from bot.observability import QUIET_LOGGERS
from tests.fakes import signal_api
from tests.fakes.signal_api import ACCOUNT, FakeSignalApi

DEFENDER_UUID = "6e4a1c2b-3f0d-4b8e-9a51-2c7d8e9f0a11"
DEFENDER_NUMBER = "+15551230001"
OTHER_UUID = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"
OTHER_NUMBER = "+15551230003"
RESPONDER_UUID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
RESPONDER_NUMBER = "+15552220002"
TEXT = "URGENT: detained at checkpoint north of town"
REPLY = "We received your message, ref 7F3K"
SECRETS = (
    ACCOUNT,
    ACCOUNT[1:],
    DEFENDER_UUID,
    DEFENDER_NUMBER,
    DEFENDER_NUMBER[1:],
    OTHER_UUID,
    OTHER_NUMBER,
    RESPONDER_UUID,
    RESPONDER_NUMBER,
    "detained",
    "checkpoint",
    "ref 7F3K",
    "second message",
    "third message",
)
NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
TS = 1764450000123


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """Capture everything at DEBUG; afterwards no record may carry an identity or text."""
    caplog.set_level(logging.DEBUG)
    quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(quiet, levels, strict=True):
        logger.setLevel(level)
    captured = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in SECRETS:
        assert secret not in captured, f"a log line carries {secret!r}"


@pytest.fixture
async def api() -> AsyncIterator[FakeSignalApi]:
    """A running fake in mode normal."""
    async with FakeSignalApi(mode="normal") as fake:
        yield fake


@pytest.fixture
async def rpc() -> AsyncIterator[FakeSignalApi]:
    """A running fake in mode json-rpc."""
    async with FakeSignalApi(mode="json-rpc") as fake:
        yield fake


class Alerts(list[str]):
    """Records operator alerts."""

    async def __call__(self, name: str) -> None:
        self.append(name)


@pytest.fixture
def alerts() -> Alerts:
    return Alerts()


@pytest.fixture
async def make(alerts: Alerts) -> AsyncIterator[Callable[..., SignalChannel]]:
    """Build channels with test-sized timings; every one is stopped afterwards."""
    made: list[SignalChannel] = []

    def build(fake: FakeSignalApi | str, **kw: Any) -> SignalChannel:
        url = fake if isinstance(fake, str) else fake.url
        receive = kw.pop("receive", None)
        if receive is None:
            receive = (
                "websocket"
                if isinstance(fake, FakeSignalApi) and fake.mode == "json-rpc"
                else "poll"
            )
        options: dict[str, Any] = {
            "poll_interval": 0.02,
            "timeout": 2.0,
            "retry_base": 0.02,
            "retry_cap": 0.2,
            "heartbeat": 2.0,
            "stop_grace": 2.0,
            "now": lambda: NOW,
            "on_operator_alert": alerts,
        }
        options.update(kw)
        disappearing = options.pop("disappearing", None)
        channel = SignalChannel(url, ACCOUNT, receive, disappearing, **options)
        made.append(channel)
        return channel

    yield build
    for channel in made:
        await channel.stop()


class Inbox:
    """A ``handle`` that stores messages, optionally failing its first calls."""

    def __init__(self, api: FakeSignalApi | None = None, fail: int = 0, delay: float = 0.0):
        self.api = api
        self.fail = fail
        self.delay = delay
        self.messages: list[InboundMessage] = []
        self.calls: list[tuple[str, int]] = []  # (text, receive requests seen so far)

    async def __call__(self, message: InboundMessage) -> None:
        seen = len(self.api.receive_requests) if self.api is not None else 0
        self.calls.append((message.text, seen))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("database unavailable")
        self.messages.append(message)

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until ``condition()`` holds (fails the test after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def free_port() -> int:
    """A port on which nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def outbound(
    identity: str = DEFENDER_UUID, text: str = REPLY, *, to_defender: bool = True, **kw: Any
) -> OutboundMessage:
    return OutboundMessage(
        recipient=Address("signal", identity),
        text=text,
        outbox_id="ob-1",
        to_defender=to_defender,
        **kw,
    )


def assert_clean(error: BaseException) -> None:
    """A delivery error's message names no identity, number or text."""
    for secret in SECRETS:
        assert secret not in str(error)


async def send_error(channel: SignalChannel, message: OutboundMessage) -> DeliveryError:
    try:
        await channel.send(message)
    except DeliveryError as exc:
        assert_clean(exc)
        return exc
    raise AssertionError("send did not fail")


# ---------------------------------------------------------------------------------- start


async def test_start_checks_about_and_logs_the_version(
    api: FakeSignalApi, make: Callable[..., SignalChannel], caplog: pytest.LogCaptureFixture
) -> None:
    channel = make(api)
    await channel.start(Inbox())
    assert api.about_requests == 1
    assert channel.api_version == "0.100"
    assert any(
        r.levelno == logging.INFO and "signal.api_ok version=0.100" in r.getMessage()
        for r in caplog.records
    )
    await until(lambda: len(api.receive_requests) >= 1)


async def test_start_unreachable_names_the_url_and_what_to_check(
    make: Callable[..., SignalChannel],
) -> None:
    port = free_port()
    channel = make(f"http://operator:hunter2@127.0.0.1:{port}")
    with pytest.raises(ChannelStartError) as caught:
        await channel.start(Inbox())
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text
    assert "running" in text and "api_url" in text
    assert "hunter2" not in text


async def test_start_poll_against_json_rpc_says_what_to_change(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    with pytest.raises(ChannelStartError) as caught:
        await make(rpc, receive="poll").start(Inbox())
    text = str(caught.value)
    assert '"json-rpc"' in text and 'receive = "websocket"' in text


async def test_start_websocket_against_normal_says_what_to_change(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    with pytest.raises(ChannelStartError) as caught:
        await make(api, receive="websocket").start(Inbox())
    text = str(caught.value)
    assert '"normal"' in text and 'receive = "poll"' in text and "MODE=json-rpc" in text
    assert api.receive_requests == []  # it never tried the (destructive) receive path


async def test_start_fails_when_the_account_is_not_registered(
    make: Callable[..., SignalChannel],
) -> None:
    async with FakeSignalApi(accounts=["+15550000001"]) as fake:
        with pytest.raises(ChannelStartError) as caught:
            await make(fake).start(Inbox())
    assert "register" in str(caught.value)
    assert_clean(caught.value)


# -------------------------------------------------------------------------- poll receive


async def test_poll_delivers_the_exact_message(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 1)
    assert inbox.messages[0] == InboundMessage(
        sender=Address("signal", DEFENDER_UUID),
        text=TEXT,
        dedup_key=f"{DEFENDER_UUID}:{TS}",
        received_at=NOW,
        aliases=(Address("signal", DEFENDER_NUMBER),),
        platform_message_id=str(TS),
    )
    assert api.receive_requests[0] == {
        "timeout": "1",
        "max_messages": "10",
        "ignore_attachments": "true",
        "ignore_stories": "true",
        "ignore_avatars": "true",
        "ignore_stickers": "true",
        "send_read_receipts": "false",
    }


async def test_poll_accepts_a_hidden_number(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    api.deliver_text(DEFENDER_UUID, None, TEXT, TS)
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 1)
    message = inbox.messages[0]
    assert message.sender == Address("signal", DEFENDER_UUID)
    assert message.aliases == ()
    assert message.dedup_key == f"{DEFENDER_UUID}:{TS}"


async def test_receipts_typing_sync_reactions_and_updates_are_ignored(
    api: FakeSignalApi, make: Callable[..., SignalChannel], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    api.deliver(signal_api.receipt_item(RESPONDER_UUID, RESPONDER_NUMBER, [TS]))
    api.deliver(signal_api.receipt_item(RESPONDER_UUID, RESPONDER_NUMBER, [TS], read=True))
    api.deliver(signal_api.typing_item(DEFENDER_UUID, DEFENDER_NUMBER))
    api.deliver(signal_api.sync_item(DEFENDER_UUID, DEFENDER_NUMBER, "third message"))
    api.deliver(signal_api.reaction_item(DEFENDER_UUID, DEFENDER_NUMBER, TS))
    api.deliver(signal_api.expiration_update_item(DEFENDER_UUID, DEFENDER_NUMBER, 3600))
    api.deliver(signal_api.exception_only_item())
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS + 1)
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 1)
    await asyncio.sleep(0.05)
    assert inbox.texts == [TEXT]
    for event in (
        "signal.receipt_ignored",
        "signal.typing_ignored",
        "signal.sync_ignored",
        "signal.reaction_ignored",
        "signal.expiration_update_ignored",
        "signal.receive_exception",
    ):
        assert event in caplog.text


async def test_untrusted_identity_alerts_and_still_delivers_content(
    api: FakeSignalApi,
    make: Callable[..., SignalChannel],
    alerts: Alerts,
) -> None:
    inbox = Inbox()
    api.deliver(signal_api.untrusted_item(DEFENDER_UUID, DEFENDER_NUMBER, TS))  # held back
    with_content = signal_api.text_item(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS + 1)
    with_content["exception"] = {
        "message": f"Untrusted identity: {DEFENDER_UUID}",
        "type": "UntrustedIdentityException",
    }
    api.deliver(with_content)
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 1 and len(alerts) == 2)
    assert alerts == ["signal.untrusted_identity", "signal.untrusted_identity"]
    assert inbox.messages[0].text == TEXT
    assert inbox.messages[0].dedup_key == f"{DEFENDER_UUID}:{TS + 1}"


async def test_attachment_without_text_is_delivered_empty(
    api: FakeSignalApi, make: Callable[..., SignalChannel], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    api.deliver(signal_api.attachment_item(DEFENDER_UUID, DEFENDER_NUMBER, TS))
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 1)
    assert inbox.messages[0].text == ""
    assert inbox.messages[0].dedup_key == f"{DEFENDER_UUID}:{TS}"
    assert "signal.attachment_without_text" in caplog.text


async def test_failing_handle_is_retried_in_order_without_fetching(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox(api, fail=2)
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, "second message", TS + 1)
    api.deliver_text(OTHER_UUID, OTHER_NUMBER, "third message", TS + 2)
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 3)
    assert [text for text, _ in inbox.calls] == [
        TEXT,
        TEXT,
        TEXT,
        "second message",
        "third message",
    ]
    assert {seen for _, seen in inbox.calls} == {1}  # no GET while holding messages
    assert inbox.texts == [TEXT, "second message", "third message"]
    assert [m.dedup_key for m in inbox.messages] == [
        f"{DEFENDER_UUID}:{TS}",
        f"{DEFENDER_UUID}:{TS + 1}",
        f"{OTHER_UUID}:{TS + 2}",
    ]


async def test_stop_finishes_the_message_in_hand_and_is_idempotent(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox(api, delay=0.3)
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    channel = make(api)
    await channel.start(inbox)
    await until(lambda: len(inbox.calls) == 1)
    await asyncio.gather(channel.stop(), channel.stop())
    assert inbox.texts == [TEXT]
    requests = len(api.receive_requests)
    await asyncio.sleep(0.1)
    assert len(api.receive_requests) == requests
    await channel.stop()


async def test_stop_gives_up_after_the_grace_and_says_how_many(
    api: FakeSignalApi,
    make: Callable[..., SignalChannel],
    alerts: Alerts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox(api, fail=10**6)
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, "second message", TS + 1)
    channel = make(api, stop_grace=0.3)
    await channel.start(inbox)
    await until(lambda: len(inbox.calls) >= 2)
    started = asyncio.get_running_loop().time()
    await channel.stop()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert "signal.messages_abandoned_on_stop" in alerts
    assert "signal.stop_abandoned_messages count=2" in caplog.text
    assert len(api.receive_requests) == 1


async def test_stop_does_not_wait_forever_for_a_hung_poll(
    api: FakeSignalApi, make: Callable[..., SignalChannel], alerts: Alerts
) -> None:
    api.fail_receives("hang")
    channel = make(api, stop_grace=0.3)
    await channel.start(Inbox())
    await until(lambda: len(api.receive_requests) == 1)
    await channel.stop()
    assert "signal.receive_messages_may_be_lost" in alerts


async def test_garbled_batch_is_salvaged(
    api: FakeSignalApi, make: Callable[..., SignalChannel], alerts: Alerts
) -> None:
    inbox = Inbox()
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    api.deliver_text(OTHER_UUID, None, "second message", TS + 1)
    api.fail_receives("invalid_json")
    await make(api).start(inbox)
    await until(lambda: len(inbox.messages) == 2)
    assert inbox.texts == [TEXT, "second message"]
    await until(lambda: "signal.receive_messages_may_be_lost" in alerts)


async def test_poll_survives_a_server_restart(
    api: FakeSignalApi, make: Callable[..., SignalChannel], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    await make(api).start(inbox)
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    await until(lambda: len(inbox.messages) == 1)
    await api.stop()
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, "second message", TS + 1)
    await asyncio.sleep(0.3)
    await api.start()
    await until(lambda: len(inbox.messages) == 2)
    assert inbox.texts == [TEXT, "second message"]
    assert "signal.receive_failed" in caplog.text


async def test_poll_backs_off_on_errors_and_resets(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    api.fail_receives("500", count=6)
    await make(api, retry_base=0.05, retry_cap=0.4).start(inbox)
    await asyncio.sleep(0.5)
    assert 2 <= len(api.receive_requests) <= 6  # back-off, not a busy loop
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    await until(lambda: len(inbox.messages) == 1, timeout=5)


async def test_poll_hang_times_out_and_polling_goes_on(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    api.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    api.fail_receives("hang")
    await make(api, receive_read_timeout=0.3).start(inbox)
    await until(lambda: len(api.receive_requests) >= 2)
    api.deliver_text(OTHER_UUID, OTHER_NUMBER, "second message", TS + 1)
    await until(lambda: len(inbox.messages) == 1)
    # The first message was consumed by the hung GET: destructive receive loses it (§7.3).
    assert inbox.texts == ["second message"]


async def test_poll_notices_a_server_switched_to_json_rpc(
    api: FakeSignalApi, make: Callable[..., SignalChannel], alerts: Alerts
) -> None:
    await make(api).start(Inbox())
    await api.stop()
    api.mode = "json-rpc"
    await api.start()
    await until(lambda: "signal.receive_mode_mismatch" in alerts)


# --------------------------------------------------------------------- websocket receive


async def test_websocket_delivers_the_exact_message(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    await make(rpc).start(inbox)
    await rpc.wait_for_sockets(1)
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    rpc.deliver(signal_api.receipt_item(RESPONDER_UUID, RESPONDER_NUMBER, [TS]))
    rpc.deliver(signal_api.attachment_item(OTHER_UUID, None, TS + 1))
    await until(lambda: len(inbox.messages) == 2)
    assert inbox.messages[0] == InboundMessage(
        sender=Address("signal", DEFENDER_UUID),
        text=TEXT,
        dedup_key=f"{DEFENDER_UUID}:{TS}",
        received_at=NOW,
        aliases=(Address("signal", DEFENDER_NUMBER),),
        platform_message_id=str(TS),
    )
    assert inbox.messages[1].text == ""
    assert inbox.messages[1].aliases == ()
    assert rpc.lost == []


async def test_websocket_keeps_reading_while_handle_fails(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox(fail=2)
    await make(rpc).start(inbox)
    await rpc.wait_for_sockets(1)
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, "second message", TS + 1)
    await until(lambda: len(inbox.messages) == 2)
    assert inbox.texts == [TEXT, "second message"]
    assert [text for text, _ in inbox.calls] == [TEXT, TEXT, TEXT, "second message"]


async def test_websocket_reconnects_with_backoff(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    await make(rpc, retry_base=0.05, retry_cap=0.4).start(inbox)
    await rpc.wait_for_sockets(1)
    await asyncio.sleep(0.45)  # healthy for longer than retry_cap: back-off starts afresh
    before = rpc.ws_attempts
    rpc.reject_websockets(10**6)
    await rpc.drop_websockets()
    await asyncio.sleep(0.2)
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)  # nobody attached: lost
    await asyncio.sleep(1.0)
    attempts = rpc.ws_attempts - before
    assert 3 <= attempts <= 12, attempts  # a busy loop would make thousands
    assert [item["envelope"]["timestamp"] for item in rpc.lost] == [TS]
    rpc.reject_websockets(0)
    await rpc.wait_for_sockets(1, timeout=3)
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, "second message", TS + 1)
    await until(lambda: len(inbox.messages) == 1)
    assert inbox.texts == ["second message"]
    assert "signal.ws_failed" in caplog.text


async def test_websocket_survives_a_server_restart(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    await make(rpc).start(inbox)
    await rpc.wait_for_sockets(1)
    await rpc.stop()
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)  # waits at Signal
    await rpc.start()
    # Pushed 50 ms after the restart: delivered if we reconnected by then, else lost (§7.2).
    await until(lambda: len(inbox.messages) == 1 or bool(rpc.lost), timeout=3)
    await rpc.wait_for_sockets(1)
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, "second message", TS + 1)
    await until(lambda: "second message" in inbox.texts)


async def test_websocket_detects_a_half_open_connection(
    make: Callable[..., SignalChannel],
) -> None:
    async with FakeSignalApi(mode="json-rpc", answer_pings=False) as fake:
        await make(fake, heartbeat=0.2).start(Inbox())
        await fake.wait_for_sockets(1)
        await until(lambda: fake.ws_attempts >= 2, timeout=3)


async def test_websocket_alerts_when_the_server_switched_to_normal(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel], alerts: Alerts
) -> None:
    await make(rpc).start(Inbox())
    await rpc.wait_for_sockets(1)
    await rpc.stop()
    rpc.mode = "normal"
    await rpc.start()
    await until(lambda: "signal.receive_mode_mismatch" in alerts)


# ------------------------------------------------------------------------------------ send


@pytest.mark.parametrize("shape", ["object", "array"])
async def test_send_one_recipient_returns_the_timestamp(
    make: Callable[..., SignalChannel], shape: str
) -> None:
    async with FakeSignalApi(send_shape=shape) as fake:
        channel = make(fake)
        delivered = await channel.send(
            outbound(choices=(Choice("Yes", "y"), Choice("No", "n")), to_defender=False)
        )
    assert len(fake.sent) == 1
    sent = fake.sent[0]
    assert delivered == Delivered((str(sent["timestamp"]),))
    assert fake.send_requests == [
        {
            "number": ACCOUNT,
            "recipients": [DEFENDER_UUID],
            "message": REPLY,
            "text_mode": "normal",
            "notify_self": False,
        }
    ]


async def test_disappearing_timer_is_set_once_per_defender_only(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    channel = SignalChannel.from_config(
        SignalConfig(enabled=True, api_url=api.url, number=ACCOUNT, disappearing="1d")
    )
    try:
        await channel.send(outbound(DEFENDER_UUID))
        await channel.send(outbound(DEFENDER_UUID))
        await asyncio.gather(channel.send(outbound(OTHER_UUID)), channel.send(outbound(OTHER_UUID)))
        await channel.send(outbound(RESPONDER_UUID, to_defender=False))
    finally:
        await channel.stop()
    assert api.contact_updates == [
        {"number": ACCOUNT, "recipient": DEFENDER_UUID, "expiration_in_seconds": 86400},
        {"number": ACCOUNT, "recipient": OTHER_UUID, "expiration_in_seconds": 86400},
    ]
    assert len(api.sent) == 5


async def test_disappearing_off_never_touches_contacts(api: FakeSignalApi) -> None:
    channel = SignalChannel.from_config(
        SignalConfig(enabled=True, api_url=api.url, number=ACCOUNT, disappearing="off")
    )
    try:
        await channel.send(outbound(DEFENDER_UUID))
    finally:
        await channel.stop()
    assert api.contact_updates == []
    assert len(api.sent) == 1


async def test_a_failed_timer_update_does_not_block_and_is_retried(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    channel = make(api, disappearing=timedelta(hours=2))
    api.fail_contact_updates("400")
    await channel.send(outbound())
    api.fail_contact_updates("drop")
    await channel.send(outbound())
    await channel.send(outbound())
    await channel.send(outbound())
    assert len(api.sent) == 4
    assert api.contact_updates == [
        {"number": ACCOUNT, "recipient": DEFENDER_UUID, "expiration_in_seconds": 7200}
    ]


async def test_429_is_retry_with_retry_after(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel], alerts: Alerts
) -> None:
    channel = make(rpc)
    rpc.fail_sends("429", retry_after=7)
    error = await send_error(channel, outbound())
    assert isinstance(error, DeliveryRetry)
    assert error.retry_after == 7.0
    rpc.fail_sends("429")
    error = await send_error(channel, outbound())
    assert isinstance(error, DeliveryRetry) and error.retry_after is None
    assert rpc.sent == []
    await until(lambda: alerts.count("signal.rate_limited") == 2)


async def test_normal_mode_rate_limit_is_retry(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    api.fail_sends("rate_limit")
    assert isinstance(await send_error(make(api), outbound()), DeliveryRetry)


async def test_500_is_retry(api: FakeSignalApi, make: Callable[..., SignalChannel]) -> None:
    api.fail_sends("500")
    error = await send_error(make(api), outbound())
    assert isinstance(error, DeliveryRetry)
    assert "500" in str(error)


async def test_connection_refused_is_retry(make: Callable[..., SignalChannel]) -> None:
    channel = make(f"http://127.0.0.1:{free_port()}")
    assert isinstance(await send_error(channel, outbound()), DeliveryRetry)


@pytest.mark.parametrize("mode", ["normal", "json-rpc"])
async def test_unregistered_recipient_is_refused(
    make: Callable[..., SignalChannel], mode: str
) -> None:
    async with FakeSignalApi(mode=mode) as fake:
        fake.unregistered.add(DEFENDER_UUID)
        error = await send_error(make(fake), outbound())
    assert isinstance(error, DeliveryRefused)
    assert "not registered" in str(error)


@pytest.mark.parametrize("mode", ["normal", "json-rpc"])
async def test_untrusted_recipient_is_refused_and_alerted(
    make: Callable[..., SignalChannel], alerts: Alerts, mode: str
) -> None:
    async with FakeSignalApi(mode=mode) as fake:
        fake.untrusted.add(RESPONDER_UUID)
        error = await send_error(make(fake), outbound(RESPONDER_UUID, to_defender=False))
    assert isinstance(error, DeliveryRefused)
    await until(lambda: "signal.untrusted_recipient" in alerts)


async def test_invalid_recipient_is_refused(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    error = await send_error(make(api), outbound("not a signal id", to_defender=False))
    assert isinstance(error, DeliveryRefused)


async def test_404_is_refused(api: FakeSignalApi, make: Callable[..., SignalChannel]) -> None:
    error = await send_error(make(api.url + "/wrong-prefix"), outbound())
    assert isinstance(error, DeliveryRefused) and "404" in str(error)


async def test_hang_is_unknown(api: FakeSignalApi, make: Callable[..., SignalChannel]) -> None:
    api.fail_sends("hang")
    error = await send_error(make(api, timeout=0.3), outbound())
    assert isinstance(error, DeliveryUnknown)
    assert len(api.sent) == 1  # ... and it was in fact sent


async def test_invalid_json_is_unknown(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    api.fail_sends("invalid_json")
    assert isinstance(await send_error(make(api), outbound()), DeliveryUnknown)


async def test_dropped_connection_is_unknown(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    api.fail_sends("drop")
    error = await send_error(make(api), outbound())
    assert isinstance(error, DeliveryUnknown)
    assert len(api.sent) == 1


@pytest.mark.parametrize("fault", ["timeout_kill", "400"])
async def test_ambiguous_400s_are_unknown(
    api: FakeSignalApi, make: Callable[..., SignalChannel], fault: str
) -> None:
    api.fail_sends(fault)  # "process killed as timeout reached" / "Failed to send message"
    assert isinstance(await send_error(make(api), outbound()), DeliveryUnknown)


async def test_scrub_sends_text_and_ignores_delete_ids(
    api: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    channel = make(api)
    scrub = outbound(text="", kind="scrub", delete_ids=("1", "2"))
    assert await channel.send(scrub) == Delivered(())
    assert api.send_requests == []
    delivered = await channel.send(outbound(kind="scrub", delete_ids=("1",)))
    assert delivered.message_ids == (str(api.sent[0]["timestamp"]),)
    assert api.send_requests[0]["message"] == REPLY


async def test_send_and_receive_share_the_channel(
    rpc: FakeSignalApi, make: Callable[..., SignalChannel]
) -> None:
    inbox = Inbox()
    channel = make(rpc)
    await channel.start(inbox)
    await rpc.wait_for_sockets(1)
    await channel.send(outbound(to_defender=False))
    rpc.deliver_text(DEFENDER_UUID, DEFENDER_NUMBER, TEXT, TS)
    await until(lambda: len(inbox.messages) == 1)
    await channel.stop()
    await until(lambda: rpc.sockets == 0)


# --------------------------------------------------------------------------------- parsing


def test_parse_item_never_raises_on_odd_json() -> None:
    odd: list[Any] = [
        None,
        1,
        "x",
        [],
        {},
        {"envelope": None},
        {"envelope": {"dataMessage": "x"}},
        {"envelope": {"sourceUuid": 5, "timestamp": "1", "dataMessage": {"message": "hi"}}},
        {"envelope": {"sourceUuid": "u", "timestamp": True, "dataMessage": {"message": "hi"}}},
        {"envelope": {"dataMessage": {"message": 3}}},
        {"error": "Failed to receive"},
        {"params": {"envelope": {"sourceUuid": "u", "timestamp": 1, "dataMessage": {}}}},
    ]
    for item in odd:
        assert parse_item(item, NOW).message is None


def test_parse_item_unwraps_json_rpc_and_reads_edits_and_calls() -> None:
    item = signal_api.text_item(DEFENDER_UUID, None, TEXT, TS)
    wrapped = {"jsonrpc": "2.0", "method": "receive", "params": item}
    assert parse_item(wrapped, NOW).message is not None
    edit = {
        "envelope": signal_api.envelope(
            DEFENDER_UUID,
            None,
            TS + 5,
            editMessage={
                "targetSentTimestamp": TS,
                "dataMessage": signal_api.data_message(TS + 5, "second message"),
            },
        ),
        "account": ACCOUNT,
    }
    parsed = parse_item(edit, NOW)
    assert parsed.message is not None and parsed.message.text == "second message"
    assert parsed.message.dedup_key == f"{DEFENDER_UUID}:{TS + 5}"
    call = {
        "envelope": signal_api.envelope(
            DEFENDER_UUID, None, TS + 6, callMessage={"offerMessage": {"id": 1}}
        ),
        "account": ACCOUNT,
    }
    parsed = parse_item(call, NOW)
    assert parsed.message is not None and parsed.message.text == ""


def test_split_batch_salvages_items_around_garbage() -> None:
    good = '{"envelope":{"timestamp":1},"account":"x"}'
    items, garbled = split_batch(f"[{good},SLF4J(I): noise {{ broken,{good}]")
    assert garbled and len(items) == 2
    assert split_batch("[]") == ([], False)
