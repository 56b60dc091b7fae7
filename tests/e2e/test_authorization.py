"""The authorization matrix: every responder command from someone who is not a responder, a
forged webhook, forged and stale buttons — each refused, logged without content, and
changing nothing.

The router recognises a responder only by the address a message came from (the config's
Signal number, Telegram id or console name), never by what the message says. A responder
command from anyone else is therefore ordinary intake text: the sender gets exactly what any
first message gets, which reveals neither that the word is a command nor that the case
exists. Telegram requests without the webhook secret are refused before they are read.
Buttons act only on the presser's own question: any other press is refused kindly and the
current question asked again; a press from a responder (the bot sends them no buttons) is
never run as a command. The command table is read from ``PagingService.command`` itself, so
a new command without a row here fails this test.
"""

from __future__ import annotations

import ast
import inspect
import io
import itertools
import logging
import re
import textwrap
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.console import ConsoleChannel
from bot.channels.signal import parse_item
from bot.channels.telegram import TelegramChannel
from bot.core.messages import Address, OutboundMessage
from bot.observability import QUIET_LOGGERS
from bot.paging.service import RESPONDER_HELP, PagingService
from db.models import Case, CaseEntry, Escalation, EventLog, Outbox
from tests.fakes import signal_api
from tests.fakes.telegram_api import BOT_USER, TOKEN, FakeBotApi
from tests.harness import TEST_CONFIG, Harness

BOB_TELEGRAM = 222_000_222
CAROL_NUMBER = "+4915550003"
CAROL_UUID = "c4a0b1d2-0000-4000-8000-00000000ca01"
SECRET = "authz-Secret_token-42"
HOOK = "/tg/authz"
CONFIG = TEST_CONFIG.replace(
    'name = "bob"\nconsole = true\n', f'name = "bob"\nconsole = true\ntelegram = {BOB_TELEGRAM}\n'
).replace(
    'name = "carol"\nconsole = true\n',
    f'name = "carol"\nconsole = true\nsignal = "{CAROL_NUMBER}"\n',
)
STALE = "That button belongs to an earlier question"

# verb -> (the line a responder writes, what the responder gets back when they write it).
# The responder answers are checked at the end, in this order (the case must still be
# open for the first ones), proving that each line is a working command.
COMMANDS: dict[str, tuple[str, str]] = {
    "cases": ("cases", r"^Open cases:\n{ref}  CRITICAL"),
    "oncall": ("oncall", r"^On call at "),
    "help": ("help", r"^Commands:\nack REF"),
    "/help": ("/help", r"^Commands:\nack REF"),
    "/start": ("/start", r"^Commands:\nack REF"),
    "?": ("?", r"^Commands:\nack REF"),
    "reply": ("reply {ref} Come to the office at five, the back door", r"^Sent to the defender"),
    "alert-contacts": ("alert-contacts {ref}", r"^Case {ref}: the defender listed no trusted"),
    "tier": ("tier {ref} low looks settled now", r"^Case {ref} is now LOW \(was CRITICAL\)"),
    "escalate": ("escalate {ref}", r"^Case {ref}: paged "),
    "ack": ("ack {ref}", r"^You have case {ref} "),
    "resolve": ("resolve {ref} false alarm after all", r"^Case {ref} is resolved\.$"),
}
DEFENDER_COMMANDS = {"/help"}  # also a defender word: the defender's own help answers it


