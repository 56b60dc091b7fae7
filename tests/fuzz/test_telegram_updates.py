"""Fuzzing Telegram updates: the mapping the channel applies to every update
(``_map_update``), and the real webhook (aiohttp server, real HTTP from the fake Bot API)
wired to the real app.

Malformed updates — missing fields, wrong types, huge ints, unknown update kinds, forged
callback data, text that is not JSON at all — never crash the channel: each is answered 200
(dropped, logged by event name) or 400 (not an update), never 500 (which would make Telegram
send it again and again), and the next good update is handled and answered.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.channels.telegram import TelegramChannel, _map_update
from tests.fakes.telegram_api import TOKEN, FakeBotApi
from tests.fuzz.conftest import Answered
from tests.fuzz.strategies import (
    assert_nothing_leaked,
    capture_logs,
    fuzz,
    json_values,
    mutated,
    nasty_text,
    to_json,
)
from tests.harness import Harness

# A 1 MB example makes hypothesis warn about the size of its printout: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

SECRET = "fuzz-Secret_token-0123"
WEBHOOK_MAX = 2**20  # aiohttp's request limit; Telegram's updates are far smaller
HOOK = "/tg/fuzz"
NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
USER = 864_209_753
KEYS = (
    "update_id",
    "message",
    "edited_message",
    "callback_query",
    "message_id",
    "from",
    "chat",
    "id",
    "type",
    "private",
    "text",
    "caption",
    "data",
    "reply_markup",
    "inline_keyboard",
    "callback_data",
    "language_code",
    "pinned_message",
    "photo",
    "poll",
    "message_reaction",
)
TEXT_FIELDS = ("text", "caption", "data", "callback_data", "language_code", "type")
_ids = itertools.count(2_000_000_001)


def _user(user_id: int = USER) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": "Dana", "language_code": "en"}


def _private(user_id: int = USER) -> dict[str, Any]:
    return {"id": user_id, "first_name": "Dana", "type": "private"}


# The shapes of shared/contracts/telegram-samples.json (getUpdates, callback_update), and the
# other kinds the channel meets.
BASES: tuple[dict[str, Any], ...] = (
    {
        "update_id": 815240001,
        "message": {
            "message_id": 17,
            "from": _user(),
            "chat": _private(),
            "date": 1767225600,
            "text": "/start",
            "entities": [{"offset": 0, "length": 6, "type": "bot_command"}],
        },
    },
    {
        "update_id": 815240002,
        "message": {
            "message_id": 18,
            "from": _user(),
            "chat": _private(),
            "date": 1767225630,
            "text": "I was detained for 6 hours at the border",
        },
    },
    {
        "update_id": 815240003,
        "callback_query": {
            "id": "5318008123456789012",
            "from": _user(),
            "message": {
                "message_id": 19,
                "from": {"id": 7000000001, "is_bot": True, "first_name": "Intake Desk"},
                "chat": _private(),
                "date": 1767225640,
                "text": "How urgent is this?",
                "reply_markup": {
                    "inline_keyboard": [
                        [{"text": "In danger now", "callback_data": "intake:what:3f9a1c:1"}],
                        [{"text": "Within 24h", "callback_data": "intake:what:3f9a1c:2"}],
                    ]
                },
            },
            "chat_instance": "-3288441675213987654",
            "data": "intake:what:3f9a1c:1",
        },
    },
    {
        "update_id": 815240004,
        "message": {
            "message_id": 20,
            "from": _user(),
            "chat": _private(),
            "date": 1767225650,
            "photo": [{"file_id": "AgAC", "file_unique_id": "AQAD", "width": 90, "height": 67}],
            "caption": "my house after the raid",
        },
    },
    {
        "update_id": 815240005,
        "message": {
            "message_id": 21,
            "from": _user(),
            "chat": {"id": -1001234567890, "title": "Some group", "type": "supergroup"},
            "date": 1767225660,
            "text": "in a group",
        },
    },
    {"update_id": 815240006, "edited_message": {"message_id": 18, "chat": _private()}},
    {"update_id": 815240007, "poll": {"id": "1", "question": "?", "options": []}},
    {"update_id": 815240008, "message_reaction": {"chat": _private(), "message_id": 18}},
    {"update_id": 815240009, "pinned_message": {}},
)
FORGED_DATA = st.one_of(
    nasty_text(long=False),
    st.builds(
        "{}:{}:{}:{}".format,
        st.sampled_from(("intake", "sos", "resume", "lang", "")),
        st.sampled_from(("what", "where", "")),
        st.text("0123456789abcdef", max_size=7),
        st.sampled_from(("0", "1", "99", "-1", "")),
    ),
    st.text(min_size=65, max_size=300),  # over Telegram's 64 bytes
)
UPDATES = st.one_of(
    mutated(BASES, KEYS, TEXT_FIELDS),
    mutated(BASES, KEYS, TEXT_FIELDS),
    json_values(KEYS),
    st.builds(lambda base, data: _with_data(base, data), st.sampled_from(BASES[2:3]), FORGED_DATA),
)


def _with_data(base: dict[str, Any], data: str) -> dict[str, Any]:
    update = copy.deepcopy(base)
    update["callback_query"]["data"] = data
    return update


def _walk(value: Any, key: Any = None) -> Iterator[tuple[Any, Any]]:
    yield key, value
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _walk(inner, name)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner, key)


def texts_in(value: Any) -> list[str]:
    """Every string in a payload (keys aside)."""
    return [v for _, v in _walk(value) if isinstance(v, str)]


def ids_in(value: Any) -> list[str]:
    """Every user or chat id in a payload, as a log line would show it."""
    return [str(v) for k, v in _walk(value) if k == "id" and isinstance(v, int) and abs(v) > 9999]


# ------------------------------------------------------------------------------ the mapping


@fuzz(scale=25)
@given(raw=UPDATES)
@example(raw={"update_id": 2**80, "message": {"chat": {"id": 2**90, "type": "private"}}})
@example(raw={"update_id": True, "message": {}})
@example(raw={"update_id": 1, "callback_query": {"from": {"id": 5}, "data": None}})
def test_map_update_never_raises_and_keeps_only_well_formed_messages(raw: Any) -> None:
    """Any JSON value maps to a message or to a named reason to ignore it; a message comes
    only from an update with an integer id, from a private chat or a user, keyed by that id;
    its text is a string and its sender a Telegram id."""
    mapped = _map_update(raw, NOW)
    update_ok = isinstance(raw, dict) and type(raw.get("update_id")) is int
    assert (mapped.update_id is not None) == update_ok
    if mapped.message is None:
        assert mapped.ignored
        assert mapped.ignored.isidentifier()  # an event word, never content
        return
    message = mapped.message
    assert mapped.ignored is None and update_ok
    assert message.dedup_key == f"update:{raw['update_id']}"
    assert message.sender.channel == "telegram"
    assert message.sender.identity.lstrip("-").isdecimal()
    assert isinstance(message.text, str)
    if "callback_query" in raw and "message" not in raw:
        assert isinstance(message.button, str)
        assert message.sender.identity == str(raw["callback_query"]["from"]["id"])
    else:
        assert message.button is None
        assert raw["message"]["chat"]["type"] == "private"
    hint = message.language_hint
    assert hint is None or (2 <= len(hint) <= 12 and hint.replace("-", "").isalnum())


# ------------------------------------------------------------------------------ the webhook


@pytest.fixture
async def webhook(fuzz_harness: Harness) -> AsyncIterator[tuple[FakeBotApi, str, Answered]]:
    """The real Telegram channel in webhook mode, handing updates to the real app; replies
    go to the harness's recording Telegram device."""
    async with FakeBotApi() as api:
        answered = Answered(fuzz_harness)
        channel = TelegramChannel(
            TOKEN,
            base_url=api.base_url,
            mode="webhook",
            webhook_url=f"https://intake.example.org{HOOK}",
            webhook_secret=SECRET,
            listen="127.0.0.1:0",
            request_timeout=5.0,
            stop_timeout=2.0,
            clock=fuzz_harness.clock,
        )
        await channel.start(answered)
        try:
            yield api, f"http://127.0.0.1:{channel.webhook_port}{HOOK}", answered
        finally:
            await channel.stop()


