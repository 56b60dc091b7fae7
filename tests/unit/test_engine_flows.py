"""Unit tests for bot.conversation.engine over the shipped flows: entering topic flows from
the menu, opening a case mid-flow, the step types (multi-select, date, text), languages,
resuming after a silence and draft expiry.

The basics (menu, SOS, commands, buttons, sessions, properties) are in test_engine.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.conversation.engine import (
    AddToCase,
    Effect,
    OpenCase,
    Reply,
    Retriage,
    Scrub,
    Session,
    StepResult,
    Timing,
)
from bot.conversation.model import FlowKind, FlowSet, StepType
from bot.core.bidi import LRI, PDI
from tests.unit.test_engine import (
    DETENTION_WHEN,
    INTRO,
    NONCE,
    NOW_MS,
    RECENT_MS,
    REF,
    SETTINGS,
    ask,
    at,
    flows,
    last_reply,
    plain,
    run,
    shipped_flows,
)

__all__ = ["flows"]  # the module-scoped fixture of the real flows, shared with test_engine

MENU_PROMPT = "What is happening?"
WHO = (
    "Who is at risk?\n"
    "1. Me\n"
    "2. A colleague\n"
    "3. A family member\n"
    "4. Someone else\n"
    "Reply with a number. (Reply 0 to skip.)"
)
NEEDS_OPTIONS = [
    "A lawyer or legal aid",
    "Relocation to a safer place",
    "Medical help",
    "Psychological support",
    "Digital security",
    "Emergency funds",
    "Advocacy or publicity",
    "Trial monitoring or prison visits",
    "Support for family",
]
NEEDS = "\n".join(
    [
        "What help do you need? You can choose several.",
        *[f"{n}. {label}" for n, label in enumerate(NEEDS_OPTIONS, start=1)],
        "Reply with one or more numbers, for example: 1 3. (Reply 0 to skip.)",
    ]
)
HEARING_DATE = (
    "When is the next date (summons, hearing or trial)?\n"
    "Reply with a date, for example 24/12 or 2026-12-24. (Reply 0 to skip.)"
)
DATE_INVALID = (
    "I could not read that date. Please write it like 24/12 or 2026-12-24 (day first), or "
    "reply skip."
)
NOT_STORED = (
    "Understood: nothing you told us has been stored. You can still get help: send SOS at any "
    "time, or contact a protection organisation directly (for example Front Line Defenders' "
    "24-hour line: +353 1 21 00 489)."
)
RESUME = (
    "You started a form earlier and did not finish it. Continue where you stopped, or start "
    "again?\n"
    "1. Continue where I stopped\n"
    "2. Start again\n"
    "Reply with a number."
)
DRAFT_EXPIRED = "The form you started earlier was not finished, so it was deleted for your safety."
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Español",
    "fr": "Français",
    "ar": "العربية",
    "ru": "Русский",
    "fa": "فارسی",
    "pt": "Português",
    "tr": "Türkçe",
}


def menu(flows: FlowSet, language: str = "en") -> Session:
    """A session at the menu, reached by a first message."""
    return run(flows, Session(language=language, touched_at=RECENT_MS), "hi").session


def converse(
    flows: FlowSet, texts: list[str], session: Session | None = None
) -> tuple[Session, list[Effect]]:
    """Send ``texts`` one after another, binding opened cases to REF as the service does;
    return the last session and every effect."""
    session = session or Session(language="en", touched_at=RECENT_MS)
    effects: list[Effect] = []
    for text in texts:
        result = run(flows, session, text)
        session = result.session
        for effect in result.effects:
            if isinstance(effect, OpenCase) and effect.bind and session.flow is not None:
                session = replace(session, case_ref=REF)
        effects.extend(result.effects)
    return session, effects


def opened(effects: tuple[Effect, ...] | list[Effect]) -> list[OpenCase]:
    """The OpenCase effects among ``effects``."""
    return [e for e in effects if isinstance(e, OpenCase)]


# --- entering topic flows from the menu ----------------------------------------------------


@pytest.mark.parametrize(
    ("number", "topic", "first_step", "prompt"),
    [
        ("2", "detention", "when", "When was the person arrested or taken?"),
        ("3", "attack", "when", "When did it happen?"),
        ("4", "threat", "threat_kind", "What kind of threat?"),
        ("5", "judicial", "legal_kind", "What is it?"),
        ("6", "relocation", "urgency", "How soon must you leave?"),
        ("7", "digital", "incident", "What happened?"),
        ("8", "someone_else", "their_situation", "What is happening to them?"),
        ("9", "other", "describe", "Tell us briefly what is happening or what you need."),
    ],
)
def test_menu_enters_the_topic_flow(
    flows: FlowSet, number: str, topic: str, first_step: str, prompt: str
) -> None:
    """Each menu option enters its topic flow and asks its first question; the menu answer
    carries over and the path records menu and topic. Only "danger now" opens at once."""
    result = run(flows, menu(flows), number)
    assert result.session.answers == {"what": topic}
    assert (result.session.flow, result.session.step) == (topic, first_step)
    assert result.session.path == ("intake", topic)
    assert plain(result) == (ask(flows, topic, first_step),)
    assert last_reply(result).text.split("\n")[0] == prompt


def test_answers_carry_over_into_the_topic(flows: FlowSet) -> None:
    """Answers in the topic flow are added to the menu answer, in one draft."""
    session, effects = converse(flows, ["hi", "4", "1", "2", "yes"])
    assert session.answers == {
        "what": "threat",
        "threat_kind": "death",
        "when": "day",
        "credible": "yes",
    }
    assert session.path == ("intake", "threat")
    assert not opened(effects)


@pytest.mark.parametrize("how", ["typed", "button"])
def test_danger_now_opens_with_the_menu_answer_only(flows: FlowSet, how: str) -> None:
    """ "Someone is in danger RIGHT NOW" opens a critical case bound to the flow at once,
    with no question before it; the first follow-up is asked after."""
    start = run(flows, Session(language="en", touched_at=RECENT_MS), "hi")
    button = last_reply(start).choices[0].data if how == "button" else None
    result = run(flows, start.session, "1", button=button)
    assert plain(result) == (
        OpenCase(
            kind=FlowKind.TOPIC,
            flow_id="danger_now",
            flow_ids=("intake", "danger_now"),
            tier_floor="critical",
            answers={"what": "danger_now"},
            reply_key="alerting",
            bind=True,
        ),
        Reply(
            "What is happening?\n"
            "1. Arrest or detention\n"
            "2. Abduction or disappearance\n"
            "3. Physical attack\n"
            "4. Raid or search\n"
            "5. Something else\n"
            "Reply with a number. (Reply 0 to skip.)"
        ),
    )
    assert (result.session.flow, result.session.step) == ("danger_now", "situation")
    assert flows.text("en", "alerting", flows.flows["danger_now"], ref=REF) == (
        f"Responders are being alerted now. Your case reference is {REF}. If you can, answer "
        "a few short questions: they help responders act. Skip any."
    )


@pytest.mark.parametrize(("when", "answer"), [("1", "now"), ("2", "day"), ("0", None)])
def test_detention_now_day_or_unknown_opens(flows: FlowSet, when: str, answer: str | None) -> None:
    """Detention happening now, in the last 24 hours, or at a time not given opens a case
    at once (bound to the flow) and goes on asking."""
    at_when = run(flows, menu(flows), "2").session
    result = run(flows, at_when, when)
    assert plain(result) == (
        OpenCase(
            kind=FlowKind.TOPIC,
            flow_id="detention",
            flow_ids=("intake", "detention"),
            tier_floor=None,
            answers={"what": "detention", "when": answer},
            reply_key="alerting",
            bind=True,
        ),
        Reply(WHO),
    )
    assert result.session.step == "who"


@pytest.mark.parametrize("when", ["3", "4", "Earlier"])
def test_detention_earlier_does_not_open(flows: FlowSet, when: str) -> None:
    """Detention days ago or earlier opens nothing: the questions go on, ending in consent."""
    result = run(flows, run(flows, menu(flows), "2").session, when)
    assert plain(result) == (Reply(WHO),)
    assert result.session.case_ref is None


def test_detention_earlier_asks_consent_to_store(flows: FlowSet) -> None:
    """A detention that was not opened asks consent to store after "others helping"."""
    result = run(flows, at("detention", "others_helping", {"when": "earlier"}), "skip")
    assert result.session.step == "consent_store"


def test_detention_opened_skips_consent_to_store(flows: FlowSet) -> None:
    """An opened detention case is already stored: consent to store is not asked."""
    opened_session = at("detention", "others_helping", {"when": "now"}, case_ref=REF)
    assert run(flows, opened_session, "skip").session.step == "consent_share"


@pytest.mark.parametrize(
    ("situation", "when", "opens"),
    [
        ("1", "1", True),  # detention now
        ("2", "2", True),  # abduction in the last 24 hours
        ("3", "1", True),  # attack now
        ("1", "0", True),  # detention, time unknown
        ("3", "0", False),  # attack, time unknown
        ("4", "1", False),  # threat now: no page
        ("1", "3", False),  # detention days ago
    ],
)
def test_someone_else_opens_only_for_liberty_or_life_now(
    flows: FlowSet, situation: str, when: str, opens: bool
) -> None:
    """A third-party report opens at once (after what and when, before who the person is)
    only for detention, abduction or attack now or in the last day, or detention or
    abduction at an unknown time."""
    session, effects = converse(flows, ["hi", "8", situation, when])
    assert bool(opened(effects)) is opens
    assert session.step == "relation"


def test_a_later_answer_is_added_to_the_bound_case_and_retriaged(flows: FlowSet) -> None:
    """With a case bound, each answer is added to it under its step id, titled with the
    English prompt, the English option label as value, and the case is triaged again."""
    session = at("danger_now", "situation", {"what": "danger_now"}, case_ref=REF)
    result = run(flows, session, "2")
    answers = {"what": "danger_now", "situation": "abduction"}
    assert plain(result) == (
        AddToCase(REF, "situation", "Abduction or disappearance", "What is happening"),
        Retriage(REF, ("intake", "danger_now"), answers),
        ask(flows, "danger_now", "who"),
    )
    assert result.session.answers == answers
    assert result.session.case_ref == REF


def test_added_answers_are_in_english_whatever_the_language(flows: FlowSet) -> None:
    """A Spanish-speaking defender's answer reaches responders in the team's language."""
    session = at("danger_now", "who", {"what": "danger_now"}, case_ref=REF, language="es")
    result = run(flows, session, "2")
    assert result.effects[0] == AddToCase(REF, "who", "A colleague", "Who is at risk")
    assert isinstance(result.effects[1], Retriage)


@pytest.mark.parametrize(
    ("flow", "step_id", "text", "title", "value"),
    [
        ("danger_now", "where", "Tbilisi", "Where, roughly", "Tbilisi"),
        ("detention", "when", "1", "When was the person arrested or taken", "It is happening now"),
        ("detention", "lawyer", "no", "Does the person have a lawyer", "No"),
        ("relocation", "movers", "1 3", "Who must move", "Me, Children"),
        (
            "judicial",
            "hearing_date",
            "2025-03-20",
            "When is the next date (summons, hearing or trial)",
            "2025-03-20",
        ),
    ],
)
def test_added_titles_and_values(
    flows: FlowSet, flow: str, step_id: str, text: str, title: str, value: str
) -> None:
    """An addition is labelled with the step id and titled with the English prompt up to
    its first "?" or "."; values are option labels (joined for several), "Yes"/"No", dates
    in ISO form, or the text typed."""
    result = run(flows, at(flow, step_id, case_ref=REF), text)
    assert result.effects[0] == AddToCase(REF, step_id, value, title)


def test_a_skipped_answer_adds_nothing(flows: FlowSet) -> None:
    """Skipping with a case bound adds nothing and triages nothing."""
    result = run(flows, at("danger_now", "who", case_ref=REF), "0")
    assert plain(result) == (ask(flows, "danger_now", "where"),)
    assert result.session.answers == {"who": None}


def test_end_of_an_opened_flow_thanks_and_scrubs_without_opening_again(flows: FlowSet) -> None:
    """The last answer of an opened flow is added; the end text names the case and the chat
    is to be cleared; no second case is opened."""
    session = at("danger_now", "consent_share", {"what": "danger_now"}, case_ref=REF)
    result = run(flows, session, "yes")
    assert plain(result) == (
        AddToCase(
            REF,
            "consent_share",
            "Yes",
            "May we share your case with trusted partner organisations (for example a lawyer)",
        ),
        Retriage(REF, ("intake", "danger_now"), {"what": "danger_now", "consent_share": "yes"}),
        Reply(
            f"Thank you. All of this was added to your case {REF}. Responders are on it. If "
            "things change, write here or send SOS."
        ),
        Scrub(REF),
    )
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_end_of_an_opened_detention_uses_the_shared_submitted_text(flows: FlowSet) -> None:
    """A flow without its own end text thanks with the shared "submitted" text."""
    session = at("detention", "consent_contact", {"when": "day"}, case_ref=REF)
    result = run(flows, session, "0")
    assert plain(result) == (
        Reply(
            f"Thank you. Your case reference is {REF}. A responder will contact you here. If "
            "things get worse, send SOS at any time."
        ),
        Scrub(REF),
    )


def test_whole_danger_now_conversation_opens_exactly_once(flows: FlowSet) -> None:
    """Danger now, every follow-up skipped: one case, opened with the first answer."""
    session, effects = converse(flows, ["hi", "1", *["0"] * 9])
    assert len(opened(effects)) == 1
    assert effects[-1] == Scrub(REF)
    assert session.flow is None


@pytest.mark.parametrize("answer", ["yes", "y", "1", "YES", "Yes."])
def test_consent_yes_submits_the_case(flows: FlowSet, answer: str) -> None:
    """Consent to store at the end of a flow not yet opened submits every answer in one
    OpenCase, then the chat is to be cleared."""
    draft = {"what": "other", "describe": "advice please", "where": None}
    result = run(flows, at("other", "consent_store", draft), answer)
    assert plain(result) == (
        OpenCase(
            kind=FlowKind.TOPIC,
            flow_id="other",
            flow_ids=("intake", "other"),
            tier_floor=None,
            answers={**draft, "consent_store": "yes"},
            reply_key="submitted",
        ),
        Scrub(None),
    )
    assert result.session == Session(language="en", touched_at=NOW_MS)


@pytest.mark.parametrize("answer", ["no", "n", "2", "NO", "0", "skip"])
def test_consent_no_or_skipped_discards(flows: FlowSet, answer: str) -> None:
    """No (or a skip) to consent says nothing was stored, opens nothing, drops the draft."""
    draft: dict[str, str | None] = {"what": "threat", "threat_kind": "online", "when": "earlier"}
    result = run(flows, at("threat", "consent_store", draft), answer)
    assert plain(result) == (Reply(NOT_STORED),)
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_a_whole_threat_conversation_without_consent_never_opens(flows: FlowSet) -> None:
    """A whole conversation ending in "no" to consent never opens a case at any step."""
    texts = ["hi", "4", "1", "2", "yes", "0", "Kharkiv", "0", "0", "-", "-", "-", "-", "no"]
    session, effects = converse(flows, texts)
    assert not opened(effects)
    assert effects[-1] == Reply(NOT_STORED)
    assert session.flow is None


@pytest.mark.parametrize("answer", ["maybe", "3", "yess"])
def test_consent_not_understood(flows: FlowSet, answer: str) -> None:
    """Anything but yes, no or skip at consent asks for 1 or 2 and keeps the draft."""
    before = at("threat", "consent_store", {"what": "threat"})
    result = run(flows, before, answer)
    assert plain(result) == (Reply("Please reply with a number from 1 to 2."),)
    assert result.session == replace(before, touched_at=NOW_MS)


# --- multi-select --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("1 3", "legal,medical"),
        ("1,3", "legal,medical"),
        ("3, 1", "legal,medical"),
        ("3 1 3", "legal,medical"),
        ("9", "family"),
        ("١ ٣", "legal,medical"),
        ("1،3", "legal,medical"),
        ("Medical help", "medical"),
    ],
)
def test_multi_select_typed(flows: FlowSet, text: str, stored: str) -> None:
    """Several numbers (spaces or commas, any order, repeats, other digit scripts) or one
    label answer a multi-select; the options are stored in display order."""
    result = run(flows, at("other", "needs"), text)
    assert result.session.answers == {"needs": stored}
    assert result.session.step == "hr_work"


@pytest.mark.parametrize("text", ["1 12", "0 1", "10", "1 and 3", "1;3", "1234"])
def test_multi_select_out_of_range_refused(flows: FlowSet, text: str) -> None:
    """A number out of range, or anything else, is refused and nothing is recorded."""
    before = at("other", "needs")
    result = run(flows, before, text)
    assert plain(result) == (Reply("Please reply with a number from 1 to 9."),)
    assert result.session == replace(before, touched_at=NOW_MS)


def test_multi_select_question_and_buttons(flows: FlowSet) -> None:
    """A multi-select lists its options with the multi hint and offers a button per option,
    Done (numbered after the options) and Skip."""
    result = run(flows, at("other", "where"), "skip")
    assert last_reply(result).text == NEEDS
    nonce = result.session.nonce
    assert [(c.label, c.data) for c in last_reply(result).choices] == [
        *[(label, f"other:needs:{nonce}:{n}") for n, label in enumerate(NEEDS_OPTIONS, 1)],
        ("Done", f"other:needs:{nonce}:10"),
        ("Skip", f"other:needs:{nonce}:0"),
    ]


def press(flows: FlowSet, session: Session, number: int) -> StepResult:
    """Press button ``number`` of the question ``session`` waits at."""
    data = f"{session.flow}:{session.step}:{session.nonce}:{number}"
    return run(flows, session, "x", button=data)


def test_multi_select_buttons_tick_untick_and_done(flows: FlowSet) -> None:
    """Buttons tick and untick options (the question shows ✓, the buttons too, under the
    same nonce); Done answers with the ticked options in display order."""
    session = at("other", "needs")
    ticked = press(flows, session, 3)
    assert plain(ticked) == (
        Reply("Chosen so far: Medical help. Choose more, or press Done."),
        ask(flows, "other", "needs", ticked=("medical",)),
    )
    assert "3. ✓ Medical help" in last_reply(ticked).text
    assert last_reply(ticked).choices[2].label == "✓ Medical help"
    assert ticked.session.nonce == NONCE
    assert ticked.session.selection == ("medical",)
    assert ticked.session.step == "needs" and "needs" not in ticked.session.answers
    both = press(flows, ticked.session, 1)
    assert both.effects[0] == Reply(
        "Chosen so far: A lawyer or legal aid, Medical help. Choose more, or press Done."
    )
    untick = press(flows, both.session, 3)
    assert untick.effects[0] == Reply(
        "Chosen so far: A lawyer or legal aid. Choose more, or press Done."
    )
    assert untick.session.selection == ("legal",)
    again = press(flows, untick.session, 3)
    done = press(flows, again.session, 10)
    assert done.session.answers == {"needs": "legal,medical"}
    assert done.session.selection == ()
    assert (done.session.step, plain(done)) == ("hr_work", (ask(flows, "other", "hr_work"),))


def test_multi_select_untick_everything(flows: FlowSet) -> None:
    """Unticking the last option shows a dash for the choice so far."""
    result = press(flows, at("other", "needs", selection=("legal",)), 1)
    assert result.effects[0] == Reply("Chosen so far: —. Choose more, or press Done.")
    assert result.session.selection == ()


def test_multi_select_done_with_nothing_ticked_is_skipped(flows: FlowSet) -> None:
    """Done with nothing ticked records the question as skipped."""
    result = press(flows, at("other", "needs"), 10)
    assert result.session.answers == {"needs": None}
    assert result.session.step == "hr_work"


def test_multi_select_skip_button_drops_the_ticks(flows: FlowSet) -> None:
    """The Skip button skips even with options ticked."""
    result = press(flows, at("other", "needs", selection=("legal", "funds")), 0)
    assert result.session.answers == {"needs": None}


def test_multi_select_typed_numbers_win_over_ticks(flows: FlowSet) -> None:
    """Typing numbers after ticking answers with what was typed."""
    result = run(flows, at("other", "needs", selection=("legal",)), "5")
    assert result.session.answers == {"needs": "digital"}


@pytest.mark.parametrize("word", ["done", "OK"])
def test_multi_select_typed_done_answers_with_the_ticks(flows: FlowSet, word: str) -> None:
    """Typing a "done" word after ticking answers with the ticked options."""
    result = run(flows, at("other", "needs", selection=("legal", "medical")), word)
    assert result.session.answers == {"needs": "legal,medical"}


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("24/12", "2025-12-24"),
        ("2026-12-24", "2026-12-24"),
        ("3.4.26", "2026-04-03"),
        ("14/3", "2025-03-14"),
        ("13/3", "2026-03-13"),
        ("today", "2025-03-14"),
        ("Tomorrow", "2025-03-15"),
        ("+2", "2025-03-16"),
        ("٢٤/١٢", "2025-12-24"),
    ],
)
def test_date_typed(flows: FlowSet, text: str, stored: str) -> None:
    """A date typed day first (or ISO, or a word, or an offset) is stored in ISO form."""
    result = run(flows, at("judicial", "hearing_date", {"legal_kind": "hearing"}), text)
    assert result.session.answers["hearing_date"] == stored
    assert result.session.step == "charges"


def test_date_in_spanish_words(flows: FlowSet) -> None:
    """The "tomorrow" word of the defender's language is understood."""
    session = at("judicial", "hearing_date", language="es")
    assert run(flows, session, "mañana").session.answers["hearing_date"] == "2025-03-15"


