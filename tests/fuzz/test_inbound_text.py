"""Fuzzing what defenders type, through the real app (inbox → router → conversation →
outbox): whatever arrives — any unicode, right-to-left text, control characters, NUL, lone
surrogates, 1 MB — nothing crashes, every defender gets an answer, a text that was cut says
so, and no log record carries the text or the sender's id."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.core.messages import Address
from bot.core.text import clean_input
from bot.safety.commands import safety_command
from tests.fuzz.conftest import stored_address, stored_session
from tests.fuzz.strategies import (
    MAX_CHARS,
    TRUNCATED_NOTICE,
    assert_nothing_leaked,
    capture_logs,
    fuzz,
    is_too_long,
    nasty_text,
)
from tests.harness import Harness

# A 1 MB example makes hypothesis warn about the size of its printout: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

_serial = itertools.count(1)
CHANNELS = ("console", "telegram", "signal")
BUTTONS = st.one_of(
    st.none(),
    st.none(),
    nasty_text(long=False),
    st.builds(
        "{}:{}:{}:{}".format,
        st.sampled_from(("intake", "sos", "resume", "lang", "")),
        st.sampled_from(("what", "where", "consent", "")),
        st.text("0123456789abcdef", min_size=0, max_size=7),
        st.sampled_from(("0", "1", "2", "9", "10", "99", "-1", "١", "")),
    ),
    st.sampled_from(("lang:fa", "lang:xx", "lang:", "resume::000000:1")),
)


def answered_elsewhere(text: str, button: str | None, session: dict[str, Any]) -> bool:
    """True when a message is answered by the safety service (a safety command, or an
    answer during the ``/plan`` walk), whose own limits apply instead of the "too long"
    notice; see ``ConversationService.handle``."""
    cleaned = clean_input(text, MAX_CHARS).text
    if button is not None:
        return False
    walking = bool(session.get("plan_step")) and not cleaned.startswith("/")
    return walking or safety_command(cleaned) is not None


def new_sender(channel: str) -> Address:
    """A fresh defender on ``channel`` with an id that cannot be mistaken for anything else
    in a log line."""
    n = next(_serial)
    identity = {
        "console": f"visitor-{uuid.uuid4().hex[:12]}",
        "telegram": str(8_642_097_531 + n),
        "signal": str(uuid.uuid4()),
    }[channel]
    return Address(channel, identity)


@fuzz(scale=2)
@given(
    channel=st.sampled_from(CHANNELS),
    messages=st.lists(st.tuples(nasty_text(), BUTTONS), min_size=1, max_size=3),
)
@example(channel="telegram", messages=[("hi \ud800 there", None)])  # was: ValueError, no answer
@example(channel="signal", messages=[("x", "intake:what:\udfff:1")])  # surrogate in a button
@example(channel="console", messages=[("x" * 1_000_000, None), ("\x00", None)])
async def test_every_defender_gets_an_answer_and_nothing_leaks(
    fuzz_harness: Harness,
    caplog: pytest.LogCaptureFixture,
    channel: str,
    messages: list[tuple[str, str | None]],
) -> None:
    """Each message gets at least one reply unless the defender's device was already marked
    compromised (then nothing goes to it, by design); a text over the limit gets the notice
    that it was cut (unless the safety service answers it); nothing logged carries a text or
    the sender's id."""
    h = fuzz_harness
    assert h.app is not None
    capture_logs(caplog)
    caplog.clear()
    sender = new_sender(channel)
    who = f"{sender.channel}:{sender.identity}"
    session: dict[str, Any] = {}
    for text, button in messages:
        await h.say(text, who, button=button)
        answers = h.inbox.pop(stored_address(sender).identity, [])
        if not session.get("compromised"):
            assert answers, f"no answer to a message of {len(text)} characters"
            if is_too_long(text) and not answered_elsewhere(text, button, session):
                assert any(TRUNCATED_NOTICE in answer for answer in answers)
        session = await stored_session(h, sender)
    h.inbox.clear()  # pages and relays to responders: not what this test is about
    texts = [text for text, _ in messages] + [b for _, b in messages if b]
    assert_nothing_leaked(caplog, texts, [sender.identity])
