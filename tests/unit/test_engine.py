"""Unit tests for bot.conversation.engine: the pure step function over the real flows.

Topic flows, the step types, languages, resuming and expiry are in test_engine_flows.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
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
    Retriage,
    Scrub,
    Session,
    ShowStatus,
    StepInput,
    StepResult,
    Timing,
    is_sos,
    question,
    step,
)
from bot.conversation.loader import load_flows
from bot.conversation.model import FlowKind, FlowSet, StepType

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"  # the repository's flows/
SETTINGS = settings(database=None, deadline=None)
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
RECENT_MS = NOW_MS - 60_000  # a session last touched a minute ago: no resume, no expiry
REF = "K7Q2"
NONCE = "a1b2c3"
DEFAULT_TIMING = Timing()

INTRO = (
    "This is the emergency line of the protection team. A few short questions follow; you can "
    "skip any. In danger right now? Send SOS at any time and responders are alerted at once."
)
MENU = (
    "What is happening?\n"
    "1. Someone is in danger RIGHT NOW (arrest, abduction, attack, raid)\n"
    "2. Arrest, detention or abduction\n"
    "3. Physical attack or raid\n"
    "4. Threats\n"
    "5. Charges, summons or a court case\n"
    "6. I need to relocate\n"
    "7. Phone or account seized, hacked or spied on\n"
    "8. Someone else is at risk\n"
    "9. Something else or advice\n"
    "Reply with a number. (Reply 0 to skip.)"
)
DETENTION_WHEN = (
    "When was the person arrested or taken?\n"
    "1. It is happening now\n"
    "2. In the last 24 hours\n"
    "3. In the last few days\n"
    "4. Earlier\n"
    "Reply with a number. (Reply 0 to skip.)"
)
SOS_WHAT = "If you can, tell us in a few words what is happening.\n(Reply skip to skip.)"
SOS_WHERE = "Where are you? A city or area is enough.\n(Reply skip to skip.)"
OUT_OF_RANGE_9 = "Please reply with a number from 1 to 9."
STALE = "That button belongs to an earlier question. Here is the current one:"
HELP = (
    "Send SOS at any time to alert our responders at once. /start begins the emergency form, "
    "/cancel stops it and deletes what you typed, /status shows the state of your cases, "
    "/lang changes the language. Safety: /plan, /code, /checkin, /safe."
)
CANCELLED = (
    "Stopped. What you typed in this form has been deleted. Send /start to begin again, or SOS "
    "if you are in danger."
)
NOTHING_TO_CANCEL = (
    "There is nothing to cancel. Send /start to begin the emergency form, or SOS if you are in "
    "danger."
)
EMPTY = "Your message arrived empty. Please write again, or send SOS if you are in danger."
MENU_OPTIONS = [
    "danger_now",
    "detention",
    "attack",
    "threat",
    "judicial",
    "relocation",
    "digital",
    "someone_else",
    "other",
]


@functools.cache
def shipped_flows() -> FlowSet:
    """The real flows shipped in flows/, loaded once.

    Hypothesis tests call this instead of taking the ``flows`` fixture: a failing example is
    reported with its arguments, and the FlowSet's 70 kB repr makes Hypothesis warn, which
    the project's ``filterwarnings = error`` turns into a confusing FlakyStrategyDefinition.
    """
    return load_flows(FLOWS_DIR)


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    """The real flows shipped in flows/."""
    return shipped_flows()


def run(
    flows: FlowSet,
    session: Session,
    text: str,
    now: datetime = NOW,
    timing: Timing = DEFAULT_TIMING,
    **kwargs: Any,
) -> StepResult:
    """Run one engine step and return exactly what the engine returned."""
    return step(flows, session, StepInput(text, **kwargs), now, timing)


def plain(result: StepResult) -> tuple[Effect, ...]:
    """The effects with the buttons of replies left out (compared by text)."""
    return tuple(Reply(e.text) if isinstance(e, Reply) else e for e in result.effects)


def last_reply(result: StepResult) -> Reply:
    """The last effect, which must be a Reply."""
    last = result.effects[-1]
    assert isinstance(last, Reply)
    return last


def ask(
    flows: FlowSet, flow_id: str, step_id: str, language: str = "en", ticked: tuple[str, ...] = ()
) -> Reply:
    """The Reply (text only) that asks step ``step_id`` of ``flow_id``."""
    flow = flows.flows[flow_id]
    return Reply(question(flows, flow, flow.steps[step_id], language, ticked))


def default_path(flow: str) -> tuple[str, ...]:
    """The path a session in ``flow`` went through."""
    return (flow,) if flow in ("intake", "sos") else ("intake", flow)


def idle(**kw: Any) -> Session:
    """A defender with nothing in progress, last seen a minute ago."""
    return Session(language="en", touched_at=RECENT_MS, **kw)


def at(flow: str, step_id: str, answers: dict[str, str | None] | None = None, **kw: Any) -> Session:
    """A session waiting at ``step_id`` of ``flow``, asked a minute ago under NONCE."""
    kw.setdefault("path", default_path(flow))
    kw.setdefault("touched_at", RECENT_MS)
    kw.setdefault("nonce", NONCE)
    kw.setdefault("language", "en")
    return Session(flow=flow, step=step_id, answers=answers or {}, **kw)


def sos_case() -> OpenCase:
    """The OpenCase effect an SOS must produce."""
    return OpenCase(
        kind=FlowKind.SOS,
        flow_id="sos",
        flow_ids=("sos",),
        tier_floor="critical",
        answers={},
        reply_key="opened",
        repeat_key="repeated",
    )


def unchanged(before: Session) -> Session:
    """``before`` as the engine returns it when a message changed nothing but the time."""
    return replace(before, touched_at=NOW_MS)


# --- starting the intake -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello", "مرحبا", "1", "help me please", "SOS please"])
def test_first_message_starts_the_menu(flows: FlowSet, text: str) -> None:
    """Any message with nothing in progress replies with the intro and the menu."""
    result = run(flows, idle(), text)
    assert plain(result) == (Reply(INTRO), Reply(MENU))
    assert (result.session.flow, result.session.step) == ("intake", "what")
    assert result.session.path == ("intake",)
    assert result.session.answers == {}


def test_step_stamps_touched_at(flows: FlowSet) -> None:
    """Every step records ``now`` in epoch milliseconds as touched_at."""
    assert run(flows, idle(), "hi").session.touched_at == NOW_MS


@pytest.mark.parametrize("command", ["/start", "/START", "/start@SomeBot", "/start now"])
def test_start_restarts_and_drops_the_draft(flows: FlowSet, command: str) -> None:
    """/start (also addressed to a bot) shows the menu again and forgets the draft."""
    draft = at("threat", "credible", {"what": "threat", "threat_kind": "death", "when": "now"})
    result = run(flows, draft, command)
    assert plain(result) == (Reply(INTRO), Reply(MENU))
    assert (result.session.flow, result.session.step, result.session.path) == (
        "intake",
        "what",
        ("intake",),
    )
    assert result.session.answers == {}


def test_start_in_an_opened_flow_unbinds_the_case(flows: FlowSet) -> None:
    """/start during the questions of an opened case starts over with no case bound."""
    result = run(flows, at("detention", "where", {"when": "now"}, case_ref=REF), "/start")
    assert plain(result) == (Reply(INTRO), Reply(MENU))
    assert result.session.case_ref is None


def test_menu_buttons_carry_flow_step_nonce_and_fit_64_bytes(flows: FlowSet) -> None:
    """The menu offers one button per option plus Skip (0); each button's data names the
    flow, the step and the question's nonce."""
    result = run(flows, idle(), "/start")
    menu = last_reply(result)
    nonce = result.session.nonce
    assert len(nonce) == 6
    assert [c.label for c in menu.choices] == [
        "Someone is in danger RIGHT NOW (arrest, abduction, attack, raid)",
        "Arrest, detention or abduction",
        "Physical attack or raid",
        "Threats",
        "Charges, summons or a court case",
        "I need to relocate",
        "Phone or account seized, hacked or spied on",
        "Someone else is at risk",
        "Something else or advice",
        "Skip",
    ]
    assert [c.data for c in menu.choices] == [
        f"intake:what:{nonce}:{n}" for n in (*range(1, 10), 0)
    ]
    assert all(len(c.data.encode()) <= 64 for c in menu.choices)


