"""SOS scenarios through the real app, a real SQLite file and a fake clock."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from tests.harness import Harness


async def sos(h: Harness) -> str:
    """Send SOS, check the page to alice and the defender's confirmation; return the ref."""
    await h.say("SOS")
    ref = h.expect_page("alice")
    h.expect("defender", rf"Help is being alerted now\. Your case reference is {ref}\.")
    h.expect("defender", r"what is happening")
    return ref


async def test_sos_pages_first_responder_at_once_and_ack_stops_paging(harness: Harness) -> None:
    """SOS pages step 1 at once; an ack tells the defender, and no page follows."""
    ref = await sos(harness)
    await harness.say(f"ack {ref.lower()}", who="alice")
    harness.expect("alice", rf"^You have case {ref} \(CRITICAL")
    harness.expect("defender", rf"A responder has your case {ref}")
    await harness.advance(timedelta(hours=2))
    harness.expect_nothing()


async def test_page_format_names_tier_type_and_ack_line(harness: Harness) -> None:
    """A page's first line is tier and reference, then the type, then 'Reply: ack REF'."""
    await harness.say("SOS")
    lines = harness.inbox["alice"].pop(0).split("\n")
    ref = lines[0].removeprefix("CRITICAL case ")
    assert lines == [f"CRITICAL case {ref}", "SOS alert", f"Reply: ack {ref}"]
    harness.inbox["defender"].clear()


async def test_unacked_sos_climbs_the_ladder_then_repeats_then_stops(harness: Harness) -> None:
    """Without an ack each step pages when the previous wait ends, the ladder repeats once,
    and then paging stops (exhausted)."""
    ref = await sos(harness)
    await harness.advance(timedelta(minutes=1, seconds=59))
    harness.expect_nothing()
    await harness.advance(timedelta(seconds=1))
    assert harness.expect_page("bob") == ref
    await harness.advance(timedelta(minutes=3))
    for who in ("alice", "bob", "carol"):
        assert harness.expect_page(who) == ref
    await harness.advance(timedelta(minutes=5))  # repeat = 1: the ladder runs once more
    harness.expect_page("alice")
    await harness.advance(timedelta(minutes=2))
    harness.expect_page("bob")
    await harness.advance(timedelta(minutes=3))
    for who in ("alice", "bob", "carol"):
        harness.expect_page(who)
    await harness.advance(timedelta(hours=1))
    harness.expect_nothing()
    await harness.say("cases", who="carol")
    harness.expect("carol", rf"{ref}  CRITICAL  .*not taken, paging exhausted")


async def test_overdue_steps_fire_once_after_a_restart(harness: Harness) -> None:
    """Stopped while a wait runs, then started after it ended: the overdue step fires once,
    and restarting again fires nothing more."""
    ref = await sos(harness)
    await harness.stop()
    harness.clock.advance(timedelta(minutes=2, seconds=30))
    await harness.start()
    assert harness.expect_page("bob") == ref
    await harness.restart()
    harness.expect_nothing()
    await harness.advance(timedelta(seconds=31))
    harness.expect_nothing()
    await harness.advance(timedelta(minutes=2, seconds=30))
    for who in ("alice", "bob", "carol"):
        harness.expect_page(who)


async def test_long_downtime_fires_every_overdue_step_once_in_order(harness: Harness) -> None:
    """After downtime spanning two waits, both overdue steps fire once each at start; bob,
    paged by both, gets the case once (his two pages travel as one message)."""
    ref = await sos(harness)
    await harness.stop()
    harness.clock.advance(timedelta(minutes=6))
    await harness.start()
    for who in ("bob", "alice", "carol"):
        assert harness.expect_page(who) == ref
    harness.expect_nothing()
    assert harness.app is not None
    async with harness.app.engine.connect() as connection:
        sent = await connection.execute(
            text("SELECT count(*) FROM outbox WHERE kind = 'page' AND state = 'sent'")
        )
    assert sent.scalar_one() == 5  # alice; bob; alice, bob, carol: every step paged


async def test_followups_go_to_paged_responders_then_only_to_the_taker(harness: Harness) -> None:
    """SOS follow-up answers reach everyone paged so far; after an ack, only the taker."""
    ref = await sos(harness)
    await harness.advance(timedelta(minutes=2))
    harness.expect_page("bob")
    await harness.say("They took my colleague")
    harness.expect("alice", rf"Case {ref} — the defender added \(what\):\nThey took my colleague")
    harness.expect("bob", r"They took my colleague")
    harness.expect("defender", r"Where are you")
    await harness.say("ack " + ref, who="bob")
    harness.expect("bob", rf"You have case {ref}(.|\n)*They took my colleague")
    harness.expect("defender", "A responder has your case")
    harness.expect("alice", rf"Case {ref} was taken by bob\. No action needed\.")
    await harness.say("Istanbul, Kadıköy")
    harness.expect("bob", r"\(where\):\nIstanbul, Kadıköy")
    harness.expect("defender", rf"added to your case {ref}")


