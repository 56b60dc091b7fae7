"""Talking through the bot and steering a case: reply, escalate, tier, the case log, and
paging a responder's second address only when the first fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.core.messages import DeliveryRefused, DeliveryUnknown, OutboundMessage
from db.models import CaseEntry, Outbox
from tests.harness import TEST_CONFIG, Harness

TWO_ADDRESSES = TEST_CONFIG.replace(
    '[[responders]]\nname = "alice"\nconsole = true\n',
    '[[responders]]\nname = "alice"\nsignal = "+4915550001"\ntelegram = 111000111\n',
)


@pytest.fixture
async def h2(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """Alice is reachable on Signal and Telegram (not the console); bob and carol on the
    console."""
    harness = await Harness.create(tmp_path, TWO_ADDRESSES, pg_database, ("signal", "telegram"))
    try:
        yield harness
        harness.expect_nothing()
    finally:
        if harness.app is not None:
            await harness.stop()


async def sos(h: Harness, first: str = "alice") -> str:
    """Send SOS; consume the page and the defender's two replies; return the reference."""
    await h.say("SOS")
    ref = h.expect_page(first)
    h.expect("defender", "Help is being alerted")
    h.expect("defender", "what is happening")
    return ref


async def test_reply_reaches_the_defender_signed_only_as_the_team(harness: Harness) -> None:
    """`reply REF text` sends the text to the defender under a team heading (no responder
    name), confirms to the responder, and stores the text encrypted on the case."""
    ref = await sos(harness)
    await harness.say(f"reply {ref} We are calling the lawyer now. Stay where you are.", "bob")
    harness.expect("bob", rf"^Sent to the defender of case {ref}\.$")
    message = harness.inbox["defender"].pop(0)
    assert message == (
        f"Message from our responder team about your case {ref}:\n"
        "We are calling the lawyer now. Stay where you are."
    )
    assert "bob" not in message
    assert harness.app is not None
    async with harness.app.engine.connect() as conn:
        (value,) = (await conn.execute(select(CaseEntry.value_ct))).one()
    assert b"lawyer" not in value
    await harness.say(f"reply {ref}", "bob")
    harness.expect("bob", "Nothing to send")


async def test_escalate_pages_the_next_step_now(harness: Harness) -> None:
    """`escalate REF` on an untaken case pages the next step at once and the ladder goes on
    from there."""
    ref = await sos(harness)
    await harness.say(f"escalate {ref}", "carol")
    harness.expect_page("bob")
    harness.expect("carol", rf"^Case {ref}: paged bob\.$")
    await harness.advance(timedelta(minutes=3))
    for who in ("alice", "bob", "carol"):
        harness.expect_page(who)


async def test_escalate_on_a_taken_case_asks_for_help_once(harness: Harness) -> None:
    """The responder who has the case can call the next step for help; the case stays theirs
    and no ladder restarts."""
    ref = await sos(harness)
    await harness.say(f"ack {ref}", "alice")
    harness.inbox["alice"].clear()
    harness.expect("defender", "A responder has your case")
    await harness.say(f"escalate {ref}", "alice")
    page = harness.inbox["bob"].pop(0)
    assert page.startswith(f"CRITICAL case {ref}\n") and "alice asks for help." in page
    harness.expect("alice", rf"Case {ref}: paged bob")
    await harness.advance(timedelta(hours=1))
    harness.expect_nothing()
    await harness.say("cases", "carol")
    harness.expect("carol", rf"{ref}  CRITICAL  .*taken by alice")


async def test_tier_change_is_recorded_and_restarts_paging_on_the_new_ladder(
    harness: Harness,
) -> None:
    """`tier REF high why` changes the tier, restarts an untaken case's paging on the high
    ladder, and records who did it; the reason is stored encrypted, not in the log."""
    ref = await sos(harness)
    await harness.say(f"tier {ref} high defender reached by phone, safe for now", "carol")
    harness.expect("carol", rf"^Case {ref} is now HIGH \(was CRITICAL\)\.$")
    assert harness.expect_page("bob", tier="HIGH") == ref
    await harness.advance(timedelta(minutes=10))
    harness.expect_page("carol", tier="HIGH")
    await harness.say(f"tier {ref} urgent", "carol")
    harness.expect("carol", "critical|high|medium|low")
    assert harness.app is not None
    async with harness.app.store.transaction() as tx:
        case = await tx.case_by_ref(ref)
        assert case is not None and case.tier == "high"
        events = await tx.events_of(case.id)
    retier = [e for e in events if e[1] == "case.retiered"]
    assert [(e[2], e[3]) for e in retier] == [("carol", "from=critical to=high")]
    assert not any("phone" in (e[3] or "") for e in events)


