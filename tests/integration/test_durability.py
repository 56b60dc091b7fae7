"""Durability: inbound de-duplication, crash recovery, and every outbox outcome."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from bot.core.messages import DeliveryRefused, DeliveryRetry, DeliveryUnknown, OutboundMessage
from db.models import Inbox, Outbox
from tests.harness import TEST_CONFIG, Harness


async def outbox_rows(h: Harness) -> list[Outbox]:
    """Return every outbox row, oldest first."""
    assert h.app is not None
    async with h.app.store.transaction() as tx:
        return list((await tx._s.execute(select(Outbox).order_by(Outbox.id))).scalars())


async def test_a_message_delivered_twice_is_processed_once(harness: Harness) -> None:
    """The same platform message (same dedup key) arriving twice opens one case."""
    assert harness.app is not None
    message = harness.message("SOS", key="update-1")
    assert await harness.app.receive(message) is True
    assert await harness.app.receive(message) is False
    await harness.collect()
    harness.expect_page("alice")
    harness.expect("defender", "Help is being alerted")
    harness.expect("defender", "what is happening")


async def test_a_crash_between_storing_and_processing_loses_nothing(harness: Harness) -> None:
    """A message stored in the inbox but not processed is processed once at the next start."""
    assert harness.app is not None
    async with harness.app.store.transaction() as tx:
        assert await tx.inbox_add(harness.message("SOS"), harness.clock.now()) is not None
    await harness.restart()  # start() runs recover()
    harness.expect_page("alice")
    harness.expect("defender", "Help is being alerted")
    harness.expect("defender", "what is happening")
    await harness.restart()
    harness.expect_nothing()
    async with harness.app.store.transaction() as tx:
        row = (await tx._s.execute(select(Inbox))).scalar_one()
    assert row.state == "done" and row.message_ct is None and row.wrapped_key is None


async def test_retryable_failure_is_sent_later_not_lost(harness: Harness) -> None:
    """A 429-like failure puts the page back with the platform's wait; it goes out later."""
    harness.channel.fail_with = lambda m: (
        DeliveryRetry("429", retry_after=30) if m.recipient.identity == "alice" else None
    )
    await harness.say("SOS")
    harness.inbox["defender"].clear()
    assert not harness.inbox["alice"]
    harness.channel.fail_with = None
    await harness.advance(timedelta(seconds=29))
    assert not harness.inbox["alice"]
    await harness.advance(timedelta(seconds=1))
    harness.expect_page("alice")


async def test_refused_page_moves_the_escalation_on_at_once(harness: Harness) -> None:
    """A page the platform refuses for good is failed, and the next step is paged at once."""
    harness.channel.fail_with = lambda m: (
        DeliveryRefused("403") if m.recipient.identity == "alice" else None
    )
    await harness.say("SOS")
    harness.inbox["defender"].clear()
    await harness.advance(timedelta(seconds=1))
    harness.expect_page("bob")
    rows = await outbox_rows(harness)
    failed = [r for r in rows if r.state == "failed"]
    assert len(failed) == 1 and failed[0].responder == "alice" and failed[0].payload_ct is None


async def test_unknown_outcome_is_repeated_once_and_never_a_third_time(harness: Harness) -> None:
    """A send whose outcome is unknown is sent once more, marked as a repeat; if that one is
    unknown too, it is given up and the ladder moves on, never sent a third time."""
    calls: list[OutboundMessage] = []

    def flaky(message: OutboundMessage) -> Exception | None:
        if message.recipient.identity == "alice":
            calls.append(message)
            return DeliveryUnknown("read timeout")
        return None

    harness.channel.fail_with = flaky
    await harness.say("SOS")
    harness.inbox["defender"].clear()
    await harness.advance(timedelta(seconds=5))
    assert [m.repeat for m in calls] == [False, True]
    assert calls[1].text.startswith(calls[0].text.split("\n")[0] + " (repeat)\n")
    rows = [r for r in await outbox_rows(harness) if r.responder == "alice"]
    assert [r.state for r in rows] == ["failed"]
    harness.expect_page("bob")  # the page given up on moves the ladder on at once


