"""Unit tests for bot.conversation.engine: the pure step function over the real flows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation.engine import (
    AddToCase,
    Effect,
    OpenCase,
    Reply,
    Scrub,
    Session,
    ShowStatus,
    StepInput,
    StepResult,
    question,
    step,
)
from bot.conversation.loader import load_flows
from bot.conversation.model import FlowKind, FlowSet, StepType

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
SETTINGS = settings(database=None, deadline=None)
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
REF = "K7Q2"

FIRST_QUESTION = (
    "What is happening?\n"
    "1. Detention or arrest\n"
    "2. Physical attack\n"
    "3. Threat\n"
    "4. Judicial harassment or a summons\n"
    "5. Digital incident (account, phone, surveillance)\n"
    "6. I need to relocate\n"
    "7. Something else\n"
    "Reply with a number. (Reply 0 to skip.)"
)
SOS_FIRST_QUESTION = "If you can, tell us in a few words what is happening.\n(Reply skip to skip.)"
OUT_OF_RANGE_7 = "Please reply with a number from 1 to 7."
OUT_OF_RANGE_2 = "Please reply with a number from 1 to 2."
WHAT_OPTIONS = ["detention", "attack", "threat", "judicial", "digital", "relocation", "other"]
FULL_ANSWERS = {
    "what": "detention",
    "when": "upcoming",
    "date": "12 March",
    "where": "Tehran",
    "needs": "legal",
    "consent": "yes",
}


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    """The real flows shipped in flows/."""
    return load_flows(FLOWS_DIR)


def run(flows: FlowSet, session: Session, text: str, **kwargs: Any) -> StepResult:
    """Run one engine step at NOW; replies are compared by text (buttons and chat scrubbing
    have their own tests below), so choices and Scrub effects are left out."""
    result = run_raw(flows, session, text, **kwargs)
    effects = tuple(
        Reply(e.text) if isinstance(e, Reply) else e
        for e in result.effects
        if not isinstance(e, Scrub)
    )
    return StepResult(result.session, effects)


def run_raw(flows: FlowSet, session: Session, text: str, **kwargs: Any) -> StepResult:
    """Run one engine step at NOW and return exactly what the engine returned."""
    return step(flows, session, StepInput(text, **kwargs), NOW)


def txt(flows: FlowSet, key: str, flow_id: str | None = None, **params: object) -> str:
    """Render an English text, looked up in flow ``flow_id`` first if given."""
    flow = flows.flows[flow_id] if flow_id else None
    return flows.text("en", key, flow, **params)


def ask(flows: FlowSet, flow_id: str, step_id: str) -> Reply:
    """The Reply that asks step ``step_id`` of ``flow_id``."""
    flow = flows.flows[flow_id]
    return Reply(question(flows, flow, flow.steps[step_id], "en"))


def idle() -> Session:
    """A brand-new defender's session."""
    return Session(language="en")


def at(flow: str, step_id: str, answers: dict[str, str | None] | None = None, **kw: Any) -> Session:
    """A session waiting at ``step_id`` of ``flow``."""
    return Session(language="en", flow=flow, step=step_id, answers=answers or {}, **kw)


def sos_case() -> OpenCase:
    """The OpenCase effect an SOS must produce."""
    return OpenCase(
        kind=FlowKind.SOS,
        flow_id="sos",
        tier_floor="critical",
        answers={},
        reply_key="opened",
        repeat_key="repeated",
    )


def converse(flows: FlowSet, texts: list[str]) -> tuple[Session, list[Effect]]:
    """Send ``texts`` one after another from a fresh session; return the last session and
    every effect produced along the way."""
    session = idle()
    effects: list[Effect] = []
    for text in texts:
        result = run(flows, session, text)
        session = result.session
        effects.extend(result.effects)
    return session, effects


# --- starting the intake -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello", "مرحبا", "1", "help me please"])
def test_first_message_starts_intake(flows: FlowSet, text: str) -> None:
    """Any first message with no flow in progress replies with the intro and the first question."""
    result = run(flows, idle(), text)
    assert result.effects == (Reply(txt(flows, "intro", "intake")), Reply(FIRST_QUESTION))
    assert result.session.flow == "intake"
    assert result.session.step == "what"
    assert result.session.answers == {}