async def test_case_log_lists_every_state_change_without_content(harness: Harness) -> None:
    """The case log has typed entries for opening, paging, relaying, taking, replying and
    resolving — and none of the defender's words."""
    ref = await sos(harness)
    await harness.say("they took my brother")
    harness.inbox.clear()
    await harness.say(f"ack {ref}", "alice")
    await harness.say(f"reply {ref} hold on", "alice")
    await harness.say(f"resolve {ref} done", "alice")
    harness.inbox.clear()
    from bot.cli import format_case_log

    assert harness.app is not None
    async with harness.app.store.transaction() as tx:
        case = await tx.case_by_ref(ref)
        assert case is not None
        lines = format_case_log(ref, await tx.events_of(case.id))
    events = [line.split()[3] for line in lines[1:]]
    assert events[:2] == ["case.opened", "escalation.paged"]
    for expected in ("case.relayed", "case.taken", "case.replied", "case.resolved"):
        assert expected in events
    assert not any("brother" in line or "hold on" in line for line in lines)


async def test_unknown_commands_on_resolved_cases_are_explained(harness: Harness) -> None:
    """reply/escalate/tier on a resolved case say so instead of acting."""
    ref = await sos(harness)
    await harness.say(f"resolve {ref}", "bob")
    harness.inbox.clear()
    for verb in ("reply", "escalate", "tier"):
        await harness.say(f"{verb} {ref} x", "bob")
        harness.expect("bob", rf"^Case {ref} is already resolved\.$")


async def test_a_page_goes_to_the_first_address_only_while_it_works(h2: Harness) -> None:
    """A responder with Signal and Telegram is paged on Signal only; Telegram stays held."""
    ref = await sos(h2, "+4915550001")
    h2.expect_nothing()
    assert h2.app is not None
    async with h2.app.store.transaction() as tx:
        rows = (await tx._s.execute(select(Outbox).where(Outbox.kind == "page"))).scalars().all()
    assert sorted((r.channel, r.state) for r in rows) == [
        ("signal", "sent"),
        ("telegram", "cancelled"),
    ]
    await h2.say(f"ack {ref}", "bob")
    h2.inbox.clear()


@pytest.mark.parametrize("failure", [DeliveryRefused("unregistered"), DeliveryUnknown("timeout")])
async def test_the_second_address_is_paged_when_the_first_fails(
    h2: Harness, failure: Exception
) -> None:
    """When Signal refuses alice's page, or its outcome is unknown, the same page goes to her
    Telegram at once; since she is still reached, the ladder keeps its own time."""
    signal = h2.extra_channels[0]

    def refuse_signal(message: OutboundMessage) -> Exception | None:
        return failure if message.recipient.channel == "signal" else None

    signal.fail_with = refuse_signal
    await h2.say("SOS")
    ref = h2.expect_page("111000111")
    h2.inbox["defender"].clear()
    await h2.advance(timedelta(minutes=1, seconds=59))
    h2.expect_nothing()
    await h2.advance(timedelta(seconds=1))
    h2.expect_page("bob")
    await h2.say(f"ack {ref}", "bob")
    h2.inbox.clear()


ACK_TIMEOUT = TEST_CONFIG.replace("repeat = 1\n", 'repeat = 1\nack_timeout = "15m"\n', 1)