@pytest.mark.parametrize("text", ["31/02", "next week", "12", "1405-01-01", "24/12/1850"])
def test_date_invalid_keeps_the_step(flows: FlowSet, text: str) -> None:
    """A date that cannot be read (or does not exist) gets the date reply and no answer."""
    before = at("judicial", "hearing_date")
    result = run(flows, before, text)
    assert plain(result) == (Reply(DATE_INVALID),)
    assert result.session == replace(before, touched_at=NOW_MS)


@pytest.mark.parametrize("text", ["skip", "0", "-"])
def test_date_skipped(flows: FlowSet, text: str) -> None:
    """A date can be skipped like any question."""
    result = run(flows, at("judicial", "hearing_date"), text)
    assert result.session.answers == {"hearing_date": None}


def test_date_question_and_buttons(flows: FlowSet) -> None:
    """A date question has the date hint and only a Skip button; another number on a date
    button asks again; Skip skips."""
    result = run(flows, at("judicial", "legal_kind"), "4")
    assert last_reply(result).text == HEARING_DATE
    nonce = result.session.nonce
    assert [(c.label, c.data) for c in last_reply(result).choices] == [
        ("Skip", f"judicial:hearing_date:{nonce}:0")
    ]
    again = press(flows, result.session, 1)
    assert plain(again) == (Reply(HEARING_DATE),)
    assert again.session == replace(result.session, touched_at=NOW_MS)
    assert press(flows, result.session, 0).session.answers["hearing_date"] is None