def test_intro_text_is_the_flow_intro(flows: FlowSet) -> None:
    """The intro reply is the intake flow's own intro text."""
    result = run(flows, idle(), "hi")
    first = result.effects[0]
    assert isinstance(first, Reply)
    assert first.text.startswith("You are talking to the emergency line")


def test_step_stamps_touched_at(flows: FlowSet) -> None:
    """Every step records ``now`` in epoch milliseconds as touched_at."""
    result = run(flows, Session(language="en", touched_at=5), "hi")
    assert result.session.touched_at == NOW_MS


@pytest.mark.parametrize("command", ["/start", "/START", "/start@SomeBot", "/start now"])
def test_start_restarts_intake_and_drops_draft(flows: FlowSet, command: str) -> None:
    """/start (also addressed to a bot) re-asks the first question and forgets the draft."""
    draft = at("intake", "needs", {"what": "attack", "when": "now", "where": "Kabul"})
    result = run(flows, draft, command)
    assert result.effects == (Reply(txt(flows, "intro", "intake")), Reply(FIRST_QUESTION))
    assert (result.session.flow, result.session.step) == ("intake", "what")
    assert result.session.answers == {}


def test_start_during_sos_followups_starts_intake(flows: FlowSet) -> None:
    """/start during SOS follow-ups leaves them and starts a fresh intake with no case bound."""
    result = run(flows, at("sos", "where", case_ref=REF), "/start")
    assert result.effects[-1] == Reply(FIRST_QUESTION)
    assert (result.session.flow, result.session.step, result.session.case_ref) == (
        "intake",
        "what",
        None,
    )


# --- answering choices ---------------------------------------------------------------------


@pytest.mark.parametrize(("number", "option"), list(enumerate(WHAT_OPTIONS, start=1)))
def test_answer_by_number(flows: FlowSet, number: int, option: str) -> None:
    """A number picks the option at that position and moves on to the next question."""
    result = run(flows, at("intake", "what"), str(number))
    assert result.session.answers == {"what": option}
    assert result.session.step == "when"
    assert result.effects == (ask(flows, "intake", "when"),)


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("Physical attack", "attack"),
        ("PHYSICAL ATTACK", "attack"),
        ("threat", "threat"),
        ("Threat.", "threat"),
        ("  detention or ARREST ", "detention"),
        ("i need to relocate", "relocation"),
    ],
)
def test_answer_by_label_case_insensitive(flows: FlowSet, text: str, option: str) -> None:
    """An option's label, in any case and with a trailing full stop, picks that option."""
    result = run(flows, at("intake", "what"), text)
    assert result.session.answers == {"what": option}
    assert result.session.step == "when"


@pytest.mark.parametrize("text", ["0", "skip", "SKIP", "Skip."])
def test_skip_stores_none(flows: FlowSet, text: str) -> None:
    """Skipping a choice stores None for it and moves on."""
    result = run(flows, at("intake", "what"), text)
    assert "what" in result.session.answers
    assert result.session.answers["what"] is None
    assert result.session.step == "when"
    assert result.effects == (ask(flows, "intake", "when"),)


@pytest.mark.parametrize("text", ["8", "99", "00", "-1", "1.5", "banana", "1 2", "detention!"])
def test_choice_not_understood_keeps_step(flows: FlowSet, text: str) -> None:
    """An out-of-range number or garbage gets exactly the out-of-range reply and the same step."""
    before = at("intake", "what", {})
    result = run(flows, before, text)
    assert result.effects == (Reply(OUT_OF_RANGE_7),)
    assert result.session == replace(before, touched_at=NOW_MS)


def test_out_of_range_names_the_step_option_count(flows: FlowSet) -> None:
    """The out-of-range reply on a four-option step names 4 as the maximum."""
    result = run(flows, at("intake", "when", {"what": "threat"}), "5")
    assert result.effects == (Reply("Please reply with a number from 1 to 4."),)
    assert result.session.step == "when"


def test_answers_accumulate(flows: FlowSet) -> None:
    """An answer is added to the earlier answers without losing them."""
    result = run(flows, at("intake", "when", {"what": "threat"}), "2")
    assert result.session.answers == {"what": "threat", "when": "day"}


# --- conditional next ----------------------------------------------------------------------


