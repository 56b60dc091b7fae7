"""The emergency intake through the real app: triage decides the ladder, consent decides
whether anything is stored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from db.models import Case, Defender
from tests.harness import Harness


async def start_intake(h: Harness, first: str = "/start") -> None:
    """Open the intake and consume its intro and first question."""
    await h.say(first)
    h.expect("defender", "emergency line")
    h.expect("defender", r"What is happening\?\n1\. Detention or arrest")


async def count_cases(h: Harness) -> int:
    """Return how many cases the database holds."""
    assert h.app is not None
    async with h.app.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Case))).scalar_one())


async def test_full_intake_with_consent_opens_a_triaged_case(harness: Harness) -> None:
    """Detention now + consent: a critical case, alice paged with type and place."""
    await start_intake(harness)
    for answer, next_prompt in [
        ("1", "When is it happening"),
        ("1", "Where are you, roughly"),
        ("Gomel, Belarus", "What help do you need"),
        ("legal aid", "May we store what you told us"),
    ]:
        await harness.say(answer)
        harness.expect("defender", next_prompt)
    await harness.say("yes")
    ref = harness.expect_page("alice")
    harness.expect("defender", rf"Thank you\. Your case reference is {ref}\.")
    assert await count_cases(harness) == 1
    await harness.say(f"ack {ref}", who="alice")
    details = harness.inbox["alice"].pop(0)
    assert "What is happening: Detention or arrest" in details
    assert "Where are you, roughly: Gomel, Belarus" in details
    assert "Why this tier: detention or physical attack happening now" in details
    harness.expect("defender", "A responder has your case")


async def test_page_shows_type_and_coarse_place(harness: Harness) -> None:
    """The page names the incident type and where, and nothing else the defender said."""
    await start_intake(harness, "help me please")
    for answer in ("2", "1", "Khartoum", "3"):
        await harness.say(answer)
        harness.inbox["defender"].clear()
    await harness.say("1")
    page = harness.inbox["alice"].pop(0).split("\n")
    assert page[1:] == ["Physical attack · Khartoum", f"Reply: ack {page[0][-4:]}"]
    harness.inbox["defender"].clear()


async def test_threat_in_last_day_goes_to_the_high_ladder(harness: Harness) -> None:
    """A threat in the last 24 h is 'high': bob is paged first, carol after 10 minutes."""
    await start_intake(harness)
    for answer in ("3", "2", "skip", "0"):
        await harness.say(answer)
        harness.inbox["defender"].clear()
    await harness.say("y")
    ref = harness.expect_page("bob", tier="HIGH")
    harness.expect("defender", ref)
    await harness.advance(timedelta(minutes=10))
    harness.expect_page("carol", tier="HIGH")


async def test_upcoming_date_asks_which_date(harness: Harness) -> None:
    """'On an upcoming date' leads to the date question (a conditional next step)."""
    await start_intake(harness)
    await harness.say("4")
    harness.expect("defender", "When is it happening")
    await harness.say("3")
    harness.expect("defender", r"Which date\?")
    await harness.say("/cancel")
    harness.expect("defender", "What you typed in this form has been deleted")


async def test_no_consent_stores_nothing_and_says_where_else_to_get_help(
    harness: Harness,
) -> None:
    """Without consent no case exists, the draft is gone, and the defender is told about SOS
    and other help."""
    await start_intake(harness)
    for answer in ("5", "4", "Tbilisi", "4"):
        await harness.say(answer)
        harness.inbox["defender"].clear()
    await harness.say("no")
    harness.expect("defender", r"nothing you told us has been stored(.|\n)*SOS")
    assert await count_cases(harness) == 0
    assert harness.app is not None
    async with harness.app.store.transaction() as tx:
        rows = (await tx._s.execute(select(Defender))).scalars().all()
    assert len(rows) == 1
    async with harness.app.store.transaction() as tx:
        from bot.core.messages import Address

        defender = await tx.defender_for(Address("console", "defender"), harness.clock.now())
    assert defender.session is not None and defender.session["answers"] == {}


async def test_status_lists_cases_without_details(harness: Harness) -> None:
    """/status shows each case's reference and state and nothing of its content."""
    await harness.say("/status")
    harness.expect("defender", "You have no open cases")
    await harness.say("SOS")
    ref = harness.expect_page("alice")
    harness.inbox["defender"].clear()
    await harness.say("/status")
    harness.expect("defender", rf"Your cases:\n{ref}: received, responders are being alerted")
    harness.expect("defender", "what is happening")  # the follow-up is asked again
    await harness.say(f"ack {ref}", who="alice")
    harness.inbox["alice"].clear()
    harness.inbox["defender"].clear()
    await harness.say("/status")
    harness.expect("defender", rf"{ref}: a responder has your case")
    harness.expect("defender", "what is happening")


async def test_message_after_a_case_is_added_to_it(harness: Harness) -> None:
    """With an open case and no flow running, a new message is added to the case and relayed,
    not dropped and not the start of a new intake."""
    await harness.say("SOS")
    ref = harness.expect_page("alice")
    harness.inbox["defender"].clear()
    await harness.say("/cancel")
    harness.expect("defender", rf"Your alert {ref} stays active")
    await harness.say("they are at the door")
    harness.expect("alice", r"\(message\):\nthey are at the door")
    harness.expect("defender", rf"added to your case {ref}")


async def test_bad_input_gets_kind_answers(harness: Harness) -> None:
    """Empty, overlong, control-character, unknown-command and out-of-range input each get a
    clear reply."""
    await harness.say("")
    harness.expect("defender", "arrived empty")
    await start_intake(harness)
    await harness.say("9")
    harness.expect("defender", r"^Please reply with a number from 1 to 7\.$")
    await harness.say("/frobnicate")
    harness.expect("defender", "I do not know the command /frobnicate")
    harness.expect("defender", "What is happening")
    await harness.say("1\x00\x07")
    harness.expect("defender", "When is it happening")
    await harness.say("1")
    harness.expect("defender", "Where are you")
    await harness.say("x" * 100_000)
    harness.expect("defender", "kept only the first 2000 characters")
    harness.expect("defender", "What help do you need")
    await harness.say("/help")
    harness.expect("defender", "Send SOS at any time")
    harness.expect("defender", "What help do you need")