def responder_verbs() -> set[str]:
    """Every word ``PagingService.command`` compares the first word of a message with."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(PagingService.command)))
    verbs: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name):
            if node.left.id != "verb":
                continue
            for part in node.comparators:
                for leaf in ast.walk(part):
                    if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                        verbs.add(leaf.value)
    return verbs


# ---------------------------------------------------------------------------- the world


@dataclass
class World:
    """The app (console responders; bob also on Telegram, carol also on Signal), the real
    Telegram webhook in front of it, and a victim with an open critical case."""

    h: Harness
    api: FakeBotApi
    url: str
    caplog: pytest.LogCaptureFixture
    ref: str = ""
    serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    failures: list[str] = field(default_factory=list)

    @property
    def app(self) -> Any:
        assert self.h.app is not None
        return self.h.app

    async def deliver(self) -> list[OutboundMessage]:
        """Send what is due; return it (with buttons) and file the texts by recipient."""
        await self.app.drain()
        sent = [m for c in (self.h.channel, *self.h.extra_channels) for m in c.sent]
        await self.h.collect()
        return [m for m in sent if m.kind != "scrub"]

    async def telegram(self, update: dict[str, Any], secret: str | None = SECRET) -> int:
        """POST ``update`` to the real webhook as Telegram (or a forger) would."""
        return await self.api.deliver(update, url=self.url, secret=secret)

    async def say(self, kind: str, identity: str, text: str, number: str | None = None) -> None:
        """``identity`` writes ``text`` on ``kind``, through that channel's own parsing."""
        if kind == "telegram":
            assert await self.telegram(self.api.user_says(int(identity), text)) == 200
        elif kind == "signal":
            item = signal_api.text_item(
                identity, number, text, 1_764_450_000_000 + next(self.serial)
            )
            parsed = parse_item(item, self.h.clock.now())
            assert parsed.message is not None
            await self.app.receive(parsed.message)
        else:
            await self.app.receive(self.h.message(text, f"console:{identity}"))

    def fresh(self, kind: str) -> str:
        """A new non-responder on ``kind``."""
        n = next(self.serial)
        return {
            "console": f"visitor-{n}",
            "telegram": str(555_000_000 + n),
            "signal": str(uuid.uuid4()),
        }[kind]

    def unread(self) -> dict[str, list[str]]:
        """Everything delivered and not yet consumed, by recipient."""
        return {who: texts for who, texts in self.h.inbox.items() if texts}

    def check(self, row: str, condition: bool, why: str) -> None:
        """Note a failed expectation of ``row`` (all rows run; the test fails at the end)."""
        if not condition:
            self.failures.append(f"{row}: {why}")

    async def state(self) -> dict[str, Any]:
        """Everything a refused command must leave alone: cases, their escalation, their
        entries, pages/notices/relays in the outbox, and the case event log."""
        async with self.app.engine.connect() as conn:

            async def rows(query: Any) -> list[Any]:
                return sorted(tuple(r) for r in (await conn.execute(query)).all())

            return {
                "cases": await rows(
                    select(Case.ref, Case.status, Case.tier, Case.taken_by, Case.resolved_by)
                ),
                "escalations": await rows(
                    select(Escalation.case_id, Escalation.state, Escalation.step, Escalation.loop)
                ),
                "entries": await rows(select(CaseEntry.id, CaseEntry.label)),
                "to_responders": await rows(
                    select(Outbox.idempotency_key, Outbox.state).where(
                        Outbox.kind.in_(("page", "notice", "relay"))
                    )
                ),
                "events": await rows(
                    select(EventLog.event, EventLog.case_id).where(EventLog.case_id.is_not(None))
                ),
            }

    async def session(self, address: Address) -> dict[str, Any]:
        """The stored conversation of the defender at ``address`` (decrypted)."""
        async with self.app.store.transaction() as tx:
            defender = await tx.defender_for(address, self.h.clock.now())
        return dict(defender.session or {})

    def logged(self) -> str:
        """Everything logged so far (messages and exception text)."""
        return self.caplog.text

    def no_leak(self, row: str, *secrets: str) -> None:
        """No log record carries any of ``secrets`` (texts, platform ids)."""
        logged = self.logged()
        for secret in secrets:
            self.check(row, secret not in logged, f"the log carries {secret[:24]!r}")


def callback(
    world: World,
    user: int,
    data: str,
    label: str,
    chat: int | None = None,
    message_id: int = 1,
) -> dict[str, Any]:
    """A ``callback_query`` update (shape of the contract's sample): ``user`` pressed the
    button ``label``/``data`` under message ``message_id`` of ``chat`` (default: their own)."""
    body = {
        "callback_query": {
            "id": f"cb-{next(world.serial)}",
            "from": {"id": user, "is_bot": False, "first_name": "Dana", "language_code": "en"},
            "message": {
                "message_id": message_id,
                "from": dict(BOT_USER),
                "chat": {"id": chat or user, "first_name": "Dana", "type": "private"},
                "date": 1767225640,
                "text": "a question",
                "reply_markup": {"inline_keyboard": [[{"text": label, "callback_data": data}]]},
            },
            "chat_instance": "-3288441675213987654",
            "data": data,
        }
    }
    return world.api.enqueue(body)


@pytest.fixture
async def world(
    tmp_path: Path, pg_database: str | None, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[World]:
    """The world, started; the victim's SOS has paged alice."""
    for name in QUIET_LOGGERS:
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)  # last: set_level also sets the capturing handler's level
    h = await Harness.create(tmp_path, CONFIG, pg_database, ("telegram", "signal"))
    async with FakeBotApi() as api:
        channel = TelegramChannel(
            TOKEN,
            base_url=api.base_url,
            mode="webhook",
            webhook_url=f"https://intake.example.org{HOOK}",
            webhook_secret=SECRET,
            listen="127.0.0.1:0",
            request_timeout=5.0,
            stop_timeout=2.0,
            clock=h.clock,
        )
        assert h.app is not None
        await channel.start(h.app.receive)
        w = World(h, api, f"http://127.0.0.1:{channel.webhook_port}{HOOK}", caplog)
        try:
            await h.say("SOS")
            w.ref = h.expect_page("alice")
            h.expect("defender", "Help is being alerted")
            h.expect("defender", "what is happening")
            yield w
            h.expect_nothing()
        finally:
            await channel.stop()
            await h.stop()