def test_upcoming_goes_to_date(flows: FlowSet) -> None:
    """when = upcoming leads to the date question."""
    result = run(flows, at("intake", "when", {"what": "judicial"}), "3")
    assert result.session.step == "date"
    assert result.effects == (ask(flows, "intake", "date"),)


@pytest.mark.parametrize("text", ["1", "2", "4", "0", "In the past"])
def test_other_when_goes_to_where(flows: FlowSet, text: str) -> None:
    """Any other when answer, including skipped, leads straight to the where question."""
    result = run(flows, at("intake", "when", {"what": "judicial"}), text)
    assert result.session.step == "where"
    assert result.effects == (ask(flows, "intake", "where"),)


def test_text_step_stores_text_verbatim(flows: FlowSet) -> None:
    """A free-text answer is stored exactly as typed, even if it looks like a number."""
    result = run(flows, at("intake", "where", {"what": None, "when": None}), "7")
    assert result.session.answers["where"] == "7"
    assert result.session.step == "needs"


def test_text_step_question_rendering(flows: FlowSet) -> None:
    """A text step's question is its prompt plus the text skip hint."""
    assert ask(flows, "intake", "where").text == (
        "Where are you, roughly? A country and city or region is enough — please do not send "
        "an exact address.\n(Reply skip to skip.)"
    )


def test_yesno_question_rendering(flows: FlowSet) -> None:
    """A yes/no step's question numbers Yes and No and offers skipping with 0."""
    assert ask(flows, "intake", "consent").text == (
        "May we store what you told us, encrypted, and share it with our responder team so "
        "they can help you?\n1. Yes\n2. No\n(Reply 0 to skip.)"
    )


# --- consent -------------------------------------------------------------------------------

CONSENT_DRAFT: dict[str, str | None] = {k: v for k, v in FULL_ANSWERS.items() if k != "consent"}


@pytest.mark.parametrize("text", ["yes", "y", "1", "YES", "Yes."])
def test_consent_yes_opens_case(flows: FlowSet, text: str) -> None:
    """A yes to consent hands over every answer in one OpenCase and leaves the session idle."""
    result = run(flows, at("intake", "consent", dict(CONSENT_DRAFT)), text)
    assert result.effects == (
        OpenCase(
            kind=FlowKind.INTAKE,
            flow_id="intake",
            tier_floor=None,
            answers=FULL_ANSWERS,
            reply_key="submitted",
        ),
    )
    assert (result.session.flow, result.session.step) == (None, None)
    assert result.session.answers == {}


@pytest.mark.parametrize("text", ["no", "n", "2", "NO", "0", "skip"])
def test_consent_no_or_skipped_stores_nothing(flows: FlowSet, text: str) -> None:
    """A no (or a skip) to consent says nothing was stored, opens no case, deletes the draft."""
    result = run(flows, at("intake", "consent", dict(CONSENT_DRAFT)), text)
    assert result.effects == (Reply(txt(flows, "not_stored", "intake")),)
    assert (result.session.flow, result.session.step) == (None, None)
    assert result.session.answers == {}


@pytest.mark.parametrize("text", ["maybe", "3", "yess", "ok"])
def test_consent_not_understood(flows: FlowSet, text: str) -> None:
    """Anything but yes/no/skip at consent asks for 1 or 2 and keeps the draft."""
    before = at("intake", "consent", dict(CONSENT_DRAFT))
    result = run(flows, before, text)
    assert result.effects == (Reply(OUT_OF_RANGE_2),)
    assert result.session == replace(before, touched_at=NOW_MS)


def test_full_intake_with_consent(flows: FlowSet) -> None:
    """A whole conversation ending in yes opens exactly one case with all the answers."""
    session, effects = converse(flows, ["hi", "1", "3", "12 March", "Tehran", "1", "yes"])
    opened = [e for e in effects if isinstance(e, OpenCase)]
    assert opened == [
        OpenCase(
            kind=FlowKind.INTAKE,
            flow_id="intake",
            tier_floor=None,
            answers=FULL_ANSWERS,
            reply_key="submitted",
        )
    ]
    assert effects[-1] == opened[0]
    assert session == Session(language="en", touched_at=NOW_MS)