# --- text ----------------------------------------------------------------------------------


def test_text_longer_than_max_length_is_cut_with_a_notice(flows: FlowSet) -> None:
    """A text answer over the step's max_length is cut to it, and the defender told so
    before the next question."""
    long = "a" * 250 + "b" * 100
    result = run(flows, at("detention", "charges"), long)
    assert result.session.answers["charges"] == "a" * 250 + "b" * 50
    assert plain(result) == (
        Reply("Your message was very long, so I kept only the first 300 characters."),
        ask(flows, "detention", "lawyer"),
    )


def test_text_at_max_length_is_kept_whole(flows: FlowSet) -> None:
    """A text answer of exactly max_length is kept whole, without a notice."""
    result = run(flows, at("intake", "what"), "9")
    result = run(flows, result.session, "x" * 1000)
    assert result.session.answers["describe"] == "x" * 1000
    assert plain(result) == (ask(flows, "other", "where"),)


def test_text_stored_verbatim(flows: FlowSet) -> None:
    """A text answer is stored as typed, even when it looks like a number or a yes."""
    assert run(flows, at("other", "where"), "7").session.answers["where"] == "7"
    assert run(flows, at("other", "where"), "yes").session.answers["where"] == "yes"


def test_cut_text_added_to_the_bound_case_is_the_cut_text(flows: FlowSet) -> None:
    """With a case bound, what reaches responders is the text as kept."""
    result = run(flows, at("detention", "where", case_ref=REF), "z" * 200)
    assert AddToCase(REF, "where", "z" * 120, "Where, roughly") in result.effects


