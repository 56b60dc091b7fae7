"""Fuzzing what signal-cli-rest-api hands the Signal channel: single receive items
(``parse_item``), whole ``GET /v1/receive`` bodies (``split_batch``), websocket frames, and
the real poll loop against the fake server, wired to the real app.

Malformed envelopes — missing fields, wrong types, huge ints, unknown parts, JSON-RPC
wrappers, garbage — never crash the channel: each is dropped with a content-free event,
the receiver keeps running, and the next good message is handled and answered.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.channels.signal import SignalChannel, parse_item, split_batch
from bot.core.messages import Address
from tests.fakes import signal_api
from tests.fakes.signal_api import ACCOUNT, FakeSignalApi
from tests.fuzz.conftest import Answered
from tests.fuzz.strategies import (
    assert_nothing_leaked,
    capture_logs,
    fuzz,
    json_values,
    mutated,
    to_json,
)
from tests.harness import Harness

# A 1 MB example makes hypothesis warn about the size of its printout: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

UUID = "6e4a1c2b-3f0d-4b8e-9a51-2c7d8e9f0a11"
NUMBER = "+15551230001"
TS = 1_764_450_000_123
KEYS = (
    "envelope",
    "account",
    "exception",
    "message",
    "type",
    "error",
    "params",
    "result",
    "source",
    "sourceUuid",
    "sourceNumber",
    "timestamp",
    "dataMessage",
    "editMessage",
    "callMessage",
    "offerMessage",
    "syncMessage",
    "receiptMessage",
    "typingMessage",
    "storyMessage",
    "attachments",
    "sticker",
    "contacts",
    "reaction",
    "remoteDelete",
    "groupInfo",
    "isExpirationUpdate",
)
TEXT_FIELDS = ("message", "sourceUuid", "sourceNumber", "source", "type")
_serial = itertools.count(1)


def _bases() -> tuple[dict[str, Any], ...]:
    """Items shaped by the fake's helpers (they follow the contract), plus JSON-RPC and
    webhook wrappers, an edit and a call offer."""
    text = signal_api.text_item(UUID, NUMBER, "They took my phone at the checkpoint", TS)
    edit = signal_api.text_item(UUID, NUMBER, None, TS)
    edit["envelope"]["editMessage"] = {
        "targetSentTimestamp": TS - 1,
        "dataMessage": edit["envelope"].pop("dataMessage"),
    }
    edit["envelope"]["editMessage"]["dataMessage"]["message"] = "corrected: the north checkpoint"
    call = signal_api.text_item(UUID, NUMBER, None, TS)
    call["envelope"]["callMessage"] = {"offerMessage": {"id": 1, "type": "AUDIO_CALL"}}
    del call["envelope"]["dataMessage"]
    return (
        text,
        {"jsonrpc": "2.0", "method": "receive", "params": text},
        {"jsonrpc": "2.0", "result": {"params": text}},
        edit,
        call,
        signal_api.attachment_item(UUID, NUMBER, TS),
        signal_api.reaction_item(UUID, NUMBER, TS - 5),
        signal_api.receipt_item(UUID, NUMBER, [TS - 5]),
        signal_api.typing_item(UUID, NUMBER),
        signal_api.sync_item(UUID, NUMBER, "a sync transcript"),
        signal_api.expiration_update_item(UUID, NUMBER, 3600),
        signal_api.untrusted_item(UUID, NUMBER, TS),
        signal_api.exception_only_item(),
        {"error": {"code": -1, "message": "nope"}},
    )


BASES = _bases()


def items(surrogates: bool = True) -> st.SearchStrategy[Any]:
    """Receive items: mutated contract shapes and arbitrary JSON."""
    return st.one_of(
        mutated(BASES, KEYS, TEXT_FIELDS, surrogates),
        mutated(BASES, KEYS, TEXT_FIELDS, surrogates),
        json_values(KEYS, surrogates),
    )


def _unwrap(item: Any) -> Any:
    while isinstance(item, dict) and "envelope" not in item and "exception" not in item:
        inner = next((item[k] for k in ("params", "result") if isinstance(item.get(k), dict)), None)
        if inner is None:
            break
        item = inner
    return item


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def ids_of(item: Any) -> list[str]:
    """The sender ids an item carries (what must never be logged)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                sender = key in ("source", "sourceUuid", "sourceNumber")
                if sender and isinstance(inner, str) and len(inner.strip()) >= 6:
                    found.append(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(item)
    return found


# ------------------------------------------------------------------------------ parsing


@fuzz(scale=25)
@given(item=items())
@example(
    item={"envelope": {"sourceUuid": "\ud800", "timestamp": 1, "dataMessage": {"message": "x"}}}
)
@example(
    item={"envelope": {"sourceUuid": UUID, "timestamp": True, "dataMessage": {"message": "x"}}}
)
@example(item={"params": {"params": {"params": {"envelope": []}}}})
def test_parse_item_never_raises_and_keys_messages_by_sender_and_timestamp(item: Any) -> None:
    """Any JSON value gives a content-free event; a message only for an envelope with a
    sender uuid and an integer timestamp, keyed by both, with text a string."""
    from bot.core.clock import FakeClock

    parsed = parse_item(item, FakeClock().now())
    assert re.fullmatch(r"signal\.[a-z_]+", parsed.event)
    if parsed.message is None:
        return
    envelope = _unwrap(item)["envelope"]
    sender, timestamp = envelope["sourceUuid"], envelope["timestamp"]
    assert isinstance(sender, str) and sender and type(timestamp) is int
    message = parsed.message
    assert message.sender == Address("signal", sender)
    assert message.dedup_key == f"{sender}:{timestamp}"
    assert isinstance(message.text, str)
    number = envelope.get("sourceNumber")
    expected = (Address("signal", number),) if isinstance(number, str) and number else ()
    assert message.aliases == expected


@fuzz(scale=15)
@given(
    good=st.lists(st.sampled_from(BASES[:1] + BASES[3:6]), max_size=3),
    junk=st.lists(
        st.one_of(st.text(max_size=40), st.sampled_from(("{", "}", "[", "]", ","))), max_size=5
    ),
    raw=st.text(max_size=200),
)
def test_split_batch_never_raises_and_salvages_whole_items(
    good: list[dict[str, Any]], junk: list[str], raw: str
) -> None:
    """Any body decodes to a list of items without raising; in a body garbled by stray
    output (a Java stack trace), every whole item is still found."""
    found, garbled = split_batch(raw)
    assert isinstance(found, list) and isinstance(garbled, bool)
    body = "[" + ",".join(json.dumps(item) for item in good) + "]" + "".join(junk)
    found, garbled = split_batch(body)
    if not garbled:
        assert found == good
    else:
        assert all(item in found for item in good)


# ------------------------------------------------------------------------------ receiving


@fuzz(scale=3)
@given(frame=st.one_of(items().map(to_json).map(bytes.decode), st.text(max_size=100)))
@example(frame=to_json(signal_api.text_item(UUID, NUMBER, "\udfff SOS", TS)).decode())
@example(frame=to_json(signal_api.text_item("\ud800" + UUID, NUMBER, "hi", TS)).decode())
async def test_a_websocket_frame_is_dropped_or_answered(
    fuzz_harness: Harness, caplog: pytest.LogCaptureFixture, frame: str
) -> None:
    """A frame (JSON-RPC mode) that is not a message is dropped with an event; one that is
    reaches the app and its sender is answered — lone surrogates (``\\ud800`` escapes)
    included; no log record carries a text or a sender id."""
    capture_logs(caplog)
    caplog.clear()
    channel = SignalChannel("http://127.0.0.1:9", ACCOUNT, "websocket", None)
    answered = Answered(fuzz_harness)
    channel._accept_frame(frame)
    if channel._queue.empty():  # dropped: said so, by event name
        assert any(r.getMessage().startswith("signal.") for r in caplog.records)
    while not channel._queue.empty():
        message = channel._queue.get_nowait()
        assert message is not None
        await answered(message)
    assert answered.problems == []
    try:
        item: Any = json.loads(frame)
    except ValueError:
        item = frame
    assert_nothing_leaked(caplog, _strings(item), ids_of(item))


@pytest.fixture
async def polling(fuzz_harness: Harness) -> AsyncIterator[tuple[FakeSignalApi, Answered]]:
    """The real Signal channel polling the fake signal-cli-rest-api, handing messages to
    the real app; replies go to the harness's recording Signal device."""
    async with FakeSignalApi() as api:
        answered = Answered(fuzz_harness)
        channel = SignalChannel(
            api.url,
            ACCOUNT,
            "poll",
            None,
            poll_interval=0.01,
            timeout=5.0,
            retry_base=0.01,
            retry_cap=0.05,
            stop_grace=2.0,
            now=fuzz_harness.clock.now,
        )
        await channel.start(answered)
        try:
            yield api, answered
        finally:
            await channel.stop()


async def _handled(answered: Answered, key: str) -> None:
    async with asyncio.timeout(20):
        while not any(m.dedup_key == key for m in answered.handled):
            await asyncio.sleep(0.01)


@fuzz(scale=2)
@given(
    batch=st.lists(
        items(surrogates=False).filter(lambda item: isinstance(item, dict)), min_size=1, max_size=4
    ),
    garbled=st.booleans(),
)
async def test_the_poll_loop_drops_malformed_envelopes_and_answers_the_next(
    polling: tuple[FakeSignalApi, Answered],
    caplog: pytest.LogCaptureFixture,
    batch: list[dict[str, Any]],
    garbled: bool,
) -> None:
    """Malformed items (in a body made invalid by a stack trace, now and then) never stop
    the receiver: each is dropped with its event logged, a good message sent after them is
    handled and answered, and so is every defender whose item was a message; no log record
    carries a text or a sender id."""
    api, answered = polling
    capture_logs(caplog)
    caplog.clear()
    if garbled:
        api.fail_receives("invalid_json")
    for item in batch:
        api.deliver(item)
    sender = str(uuid.uuid4())
    good = api.deliver_text(sender, None, "Hello, I need help", TS + next(_serial))
    await _handled(answered, f"{sender}:{good['envelope']['timestamp']}")
    assert answered.problems == []
    if not garbled:  # each item that is no message is dropped with its event logged
        events = {record.getMessage() for record in caplog.records}
        for item in batch:
            parsed = parse_item(item, answered.h.clock.now())
            if item.get("account") == ACCOUNT and parsed.message is None:
                assert parsed.event in events
    texts = [s for item in batch for s in _strings(item)]
    assert_nothing_leaked(caplog, texts, [sender, *(i for item in batch for i in ids_of(item))])