@pytest.mark.parametrize("last", ["no", "0"])
def test_full_intake_without_consent_never_opens(flows: FlowSet, last: str) -> None:
    """A whole conversation ending in no or skip never produces an OpenCase at any step."""
    session, effects = converse(flows, ["hi", "2", "1", "Herat", "3", last])
    assert not [e for e in effects if isinstance(e, OpenCase | AddToCase)]
    assert effects[-1] == Reply(txt(flows, "not_stored", "intake"))
    assert session.answers == {}
    assert session.flow is None


# --- SOS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["SOS", "sos", "  Sos  ", "sOs"])
def test_sos_at_idle(flows: FlowSet, text: str) -> None:
    """SOS when idle opens a critical SOS case first, then asks the first follow-up."""
    result = run(flows, idle(), text)
    assert result.effects == (sos_case(), Reply(SOS_FIRST_QUESTION))
    assert (result.session.flow, result.session.step) == ("sos", "what")
    assert result.session.answers == {}
    assert result.session.case_ref is None


@pytest.mark.parametrize("text", ["SOS", "sos", "  Sos  "])
def test_sos_mid_intake_drops_draft(flows: FlowSet, text: str) -> None:
    """SOS in the middle of an intake opens the SOS case first and drops the intake draft."""
    draft = at("intake", "where", {"what": "threat", "when": "now"})
    result = run(flows, draft, text)
    assert result.effects == (sos_case(), Reply(SOS_FIRST_QUESTION))
    assert (result.session.flow, result.session.step) == ("sos", "what")
    assert result.session.answers == {}


@pytest.mark.parametrize("step_id", ["what", "where"])
def test_sos_during_sos_followups(flows: FlowSet, step_id: str) -> None:
    """SOS again during follow-ups re-alerts first and restarts the follow-ups."""
    result = run(flows, at("sos", step_id, case_ref=REF), "SOS")
    assert result.effects == (sos_case(), Reply(SOS_FIRST_QUESTION))
    assert (result.session.flow, result.session.step) == ("sos", "what")


def test_sos_with_open_case_still_opens_sos(flows: FlowSet) -> None:
    """SOS is not swallowed as an addition to an open case."""
    result = run(flows, idle(), "SOS", open_case_ref=REF)
    assert result.effects[0] == sos_case()
    assert not [e for e in result.effects if isinstance(e, AddToCase)]


def test_truncated_sos_notice_comes_before_open_case(flows: FlowSet) -> None:
    """With a truncation notice, the notice comes first and the OpenCase second."""
    result = run(flows, idle(), "SOS", truncated_to=2000)
    assert result.effects == (
        Reply(txt(flows, "truncated", limit=2000)),
        sos_case(),
        Reply(SOS_FIRST_QUESTION),
    )


@pytest.mark.parametrize("text", ["SOS!", "sos.", "S.O.S", "S O S", "¡SOS!", "«SOS»"])
def test_sos_with_punctuation_or_spacing_is_still_sos(flows: FlowSet, text: str) -> None:
    """A frightened person's 'SOS!' or 'S O S' is an alarm: spaces and punctuation are ignored."""
    result = run(flows, idle(), text)
    assert isinstance(result.effects[0], OpenCase) and result.effects[0].kind is FlowKind.SOS


@pytest.mark.parametrize("text", ["SOS please", "I need SOS", "SOSOS", "so s please"])
def test_sos_must_be_whole_message(flows: FlowSet, text: str) -> None:
    """A message that merely contains SOS starts the intake instead of opening an SOS case."""
    result = run(flows, idle(), text)
    assert not [e for e in result.effects if isinstance(e, OpenCase)]
    assert result.session.flow == "intake"


def test_sos_please_mid_intake_is_an_answer(flows: FlowSet) -> None:
    """'SOS please' at a free-text step is stored as the answer, not treated as SOS."""
    result = run(flows, at("intake", "where", {"what": None, "when": None}), "SOS please")
    assert result.session.answers["where"] == "SOS please"
    assert result.effects == (ask(flows, "intake", "needs"),)


def test_sos_followup_answer_added_to_case(flows: FlowSet) -> None:
    """A follow-up answer is added to the bound case at once and not kept in the session."""
    result = run(flows, at("sos", "what", case_ref=REF), "they are at my door")
    assert result.effects == (
        AddToCase(REF, "what", "they are at my door"),
        ask(flows, "sos", "where"),
    )
    assert result.session.step == "where"
    assert result.session.answers == {}
    assert result.session.case_ref == REF