async def test_later_pages_carry_the_place_once_known(harness: Harness) -> None:
    """A page sent after the defender said where they are shows the coarse place."""
    await sos(harness)
    await harness.say("skip")
    harness.expect("defender", "Where are you")
    await harness.say("Minsk")
    harness.expect("alice", "Minsk")
    harness.expect("defender", "Thank you")
    await harness.advance(timedelta(minutes=2))
    page = harness.inbox["bob"].pop(0)
    assert page.split("\n")[1] == "SOS alert · Minsk"
    assert page.split("\n")[2].startswith("Not taken after 2m")


async def test_sos_interrupts_an_intake_and_a_second_sos_reuses_the_case(harness: Harness) -> None:
    """SOS in the middle of the intake opens a critical case at once; SOS again does not open
    a second case but tells the defender and the paged responders."""
    await harness.say("hello")
    harness.expect("defender", "emergency line")
    harness.expect("defender", "What is happening")
    await harness.say("4")
    harness.expect("defender", "What kind of threat")
    ref = await sos(harness)
    await harness.say(" sos ")
    harness.expect("alice", r"SOS sent again")
    harness.expect("defender", rf"Your alert {ref} is already active")
    harness.expect("defender", "what is happening")
    await harness.say("cases", who="alice")
    listing = harness.inbox["alice"].pop(0)
    assert listing.count("CRITICAL") == 1


async def test_sos_after_a_page_first_intake_goes_to_that_case(harness: Harness) -> None:
    """A defender whose "danger right now" case is open and who sends SOS does not page a
    second case: the responders of the first hear it."""
    await harness.say("/start")
    await harness.say("1")
    ref = harness.expect_page("alice")
    harness.inbox["defender"].clear()
    await harness.say("SOS")
    harness.expect("alice", r"SOS sent again")
    harness.expect("defender", rf"Your alert {ref} is already active")
    harness.expect("defender", "what is happening")
    await harness.say("cases", who="alice")
    assert harness.inbox["alice"].pop(0).count("CRITICAL") == 1


async def test_late_ack_is_told_who_has_the_case(harness: Harness) -> None:
    """A second ack gets 'already taken by NAME'; the taker acking again is told so too."""
    ref = await sos(harness)
    await harness.say(f"ack {ref}", who="alice")
    harness.expect("alice", "You have case")
    harness.expect("defender", "A responder has your case")
    await harness.say(f"ack {ref}", who="bob")
    harness.expect("bob", rf"^Case {ref} is already taken by alice\.$")
    await harness.say(f"ack {ref}", who="alice")
    harness.expect("alice", rf"^You already have case {ref}\.$")


async def test_concurrent_acks_give_the_case_to_exactly_one(harness: Harness) -> None:
    """Two responders acking at the same moment: one takes it, the other is told who did."""
    import asyncio

    ref = await sos(harness)
    assert harness.app is not None
    await asyncio.gather(
        harness.app.receive(harness.message(f"ack {ref}", "alice")),
        harness.app.receive(harness.message(f"ack {ref}", "bob")),
    )
    await harness.collect()
    winners = [w for w in ("alice", "bob") if harness.inbox[w][0].startswith("You have case")]
    assert len(winners) == 1
    loser = "bob" if winners == ["alice"] else "alice"
    harness.expect(loser, rf"already taken by {winners[0]}")
    harness.expect(winners[0], "You have case")
    harness.expect("defender", "A responder has your case")


async def test_resolve_closes_the_case_and_tells_the_defender(harness: Harness) -> None:
    """resolve REF note closes the case, stops paging, tells the defender; again: already."""
    ref = await sos(harness)
    await harness.say(f"resolve {ref} reached by phone, safe", who="carol")
    harness.expect("carol", rf"^Case {ref} is resolved\.$")
    harness.expect("defender", rf"Your case {ref} has been closed")
    await harness.advance(timedelta(hours=1))
    await harness.say(f"resolve {ref}", who="carol")
    harness.expect("carol", "already resolved")
    await harness.say(f"ack {ref}", who="bob")
    harness.expect("bob", rf"^Case {ref} is already resolved\.$")
    await harness.say("cases", who="bob")
    harness.expect("bob", "^No open cases.$")


async def test_responder_commands_explain_mistakes(harness: Harness) -> None:
    """Unknown references, a missing reference, unknown words and help all get clear answers."""
    await harness.say("ack ZZZZ", who="alice")
    harness.expect("alice", r"^There is no case ZZZZ\. Send cases to see open cases\.$")
    await harness.say("ack", who="alice")
    harness.expect("alice", r"^Which case\? Write ack and the reference")
    await harness.say("hello?", who="alice")
    harness.expect("alice", r"I did not understand(.|\n)*ack REF")
    await harness.say("help", who="alice")
    harness.expect("alice", r"resolve REF \[note\]")
    await harness.say("", who="alice")
    harness.expect("alice", "arrived empty")