# ---------------------------------------------------------------------------- the matrix


async def test_authorization_matrix(world: World) -> None:
    """Each row is refused (or treated as a defender's words), logged by event name only,
    and changes no case, no page and no one else's conversation; then the same commands
    from the responders work, so every refusal above was a real one."""
    w, h, ref = world, world.h, world.ref
    verbs = responder_verbs()
    assert set(COMMANDS) == verbs, f"commands without a matrix row: {verbs - set(COMMANDS)}"
    help_words = {line.split()[0] for line in RESPONDER_HELP.splitlines()[1:]}
    assert help_words <= verbs

    # -- a responder command from a defender, on each channel -------------------------------
    baseline: dict[str, list[str]] = {}
    for kind in ("console", "telegram", "signal"):
        someone = w.fresh(kind)
        await w.say(kind, someone, "hello there")
        await w.deliver()
        baseline[kind] = h.inbox.pop(someone)
    before = await w.state()
    for verb, (line, _) in COMMANDS.items():
        text = line.format(ref=ref)
        for kind in ("console", "telegram", "signal"):
            row = f"{verb!r} from a defender on {kind}"
            sender = w.fresh(kind)
            await w.say(kind, sender, text)
            await w.deliver()
            got = h.inbox.pop(sender, [])
            w.check(row, bool(got), "no answer")
            if verb in DEFENDER_COMMANDS:
                w.check(row, not any("ack REF" in t for t in got), "got the responder help")
            else:
                w.check(row, got == baseline[kind], f"not the answer to any first message: {got}")
            w.check(row, not any(re.search(rf"\b{ref}\b", t) for t in got), "the ref was echoed")
            w.check(row, w.unread() == {}, f"someone else was told something: {w.unread()}")
            w.check(row, await w.state() == before, "the state changed")
            w.no_leak(row, text, sender)

    # -- defenders whose id looks like a responder's on another channel -----------------------
    impostors = [
        ("telegram", CAROL_NUMBER.lstrip("+"), None),  # carol's phone number as a Telegram id
        ("signal", str(BOB_TELEGRAM), None),  # bob's Telegram id as a Signal uuid
        ("signal", str(uuid.uuid4()), "+4915550009"),  # a number that is nobody's
        ("console", CAROL_NUMBER, None),
    ]
    for kind, identity, number in impostors:
        row = f"'resolve' from {identity} on {kind}"
        text = f"resolve {ref} done"
        await w.say(kind, identity, text, number)
        await w.deliver()
        got = h.inbox.pop(identity, [])
        w.check(row, bool(got), "no answer")
        w.check(
            row, not any(ref in t or "Commands:" in t for t in got), f"a responder's answer: {got}"
        )
        w.check(row, w.unread() == {}, f"someone else was told something: {w.unread()}")
        w.check(row, await w.state() == before, "the state changed")
        w.no_leak(row, text, identity, *([number] if number else []))

    # -- on the console, only configured responders may speak as someone -----------------------
    shown = io.StringIO()
    console = ConsoleChannel(io.StringIO(), shown, ["alice", "bob", "carol"], h.clock.now)
    row = "'@mallory resolve' on the console"
    w.check(row, console.parse(f"@mallory resolve {ref}", 1) is None, "accepted")
    w.check(row, "nobody called @mallory is configured" in shown.getvalue(), "not refused")

    # -- a forged webhook: bob's own update, without the secret --------------------------------
    for secret, status, reason in (
        (None, 401, "missing_secret"),
        ("", 403, "wrong_secret"),
        ("guessed-secret", 403, "wrong_secret"),
        (SECRET + "x", 403, "wrong_secret"),
    ):
        row = f"a webhook with secret {secret!r}"
        text = f"resolve {ref} forged"
        got_status = await w.telegram(w.api.user_says(BOB_TELEGRAM, text), secret=secret)
        w.check(row, got_status == status, f"answered {got_status}")
        await w.deliver()
        w.check(row, w.unread() == {}, f"someone was told something: {w.unread()}")
        w.check(row, await w.state() == before, "the state changed")
        w.check(row, f"telegram.webhook_refused reason={reason}" in w.logged(), "not logged")
        w.no_leak(row, text, str(BOB_TELEGRAM), secret or SECRET)

    # -- buttons ------------------------------------------------------------------------------
    d, e = 777_000_001, 777_000_002
    d_address, e_address = Address("telegram", str(d)), Address("telegram", str(e))

    async def ask(user: int) -> OutboundMessage:
        question = [m for m in await w.deliver() if m.choices and m.recipient.identity == str(user)]
        h.inbox.pop(str(user), None)
        assert question, "no question with buttons"
        return question[-1]

    await w.say("telegram", str(d), "/start")
    d_first = await ask(d)
    threats = d_first.choices[3]
    assert await w.telegram(callback(w, d, threats.data, threats.label)) == 200
    d_second = await ask(d)
    await w.say("telegram", str(e), "/start")
    e_first = await ask(e)
    before = await w.state()

    async def refused_press(row: str, update: dict[str, Any]) -> None:
        """The press is answered 200, refused kindly, logged; nothing else changes."""
        d_before, e_before = await w.session(d_address), await w.session(e_address)
        marker = len(w.caplog.records)
        w.check(row, await w.telegram(update) == 200, "not answered 200")
        question = [m for m in await w.deliver() if m.choices]
        got = h.inbox.pop(str(d), [])
        w.check(row, bool(got) and got[0].startswith(STALE), f"not refused: {got}")
        w.check(
            row,
            [m.text for m in question] == [d_second.text],
            "the current question not asked again",
        )
        w.check(row, w.unread() == {}, f"someone else was told something: {w.unread()}")
        w.check(row, await w.state() == before, "the state changed")
        d_after = await w.session(d_address)
        for key in ("flow", "step", "answers"):
            w.check(row, d_after.get(key) == d_before.get(key), f"the presser's {key} changed")
        w.check(row, await w.session(e_address) == e_before, "the other defender's session changed")
        events = [r.getMessage() for r in w.caplog.records[marker:]]
        w.check(
            row,
            "conversation.button_refused reason=stale_button channel=telegram" in events,
            f"not logged: {events}",
        )
        w.no_leak(row, str(d), str(e))

    stale = d_first.choices[1]
    await refused_press("a stale button", callback(w, d, stale.data, stale.label))
    flow, step, _, number = d_second.choices[1].data.split(":")
    await refused_press("a made-up nonce", callback(w, d, f"{flow}:{step}:zzzzzz:{number}", "x"))
    other = e_first.choices[3]
    await refused_press("another defender's button", callback(w, d, other.data, other.label))
    await refused_press(
        "a button under another user's message",
        callback(w, d, other.data, other.label, chat=e, message_id=1001),
    )
    # ...and the other defender's own button still works: nothing of theirs was used up.
    assert await w.telegram(callback(w, e, other.data, other.label)) == 200
    await w.deliver()
    w.check("the other defender's own press", bool(h.inbox.pop(str(e), [])), "not answered")
    h.inbox.clear()

    row = "a responder's button labelled with a command"
    before = await w.state()
    text = f"resolve {ref} by button"
    marker = len(w.caplog.records)
    w.check(row, await w.telegram(callback(w, BOB_TELEGRAM, "x", text)) == 200, "not answered 200")
    await w.deliver()
    got = h.inbox.pop(str(BOB_TELEGRAM), [])
    w.check(row, bool(got) and not any(ref in t for t in got), f"not refused: {got}")
    w.check(row, w.unread() == {}, f"someone else was told something: {w.unread()}")
    w.check(row, await w.state() == before, "the state changed")
    events = [r.getMessage() for r in w.caplog.records[marker:]]
    w.check(
        row, "auth.responder_button_refused channel=telegram" in events, f"not logged: {events}"
    )
    w.no_leak(row, text, str(BOB_TELEGRAM))

    assert w.failures == [], "\n".join(w.failures)

    # -- the same commands from responders do work ---------------------------------------------
    assert await w.telegram(w.api.user_says(BOB_TELEGRAM, "cases")) == 200  # with the secret
    await w.deliver()
    h.expect(str(BOB_TELEGRAM), rf"^Open cases:\n{ref}  CRITICAL")
    await w.say("signal", CAROL_UUID, "cases", CAROL_NUMBER)  # carol by her Signal number
    await w.deliver()
    h.expect(CAROL_UUID, rf"^Open cases:\n{ref}  CRITICAL")
    h.inbox.clear()
    for line, answer in COMMANDS.values():
        await w.say("console", "alice", line.format(ref=ref))
        await w.deliver()
        h.expect("alice", answer.format(ref=ref))
        h.inbox.clear()  # pages, notices and the defender's news: checked by their own tests