@pytest.mark.parametrize("text", ["skip", "0"])
def test_sos_followup_skip_adds_nothing(flows: FlowSet, text: str) -> None:
    """Skipping a follow-up adds nothing to the case and moves on."""
    result = run(flows, at("sos", "what", case_ref=REF), text)
    assert result.effects == (ask(flows, "sos", "where"),)
    assert result.session.step == "where"


def test_sos_last_followup_closes(flows: FlowSet) -> None:
    """The last follow-up adds the answer, thanks with the ref, and leaves the session idle."""
    result = run(flows, at("sos", "where", case_ref=REF), "Gaza City")
    done = txt(flows, "done", "sos", ref=REF)
    assert result.effects == (AddToCase(REF, "where", "Gaza City"), Reply(done))
    assert REF in done
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_sos_last_followup_skipped_closes(flows: FlowSet) -> None:
    """Skipping the last follow-up still thanks with the ref and leaves the session idle."""
    result = run(flows, at("sos", "where", case_ref=REF), "skip")
    assert result.effects == (Reply(txt(flows, "done", "sos", ref=REF)),)
    assert result.session.flow is None
    assert result.session.case_ref is None


# --- commands ------------------------------------------------------------------------------


def test_help_in_intake_reasks(flows: FlowSet) -> None:
    """/help replies with the help text and re-asks the current question, keeping the draft."""
    before = at("intake", "when", {"what": "attack"})
    result = run(flows, before, "/help")
    assert result.effects == (Reply(txt(flows, "help")), ask(flows, "intake", "when"))
    assert result.session == replace(before, touched_at=NOW_MS)


def test_help_when_idle(flows: FlowSet) -> None:
    """/help when idle is only the help text and starts nothing."""
    result = run(flows, idle(), "/help")
    assert result.effects == (Reply(txt(flows, "help")),)
    assert result.session.flow is None


def test_status_in_intake_reasks(flows: FlowSet) -> None:
    """/status asks for the status and re-asks the current question."""
    before = at("intake", "consent", dict(CONSENT_DRAFT))
    result = run(flows, before, "/status")
    assert result.effects == (ShowStatus(), ask(flows, "intake", "consent"))
    assert result.session == replace(before, touched_at=NOW_MS)


def test_status_when_idle(flows: FlowSet) -> None:
    """/status when idle is only ShowStatus."""
    result = run(flows, idle(), "/status", open_case_ref=REF)
    assert result.effects == (ShowStatus(),)


def test_cancel_in_intake_deletes_draft(flows: FlowSet) -> None:
    """/cancel in an intake says the typed text was deleted and empties the draft."""
    result = run(flows, at("intake", "needs", {"what": "attack", "where": "Minsk"}), "/cancel")
    assert result.effects == (Reply(txt(flows, "cancelled")),)
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_cancel_in_sos_followups_names_ref(flows: FlowSet) -> None:
    """/cancel in SOS follow-ups says the alert with its ref stays active."""
    result = run(flows, at("sos", "where", case_ref=REF), "/cancel")
    expected = txt(flows, "cancelled_sos", ref=REF)
    assert REF in expected
    assert result.effects == (Reply(expected),)
    assert result.session.flow is None
    assert result.session.case_ref is None


def test_cancel_when_idle(flows: FlowSet) -> None:
    """/cancel with nothing in progress says there is nothing to cancel."""
    result = run(flows, idle(), "/cancel")
    assert result.effects == (Reply(txt(flows, "nothing_to_cancel")),)
    assert result.session == Session(language="en", touched_at=NOW_MS)


@pytest.mark.parametrize(("text", "named"), [("/foo", "/foo"), ("/FOO bar", "/foo")])
def test_unknown_command_in_intake(flows: FlowSet, text: str, named: str) -> None:
    """An unknown command is named in the reply and the current question is re-asked."""
    before = at("intake", "what")
    result = run(flows, before, text)
    expected = txt(flows, "unknown_command", command=named)
    assert f"command {named}." in expected
    assert result.effects == (Reply(expected), Reply(FIRST_QUESTION))
    assert result.session == replace(before, touched_at=NOW_MS)


def test_unknown_command_when_idle(flows: FlowSet) -> None:
    """An unknown command when idle is named in the reply and starts nothing."""
    result = run(flows, idle(), "/foo")
    assert result.effects == (Reply(txt(flows, "unknown_command", command="/foo")),)
    assert result.session.flow is None