async def test_unknown_outcome_then_success_delivers_a_marked_repeat(harness: Harness) -> None:
    """After one unknown outcome the page is delivered as '(repeat)' with the same reference."""
    outcomes = [DeliveryUnknown("timeout")]
    harness.channel.fail_with = lambda m: (
        outcomes.pop() if outcomes and m.recipient.identity == "alice" else None
    )
    await harness.say("SOS")
    harness.inbox["defender"].clear()
    match = harness.expect("alice", r"^CRITICAL case ([A-Z0-9]{4}) \(repeat\)\nSOS alert\n")
    assert match.group(1)


async def test_crash_while_sending_resends_once_as_repeat(harness: Harness) -> None:
    """A row left 'sending' by a crash is sent again once its lease expires, as a repeat."""
    assert harness.app is not None
    harness.channel.fail_with = lambda m: DeliveryRetry("down")
    await harness.say("SOS")
    harness.channel.fail_with = None
    async with harness.app.store.transaction() as tx:  # simulate: claimed, then the process died
        await tx._s.execute(
            update(Outbox).values(state="sending", lease_until=0, claim_token="dead")
        )
    await harness.restart()
    harness.expect("alice", r"^CRITICAL case [A-Z0-9]{4} \(repeat\)")
    harness.expect("defender", "Help is being alerted")
    harness.expect("defender", "what is happening")
    await harness.restart()
    harness.expect_nothing()


async def test_a_claimed_batch_killed_before_sending_is_sent_plainly(harness: Harness) -> None:
    """Rows claimed in a batch but never handed to the platform (the process died first) are
    not 'outcome unknown': after the lease they go out once, without '(repeat)' — found by
    the kill -9 chaos run, where whole batches turned into repeats and then into failures."""
    assert harness.app is not None
    harness.channel.fail_with = lambda m: DeliveryRetry("down")
    await harness.say("SOS")
    harness.channel.fail_with = None
    async with harness.app.store.transaction() as tx:  # claimed, then the process died
        await tx._s.execute(
            update(Outbox).values(state="claimed", lease_until=0, claim_token="dead")
        )
    await harness.restart()
    harness.expect("alice", r"^CRITICAL case [A-Z0-9]{4}\nSOS alert\n")
    harness.expect("defender", "Help is being alerted")
    harness.expect("defender", "what is happening")
    async with harness.app.store.transaction() as tx:
        states = (await tx._s.execute(select(Outbox.state, Outbox.ambiguous))).all()
    assert {(state, bool(ambiguous)) for state, ambiguous in states} == {("sent", False)}
    await harness.restart()
    harness.expect_nothing()


async def test_a_critical_page_goes_before_replies_queued_ahead_of_it(harness: Harness) -> None:
    """Under a backlog (e.g. a rate limit), a critical page is handed to the platform before
    replies of the same priority that were queued earlier: the outbox serves pages first
    within a priority (found by bench/bench_storm.py: a responder's reply took the chat's one
    slot per second while critical pages waited)."""
    assert harness.app is not None
    order: list[tuple[str, str]] = []

    def record(message: OutboundMessage) -> None:
        order.append((message.recipient.identity, message.kind))

    harness.channel.fail_with = record
    # Queued but not sent yet, oldest first: two responders' commands, then an SOS.
    await harness.app.receive(harness.message("cases", who="bob"))
    await harness.app.receive(harness.message("help", who="carol"))
    await harness.app.receive(harness.message("SOS"))
    await harness.collect()
    assert order[0] == ("alice", "page")
    assert sorted(order[1:]) == [
        ("bob", "reply"),
        ("carol", "reply"),
        ("defender", "reply"),
        ("defender", "reply"),
    ]
    harness.expect_page("alice")
    harness.expect("bob", "No open cases|open case")
    harness.expect("carol", "ack REF")
    harness.expect("defender", "Help is being alerted")
    harness.expect("defender", "what is happening")