# --- the menu ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["10", "99", "00", "-1", "1.5", "banana", "1 2", "Threats!"])
def test_menu_answer_not_understood_keeps_the_step(flows: FlowSet, text: str) -> None:
    """An out-of-range number or garbage gets exactly the out-of-range reply."""
    before = at("intake", "what")
    result = run(flows, before, text)
    assert plain(result) == (Reply(OUT_OF_RANGE_9),)
    assert result.session == unchanged(before)


def test_huge_number_is_out_of_range(flows: FlowSet) -> None:
    """A 5000-digit number at a choice step gets the out-of-range reply instead of raising."""
    assert plain(run(flows, at("intake", "what"), "1" * 5000)) == (Reply(OUT_OF_RANGE_9),)


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Threats", "threat"),
        ("THREATS", "threat"),
        ("threats.", "threat"),
        ("  i need to relocate ", "relocation"),
        ("Something else or advice", "other"),
        ("٤", "threat"),  # an Arabic-Indic 4
    ],
)
def test_menu_answer_by_label_or_local_digit(flows: FlowSet, text: str, topic: str) -> None:
    """An option's label in any case (with a trailing full stop), or the number in another
    script, picks that option."""
    result = run(flows, at("intake", "what"), text)
    assert result.session.answers == {"what": topic}
    assert result.session.path == ("intake", topic)


@pytest.mark.parametrize("text", ["0", "skip", "SKIP", "Skip.", "-"])
def test_skipping_the_menu_enters_other(flows: FlowSet, text: str) -> None:
    """Skipping the menu records None and goes to "Something else or advice"."""
    result = run(flows, at("intake", "what"), text)
    assert result.session.answers == {"what": None}
    assert (result.session.flow, result.session.step, result.session.path) == (
        "other",
        "describe",
        ("intake", "other"),
    )
    assert plain(result) == (
        Reply("Tell us briefly what is happening or what you need.\n(Reply skip to skip.)"),
    )