# --- languages -----------------------------------------------------------------------------

SPANISH_WHEN = (
    "¿Cuándo detuvieron o se llevaron a la persona?\n"
    "1. Está pasando ahora\n"
    "2. En las últimas 24 horas\n"
    "3. En los últimos días\n"
    "4. Antes\n"
    "Responda con un número. (Para saltar, responda 0.)"
)


@pytest.mark.parametrize("wanted", ["es", "ES", "Español", "español", "2", " es "])
def test_lang_by_code_own_name_or_number(flows: FlowSet, wanted: str) -> None:
    """/lang with a code, the language's own name or its number in the menu switches the
    language and asks the current question again in it (same buttons)."""
    before = at("detention", "when", {"what": "detention"})
    result = run(flows, before, f"/lang {wanted}")
    assert plain(result) == (Reply("Idioma elegido: Español."), Reply(SPANISH_WHEN))
    assert result.session == replace(before, language="es", touched_at=NOW_MS)
    assert last_reply(result).choices[0].data == f"detention:when:{NONCE}:1"


def test_lang_unknown_lists_the_languages(flows: FlowSet) -> None:
    """/lang with an unknown language says so and offers every language; nothing changes."""
    before = at("detention", "when")
    result = run(flows, before, "/lang xx")
    menu_lines = [f"/lang {code} — {name}" for code, name in LANGUAGE_NAMES.items()]
    assert plain(result) == (
        Reply("I do not know the language xx. Choose one of these:"),
        Reply("\n".join(["Choose your language:", *menu_lines])),
    )
    assert [(c.label, c.data) for c in last_reply(result).choices] == [
        (name, f"lang:{code}") for code, name in LANGUAGE_NAMES.items()
    ]
    assert result.session == replace(before, touched_at=NOW_MS)


