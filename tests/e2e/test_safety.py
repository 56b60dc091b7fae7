"""Defender safety on a controllable clock, GoAlert-style: codes, check-in timers, duress
that looks exactly like the safe code, and devices marked compromised. Every test fails on
any message nobody expected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.core.messages import OutboundMessage
from db.models import Case, Checkin
from tests.harness import TEST_CONFIG, Harness

A = "telegram:111000111"  # the defender who gives the safe code
B = "telegram:222000222"  # the defender who gives the duress code
DURESS_PAGE = "DURESS — do not contact this device"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    """Console responders, and defenders on a recording Telegram channel."""
    config = TEST_CONFIG.replace("[keys]", "[telegram]\ndelete_after_intake = false\n\n[keys]")
    harness = await Harness.create(tmp_path, config, channels=("telegram",))
    try:
        yield harness
        harness.expect_nothing()
    finally:
        await harness.stop()


def seen_by(h: Harness, who: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Everything the Telegram channel was asked to do in ``who``'s chat, in order: kind,
    text, and which of the defender's messages it deleted."""
    identity = who.partition(":")[2]
    return [(m.kind, m.text, m.delete_ids) for m in h.log if m.recipient.identity == identity]


@pytest.fixture(autouse=True)
def _record_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a full log of what each channel sent (the harness files only texts)."""
    original = Harness.collect

    async def collect(self: Harness) -> None:
        assert self.app is not None
        await self.app.drain()
        if not hasattr(self, "log"):
            self.log: list[OutboundMessage] = []  # type: ignore[misc]
        for channel in (self.channel, *self.extra_channels):
            self.log.extend(channel.sent)
        await original(self)

    monkeypatch.setattr(Harness, "collect", collect)


async def say(h: Harness, who: str, text: str, message_id: int) -> None:
    """``who`` writes ``text`` as Telegram message ``message_id``."""
    await h.say(text, who=who, platform_message_id=str(message_id))


async def set_codes(h: Harness, who: str) -> None:
    """Set the safe code 'blue sky' and the duress code 'red'; check the confirmations."""
    await say(h, who, "/code safe Blue  Sky", 1)
    h.expect(who.partition(":")[2], "Before you write")  # the Telegram warning, first time
    h.expect(who.partition(":")[2], r"^Safe code saved\.")
    await say(h, who, "/code duress red", 2)
    h.expect(who.partition(":")[2], r"^Duress code saved\.")


async def test_codes_are_kept_only_as_keyed_hashes_and_plan_shows_no_code(
    h: Harness, tmp_path: Path
) -> None:
    """/plan says which codes are set but never shows them; the same word cannot be both;
    the messages carrying codes are deleted from the chat; the database file holds neither
    word."""
    a = A.partition(":")[2]
    await set_codes(h, A)
    await say(h, A, "/code safe RED", 3)
    h.expect(a, "must be different")
    await say(h, A, "/plan", 4)
    plan = h.expect(a, r"^Your safety plan:\nSafe code: set\nDuress code: set\nTime zone: not set")
    assert "blue" not in plan.string.casefold() and "red" not in plan.string.casefold()
    h.expect(a, r"^1/5 Safe code:")  # the walk through the plan begins
    deleted = [ids for kind, _, ids in seen_by(h, A) if kind == "scrub"]
    assert deleted == [("1",), ("2",), ("3",)]  # every message that carried a code
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("intake.db*"))
    assert b"blue sky" not in raw.lower() and b"Blue  Sky" not in raw and b"red" not in raw


async def test_a_check_in_kept_with_the_safe_code_raises_nothing(h: Harness) -> None:
    """/checkin 2h → deadline confirmed; /safe with the safe code (any case, extra spaces)
    ends it; hours later nothing has been paged."""
    a = A.partition(":")[2]
    await set_codes(h, A)
    await say(h, A, "/checkin 2h court hearing, Istanbul", 3)
    h.expect(a, r"^Check-in set for \d{4}-\d\d-\d\d \d\d:\d\d UTC\. Before then, send /safe")
    await h.advance(timedelta(hours=1))
    await say(h, A, "/safe blue sky", 4)
    h.expect(a, r"^Thank you\. Take care\.$")
    await h.advance(timedelta(hours=3))
    h.expect_nothing()


async def test_a_missed_check_in_nudges_then_pages_after_the_grace_period(h: Harness) -> None:
    """At the deadline one reminder; ten minutes later a critical 'missed check-in' case
    with the note; the timer is a row, so a restart in between loses nothing."""
    a = A.partition(":")[2]
    await say(h, A, "/checkin 30m meeting the prosecutor", 1)
    h.expect(a, "Before you write")
    h.expect(a, r"^Check-in set for ")
    await h.restart()
    await h.advance(timedelta(minutes=29))
    h.expect_nothing()
    await h.advance(timedelta(minutes=1))
    h.expect(a, r"^Your check-in time has passed\. If you are OK, send /safe")
    await h.restart()
    await h.advance(timedelta(minutes=9))
    h.expect_nothing()
    await h.advance(timedelta(minutes=1))
    ref = h.expect_page("alice")
    await h.say(f"ack {ref}", who="alice")
    details = h.inbox["alice"].pop(0)
    assert "Check-in note: meeting the prosecutor" in details
    assert "missed check-in" in details
    h.expect(a, "A responder has your case")
    assert h.app is not None
    async with h.app.engine.connect() as conn:
        states = (await conn.execute(select(Checkin.state))).scalars().all()
    assert states == ["missed"]


async def test_a_clock_time_needs_the_time_zone_asked_once(h: Harness) -> None:
    """/checkin 18:00 without a time zone asks for it; after /tz the clock time works and
    is shown in that zone."""
    a = A.partition(":")[2]
    await say(h, A, "/checkin 18:00", 1)
    h.expect(a, "Before you write")
    h.expect(a, r"first tell me your time zone")
    await say(h, A, "/tz Mars/Olympus", 2)
    h.expect(a, "I do not know the time zone Mars/Olympus")
    await say(h, A, "/tz europe/istanbul", 3)
    h.expect(a, r"^Time zone saved: Europe/Istanbul\.$")
    await say(h, A, "/checkin 18:00 border crossing", 4)
    h.expect(a, r"^Check-in set for \d{4}-\d\d-\d\d 18:00 \(Europe/Istanbul\)\.")


async def test_duress_at_a_check_in_looks_exactly_like_the_safe_code(h: Harness) -> None:
    """Two defenders, same plan, same messages: one ends the check-in with the safe code,
    the other with the duress code. What each chat shows — texts, deletions, their order —
    is identical; only the duress one pages DURESS, and nothing more goes to that device."""
    for who in (A, B):
        await set_codes(h, who)
        await say(h, who, "/checkin 1h", 3)
        h.expect(who.partition(":")[2], "Check-in set")
    await say(h, A, "/safe blue sky", 4)
    await say(h, B, "/safe RED", 4)
    h.expect(A.partition(":")[2], r"^Thank you\. Take care\.$")
    h.expect(B.partition(":")[2], r"^Thank you\. Take care\.$")
    assert seen_by(h, A) == seen_by(h, B)
    ref = h.expect_page("alice")
    assert h.inbox["alice"] == [] and f"{DURESS_PAGE}" in [
        m.text.split("\n")[1] for m in h.log if m.text.startswith(f"CRITICAL case {ref}")
    ]
    await h.advance(timedelta(minutes=2))
    assert h.expect_page("bob") == ref  # the duress case climbs its ladder like any other
    await h.say(f"ack {ref}", who="bob")
    details = h.inbox["bob"].pop(0)
    assert "do not write or call it" in details and "duress code given at a check-in" in details
    assert "The defender was NOT told: their device is marked compromised." in details
    h.expect("alice", f"Case {ref} was taken by bob")
    await h.advance(timedelta(hours=2))  # neither check-in is missed any more
    h.expect_nothing()
    assert not h.inbox[B.partition(":")[2]], "the compromised device heard about the ack"
    await h.say(f"reply {ref} are you safe?", who="bob")
    h.expect("bob", r"^Not sent: the defender's device for case .* is marked compromised")
    await say(h, B, "all fine, cancel everything", 5)
    h.expect("bob", r"from the device marked compromised — it may not be the defender")
    assert not h.inbox[B.partition(":")[2]]


@pytest.mark.parametrize("code", ["blue sky", "red"])
async def test_cancel_an_sos_with_each_code(h: Harness, code: str) -> None:
    """/cancel with the safe code calls the SOS off (responders told, paging stops); with
    the duress code the defender sees the very same answer, the case stays open, is
    flagged DURESS and paged again."""
    a = A.partition(":")[2]
    await set_codes(h, A)
    await say(h, A, "SOS", 3)
    ref = h.expect_page("alice")
    h.inbox[a].clear()
    await say(h, A, f"/cancel {code}", 4)
    h.expect(a, r"^Cancelled\. Take care\.$")
    assert h.app is not None
    async with h.app.engine.connect() as conn:
        status = (await conn.execute(select(Case.status))).scalar_one()
    if code == "blue sky":
        h.expect("alice", rf"^Case {ref} was called off by the defender")
        assert status == "resolved"
        await h.advance(timedelta(minutes=30))
        h.expect_nothing()
    else:
        page = h.inbox["alice"].pop(0)
        assert page.startswith(f"CRITICAL case {ref}\n{DURESS_PAGE}")
        assert status == "open"
    scrubs = [ids for kind, _, ids in seen_by(h, A) if kind == "scrub"]
    assert scrubs[-1] == ("4",)


async def test_wrong_codes_reveal_nothing_and_three_in_a_row_count_as_duress(
    h: Harness,
) -> None:
    """A wrong code gets the same answer whether or not a duress code is set; the third in
    a row silently raises a DURESS case (the answer does not change)."""
    a, b = A.partition(":")[2], B.partition(":")[2]
    await set_codes(h, A)
    await say(h, B, "/code safe blue sky", 1)
    h.expect(b, "Before you write")
    h.expect(b, "Safe code saved")
    await say(h, A, "/safe green", 3)
    await say(h, B, "/safe green", 3)
    h.expect(a, r"^That code was not recognised\.$")
    h.expect(b, r"^That code was not recognised\.$")
    await say(h, A, "/safe yellow", 4)
    h.expect(a, r"^That code was not recognised\.$")
    h.expect_nothing()
    await say(h, A, "/safe purple", 5)
    h.expect(a, r"^That code was not recognised\.$")
    ref = h.expect_page("alice")
    await h.say(f"ack {ref}", who="alice")
    assert "3 wrong codes in a row" in h.inbox["alice"].pop(0)


async def test_without_codes_safe_just_confirms(h: Harness) -> None:
    """A defender who set no codes ends a check-in with /safe alone (nothing to compare)."""
    a = A.partition(":")[2]
    await say(h, A, "/checkin 10m", 1)
    h.inbox[a].clear()
    await say(h, A, "/safe", 2)
    h.expect(a, r"^Thank you\. Take care\.$")
    await say(h, A, "/safe", 3)
    h.expect(a, r"^There is no check-in running\.$")
    await h.advance(timedelta(minutes=30))
    h.expect_nothing()


SIGNAL_CONTACT = "+491701234567"


@pytest.fixture
async def hs(tmp_path: Path) -> AsyncIterator[Harness]:
    """Like ``h``, with a recording Signal channel for trusted contacts."""
    config = TEST_CONFIG.replace("[keys]", "[telegram]\ndelete_after_intake = false\n\n[keys]")
    harness = await Harness.create(tmp_path, config, channels=("telegram", "signal"))
    try:
        yield harness
        harness.expect_nothing()
    finally:
        await harness.stop()


async def test_trusted_contacts_alerted_by_a_responder_with_only_the_chosen_message(
    hs: Harness,
) -> None:
    """A contact is added in calm time; /plan lists it without its number; a responder's
    alert-contacts sends the contact exactly the defender's message, on Signal, with no
    case details; the alert is in the case log."""
    h, a = hs, A.partition(":")[2]
    await say(h, A, "/contact Maria, +49 170 1234567, ask, Call Ana the lawyer: 555 0100", 1)
    h.expect(a, "Before you write")
    h.expect(a, r"^Trusted contact saved: Maria\.")
    await say(h, A, "/contact Bob, 12ab, auto, hi", 2)
    h.expect(a, "I could not read that number")
    await say(h, A, "/plan", 3)
    plan = h.expect(a, r"Trusted contacts: 1\. Maria \(Signal, alerted only when a responder")
    assert SIGNAL_CONTACT not in plan.string and "555" not in plan.string
    await say(h, A, "SOS", 4)
    ref = h.expect_page("alice")
    h.inbox[a].clear()
    await h.say(f"alert-contacts {ref}", who="alice")
    h.expect("alice", rf"^Case {ref}: 1 trusted contact\(s\) sent the defender's own message\.")
    message = h.expect(SIGNAL_CONTACT, r"^Message from a human rights protection team\.").string
    assert message.endswith("\nCall Ana the lawyer: 555 0100")
    assert ref not in message and "SOS" not in message
    await h.say(f"ack {ref}", who="alice")
    h.inbox["alice"].clear()
    h.inbox[a].clear()
    assert h.app is not None
    async with h.app.store.transaction() as tx:
        case = await tx.case_by_ref(ref)
        assert case is not None
        assert await tx.case_has_event(case.id, "contacts.alerted")
        assert not await tx.case_has_event(case.id, "contacts.auto_alerted")


async def test_automatic_contacts_are_alerted_once_when_a_critical_case_stays_untaken(
    hs: Harness,
) -> None:
    """Only contacts marked auto, only after 30 minutes untaken, only once."""
    h = hs
    await say(h, A, "/contact Maria, +491701234567, auto, I am in trouble, call Ana", 1)
    await say(h, A, "/contact Dad, 123456789, ask, Stay calm", 2)
    await say(h, A, "SOS", 3)
    h.inbox.clear()
    await h.advance(timedelta(minutes=29))
    assert not h.inbox[SIGNAL_CONTACT]
    await h.advance(timedelta(minutes=1))
    h.expect(SIGNAL_CONTACT, r"\nI am in trouble, call Ana$")
    assert not h.inbox["123456789"], "a contact marked ask was alerted without a responder"
    await h.advance(timedelta(minutes=30))
    assert not h.inbox[SIGNAL_CONTACT], "alerted twice"
    h.inbox.clear()


async def test_a_drill_runs_the_ladder_and_tells_the_defender_how_long_it_took(
    h: Harness,
) -> None:
    """/drill pages as DRILL through the ladder; the ack closes it and the defender hears
    the time to answer; it is marked as a drill in the case list."""
    a = A.partition(":")[2]
    await say(h, A, "/drill", 1)
    h.expect(a, "Before you write")
    ref = h.expect(a, r"^Drill (\w{4}) started").group(1)
    assert h.expect_page("alice") == ref
    await h.say("cases", who="alice")
    h.expect("alice", rf"{ref}  CRITICAL  0s  not taken  \(drill\)")
    await h.advance(timedelta(minutes=2))
    h.expect_page("bob")
    await h.say(f"ack {ref}", who="bob")
    h.expect("bob", rf"^Drill {ref} acknowledged after 2m: thank you")
    h.expect(a, rf"^Drill {ref}: a responder acknowledged it\. Time to answer:\n2m$")
    await h.advance(timedelta(minutes=30))
    h.expect_nothing()


async def test_forget_withdraw_leaves_nothing_decryptable(h: Harness) -> None:
    """After /forget withdraw every row that held something of the defender has lost its
    key and its ciphertext; paged responders are told; a new message starts afresh."""
    a = A.partition(":")[2]
    await set_codes(h, A)
    await say(h, A, "/checkin 2h meeting at the ministry", 3)
    h.inbox[a].clear()
    await say(h, A, "SOS", 4)
    ref = h.expect_page("alice")
    await say(h, A, "they are taking my laptop", 5)
    h.inbox["alice"].clear()
    h.inbox[a].clear()
    await say(h, A, "/forget", 6)
    h.expect(a, r"^/forget deletes your safety plan")
    await say(h, A, "/forget withdraw", 7)
    h.expect(a, r"^Done: everything you told us was deleted and your cases were withdrawn")
    h.expect("alice", rf"^Case {ref} was withdrawn by the defender")
    assert h.app is not None
    async with h.app.engine.connect() as conn:
        from sqlalchemy import text

        rows = {
            "defender": "SELECT wrapped_key, address_ct, session_ct, plan_ct FROM defender",
            "cases": "SELECT wrapped_key, details_ct, resolve_note_ct FROM cases",
            "case_entry": "SELECT value_ct FROM case_entry",
            "checkin": "SELECT wrapped_key, note_ct FROM checkin",
            "outbox": "SELECT wrapped_key, recipient_ct, payload_ct FROM outbox",
            "inbox": "SELECT wrapped_key, message_ct FROM inbox",
        }
        for table, query in rows.items():
            for row in (await conn.execute(text(query))).all():
                assert all(not value for value in row), f"{table} still holds {row!r}"
    await h.advance(timedelta(hours=3))
    h.expect_nothing()  # the check-in is gone, the case stopped paging
    await say(h, A, "hello", 8)
    h.expect(a, "Before you write")  # a stranger again
    h.expect(a, "emergency line")
    h.expect(a, "What is happening")


async def test_forget_confirm_keeps_open_cases_reachable(h: Harness) -> None:
    """/forget confirm deletes the plan and check-ins but the open case's responder can
    still write to the defender."""
    a = A.partition(":")[2]
    await set_codes(h, A)
    await say(h, A, "SOS", 3)
    ref = h.expect_page("alice")
    h.inbox[a].clear()
    await say(h, A, "/forget confirm", 4)
    h.expect(a, r"^Done: your safety plan, check-ins and conversation were deleted\.")
    await say(h, A, "/plan", 5)
    h.expect(a, "Before you write")  # forgotten: even the notices shown once are gone
    h.expect(a, r"Safe code: not set\nDuress code: not set")
    h.expect(a, r"^1/5 Safe code:")
    await h.say(f"ack {ref}", who="alice")
    h.inbox["alice"].clear()
    h.expect(a, "A responder has your case")
    await h.say(f"reply {ref} We are coming", who="alice")
    h.expect("alice", "Sent to the defender")
    h.expect(a, "We are coming")


async def test_own_device_seized_marks_it_compromised_mid_form(h: Harness) -> None:
    """'My phone was taken' in a page-first form: no further question goes to that device,
    what it sends still reaches the responders, replies to it are refused, and the taker
    is told to use the referrer or a trusted contact."""
    a = A.partition(":")[2]
    for n, answer in enumerate(("/start", "1"), start=1):
        await say(h, A, answer, n)
    ref = h.expect_page("alice")
    h.inbox[a].clear()
    for n, answer in enumerate(("1", "1", "Minsk", "Okrestina", "1"), start=3):
        await say(h, A, answer, n)  # arrest; me; where; held where; police
    h.inbox[a].clear()
    h.inbox["alice"].clear()
    await say(h, A, "1", 8)  # a phone or computer of mine: yes, it was taken
    h.expect("alice", r"\(Is a phone or computer of the person at risk in someone else's")
    assert not h.inbox[a], "a question went to a seized device"
    await say(h, A, "hello? answer me", 9)
    h.expect("alice", r"from the device marked compromised(.|\n)*hello\? answer me")
    assert not h.inbox[a]
    await h.say(f"ack {ref}", who="alice")
    details = h.inbox["alice"].pop(0)
    assert "do not write or call it" in details
    assert "The defender was NOT told" in details
    await h.say(f"reply {ref} where are you?", who="alice")
    h.expect("alice", "^Not sent: the defender's device")


async def test_plan_walks_through_every_item_each_skippable(h: Harness) -> None:
    """/plan shows what is set, then asks item by item; an unusable answer is explained and
    asked again; skip keeps an item; the code answers are deleted from the chat."""
    a = A.partition(":")[2]
    await say(h, A, "/plan", 1)
    h.expect(a, "Before you write")
    h.expect(a, r"^Your safety plan:\nSafe code: not set")
    h.expect(a, r"^1/5 Safe code:")
    await say(h, A, "Blue sky", 2)
    h.expect(a, r"^Safe code saved\.")
    h.expect(a, r"^2/5 Duress code:")
    await say(h, A, "blue SKY", 3)
    h.expect(a, "must be different")
    h.expect(a, r"^2/5 Duress code:")
    await say(h, A, "red", 4)
    h.expect(a, r"^Duress code saved\.")
    h.expect(a, r"^3/5 A trusted contact")
    await say(h, A, "skip", 5)
    h.expect(a, r"^4/5 An organisation or person who can vouch")
    await say(h, A, "Viasna, via their Signal +375291234567", 6)
    h.expect(a, r"^Referrer saved\.$")
    h.expect(a, r"^5/5 Your time zone")
    await say(h, A, "Europe/Minsk", 7)
    h.expect(a, r"^Time zone saved: Europe/Minsk\.$")
    h.expect(a, r"^Your safety plan is saved\.")
    await say(h, A, "/plan", 8)
    h.expect(
        a,
        r"Safe code: set\nDuress code: set\nTime zone: Europe/Minsk(.|\n)*"
        r"Trusted contacts: not set\nReferrer: set$",
    )
    h.expect(a, r"^1/5 Safe code:")
    await say(h, A, "/start", 9)  # a command ends the walk
    h.expect(a, "emergency line")
    h.expect(a, "What is happening")
    deleted = [ids for kind, _, ids in seen_by(h, A) if kind == "scrub"]
    assert deleted == [("2",), ("3",), ("4",)]  # the messages that carried codes


async def test_closed_cases_are_shredded_after_the_retention_period(h: Harness) -> None:
    """90 days after a case is resolved its key and content are destroyed; the row stays
    (tier, status, dates), and a late ack is told the case is closed."""
    await say(h, A, "SOS", 1)
    ref = h.expect_page("alice")
    await say(h, A, "they took my brother", 2)
    h.inbox.clear()
    await h.say(f"ack {ref}", who="alice")
    await h.say(f"resolve {ref} he is out", who="alice")
    h.inbox.clear()
    assert h.app is not None
    await h.advance(timedelta(days=89, hours=23))
    async with h.app.engine.connect() as conn:
        from sqlalchemy import text

        assert (await conn.execute(text("SELECT wrapped_key FROM cases"))).scalar_one()
    await h.advance(timedelta(hours=2))
    async with h.app.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT wrapped_key, details_ct, status, tier FROM cases"))
        ).one()
        entries = (await conn.execute(text("SELECT count(*) FROM case_entry"))).scalar_one()
    assert (bytes(row[0]), bytes(row[1]), row[2], row[3]) == (b"", b"", "resolved", "critical")
    assert entries == 0
    await h.say(f"ack {ref}", who="alice")
    h.expect("alice", rf"^Case {ref} is already resolved\.$")