def test_idle_with_open_case_adds_message(flows: FlowSet) -> None:
    """With nothing in progress and an open case, a message is added to the case."""
    result = run(flows, idle(), "they took my phone", open_case_ref=REF)
    assert plain(result) == (
        AddToCase(REF, "message", "they took my phone"),
        Reply(f"Thank you. This was added to your case {REF} and passed to the responders."),
    )
    assert result.session.flow is None


def test_start_with_open_case_starts_the_menu(flows: FlowSet) -> None:
    """/start with an open case still starts a new intake, adding nothing to the case."""
    result = run(flows, idle(), "/start", open_case_ref=REF)
    assert plain(result) == (Reply(INTRO), Reply(MENU))


def test_open_case_does_not_capture_answers(flows: FlowSet) -> None:
    """During an intake, an open case of the defender does not divert answers into it."""
    result = run(flows, at("intake", "what"), "4", open_case_ref=REF)
    assert not [e for e in result.effects if isinstance(e, AddToCase | Retriage)]
    assert result.session.answers == {"what": "threat"}


# --- SOS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "session",
    [
        idle(),
        at("intake", "what"),
        at("detention", "charges", {"what": "detention", "when": "now"}, case_ref=REF),
        at("sos", "where", case_ref=REF),
        at("intake", "what", resuming=True),
        at("relocation", "movers", selection=("me",)),
    ],
)
def test_sos_opens_a_critical_case_first_and_asks_the_follow_up(
    flows: FlowSet, session: Session
) -> None:
    """SOS opens (or re-alerts) a critical case before anything else, from any state, and
    asks the first follow-up; the draft is dropped."""
    result = run(flows, session, "SOS")
    assert plain(result) == (sos_case(), Reply(SOS_WHAT))
    assert (result.session.flow, result.session.step, result.session.path) == (
        "sos",
        "what",
        ("sos",),
    )
    assert result.session.answers == {}
    assert result.session.case_ref is None  # the service binds the case it opens
    assert not result.session.resuming and result.session.selection == ()


@pytest.mark.parametrize(
    "text",
    [
        "SOS!",
        "sos.",
        "S.O.S",
        "S O S",
        "¡SOS!",
        "«SOS»",
        "MAYDAY",
        "socorro",
        "Auxilio!",
        "au secours !",
        "À l'aide",
        "النجدة",
        "ساعدوني",
        "помогите",
        "СПАСИТЕ",
        "کمک",
        "کمکم کنید",
        "me ajudem",
        "imdat",
        "Yardım edin!",
    ],
)
def test_alarm_words_of_every_language_are_sos(flows: FlowSet, text: str) -> None:
    """An alarm word of any offered language, in any case, with spaces and punctuation
    ignored, is an SOS whatever language the defender uses."""
    assert is_sos(flows, text)
    assert run(flows, at("intake", "what"), text).effects[0] == sos_case()


def test_sos_itself_works_whatever_words_are_configured(flows: FlowSet) -> None:
    """ "SOS" raises an alarm even when the configured words leave it out."""
    custom = replace(flows, catalog=replace(flows.catalog, sos_words={"en": ("mayday",)}))
    assert is_sos(custom, "S.O.S!")
    assert is_sos(custom, "mayday")
    assert not is_sos(custom, "socorro")


@pytest.mark.parametrize("text", ["SOS please", "I need SOS", "SOSOS", "so s please", "help"])
def test_sos_must_be_the_whole_message(flows: FlowSet, text: str) -> None:
    """A message that merely contains an alarm word is not an SOS."""
    assert not is_sos(flows, text)
    result = run(flows, idle(), text)
    assert not [e for e in result.effects if isinstance(e, OpenCase)]


def test_sos_please_at_a_text_step_is_an_answer(flows: FlowSet) -> None:
    """'SOS please' at a free-text step is stored as the answer."""
    result = run(flows, at("other", "describe", {"what": "other"}), "SOS please")
    assert result.session.answers["describe"] == "SOS please"
    assert result.session.step == "where"


def test_an_sos_button_label_is_not_an_alarm(flows: FlowSet) -> None:
    """A button press whose label happens to be an alarm word is a button, not an SOS."""
    result = run(flows, at("intake", "what"), "SOS", button=f"intake:what:{NONCE}:4")
    assert result.session.answers == {"what": "threat"}
    assert not [e for e in result.effects if isinstance(e, OpenCase)]


@SETTINGS
@given(
    word=st.sampled_from(["sos", "mayday", "socorro", "au secours", "помогите", "imdat"]),
    cases=st.lists(st.booleans(), min_size=12, max_size=12),
    before=st.text(alphabet=" .!¡?¿«»\"'-…", max_size=4),
    after=st.text(alphabet=" .!¡?¿«»\"'-…", max_size=4),
)
def test_sos_detection_ignores_case_spaces_and_punctuation(
    word: str, cases: list[bool], before: str, after: str
) -> None:
    """Any casing of an alarm word wrapped in any spaces and punctuation is an SOS."""
    flows = shipped_flows()
    cased = "".join(c.upper() if up else c for c, up in zip(word, cases, strict=False))
    assert is_sos(flows, before + cased + after)