def test_lang_without_argument_shows_the_menu(flows: FlowSet) -> None:
    """/lang alone shows the language menu and changes nothing."""
    before = at("intake", "what")
    result = run(flows, before, "/lang")
    assert len(result.effects) == 1
    assert last_reply(result).text.startswith("Choose your language:\n/lang en — English\n")
    assert result.session == replace(before, touched_at=NOW_MS)


def test_lang_when_idle_only_confirms(flows: FlowSet) -> None:
    """/lang with nothing in progress confirms the language and asks nothing."""
    result = run(flows, Session(language="en", touched_at=RECENT_MS), "/lang pt")
    assert plain(result) == (Reply("Idioma definido: Português."),)
    assert result.session.language == "pt"


def test_language_button_switches_and_reasks(flows: FlowSet) -> None:
    """A lang: button switches the language and asks the current question again in it."""
    before = at("detention", "when", {"what": "detention"})
    result = run(flows, before, "Español", button="lang:es")
    assert plain(result) == (Reply("Idioma elegido: Español."), Reply(SPANISH_WHEN))
    assert result.session.language == "es"


def test_language_button_beats_a_quiet_draft(flows: FlowSet) -> None:
    """A lang: button after a silence switches without the resume question."""
    quiet = at("detention", "when", touched_at=NOW_MS - 3_600_000)
    result = run(flows, quiet, "Español", button="lang:es")
    assert not result.session.resuming
    assert plain(result)[-1] == Reply(SPANISH_WHEN)