@pytest.fixture
async def h3(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """The standard ladder with a 15-minute ack timeout on critical cases."""
    harness = await Harness.create(tmp_path, ACK_TIMEOUT, pg_database)
    try:
        yield harness
        harness.expect_nothing()
    finally:
        if harness.app is not None:
            await harness.stop()


async def test_a_taker_who_goes_silent_gets_the_case_re_paged(h3: Harness) -> None:
    """A critical case taken and then left without a reply or resolve for the ack timeout is
    paged to the next step, saying who took it and for how long nothing happened; a reply
    restarts the timer; the next responder can take the case."""
    ref = await sos(h3)
    await h3.say(f"ack {ref}", "alice")
    h3.inbox["alice"].clear()
    h3.expect("defender", "A responder has your case")
    await h3.advance(timedelta(minutes=14))
    await h3.say(f"reply {ref} I am on it", "alice")  # activity: the timer starts again
    h3.expect("alice", "Sent to the defender")
    h3.expect("defender", "I am on it")
    await h3.advance(timedelta(minutes=14))
    h3.expect_nothing()
    await h3.advance(timedelta(minutes=1))
    page = h3.inbox["bob"].pop(0)
    assert page.startswith(f"CRITICAL case {ref}\n")
    assert "Taken by alice, no activity for 15 min." in page
    await h3.say(f"ack {ref}", "bob")
    h3.expect("bob", rf"^You have case {ref}")
    h3.expect("defender", "A responder has your case")
    h3.expect("alice", rf"^Case {ref} was taken by bob\.")


async def test_resolving_in_time_stops_the_ack_timeout(h3: Harness) -> None:
    """A case resolved before the timeout is never re-paged."""
    ref = await sos(h3)
    await h3.say(f"ack {ref}", "alice")
    await h3.say(f"resolve {ref}", "alice")
    h3.inbox.clear()
    await h3.advance(timedelta(hours=2))
    h3.expect_nothing()


WITH_OPERATOR = TEST_CONFIG.replace(
    "[paging.critical]", '[[operators]]\nname = "olga"\nconsole = true\n\n[paging.critical]', 1
)


async def test_the_watchdog_pages_the_operator_once_an_hour_about_an_exhausted_case(
    tmp_path: Path, pg_database: str | None
) -> None:
    """When nobody took a case through the whole ladder, the watchdog tells the operator —
    once per hour, not on every check — and says nothing while all is well."""
    h = await Harness.create(tmp_path, WITH_OPERATOR, pg_database)
    try:
        assert h.app is not None
        assert await h.app.watchdog() == 0
        ref = await sos(h)
        await h.advance(timedelta(minutes=2))
        await h.advance(timedelta(minutes=3))
        await h.advance(timedelta(minutes=5))
        await h.advance(timedelta(minutes=2))
        await h.advance(timedelta(minutes=3))
        await h.advance(timedelta(minutes=5))  # the ladder ran twice (repeat = 1)
        h.inbox.clear()
        assert await h.app.watchdog() == 1
        await h.collect()
        h.expect("olga", rf"^ALERT \(defender-intake\)\nCase {ref} \(CRITICAL\): the whole paging")
        h.clock.advance(timedelta(minutes=10))
        assert await h.app.watchdog() == 1
        await h.collect()
        h.expect_nothing()  # the same problem within the hour: no second alert
        h.clock.advance(timedelta(hours=1))
        await h.app.watchdog()
        await h.collect()
        h.expect("olga", rf"Case {ref}")
        await h.say(f"ack {ref}", "bob")
        h.inbox.clear()
        assert await h.app.watchdog() == 0
    finally:
        await h.stop()


async def test_the_watchdog_flags_only_the_case_whose_page_is_overdue(
    tmp_path: Path, pg_database: str | None
) -> None:
    """With the tick stopped, a case whose next step is due more than 30 s ago is flagged;
    a case due later and a taken one are not (the store hands the check only candidates;
    this proves the filter keeps the right ones)."""
    h = await Harness.create(tmp_path, WITH_OPERATOR, pg_database)
    try:
        assert h.app is not None

        async def alert(who: str) -> str:
            await h.say("SOS", who)
            h.inbox.pop(who)
            return h.expect_page("alice")

        late = await alert("d1")  # next step due in 2 min
        taken = await alert("d2")
        await h.say(f"ack {taken}", "alice")
        h.inbox.clear()
        h.clock.advance(timedelta(minutes=1))
        on_time = await alert("d3")  # due 1 min after the first
        h.clock.advance(timedelta(minutes=1, seconds=31))  # the tick does not run
        assert await h.app.watchdog() == 1
        await h.collect()
        h.expect("olga", rf"Case {late}: its next page is overdue")
        assert on_time != late
        h.inbox.clear()
    finally:
        await h.stop()


async def high_case(h: Harness, who: str) -> None:
    """``who`` reports a threat in the last 24 hours: a HIGH case, paged to bob first."""
    for answer in ("/start", "3", "2", "skip", "0", "yes"):
        await h.say(answer, who)
    h.inbox.pop(who, None)


async def test_pages_to_one_person_within_the_window_come_as_one_message(
    harness: Harness,
) -> None:
    """The first HIGH page goes at once; two more for bob within 30 s wait for the window's
    end and arrive together as one message listing both references. Critical pages are
    never held."""
    await high_case(harness, "d1")
    first = harness.expect_page("bob", tier="HIGH")
    harness.clock.advance(timedelta(seconds=5))
    await high_case(harness, "d2")
    harness.clock.advance(timedelta(seconds=5))
    await high_case(harness, "d3")
    assert not harness.inbox.get("bob")
    await harness.say("SOS", "d4")  # critical: never held back
    harness.expect_page("alice")
    harness.inbox.pop("d4")
    await harness.advance(timedelta(seconds=19))
    assert not harness.inbox.get("bob")
    await harness.advance(timedelta(seconds=1))  # 30 s after the first page
    bundle = harness.inbox["bob"].pop(0)
    assert bundle.startswith("2 pages:\n\nHIGH case ")
    refs = [
        line.removeprefix("HIGH case ")
        for line in bundle.split("\n")
        if line.startswith("HIGH case")
    ]
    assert len(set(refs)) == 2 and first not in refs
    for ref in refs:
        assert f"Reply: ack {ref}" in bundle


async def test_relays_go_to_the_first_address_only(h2: Harness) -> None:
    """What the defender adds reaches alice once, on Signal — not a second time over
    Telegram, which is not end-to-end encrypted."""
    ref = await sos(h2, "+4915550001")
    await h2.say("they broke the door")
    h2.expect("+4915550001", rf"^Case {ref} — the defender added \(what\):\nthey broke the door$")
    h2.expect("defender", "Where are you")
    assert not h2.inbox.get("111000111")
    await h2.say(f"ack {ref}", "bob")
    h2.inbox.clear()