def test_sos_follow_up_answer_is_added_to_the_case(flows: FlowSet) -> None:
    """A follow-up answer is added to the bound case at once and not kept in the session."""
    result = run(flows, at("sos", "what", case_ref=REF), "they are at my door")
    assert plain(result) == (AddToCase(REF, "what", "they are at my door"), Reply(SOS_WHERE))
    assert result.session.step == "where"
    assert result.session.answers == {}
    assert result.session.case_ref == REF


@pytest.mark.parametrize("text", ["skip", "0"])
def test_sos_follow_up_skip_adds_nothing(flows: FlowSet, text: str) -> None:
    """Skipping a follow-up adds nothing and moves on."""
    result = run(flows, at("sos", "what", case_ref=REF), text)
    assert plain(result) == (Reply(SOS_WHERE),)


def test_sos_last_follow_up_closes_and_scrubs(flows: FlowSet) -> None:
    """The last follow-up is added, thanked with the ref, and the chat is to be cleared."""
    result = run(flows, at("sos", "where", case_ref=REF), "Gaza City")
    assert plain(result) == (
        AddToCase(REF, "where", "Gaza City"),
        Reply(f"Thank you. This has been added to your case {REF} and passed to the responders."),
        Scrub(REF),
    )
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_no_resume_question_in_sos_follow_ups(flows: FlowSet) -> None:
    """Coming back hours later to SOS follow-ups goes on at once: the case is open."""
    quiet = at("sos", "where", case_ref=REF, touched_at=NOW_MS - 3 * 3_600_000)
    result = run(flows, quiet, "Aleppo")
    assert AddToCase(REF, "where", "Aleppo") in result.effects
    assert not result.session.resuming


# --- commands ------------------------------------------------------------------------------


def test_help_reasks_the_current_question(flows: FlowSet) -> None:
    """/help replies with the help text and asks the current question again."""
    before = at("detention", "when", {"what": "detention"})
    result = run(flows, before, "/help")
    assert plain(result) == (Reply(HELP), Reply(DETENTION_WHEN))
    assert result.session == unchanged(before)


def test_help_when_idle(flows: FlowSet) -> None:
    """/help when idle is only the help text."""
    result = run(flows, idle(), "/help")
    assert plain(result) == (Reply(HELP),)
    assert result.session.flow is None


def test_status_reasks_the_current_question(flows: FlowSet) -> None:
    """/status asks for the status and asks the current question again."""
    before = at("intake", "what")
    result = run(flows, before, "/status")
    assert plain(result) == (ShowStatus(), Reply(MENU))
    assert result.session == unchanged(before)


def test_status_when_idle(flows: FlowSet) -> None:
    """/status when idle is only ShowStatus."""
    assert plain(run(flows, idle(), "/status", open_case_ref=REF)) == (ShowStatus(),)


def test_cancel_a_draft_deletes_it(flows: FlowSet) -> None:
    """/cancel of a draft says what was typed is deleted, and empties the session."""
    draft = at("other", "needs", {"what": "other", "describe": "advice", "where": "Minsk"})
    result = run(flows, draft, "/cancel")
    assert plain(result) == (Reply(CANCELLED),)
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_cancel_in_sos_follow_ups_keeps_the_alert(flows: FlowSet) -> None:
    """/cancel in SOS follow-ups says the alert stays active and clears the chat."""
    result = run(flows, at("sos", "where", case_ref=REF), "/cancel")
    assert plain(result) == (
        Reply(
            f"Stopped the questions. Your alert {REF} stays active and responders are still "
            "being alerted."
        ),
        Scrub(REF),
    )
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_cancel_in_an_opened_flow_keeps_the_case(flows: FlowSet) -> None:
    """/cancel in the questions after a case was opened says the case stays open and
    clears the chat."""
    opened = at("detention", "charges", {"what": "detention", "when": "day"}, case_ref=REF)
    result = run(flows, opened, "/cancel")
    assert plain(result) == (
        Reply(
            f"Stopped the questions. Your case {REF} stays open and responders are still "
            "being alerted."
        ),
        Scrub(REF),
    )
    assert result.session == Session(language="en", touched_at=NOW_MS)


def test_cancel_when_idle(flows: FlowSet) -> None:
    """/cancel with nothing in progress says there is nothing to cancel."""
    result = run(flows, idle(), "/cancel")
    assert plain(result) == (Reply(NOTHING_TO_CANCEL),)
    assert result.session == Session(language="en", touched_at=NOW_MS)


@pytest.mark.parametrize(("text", "named"), [("/foo", "/foo"), ("/FOO bar", "/foo"), ("/", "/")])
def test_unknown_command_reasks(flows: FlowSet, text: str, named: str) -> None:
    """An unknown command is named in the reply and the current question asked again."""
    before = at("intake", "what")
    result = run(flows, before, text)
    assert plain(result) == (
        Reply(
            f"I do not know the command {named}. You can use /start, /help, /cancel, /status, "
            "/lang, or send SOS if you are in danger."
        ),
        Reply(MENU),
    )
    assert result.session == unchanged(before)