def test_answers_in_another_language(flows: FlowSet) -> None:
    """Skip and yes words of the defender's language work, and English ones still do."""
    session = at("threat", "credible", language="es")
    assert run(flows, session, "sí").session.answers["credible"] == "yes"
    assert run(flows, session, "yes").session.answers["credible"] == "yes"
    assert run(flows, session, "saltar").session.answers["credible"] is None


@pytest.mark.parametrize(
    ("hint", "language"),
    [("pt-BR", "pt"), ("pt_BR", "pt"), ("PT", "pt"), ("ar", "ar"), ("xx", "en"), (None, "en")],
)
def test_first_contact_picks_the_language_and_offers_others(
    flows: FlowSet, hint: str | None, language: str
) -> None:
    """On first contact the app's language is used if offered (else the default), and the
    language offer comes first, with a button for every other language."""
    fresh = Session(language="en", touched_at=NOW_MS)
    result = run(flows, fresh, "hello", first_contact=True, language_hint=hint)
    assert result.session.language == language
    offer = result.effects[0]
    assert isinstance(offer, Reply)
    assert offer.text == flows.text(language, "language_offer", name=LANGUAGE_NAMES[language])
    assert [c.data for c in offer.choices] == [f"lang:{c}" for c in LANGUAGE_NAMES if c != language]
    assert plain(result)[1:] == (
        Reply(flows.text(language, "intro", flows.flows["intake"])),
        ask(flows, "intake", "what", language),
    )


def test_first_contact_offer_text_in_english_and_portuguese(flows: FlowSet) -> None:
    """The offer names the language chosen and how to change it."""
    fresh = Session(language="en", touched_at=NOW_MS)
    english = run(flows, fresh, "hi", first_contact=True).effects[0]
    assert english == Reply(
        "Language: English. To change it, press a button below or send /lang.",
        english.choices if isinstance(english, Reply) else (),
    )
    portuguese = run(flows, fresh, "oi", first_contact=True, language_hint="pt-BR").effects[0]
    assert isinstance(portuguese, Reply)
    assert portuguese.text == (
        "Idioma: Português. Para mudar, toque em um botão abaixo ou envie /lang."
    )


def test_first_contact_sos_pages_before_the_offer(flows: FlowSet) -> None:
    """A first message SOS opens the case first; the language offer comes after it."""
    fresh = Session(language="en", touched_at=NOW_MS)
    result = run(flows, fresh, "socorro", first_contact=True, language_hint="es")
    assert isinstance(result.effects[0], OpenCase)
    assert result.effects[0].kind is FlowKind.SOS
    offer = result.effects[-1]
    assert isinstance(offer, Reply)
    assert offer.text == ("Idioma: Español. Para cambiarlo, pulse un botón de abajo o envíe /lang.")
    assert result.session.language == "es"


@pytest.mark.parametrize(
    ("text", "button"), [("/lang fr", None), ("/lang", None), ("Français", "lang:fr")]
)
def test_first_contact_choosing_a_language_gets_no_offer(
    flows: FlowSet, text: str, button: str | None
) -> None:
    """A first message that already chooses a language is not answered with the offer."""
    fresh = Session(language="en", touched_at=NOW_MS)
    result = run(flows, fresh, text, first_contact=True, button=button)
    language = result.session.language
    offer = flows.text(language, "language_offer", name=LANGUAGE_NAMES[language])
    assert offer not in [e.text for e in result.effects if isinstance(e, Reply)]
    assert len(result.effects) == 1


def test_no_offer_after_first_contact(flows: FlowSet) -> None:
    """Later messages get no language offer."""
    result = run(flows, Session(language="pt", touched_at=RECENT_MS), "oi")
    assert all(
        not c.data.startswith("lang:")
        for e in result.effects
        if isinstance(e, Reply)
        for c in e.choices
    )


def test_arabic_texts_isolate_latin_tokens(flows: FlowSet) -> None:
    """Arabic texts wrap references and commands in LRI…PDI so they read left to right."""
    alerting = flows.text("ar", "alerting", flows.flows["danger_now"], ref=REF)
    assert f"{LRI}{REF}{PDI}" in alerting
    offer = flows.text("ar", "language_offer", name="English")
    assert f"{LRI}/lang{PDI}" in offer and f"{LRI}English{PDI}" in offer


@pytest.mark.parametrize("language", ["ar", "fa"])
def test_rtl_question_isolates_the_option_numbers(flows: FlowSet, language: str) -> None:
    """In a right-to-left language every option number is wrapped in LRI…PDI."""
    result = run(flows, Session(language=language, touched_at=RECENT_MS), "/start")
    lines = last_reply(result).text.split("\n")
    for number in range(1, 10):
        assert f"{LRI}{number}{PDI}" in lines[number]


def test_rtl_resume_question_and_language_menu_isolate_numbers(flows: FlowSet) -> None:
    """The resume question's numbers and the language menu's commands are isolated too."""
    quiet = at("detention", "when", language="ar", touched_at=NOW_MS - 3_600_000)
    resume = last_reply(run(flows, quiet, "مرحبا")).text.split("\n")
    assert f"{LRI}1{PDI}" in resume[1] and f"{LRI}2{PDI}" in resume[2]
    language_menu = last_reply(run(flows, quiet, "/lang")).text.split("\n")
    assert language_menu[1].startswith(f"{LRI}/lang{PDI} {LRI}en{PDI} — ")


# --- resuming after a silence --------------------------------------------------------------

QUIET = timedelta(minutes=31)


def quiet_detention(**kw: Any) -> Session:
    """A detention draft at "when", last touched 31 minutes ago."""
    kw.setdefault("touched_at", NOW_MS - int(QUIET.total_seconds() * 1000))
    return at("detention", "when", {"what": "detention"}, **kw)