def test_unknown_command_name_is_capped(flows: FlowSet) -> None:
    """A very long unknown command is echoed back at most 40 characters long."""
    result = run(flows, idle(), "/" + "x" * 100)
    first = result.effects[0]
    assert isinstance(first, Reply)
    assert "/" + "x" * 39 in first.text
    assert "x" * 40 not in first.text


# --- empty, truncated, open case -----------------------------------------------------------


@pytest.mark.parametrize("session", [idle(), at("intake", "what"), at("sos", "what", case_ref=REF)])
def test_empty_text(flows: FlowSet, session: Session) -> None:
    """An empty message gets the empty reply and changes nothing else."""
    result = run(flows, session, "")
    assert result.effects == (Reply(txt(flows, "empty")),)
    assert result.session == replace(session, touched_at=NOW_MS)


def test_truncation_notice_first(flows: FlowSet) -> None:
    """A truncated message is announced, with the limit, before anything else happens."""
    result = run(flows, idle(), "hello", truncated_to=2000)
    notice = txt(flows, "truncated", limit=2000)
    assert "2000" in notice
    assert result.effects == (
        Reply(notice),
        Reply(txt(flows, "intro", "intake")),
        Reply(FIRST_QUESTION),
    )


def test_truncation_notice_before_answer(flows: FlowSet) -> None:
    """A truncated answer is announced before the next question."""
    result = run(flows, at("intake", "where", {}), "Tbilisi", truncated_to=2000)
    assert result.effects == (
        Reply(txt(flows, "truncated", limit=2000)),
        ask(flows, "intake", "needs"),
    )


def test_idle_with_open_case_adds_message(flows: FlowSet) -> None:
    """When idle with an open case, a message is added to it instead of starting an intake."""
    result = run(flows, idle(), "they took my phone", open_case_ref=REF)
    assert result.effects == (
        AddToCase(REF, "message", "they took my phone"),
        Reply(txt(flows, "added_to_case", ref=REF)),
    )
    assert result.session.flow is None


def test_start_with_open_case_starts_intake(flows: FlowSet) -> None:
    """/start with an open case still starts a new intake."""
    result = run(flows, idle(), "/start", open_case_ref=REF)
    assert result.session.flow == "intake"
    assert not [e for e in result.effects if isinstance(e, AddToCase)]


def test_open_case_does_not_capture_intake_answers(flows: FlowSet) -> None:
    """During an intake, an open case does not divert answers into it."""
    result = run(flows, at("intake", "what"), "1", open_case_ref=REF)
    assert result.effects == (ask(flows, "intake", "when"),)
    assert result.session.answers == {"what": "detention"}


# --- session serialisation -----------------------------------------------------------------

answer_dicts = st.dictionaries(st.text(max_size=12), st.none() | st.text(), max_size=6)


@SETTINGS
@given(
    answers=answer_dicts,
    flow=st.sampled_from([None, "intake", "sos"]),
    step_id=st.none() | st.text(max_size=8),
    case_ref=st.none() | st.text(max_size=4),
    touched_at=st.integers(min_value=0, max_value=2**53),
)
def test_session_round_trip(
    answers: dict[str, str | None],
    flow: str | None,
    step_id: str | None,
    case_ref: str | None,
    touched_at: int,
) -> None:
    """Session.from_dict(to_dict()) gives back an equal session."""
    session = Session(
        language="fa",
        flow=flow,
        step=step_id,
        answers=answers,
        case_ref=case_ref,
        touched_at=touched_at,
    )
    data = session.to_dict()
    assert data["v"] == 1
    assert Session.from_dict(data) == session


def test_session_from_minimal_dict() -> None:
    """A dict with only a language gives an idle session with defaults."""
    assert Session.from_dict({"language": "ar"}) == Session(language="ar")


def test_to_dict_copies_answers() -> None:
    """to_dict returns a copy of the answers, not the session's own mapping."""
    answers: dict[str, str | None] = {"what": "threat"}
    data = Session(language="en", answers=answers).to_dict()
    data["answers"]["what"] = "changed"
    assert answers == {"what": "threat"}


# --- properties over every reachable state -------------------------------------------------