def test_unknown_command_when_idle_starts_nothing(flows: FlowSet) -> None:
    """An unknown command when idle is named and starts nothing."""
    result = run(flows, idle(), "/foo")
    assert len(result.effects) == 1
    assert result.session.flow is None


def test_unknown_command_name_is_capped(flows: FlowSet) -> None:
    """A very long unknown command is echoed back at most 40 characters long."""
    first = run(flows, idle(), "/" + "x" * 100).effects[0]
    assert isinstance(first, Reply)
    assert "/" + "x" * 39 + "." in first.text
    assert "x" * 40 not in first.text


# --- empty and truncated messages ----------------------------------------------------------


@pytest.mark.parametrize("session", [idle(), at("intake", "what"), at("sos", "what", case_ref=REF)])
def test_empty_text(flows: FlowSet, session: Session) -> None:
    """An empty message gets the empty reply and changes nothing else."""
    result = run(flows, session, "")
    assert plain(result) == (Reply(EMPTY),)
    assert result.session == unchanged(session)


def test_truncation_notice_comes_first(flows: FlowSet) -> None:
    """A message cut by the channel limit is announced, with the limit, before anything."""
    result = run(flows, idle(), "hello", truncated_to=2000)
    assert plain(result) == (
        Reply("Your message was very long, so I kept only the first 2000 characters."),
        Reply(INTRO),
        Reply(MENU),
    )


# --- buttons -------------------------------------------------------------------------------


def test_pressing_a_current_button_answers_like_typing(flows: FlowSet) -> None:
    """A button of the question on screen answers it like typing its number."""
    started = run(flows, idle(), "/start")
    data = last_reply(started).choices[3].data
    result = run(flows, started.session, "Threats", button=data)
    assert result.session.answers == {"what": "threat"}
    assert result.session.path == ("intake", "threat")


def test_the_skip_button_skips(flows: FlowSet) -> None:
    """The Skip button records a skip and moves on."""
    started = run(flows, idle(), "/start")
    result = run(flows, started.session, "Skip", button=last_reply(started).choices[-1].data)
    assert result.session.answers == {"what": None}


def test_yes_no_buttons(flows: FlowSet) -> None:
    """A yes/no question offers Yes (1), No (2) and Skip (0), answering yes, no, skipped."""
    session = at("threat", "credible", {"what": "threat", "threat_kind": "death", "when": "now"})
    asked = run(flows, session, "/help")
    assert [(c.label, c.data) for c in last_reply(asked).choices] == [
        ("Yes", f"threat:credible:{NONCE}:1"),
        ("No", f"threat:credible:{NONCE}:2"),
        ("Skip", f"threat:credible:{NONCE}:0"),
    ]
    for number, answer in (("1", "yes"), ("2", "no"), ("0", None)):
        pressed = run(flows, session, "x", button=f"threat:credible:{NONCE}:{number}")
        assert pressed.session.answers["credible"] == answer


def test_text_questions_offer_no_buttons(flows: FlowSet) -> None:
    """A free-text question offers no buttons: the defender types."""
    result = run(flows, at("intake", "what"), "9")
    assert last_reply(result).choices == ()


FORGERIES = [
    lambda d: d,  # pressed again after the question moved on
    lambda d: d.replace("intake:", "sos:"),
    lambda d: d.replace(":what:", ":when:"),
    lambda d: d.rsplit(":", 2)[0] + ":ffffff:1",
    lambda d: d + ":1",
    lambda d: d.rsplit(":", 1)[0] + ":1a",
    lambda d: d.rsplit(":", 1)[0] + ":100",
    lambda d: "garbage",
    lambda d: "",
]


@pytest.mark.parametrize("forge", FORGERIES)
def test_a_stale_or_forged_button_is_refused_kindly(flows: FlowSet, forge: Any) -> None:
    """A button of an earlier question, or one whose data was altered, changes nothing: the
    defender is told and asked the current question again."""
    started = run(flows, idle(), "/start")
    old = last_reply(started).choices[0].data
    moved = run(flows, started.session, "2")  # now at detention:when
    result = run(flows, moved.session, "x", button=forge(old))
    assert plain(result) == (Reply(STALE), Reply(DETENTION_WHEN))
    assert result.session == replace(moved.session, touched_at=NOW_MS)


def test_a_button_when_idle_only_gets_the_note(flows: FlowSet) -> None:
    """A button pressed after the conversation ended only gets the stale-button note."""
    result = run(flows, idle(), "Yes", button="threat:credible:abcdef:1")
    assert plain(result) == (Reply(STALE),)
    assert result.session.flow is None


@pytest.mark.parametrize("number", ["²", "①", "1²"])
def test_a_forged_button_with_an_odd_digit_is_refused(flows: FlowSet, number: str) -> None:
    """A button with the current nonce but a non-decimal "digit" is refused, not a crash."""
    result = run(flows, at("intake", "what"), "x", button=f"intake:what:{NONCE}:{number}")
    assert plain(result) == (Reply(STALE), Reply(MENU))


