"""The emergency intake through the real app: the menu leads to a situation's questions,
triage decides the ladder, the most urgent flows page first and ask after, and consent
decides whether anything else is stored."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.core.messages import Address
from db.models import Case, Defender
from tests.harness import TEST_CONFIG, Harness
from tests.walks import HIGH_THREAT

MENU = r"What is happening\?\n1\. Someone is in danger RIGHT NOW"


async def start_intake(h: Harness, first: str = "/start") -> None:
    """Open the intake and consume its intro and menu."""
    await h.say(first)
    h.expect("defender", "emergency line")
    h.expect("defender", MENU)


async def count_cases(h: Harness) -> int:
    """Return how many cases the database holds."""
    assert h.app is not None
    async with h.app.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Case))).scalar_one())


async def walk(h: Harness, answers: list[tuple[str, str]]) -> None:
    """Say each answer and expect the next prompt."""
    for answer, next_prompt in answers:
        await h.say(answer)
        h.expect("defender", next_prompt)


async def test_danger_now_pages_after_one_answer_then_adds_the_rest(harness: Harness) -> None:
    """ "Someone is in danger right now": the critical page goes out on the menu answer; each
    later answer reaches the paged responder and the case; the end thanks with the ref."""
    await start_intake(harness)
    await harness.say("1")
    ref = harness.expect_page("alice")
    assert await count_cases(harness) == 1
    harness.expect("defender", rf"Responders are being alerted now\. Your case reference is {ref}")
    harness.expect("defender", r"What is happening\?\n1\. Arrest or detention")
    await harness.say("2")  # abduction
    harness.expect("alice", rf"^Case {ref} — the defender added \(What is happening\):\nAbduction")
    harness.expect("defender", "Who is at risk")
    await walk(
        harness,
        [
            ("2", "Where, roughly"),
            ("Gomel, Belarus", "Where is the person held"),
        ],
    )
    harness.expect("alice", r"\(Who is at risk\):\nA colleague")
    harness.expect("alice", r"\(Where, roughly\):\nGomel, Belarus")
    for answer in ("unknown", "1", "1", "0", "Signal, evenings", "yes"):
        await harness.say(answer)
        harness.inbox["alice"].clear()
        harness.inbox["defender"].pop(0)
    await harness.say("no")
    harness.expect("defender", rf"Thank you\. All of this was added to your case {ref}\.")
    harness.expect("alice", r"\(May we share your case with trusted partner(.|\n)*\nNo$")
    await harness.say(f"ack {ref}", who="alice")
    details = harness.inbox["alice"].pop(0)
    assert "What is happening: Someone is in danger RIGHT NOW" in details
    assert "Why this tier: detention, abduction, attack or raid happening now" in details
    assert "Added (Is a phone or computer of the person at risk in someone else's hands)" in details
    harness.expect("defender", "A responder has your case")
    assert await count_cases(harness) == 1


async def test_detention_in_the_last_day_pages_on_the_second_answer(harness: Harness) -> None:
    """Arrest in the last 24 hours: critical after two answers (menu, when); arrests that are
    older go through the whole form and need consent."""
    await start_intake(harness)
    await harness.say("2")
    harness.expect("defender", r"When was the person arrested or taken\?")
    await harness.say("2")
    ref = harness.expect_page("alice")
    harness.expect("defender", rf"Your case reference is {ref}")
    harness.expect("defender", "Who is at risk")


async def test_page_shows_type_and_coarse_place(harness: Harness) -> None:
    """A form-first case: the page names the most specific type and where, nothing else."""
    for answer in HIGH_THREAT:
        await harness.say(answer)
        harness.inbox["defender"].clear()
    page = harness.inbox["bob"].pop(0).split("\n")
    assert page[1:] == ["A death threat · Kharkiv", f"Reply: ack {page[0][-4:]}"]


async def test_threat_in_last_day_goes_to_the_high_ladder(harness: Harness) -> None:
    """A death threat is 'high': bob is paged first, carol after 10 minutes."""
    for answer in HIGH_THREAT:
        await harness.say(answer)
    ref = harness.expect_page("bob", tier="HIGH")
    harness.inbox["defender"].clear()
    await harness.advance(timedelta(minutes=10))
    harness.expect_page("carol", tier="HIGH")
    await harness.say(f"ack {ref}", who="carol")
    details = harness.inbox["carol"].pop(0)
    harness.expect("bob", f"Case {ref} was taken by carol")
    assert "Why this tier: death threat; a threat the defender believes can be carried" in details
    assert "May we share your case with trusted partner organisations" in details
    harness.inbox["defender"].clear()


async def test_hearing_date_within_two_days_is_high(harness: Harness) -> None:
    """A summons read as a date two days ahead sets 'hearing within 48 hours'; a date that
    cannot be read is asked again kindly, and multi-select needs take several numbers."""
    await start_intake(harness)
    await walk(harness, [("5", r"What is it\?"), ("1", "When is the next date")])
    await harness.say("the 31st of Smarch")
    harness.expect("defender", "I could not read that date")
    today = harness.clock.now().date()
    when = today + timedelta(days=2)
    await harness.say(f"{when.day}/{when.month}")
    harness.expect("defender", "What are the charges")
    for answer in ("unknown", "no", "1", "Baku", "1", "1 3", "skip", "skip", "skip", "skip"):
        await harness.say(answer)
        harness.inbox["defender"].clear()
    for answer in ("yes", "no", "no", "no"):
        await harness.say(answer)
    ref = harness.expect_page("bob", tier="HIGH")
    harness.inbox["defender"].clear()
    await harness.say(f"ack {ref}", who="bob")
    details = harness.inbox["bob"].pop(0)
    assert f"When is the next date (summons, hearing or trial): {when.isoformat()}" in details
    assert "hearing or summons within 48 hours" in details
    assert "What help do you need: A lawyer or legal aid, Medical help" in details
    harness.inbox["defender"].clear()


async def test_no_consent_stores_nothing_and_says_where_else_to_get_help(
    harness: Harness,
) -> None:
    """Without consent no case exists, the draft is gone, and the defender is told about SOS
    and other help."""
    await start_intake(harness)
    for answer in ("9", "My office is watched", "Tbilisi", "0", "skip", "skip", "skip"):
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
    await harness.say("10")
    harness.expect("defender", r"^Please reply with a number from 1 to 9\.$")
    await harness.say("/frobnicate")
    harness.expect("defender", "I do not know the command /frobnicate")
    harness.expect("defender", "What is happening")
    await harness.say("9\x00\x07")
    harness.expect("defender", "Tell us briefly what is happening")
    await harness.say("x" * 100_000)
    harness.expect("defender", "kept only the first 2000 characters")
    harness.expect("defender", "kept only the first 1000 characters")
    harness.expect("defender", "Where, roughly")
    await harness.say("/help")
    harness.expect("defender", "Send SOS at any time")
    harness.expect("defender", "Where, roughly")


async def test_a_quiet_draft_asks_before_going_on_and_expires_after_a_day(
    harness: Harness,
) -> None:
    """Back after 40 minutes: asked whether to continue (the question on screen may be
    stale); after 24 hours of silence the sweep deletes the draft, and the defender who
    writes again starts afresh and is told why."""
    await start_intake(harness)
    await harness.say("9")
    harness.expect("defender", "Tell us briefly")
    await harness.advance(timedelta(minutes=40))
    await harness.say("They came back")
    harness.expect("defender", r"You started a form earlier(.|\n)*1\. Continue where I stopped")
    await harness.say("1")
    harness.expect("defender", "Tell us briefly")
    await harness.say("They came back")
    harness.expect("defender", "Where, roughly")
    await harness.advance(timedelta(hours=23, minutes=59))
    harness.expect_nothing()
    await harness.advance(timedelta(minutes=2))
    assert harness.app is not None
    async with harness.app.store.transaction() as tx:
        defender = await tx.defender_for(Address("console", "defender"), harness.clock.now())
    assert defender.session is not None
    assert defender.session["answers"] == {} and defender.session["flow"] is None
    await harness.say("hello")
    harness.expect("defender", "The form you started earlier was not finished, so it was deleted")
    harness.expect("defender", "emergency line")
    harness.expect("defender", MENU)
    await harness.say("/start")  # told once only
    harness.expect("defender", "emergency line")
    harness.expect("defender", MENU)


@pytest.mark.parametrize(
    ("answers", "before_page"),
    [
        (("SOS",), 0),
        (("/start", "1"), 1),  # someone is in danger right now
        (("/start", "2", "1"), 2),  # arrest: happening now
        (("/start", "2", "0"), 2),  # arrest: when skipped counts as the first hours
        (("/start", "3", "1"), 2),  # attack or raid: happening now
        (("/start", "8", "1", "1"), 3),  # someone else: arrested, now
    ],
    ids=["sos", "danger_now", "detention_now", "detention_skipped", "attack_now", "someone_else"],
)
async def test_answers_before_a_critical_page(
    harness: Harness, answers: tuple[str, ...], before_page: int
) -> None:
    """The most urgent paths page first and ask later: the critical page goes out on the
    stated answer (commands and the alarm word itself are not answers), not one later."""
    said = 0
    for answer in answers:
        await harness.say(answer)
        said += 1
        if harness.inbox["alice"]:
            break
    assert said == len(answers), "paged before the last scripted answer"
    assert harness.inbox["alice"], "no critical page after the last scripted answer"
    counted = [a for a in answers if not a.startswith("/") and a != "SOS"]
    assert len(counted) == before_page
    harness.expect_page("alice")
    harness.inbox.clear()


async def test_a_later_answer_raises_an_open_case_and_restarts_paging(tmp_path: Path) -> None:
    """Page first, ask later: when an answer given after the page calls for a more urgent
    tier, the case is raised at once (never lowered), the reason is recorded, and an untaken
    case is paged on the new tier's ladder."""
    flows = tmp_path / "flows"
    shutil.copytree(Path(__file__).resolve().parents[2] / "flows", flows)
    attack = flows / "attack.toml"
    attack.write_text(
        attack.read_text().replace('both = ["raid"]', 'both = ["raid", "now"]'), "utf-8"
    )
    config = TEST_CONFIG.replace("[keys]", f'[flows]\ndir = "{flows}"\n\n[keys]', 1)
    h = await Harness.create(tmp_path, config)
    try:
        for answer in ("/start", "3", "2"):  # attack or raid, in the last 24 hours
            await h.say(answer)
        ref = h.expect_page("bob", tier="HIGH")
        h.inbox["defender"].clear()
        await h.say("3")  # both an attack and a raid: now counts as happening now
        h.expect("bob", r"\(What happened\):\nBoth")
        assert h.expect_page("alice") == ref
        h.inbox["defender"].clear()
        await h.say(f"ack {ref}", who="alice")
        details = h.inbox["alice"].pop(0)
        assert details.startswith(f"You have case {ref} (CRITICAL")
        assert "Added (tier:triage): detention, abduction, attack or raid happening now" in details
        h.inbox.clear()
        async with h.app.engine.connect() as conn:  # type: ignore[union-attr]
            tiers = (await conn.execute(select(Case.tier))).scalars().all()
        assert tiers == ["critical"]
    finally:
        await h.stop()