SPECIAL_TEXTS = [
    "",
    "SOS",
    " sos ",
    "/start",
    "/help",
    "/status",
    "/cancel",
    "/foo",
    "/",
    "0",
    "1",
    "2",
    "7",
    "8",
    "yes",
    "no",
    "skip",
    "Threat",
]
texts = st.text() | st.sampled_from(SPECIAL_TEXTS)


def draw_session(data: st.DataObject, flows: FlowSet) -> Session:
    """Draw a reachable session: idle, or waiting at any non-end step of a loaded flow."""
    flow_id = data.draw(st.sampled_from([None, *sorted(flows.flows)]), label="flow")
    if flow_id is None:
        return Session(language="en")
    flow = flows.flows[flow_id]
    waiting = sorted(s.id for s in flow.steps.values() if s.type is not StepType.END)
    step_id = data.draw(st.sampled_from(waiting), label="step")
    answers: dict[str, str | None] = {}
    case_ref = None
    if flow.kind is FlowKind.INTAKE:
        for s in flow.steps.values():
            if s.type is StepType.END or not data.draw(st.booleans()):
                continue
            values: list[str | None] = [None, *s.options]
            if s.type is StepType.YESNO:
                values += ["yes", "no"]
            answers[s.id] = data.draw(
                st.sampled_from(values) if s.type is not StepType.TEXT else st.none() | st.text()
            )
    else:
        case_ref = data.draw(st.none() | st.just(REF), label="case_ref")
    return Session(language="en", flow=flow_id, step=step_id, answers=answers, case_ref=case_ref)


@SETTINGS
@given(data=st.data())
def test_step_never_raises_and_never_drops(flows: FlowSet, data: st.DataObject) -> None:
    """For any text and any reachable session, step() returns at least one effect."""
    session = draw_session(data, flows)
    message = StepInput(
        text=data.draw(texts, label="text"),
        truncated_to=data.draw(st.none() | st.just(2000), label="truncated_to"),
        open_case_ref=data.draw(st.none() | st.just("M3XB"), label="open_case_ref"),
    )
    result = step(flows, session, message, NOW)
    assert len(result.effects) >= 1
    new = result.session
    if new.flow is not None:
        assert new.step in flows.flows[new.flow].steps
        assert flows.flows[new.flow].steps[new.step].type is not StepType.END


@SETTINGS
@given(data=st.data(), padding=st.sampled_from(["", " ", "  ", "\n"]))
def test_sos_always_first_from_any_state(flows: FlowSet, data: st.DataObject, padding: str) -> None:
    """From any reachable session, SOS yields OpenCase(SOS) as the first effect."""
    session = draw_session(data, flows)
    word = data.draw(st.sampled_from(["SOS", "sos", "Sos", "sOS"]))
    result = run(flows, session, padding + word + padding)
    assert result.effects[0] == sos_case()
    assert result.session.flow == "sos"


@SETTINGS
@given(data=st.data())
def test_intake_case_only_with_consent(flows: FlowSet, data: st.DataObject) -> None:
    """An intake OpenCase only ever comes from the consent step and carries consent = yes."""
    session = draw_session(data, flows)
    result = run(flows, session, data.draw(texts, label="text"))
    intake_cases = [
        e for e in result.effects if isinstance(e, OpenCase) and e.kind is FlowKind.INTAKE
    ]
    if intake_cases:
        assert session.step == "consent"
        assert [c.answers.get("consent") for c in intake_cases] == ["yes"]


def test_huge_number_is_out_of_range(flows: FlowSet) -> None:
    """A 5000-digit number at a choice step gets the out-of-range reply instead of raising."""
    result = run(flows, at("intake", "what"), "1" * 5000)
    assert result.effects == (Reply(OUT_OF_RANGE_7),)


# --- buttons and chat scrubbing --------------------------------------------------------------


def test_choice_questions_offer_buttons_with_flow_step_nonce_and_skip(flows: FlowSet) -> None:
    """A choice question carries one button per option plus Skip; each button's data names
    the flow, the step and the question's nonce, and fits Telegram's 64 bytes."""
    result = run_raw(flows, idle(), "/start")
    ask_reply = result.effects[-1]
    assert isinstance(ask_reply, Reply)
    labels = [c.label for c in ask_reply.choices]
    assert labels[0] == "Detention or arrest" and labels[-1] == "Skip" and len(labels) == 8
    nonce = result.session.nonce
    assert len(nonce) == 6
    assert [c.data for c in ask_reply.choices] == [
        f"intake:what:{nonce}:{n}" for n in (*range(1, 8), 0)
    ]
    assert all(len(c.data.encode()) <= 64 for c in ask_reply.choices)