@settings(database=None, deadline=None, max_examples=200, derandomize=True)
@given(
    number=st.text(max_size=3)
    | st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=2)
)
def test_any_number_on_a_current_button_never_raises(number: str) -> None:
    """Whatever follows the current question's flow, step and nonce in a button's data, the
    defender gets an answer (recorded, refused or the question again) and never an error."""
    result = run(shipped_flows(), at("intake", "what"), "x", button=f"intake:what:{NONCE}:{number}")
    assert result.effects


def test_buttons_of_a_question_asked_again_keep_working(flows: FlowSet) -> None:
    """After /help re-asks the same question later, the old and new buttons are the same
    and answer it."""
    started = run(flows, idle(), "/start")
    helped = run(flows, started.session, "/help", now=NOW + timedelta(minutes=5))
    assert [c.data for c in last_reply(helped).choices] == [
        c.data for c in last_reply(started).choices
    ]
    old = last_reply(started).choices[3].data
    result = run(flows, helped.session, "Threats", button=old, now=NOW + timedelta(minutes=6))
    assert result.session.answers == {"what": "threat"}


# --- session serialisation -----------------------------------------------------------------

answer_dicts = st.dictionaries(st.text(max_size=12), st.none() | st.text(), max_size=6)
short = st.text(max_size=8)


@SETTINGS
@given(
    answers=answer_dicts,
    flow=st.sampled_from([None, "intake", "sos", "detention"]),
    step_id=st.none() | short,
    path=st.lists(short, max_size=3).map(tuple),
    case_ref=st.none() | st.text(max_size=4),
    touched_at=st.integers(min_value=0, max_value=2**53),
    nonce=short,
    selection=st.lists(short, max_size=3).map(tuple),
    resuming=st.booleans(),
    expired=st.booleans(),
    notices=st.lists(short, max_size=2).map(tuple),
    chat_ids=st.lists(short, max_size=3).map(tuple),
)
def test_session_round_trip(
    answers: dict[str, str | None],
    flow: str | None,
    step_id: str | None,
    path: tuple[str, ...],
    case_ref: str | None,
    touched_at: int,
    nonce: str,
    selection: tuple[str, ...],
    resuming: bool,
    expired: bool,
    notices: tuple[str, ...],
    chat_ids: tuple[str, ...],
) -> None:
    """Session.from_dict(to_dict()) gives back an equal session (version 2)."""
    session = Session(
        language="fa",
        flow=flow,
        step=step_id,
        answers=answers,
        path=path if flow is None or path else (flow,),
        case_ref=case_ref,
        touched_at=touched_at,
        nonce=nonce,
        selection=selection,
        resuming=resuming,
        expired=expired,
        notices=notices,
        chat_ids=chat_ids,
    )
    data = session.to_dict()
    assert data["v"] == 2
    assert Session.from_dict(data) == session


def test_session_from_minimal_dict() -> None:
    """A dict with only a language gives an idle session with defaults."""
    assert Session.from_dict({"language": "ar"}) == Session(language="ar")


def test_version_1_session_gets_its_flow_as_path() -> None:
    """A version 1 session (no path, selection, resuming) is read with its flow as the path."""
    v1 = {
        "v": 1,
        "language": "es",
        "flow": "sos",
        "step": "where",
        "answers": {},
        "case_ref": REF,
        "touched_at": RECENT_MS,
        "nonce": NONCE,
        "notices": ["telegram"],
    }
    assert Session.from_dict(v1) == Session(
        language="es",
        flow="sos",
        step="where",
        path=("sos",),
        case_ref=REF,
        touched_at=RECENT_MS,
        nonce=NONCE,
        notices=("telegram",),
    )


def test_version_1_sos_follow_up_goes_on(flows: FlowSet) -> None:
    """A stored version 1 SOS session still takes its follow-up answer."""
    v1 = {"v": 1, "language": "en", "flow": "sos", "step": "where", "case_ref": REF}
    session = replace(Session.from_dict(v1), touched_at=RECENT_MS)
    result = run(flows, session, "Mosul")
    assert AddToCase(REF, "where", "Mosul") in result.effects


def test_version_1_intake_at_a_removed_step_starts_over(flows: FlowSet) -> None:
    """A version 1 intake draft waiting at a step the new intake no longer has (consent) is
    dropped and the defender gets the menu, not an error."""
    v1 = {
        "v": 1,
        "language": "en",
        "flow": "intake",
        "step": "consent",
        "answers": {"what": "detention", "when": "upcoming", "where": "Tehran"},
        "touched_at": RECENT_MS,
        "nonce": NONCE,
    }
    result = run(flows, Session.from_dict(v1), "yes")
    assert plain(result) == (Reply(INTRO), Reply(MENU))
    assert result.session.answers == {}
    assert not [e for e in result.effects if isinstance(e, OpenCase)]


def test_version_1_intake_at_the_menu_enters_a_topic(flows: FlowSet) -> None:
    """A version 1 draft at the menu step (still there) goes on into the chosen topic."""
    v1 = {"v": 1, "language": "en", "flow": "intake", "step": "what", "touched_at": RECENT_MS}
    result = run(flows, Session.from_dict(v1), "2")
    assert result.session.path == ("intake", "detention")
    assert plain(result) == (Reply(DETENTION_WHEN),)