def _fresh(raw: Any) -> Any:
    """Give a well-formed update id a new value, so examples are not duplicates."""
    if isinstance(raw, dict) and type(raw.get("update_id")) is int:
        raw["update_id"] = next(_ids)
    return raw


@fuzz(scale=2)
@given(
    payload=st.one_of(
        UPDATES.map(_fresh).map(to_json),
        UPDATES.map(_fresh).map(to_json),
        st.binary(max_size=64),
    ).filter(lambda body: len(body) < WEBHOOK_MAX)
)
@example(
    payload=to_json(_fresh({**BASES[1], "message": {**BASES[1]["message"], "text": "\ud800"}}))
)
@example(payload=b'{"update_id": 7, "message": {"chat": {"id": 1e999, "type": "private"}}}')
async def test_webhook_drops_malformed_updates_and_answers_the_next(
    webhook: tuple[FakeBotApi, str, Answered],
    caplog: pytest.LogCaptureFixture,
    payload: bytes,
) -> None:
    """Whatever Telegram (holding the secret) posts is answered 200 or 400, never 500; what
    is dropped is logged by event name; every defender whose update became a message gets an
    answer; the next good update is handled and answered; no log record carries a text or a
    user id."""
    api, url, answered = webhook
    capture_logs(caplog)
    caplog.clear()
    handled = len(answered.handled)
    status = await api.deliver(payload, url=url)
    assert status in (200, 400)
    events = [record.getMessage() for record in caplog.records]
    if status == 400:
        assert any(e.startswith("telegram.webhook_bad_request reason=") for e in events)
    elif len(answered.handled) == handled:  # dropped: said so, by event name
        assert any(e.startswith("telegram.update_ignored ") for e in events)
    user = next(_ids)
    good = api.user_says(user, "Hello, I need help")
    assert await api.deliver(good, url=url) == 200
    assert answered.handled[-1].dedup_key == f"update:{good['update_id']}"
    assert answered.problems == []
    try:
        raw: Any = json.loads(payload)
    except ValueError:
        raw = payload.decode("utf-8", "replace")
    assert_nothing_leaked(caplog, texts_in(raw), [*ids_in(raw), str(user)])