def test_a_message_after_a_silence_asks_whether_to_continue(flows: FlowSet) -> None:
    """After resume_after of silence a typed message is not taken as an answer: the
    defender is asked to continue or start again, with buttons; the draft is kept."""
    result = run(flows, quiet_detention(), "1")
    assert plain(result) == (Reply(RESUME),)
    nonce = result.session.nonce
    assert nonce != NONCE
    assert [(c.label, c.data) for c in last_reply(result).choices] == [
        ("Continue where I stopped", f"resume::{nonce}:1"),
        ("Start again", f"resume::{nonce}:2"),
    ]
    assert result.session.resuming
    assert result.session.answers == {"what": "detention"}
    assert not opened(result.effects)


def test_no_resume_question_before_resume_after(flows: FlowSet) -> None:
    """29 minutes of silence is not enough: the message answers the question."""
    session = quiet_detention(touched_at=NOW_MS - 29 * 60_000)
    assert run(flows, session, "4").session.answers["when"] == "earlier"


def test_resume_after_is_configurable(flows: FlowSet) -> None:
    """A shorter resume_after asks sooner."""
    session = quiet_detention(touched_at=NOW_MS - 6 * 60_000)
    timing = Timing(resume_after=timedelta(minutes=5))
    assert run(flows, session, "4", timing=timing).session.resuming


@pytest.mark.parametrize("answer", ["1", "yes", "Y"])
def test_continue_asks_the_question_again(flows: FlowSet, answer: str) -> None:
    """Continue asks the question the defender stopped at, with the draft intact."""
    asked = run(flows, quiet_detention(), "hi").session
    result = run(flows, asked, answer)
    assert plain(result) == (Reply(DETENTION_WHEN),)
    assert not result.session.resuming
    assert (result.session.step, result.session.answers) == ("when", {"what": "detention"})
    assert run(flows, result.session, "4").session.answers["when"] == "earlier"


@pytest.mark.parametrize("answer", ["2", "no"])
def test_start_again_drops_the_draft(flows: FlowSet, answer: str) -> None:
    """Start again drops the draft and shows the intro and the menu."""
    asked = run(flows, quiet_detention(), "hi").session
    result = run(flows, asked, answer)
    assert plain(result)[0] == Reply(INTRO)
    assert last_reply(result).text.startswith(MENU_PROMPT + "\n1. ")
    assert (result.session.flow, result.session.answers) == ("intake", {})
    assert not result.session.resuming


def test_resume_buttons(flows: FlowSet) -> None:
    """The resume buttons answer; a resume button of an earlier prompt is refused and the
    prompt asked again."""
    asked = run(flows, quiet_detention(), "hi")
    cont, restart = (c.data for c in last_reply(asked).choices)
    assert run(flows, asked.session, "x", button=cont).session.step == "when"
    assert run(flows, asked.session, "x", button=restart).session.step == "what"
    stale = run(flows, asked.session, "x", button="resume::000000:1")
    assert plain(stale) == (
        Reply("That button belongs to an earlier question. Here is the current one:"),
        Reply(RESUME),
    )
    assert stale.session.resuming


def test_resume_answer_not_understood(flows: FlowSet) -> None:
    """Anything else asks for 1 or 2 and keeps waiting."""
    asked = run(flows, quiet_detention(), "hi").session
    result = run(flows, asked, "Kabul")
    assert plain(result) == (Reply("Please reply with a number from 1 to 2."),)
    assert result.session.resuming


def test_buttons_of_the_question_asked_on_continue_answer_it(flows: FlowSet) -> None:
    """After Continue, pressing a button of the question just re-asked answers it."""
    asked = run(flows, quiet_detention(), "hi").session
    continued = run(flows, asked, "1")
    button = last_reply(continued).choices[3].data  # "Earlier"
    result = run(flows, continued.session, "Earlier", button=button)
    assert result.session.answers == {"what": "detention", "when": "earlier"}


def test_language_button_during_the_resume_question_stays_consistent(flows: FlowSet) -> None:
    """Switching language while asked whether to continue shows what the session waits
    for: the resume question again, or the flow's question with the resume prompt gone."""
    asked = run(flows, quiet_detention(), "hi").session
    result = run(flows, asked, "Español", button="lang:es")
    shown = last_reply(result).text
    assert result.session.resuming  # still waiting for "continue or start again?"
    assert shown.startswith(flows.text("es", "resume_question"))
    continued = run(flows, result.session, "1")
    assert last_reply(continued).text == SPANISH_WHEN
    assert continued.session.answers.get("what") == "detention"


def test_sos_during_a_silence_or_the_resume_question(flows: FlowSet) -> None:
    """SOS is never held up by the resume question."""
    for session in (quiet_detention(), run(flows, quiet_detention(), "hi").session):
        result = run(flows, session, "SOS")
        assert isinstance(result.effects[0], OpenCase)
        assert result.effects[0].kind is FlowKind.SOS
        assert not result.session.resuming


def test_commands_during_a_silence_skip_the_resume_question(flows: FlowSet) -> None:
    """A command after a silence is carried out at once."""
    result = run(flows, quiet_detention(), "/help")
    assert plain(result)[-1] == Reply(DETENTION_WHEN)
    assert not result.session.resuming


def test_commands_answer_the_resume_question(flows: FlowSet) -> None:
    """A command while the resume question is pending is carried out and ends the prompt."""
    asked = run(flows, quiet_detention(), "hi").session
    cancelled = run(flows, asked, "/cancel")
    assert plain(cancelled) == (
        Reply(
            "Stopped. What you typed in this form has been deleted. Send /start to begin "
            "again, or SOS if you are in danger."
        ),
    )
    assert cancelled.session.flow is None
    helped = run(flows, asked, "/help")
    assert plain(helped)[-1] == Reply(DETENTION_WHEN)
    assert not helped.session.resuming