def test_to_dict_copies_answers() -> None:
    """to_dict returns a copy of the answers, not the session's own mapping."""
    answers: dict[str, str | None] = {"what": "threat"}
    data = Session(language="en", answers=answers).to_dict()
    data["answers"]["what"] = "changed"
    assert answers == {"what": "threat"}


# --- properties over every step of every flow ----------------------------------------------

LANGUAGES = ["en", "es", "fr", "ar", "ru", "fa", "pt", "tr"]
SPECIAL_TEXTS = [
    "",
    "SOS",
    " sos ",
    "socorro",
    "/start",
    "/help",
    "/status",
    "/cancel",
    "/lang",
    "/lang es",
    "/lang 99",
    "/foo",
    "/",
    "0",
    "1",
    "2",
    "1 3",
    "1,3",
    "1 12",
    "9",
    "10",
    "yes",
    "no",
    "sí",
    "skip",
    "done",
    "24/12",
    "31/02",
    "today",
    "Threats",
    "x" * 1200,
]
texts = st.text() | st.sampled_from(SPECIAL_TEXTS)


def waiting_steps(flows: FlowSet, flow_id: str) -> list[str]:
    """The steps of a flow a session can wait at (not open, not end)."""
    flow = flows.flows[flow_id]
    return sorted(s.id for s in flow.steps.values() if s.type not in (StepType.OPEN, StepType.END))


def draw_session(data: st.DataObject, flows: FlowSet) -> Session:
    """Draw a session: idle, or waiting at any question of any flow, in any language, with
    or without a bound case, ticks, a pending resume question."""
    language = data.draw(st.sampled_from(LANGUAGES), label="language")
    flow_id = data.draw(st.sampled_from([None, *sorted(flows.flows)]), label="flow")
    touched_at = NOW_MS - data.draw(
        st.sampled_from([0, 60_000, 31 * 60_000, 25 * 3_600_000]), label="quiet_ms"
    )
    if flow_id is None:
        return Session(language=language, touched_at=touched_at)
    flow = flows.flows[flow_id]
    step_id = data.draw(st.sampled_from(waiting_steps(flows, flow_id)), label="step")
    answers: dict[str, str | None] = {}
    for s in flow.steps.values():
        if s.type in (StepType.END, StepType.OPEN) or s.append or not data.draw(st.booleans()):
            continue
        values: list[str | None] = [None, *s.options]
        if s.type is StepType.YESNO:
            values += ["yes", "no"]
        answers[s.id] = data.draw(
            st.sampled_from(values)
            if s.options or s.type is StepType.YESNO
            else st.none() | st.text()
        )
    current = flow.steps[step_id]
    return Session(
        language=language,
        flow=flow_id,
        step=step_id,
        answers=answers,
        path=default_path(flow_id),
        case_ref=data.draw(st.none() | st.just(REF), label="case_ref"),
        touched_at=touched_at,
        nonce=NONCE,
        selection=tuple(data.draw(st.lists(st.sampled_from(current.options), unique=True)))
        if current.options and current.type is StepType.MULTI
        else (),
        resuming=data.draw(st.booleans(), label="resuming"),
    )


def draw_button(data: st.DataObject, session: Session) -> str | None:
    """No button, a button of the question on screen (any number), or a stale/odd one."""
    kind = data.draw(st.sampled_from(["none", "current", "other"]), label="button kind")
    if kind == "none":
        return None
    if kind == "current" and session.flow is not None:
        number = data.draw(st.integers(min_value=0, max_value=12), label="number")
        return f"{session.flow}:{session.step}:{session.nonce}:{number}"
    return data.draw(
        st.sampled_from(
            ["lang:es", "lang:ar", "lang:xx", "resume::a1b2c3:1", "resume::a1b2c3:2", "x:y:z:1"]
        )
        | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:_", max_size=20),
        label="button",
    )


@SETTINGS
@given(data=st.data())
def test_step_never_raises_and_never_drops(data: st.DataObject) -> None:
    """For any text (or button) at any step of any flow, in any language and state, step()
    returns at least one effect and a session waiting at a real question (or idle)."""
    flows = shipped_flows()
    session = draw_session(data, flows)
    message = StepInput(
        text=data.draw(texts, label="text"),
        truncated_to=data.draw(st.none() | st.just(2000), label="truncated_to"),
        open_case_ref=data.draw(st.none() | st.just("M3XB"), label="open_case_ref"),
        button=draw_button(data, session),
        first_contact=data.draw(st.booleans(), label="first_contact"),
        language_hint=data.draw(st.none() | st.sampled_from(["pt-BR", "xx", "ar"])),
    )
    result = step(flows, session, message, NOW)
    assert len(result.effects) >= 1
    new = result.session
    assert new.touched_at == NOW_MS
    assert new.language in flows.catalog.languages
    if new.flow is None:
        assert new.step is None and new.answers == {} and new.case_ref is None
    else:
        assert new.step in waiting_steps(flows, new.flow)
        assert new.path[-1] == new.flow
    for effect in result.effects:
        if isinstance(effect, Reply):
            assert effect.text.strip()
            assert all(0 < len(c.data.encode()) <= 64 and c.label for c in effect.choices)
    assert len([e for e in result.effects if isinstance(e, OpenCase)]) <= 1