def test_free_text_questions_have_no_buttons(flows: FlowSet) -> None:
    """A free-text question offers no buttons (the defender types)."""
    result = run_raw(flows, at("intake", "when", {"what": "threat"}), "2")
    ask_reply = result.effects[-1]
    assert isinstance(ask_reply, Reply) and ask_reply.choices == ()


def test_pressing_the_current_button_answers_the_question(flows: FlowSet) -> None:
    """A button of the question being asked answers it like typing its number."""
    started = run_raw(flows, idle(), "/start")
    data = started.effects[-1].choices[2].data  # type: ignore[union-attr]
    result = run_raw(flows, started.session, "Threat", button=data)
    assert result.session.answers == {"what": "threat"} and result.session.step == "when"


def test_the_skip_button_skips(flows: FlowSet) -> None:
    """The Skip button stores no answer and moves on."""
    started = run_raw(flows, idle(), "/start")
    data = started.effects[-1].choices[-1].data  # type: ignore[union-attr]
    result = run_raw(flows, started.session, "Skip", button=data)
    assert result.session.answers == {"what": None} and result.session.step == "when"


@pytest.mark.parametrize(
    "forge",
    [
        lambda d: d,  # pressed again after the question moved on
        lambda d: d.replace("intake", "sos"),
        lambda d: d.rsplit(":", 1)[0] + ":99",
        lambda d: "garbage",
        lambda d: d.replace(":what:", ":consent:"),
    ],
)
def test_a_stale_or_forged_button_is_refused_kindly(flows: FlowSet, forge: Any) -> None:
    """A button from an earlier question, or one whose data was altered, changes nothing: the
    defender is told and asked the current question again."""
    started = run_raw(flows, idle(), "/start")
    old = started.effects[-1].choices[0].data  # type: ignore[union-attr]
    moved = run_raw(flows, started.session, "1")  # now at "when"
    result = run(flows, moved.session, "x", button=forge(old))
    assert result.session.answers == moved.session.answers
    assert result.effects == (
        Reply(txt(flows, "stale_button")),
        ask(flows, "intake", "when"),
    )


def test_a_button_when_idle_is_refused_kindly(flows: FlowSet) -> None:
    """A button pressed after the conversation ended only gets the stale-button note."""
    result = run(flows, idle(), "Yes", button="intake:consent:abcdef:1")
    assert result.effects == (Reply(txt(flows, "stale_button")),)


def test_stored_intake_and_finished_sos_ask_for_the_chat_to_be_scrubbed(flows: FlowSet) -> None:
    """After consent the chat is to be cleared (Scrub after OpenCase); so at the end of the SOS
    follow-ups and on /cancel of them; never when nothing was stored."""
    session = at("intake", "consent", {"what": "threat"})
    effects = run_raw(flows, session, "yes").effects
    assert [type(e) for e in effects] == [OpenCase, Scrub]
    assert run_raw(flows, session, "no").effects[-1] == Reply(txt(flows, "not_stored", "intake"))
    sos_end = run_raw(flows, at("sos", "where", case_ref="K7Q2"), "skip").effects
    assert sos_end[-1] == Scrub("K7Q2")
    cancelled = run_raw(flows, at("sos", "what", case_ref="K7Q2"), "/cancel").effects
    assert cancelled[-1] == Scrub("K7Q2")


def test_buttons_of_a_question_asked_again_keep_working(flows: FlowSet) -> None:
    """After /help re-asks the same question, both the old and the new buttons answer it."""
    started = run_raw(flows, idle(), "/start")
    later = datetime(2026, 1, 5, 3, 5, tzinfo=UTC)
    helped = step(flows, started.session, StepInput("/help"), later)
    new_buttons = helped.effects[-1].choices  # type: ignore[union-attr]
    old_buttons = started.effects[-1].choices  # type: ignore[union-attr]
    assert [c.data for c in new_buttons] == [c.data for c in old_buttons]
    result = run_raw(flows, helped.session, "Threat", button=old_buttons[2].data)
    assert result.session.answers == {"what": "threat"}