def test_a_button_of_the_question_on_screen_after_a_silence_answers_it(flows: FlowSet) -> None:
    """Pressing a button of the question on screen is deliberate: no resume question."""
    result = run(flows, quiet_detention(), "Earlier", button=f"detention:when:{NONCE}:4")
    assert result.session.answers == {"what": "detention", "when": "earlier"}
    assert not result.session.resuming


# --- draft expiry --------------------------------------------------------------------------


def test_an_expired_draft_is_dropped(flows: FlowSet) -> None:
    """After draft_expiry the draft is gone: the defender is told, then the message is
    handled as from someone with nothing in progress."""
    old = quiet_detention(touched_at=NOW_MS - 24 * 3_600_000)
    result = run(flows, old, "2")
    assert plain(result)[:2] == (Reply(DRAFT_EXPIRED), Reply(INTRO))
    assert last_reply(result).text.startswith(MENU_PROMPT + "\n1. ")
    assert (result.session.flow, result.session.answers) == ("intake", {})


def test_just_before_expiry_the_resume_question_is_asked(flows: FlowSet) -> None:
    """Just short of draft_expiry the draft is kept and the resume question asked."""
    old = quiet_detention(touched_at=NOW_MS - 24 * 3_600_000 + 1000)
    assert plain(run(flows, old, "2")) == (Reply(RESUME),)


def test_an_expired_draft_then_sos(flows: FlowSet) -> None:
    """SOS on an expired draft opens the case and asks the follow-up; the expiry note comes
    with it."""
    result = run(flows, quiet_detention(touched_at=0), "SOS")
    assert [e for e in result.effects if isinstance(e, OpenCase)] == [
        OpenCase(
            kind=FlowKind.SOS,
            flow_id="sos",
            flow_ids=("sos",),
            tier_floor="critical",
            answers={},
            reply_key="opened",
            repeat_key="repeated",
        )
    ]
    assert isinstance(result.effects[0], OpenCase)  # the alarm first, the note after
    assert list(plain(result)[-2:]) == [
        Reply("If you can, tell us in a few words what is happening.\n(Reply skip to skip.)"),
        Reply(DRAFT_EXPIRED),
    ]
    assert (result.session.flow, result.session.step) == ("sos", "what")


def test_an_expired_draft_with_an_open_case_adds_the_message(flows: FlowSet) -> None:
    """After expiry a defender with an open case has the message added to it."""
    old = quiet_detention(touched_at=NOW_MS - 30 * 3_600_000)
    result = run(flows, old, "they moved him", open_case_ref=REF)
    assert result.effects[:2] == (
        Reply(DRAFT_EXPIRED),
        AddToCase(REF, "message", "they moved him"),
    )


def test_a_draft_deleted_by_the_sweep_is_announced_once(flows: FlowSet) -> None:
    """A draft the expiry sweep deleted (session.expired) is announced on the next message,
    which is then handled from scratch; the note is not repeated."""
    swept = Session(language="en", touched_at=RECENT_MS, expired=True)
    result = run(flows, swept, "hello")
    assert plain(result)[:2] == (Reply(DRAFT_EXPIRED), Reply(INTRO))
    assert not result.session.expired
    assert plain(run(flows, result.session, "/help"))[0] != Reply(DRAFT_EXPIRED)


def test_expiry_is_configurable_and_idle_sessions_never_expire(flows: FlowSet) -> None:
    """draft_expiry comes from Timing; a session without a draft has nothing to expire."""
    timing = Timing(resume_after=timedelta(minutes=5), draft_expiry=timedelta(hours=1))
    old = quiet_detention(touched_at=NOW_MS - 2 * 3_600_000)
    assert run(flows, old, "hi", timing=timing).effects[0] == Reply(DRAFT_EXPIRED)
    idle = Session(language="en", touched_at=0)
    assert plain(run(flows, idle, "hi"))[0] == Reply(INTRO)


# --- every step of every flow --------------------------------------------------------------


def all_questions(flows: FlowSet) -> list[tuple[str, str]]:
    """Every (flow, step) a session can wait at."""
    return [
        (flow.id, s.id)
        for flow in flows.flows.values()
        for s in flow.steps.values()
        if s.type not in (StepType.OPEN, StepType.END)
    ]


def test_every_question_can_be_skipped(flows: FlowSet) -> None:
    """At every question of every flow, "skip" is understood (never refused)."""
    refusal = "Please reply with a number"
    for flow_id, step_id in all_questions(flows):
        result = run(flows, at(flow_id, step_id, case_ref=REF if flow_id == "sos" else None), "0")
        for effect in result.effects:
            assert not (isinstance(effect, Reply) and effect.text.startswith(refusal)), (
                flow_id,
                step_id,
            )
            assert not (isinstance(effect, Reply) and effect.text == DATE_INVALID)


@SETTINGS
@given(data=st.data(), text=st.text(max_size=40))
def test_any_text_at_any_question_in_any_language(data: st.DataObject, text: str) -> None:
    """Any text at any question of any flow, in any language, with or without a case bound,
    never raises and gets at least one effect; a refusal keeps the session where it was."""
    flows = shipped_flows()
    flow_id, step_id = data.draw(st.sampled_from(all_questions(flows)), label="question")
    language = data.draw(st.sampled_from(sorted(LANGUAGE_NAMES)), label="language")
    case_ref = REF if flow_id == "sos" else data.draw(st.none() | st.just(REF))
    session = at(flow_id, step_id, language=language, case_ref=case_ref)
    result = run(flows, session, text)
    assert result.effects
    if result.session.flow == flow_id and result.session.step == step_id:
        assert result.session.answers == session.answers or step_id in result.session.answers