@SETTINGS
@given(data=st.data(), padding=st.sampled_from(["", " ", "  ", "\n", "!"]))
def test_sos_always_first_from_any_state(data: st.DataObject, padding: str) -> None:
    """From any state (short of an expired draft), SOS yields the critical OpenCase first."""
    flows = shipped_flows()
    session = draw_session(data, flows)
    assume_fresh = replace(session, touched_at=max(session.touched_at, NOW_MS - 3_600_000))
    word = data.draw(st.sampled_from(["SOS", "sos", "Sos", "sOS", "Mayday", "Imdat"]))
    result = run(flows, assume_fresh, padding + word + padding)
    assert result.effects[0] == sos_case()
    assert result.session.flow == "sos"


def simulate_service(session: Session, effects: tuple[Effect, ...], ref: str) -> Session:
    """Bind an opened case the way the service does (bot/conversation/service.py)."""
    for effect in effects:
        if isinstance(effect, OpenCase):
            bound = effect.bind or effect.kind is FlowKind.SOS
            if bound and session.flow is not None and effect.flow_id in session.path:
                session = replace(session, case_ref=ref)
    return session


WALK_TEXTS = st.sampled_from(
    ["0", "1", "2", "3", "4", "5", "6", "1 3", "yes", "no", "skip", "24/12", "Kyiv", "/help"]
) | st.text(max_size=12)


@dataclass(frozen=True)
class Turn:
    """One message of a walked conversation: the session before it, what was sent, and what
    the engine returned."""

    before: Session
    message: StepInput
    result: StepResult


def walk(data: st.DataObject, flows: FlowSet, language: str) -> Iterator[Turn]:
    """Walk a conversation from the first message: press a button just offered or type,
    sometimes after a silence long enough to be asked whether to continue, while the
    service binds the cases opened (each gets a fresh ref)."""
    session = Session(language=language, touched_at=NOW_MS)
    now = NOW
    offered: tuple[str, ...] = ()
    for turn in range(data.draw(st.integers(min_value=1, max_value=40), label="turns")):
        silent = data.draw(st.integers(min_value=0, max_value=8), label="silence") == 0
        now += timedelta(minutes=40) if silent else timedelta(seconds=20)
        button = None
        pressing = data.draw(st.booleans(), label="press") if offered else False
        if pressing:
            button = offered[data.draw(st.integers(0, len(offered) - 1), label="which")]
        text = "" if button else data.draw(WALK_TEXTS, label="text")
        message = StepInput(text, button=button)
        result = step(flows, session, message, now)
        yield Turn(session, message, result)
        session = simulate_service(result.session, result.effects, f"R{turn:03d}")
        offered = tuple(c.data for e in result.effects if isinstance(e, Reply) for c in e.choices)


@settings(database=None, deadline=None, max_examples=150)
@given(data=st.data(), language=st.sampled_from(LANGUAGES))
def test_conversations_keep_their_promises(data: st.DataObject, language: str) -> None:
    """Walk conversations from the first message, pressing offered buttons or typing, with
    silences, while the service binds opened cases. At every step: at least one effect; a
    case is opened at most once per flow; a submitted (not opened) case carries consent to
    store and is followed by a scrub; additions, re-triage and scrubs only concern the case
    bound to the flow."""
    flows = shipped_flows()
    for turn in walk(data, flows, language):
        before, effects = turn.before, turn.result.effects
        assert effects
        opened = [e for e in effects if isinstance(e, OpenCase)]
        assert len(opened) <= 1
        for case in opened:
            if case.kind is FlowKind.TOPIC:
                assert before.case_ref is None, "a second case opened in one flow"
                if not case.bind:
                    assert case.answers.get("consent_store") == "yes"
                    assert effects[effects.index(case) + 1] == Scrub(None)
        for effect in effects:
            if isinstance(effect, AddToCase | Retriage):
                assert effect.ref == before.case_ref
            if isinstance(effect, Retriage):
                assert effect.flow_ids == before.path
            if isinstance(effect, Scrub) and effect.ref is not None:
                assert effect.ref == before.case_ref


@settings(database=None, deadline=None, max_examples=150, derandomize=True)
@given(data=st.data())
def test_a_question_button_just_offered_is_never_refused(data: st.DataObject) -> None:
    """Pressing a button of the question just asked is never refused as stale and never
    throws the draft away."""
    flows = shipped_flows()
    for turn in walk(data, flows, "en"):
        button = turn.message.button
        if button is None or button.split(":")[0] not in flows.flows:
            continue  # typed, or a language or resume button
        refused = {flows.text("en", "stale_button"), INTRO}
        texts = [e.text for e in turn.result.effects if isinstance(e, Reply)]
        assert not refused.intersection(texts), (button, turn.before)