async def test_a_rate_limited_chat_is_not_claimed_again_before_its_wait(harness: Harness) -> None:
    """When the platform asks to wait before writing to a responder again, their other queued
    messages are left alone until then, not claimed and put back one by one (found by
    bench/bench_storm.py: a backlog of pages to one chat was claimed once per page per
    second); when the wait is over they all go out."""
    assert harness.app is not None
    calls: list[str] = []

    def busy(message: OutboundMessage) -> Exception | None:
        if message.recipient.identity != "alice":
            return None
        calls.append(message.text.split("\n")[0])
        return DeliveryRetry("429", retry_after=30)

    harness.channel.fail_with = busy
    for defender in ("d1", "d2", "d3"):
        await harness.say("SOS", who=defender)
        harness.expect(defender, "Help is being alerted")
        harness.expect(defender, "what is happening")
    assert len(calls) == 1  # the first page only: the other two were not claimed
    pages = [r for r in await outbox_rows(harness) if r.responder == "alice"]
    assert [(r.state, r.attempts) for r in pages] == [
        ("pending", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    harness.channel.fail_with = None
    await harness.advance(timedelta(seconds=30))
    bundle = harness.expect("alice", r"^3 pages:\n\nCRITICAL case")
    refs = set(re.findall(r"^CRITICAL case ([A-Z0-9]{4})$", bundle.string, re.MULTILINE))
    assert len(refs) == 3  # the backlog goes out as one message, not one a second


async def test_a_zero_retry_after_means_now_not_the_exponential_backoff(harness: Harness) -> None:
    """A retry_after of 0 (a local limiter rounding a wait of a few microseconds) retries at
    once; it is not taken for "no advice", which would wait 2 s, 4 s ... 64 s (found by
    bench/bench_storm.py: a critical page sat 64 s while its chat was free)."""
    refusals = [DeliveryRetry("rate limit", retry_after=0.0)]

    def once(message: OutboundMessage) -> Exception | None:
        return refusals.pop() if refusals and message.recipient.identity == "alice" else None

    harness.channel.fail_with = once
    await harness.say("SOS")
    assert not refusals
    harness.expect_page("alice")
    harness.expect("defender", "Help is being alerted")
    harness.expect("defender", "what is happening")


async def test_ack_cancels_pages_not_yet_sent(harness: Harness) -> None:
    """Pages still queued when the case is taken are cancelled, and their content destroyed."""
    harness.channel.fail_with = lambda m: (
        DeliveryRetry("busy", retry_after=60) if m.recipient.identity == "bob" else None
    )
    await harness.say("SOS")
    ref = harness.expect_page("alice")
    harness.inbox["defender"].clear()
    await harness.advance(timedelta(minutes=2))  # bob's page is queued but cannot go out
    await harness.say(f"ack {ref}", who="alice")
    harness.expect("alice", "You have case")
    harness.expect("defender", "A responder has your case")
    harness.channel.fail_with = None
    await harness.advance(timedelta(minutes=5))
    harness.expect_nothing()
    bob = [r for r in await outbox_rows(harness) if r.responder == "bob" and r.kind == "page"]
    assert [r.state for r in bob] == ["cancelled"]
    assert bob[0].payload_ct is None and bob[0].recipient_ct is None


async def test_a_processing_error_gets_an_apology_not_silence(harness: Harness) -> None:
    """If handling a message fails, the sender is told kindly and the inbox row is marked."""
    assert harness.app is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("boom with secret text")

    harness.app.conversations.handle = broken  # type: ignore[method-assign]
    await harness.say("hello")
    harness.expect("defender", "something went wrong on our side")
    async with harness.app.store.transaction() as tx:
        row = (await tx._s.execute(select(Inbox))).scalar_one()
    assert row.state == "failed" and row.message_ct is None


async def test_concurrent_messages_from_one_defender_are_serialised(harness: Harness) -> None:
    """Two answers arriving at once are applied one after the other (no lost session update):
    the intake moves two steps, not one."""
    import asyncio

    from bot.core.messages import Address

    assert harness.app is not None
    await harness.say("/start")
    harness.inbox.clear()
    await asyncio.gather(
        harness.app.receive(harness.message("2")), harness.app.receive(harness.message("4"))
    )
    async with harness.app.store.transaction() as tx:
        defender = await tx.defender_for(Address("console", "defender"), harness.clock.now())
    assert defender.session is not None
    assert defender.session["step"] == "who"
    assert defender.session["answers"] == {"what": "detention", "when": "earlier"}
    await harness.collect()
    harness.inbox.clear()


async def test_a_session_whose_step_no_longer_exists_starts_fresh(harness: Harness) -> None:
    """If the flows changed since a session was saved, the defender is not stuck: the next
    message is handled as a new conversation."""
    from bot.core.messages import Address

    assert harness.app is not None
    await harness.say("/start")
    harness.inbox.clear()
    async with harness.app.store.transaction() as tx:
        defender = await tx.defender_for(Address("console", "defender"), harness.clock.now())
        assert defender.session is not None
        stale = {**defender.session, "step": "removed_step"}
        await tx.defender_save_session(defender.id, stale, harness.clock.now())
    await harness.say("hello")
    harness.expect("defender", "emergency line")
    harness.expect("defender", "What is happening")


async def test_acks_racing_the_escalation_tick_always_win_for_good(harness: Harness) -> None:
    """Acks arriving at the very moment their cases' next steps fire: whichever transaction
    goes first, every case ends taken, its ladder stopped, no page left queued, and nothing
    is paged for it afterwards."""
    import asyncio

    from db.models import Escalation

    assert harness.app is not None
    refs = []
    for n in range(12):
        await harness.say("SOS", who=f"racer{n}")
        refs.append(harness.expect_page("alice"))
    harness.inbox.clear()
    harness.clock.advance(timedelta(minutes=2))
    app = harness.app
    await asyncio.gather(
        app.tick(),
        *(app.receive(harness.message(f"ack {ref}", "carol")) for ref in refs),
        app.tick(),
    )
    await harness.collect()
    harness.inbox.clear()
    async with app.store.transaction() as tx:
        states = (await tx._s.execute(select(Escalation.state))).scalars().all()
        queued = (
            (
                await tx._s.execute(
                    select(Outbox).where(Outbox.kind == "page", Outbox.state == "pending")
                )
            )
            .scalars()
            .all()
        )
    assert sorted(set(states)) == ["acked"] and queued == []
    await harness.advance(timedelta(hours=3))
    harness.expect_nothing()


async def test_a_hanging_platform_does_not_hold_up_another(tmp_path: Path) -> None:
    """While every Telegram send hangs, Signal pages still go out at once: each channel has
    its own queue."""
    import asyncio

    from bot.core.messages import Delivered

    body = (
        TEST_CONFIG.replace(
            '[[responders]]\nname = "alice"\nconsole = true\n',
            '[[responders]]\nname = "alice"\nsignal = "+4915550001"\n',
        )
        .replace(
            '[[responders]]\nname = "bob"\nconsole = true\n',
            '[[responders]]\nname = "bob"\ntelegram = 222000222\n',
        )
        .replace('notify = ["alice"], wait = "2m"', 'notify = ["alice", "bob"], wait = "2m"')
    )
    h = await Harness.create(tmp_path, body, None, ("signal", "telegram"))
    release = asyncio.Event()
    signal_sent: list[float] = []

    class HangingTelegram:
        name = "telegram"

        async def send(self, message: OutboundMessage) -> Delivered:
            await release.wait()
            return Delivered()

    class TimedSignal:
        name = "signal"

        async def send(self, message: OutboundMessage) -> Delivered:
            signal_sent.append(asyncio.get_running_loop().time())
            return Delivered()

    try:
        assert h.app is not None
        h.app.sender.add_channel("telegram", HangingTelegram())
        h.app.sender.add_channel("signal", TimedSignal())
        h.app.channels = {
            "console": h.channel,
            "telegram": HangingTelegram(),
            "signal": TimedSignal(),
        }
        h.app.start_background()
        await h.app.receive(h.message("SOS"))  # bob's Telegram page hangs from here on
        await asyncio.sleep(0.3)
        assert len(signal_sent) == 1
        await h.app.receive(h.message("SOS", "second"))
        for _ in range(100):
            if len(signal_sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(signal_sent) == 2, "the Signal page waited for the hanging Telegram send"
        release.set()
        h.inbox.clear()
        h.channel.sent.clear()
    finally:
        await h.stop()
