"""The conversation engine: a pure function from (flows, session, input, now) to the new
session and the effects the service must carry out.

It never awaits, never touches storage or channels, and never reads the clock: everything it
knows arrives as arguments, so every behaviour is a table test away.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bot.conversation.dates import DateWords, parse_date
from bot.conversation.model import (
    FLOW_PREFIX,
    MULTI_SEPARATOR,
    Flow,
    FlowKind,
    FlowSet,
    Outcome,
    Step,
    StepType,
    selected,
)
from bot.core.bidi import localise
from bot.core.messages import Choice

COMMANDS = ("/start", "/help", "/cancel", "/status", "/lang")
LANGUAGE_BUTTON = "lang:"
RESUME_BUTTON = "resume"
CHECK_MARK = "✓ "


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a draft lives: after ``resume_after`` of silence a returning defender is
    asked whether to continue; after ``draft_expiry`` the draft is deleted."""

    resume_after: timedelta = timedelta(minutes=30)
    draft_expiry: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Session:
    """Where one defender is in the conversation; stored encrypted after every step.

    Attributes:
        language: the language texts are shown in.
        flow: the flow in progress, if any.
        step: the step waiting for an answer, if any.
        answers: draft answers of the flows in progress (step id -> answer; None = skipped).
        path: the flows this draft went through (the menu, then the topic), for triage.
        case_ref: the case opened in the flow in progress (SOS, or a flow that pages first).
        touched_at: when the session last changed (epoch ms), for draft expiry.
        nonce: identifies the question last asked; its buttons carry it, so a button from an
            earlier question is recognised as stale.
        selection: options ticked so far on a multi-select question (with buttons).
        resuming: the defender came back after a silence and was asked whether to continue.
        expired: a draft was deleted for silence; the defender is told when they next write.
        compromised: the device is under duress or seized: nothing but disguise answers go to
            it (see ``bot.safety``).
        wrong_codes: safety codes typed wrong in a row.
        plan_step: the safety-plan item the defender is being asked about (``/plan``).
        notices: one-time notices already shown (e.g. the Telegram encryption warning).
        chat_ids: platform ids of the defender's messages in a chat that will be deleted after
            the intake (Telegram), kept only until then.
    """

    language: str
    flow: str | None = None
    step: str | None = None
    answers: Mapping[str, str | None] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    case_ref: str | None = None
    touched_at: int = 0
    nonce: str = ""
    selection: tuple[str, ...] = ()
    resuming: bool = False
    expired: bool = False
    compromised: bool = False
    wrong_codes: int = 0
    plan_step: str | None = None
    notices: tuple[str, ...] = ()
    chat_ids: tuple[str, ...] = ()

    @property
    def has_draft(self) -> bool:
        """True while a flow is in progress (its answers are a draft that can expire)."""
        return self.flow is not None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; :meth:`from_dict` reverses it."""
        return {
            "v": 2,
            "language": self.language,
            "flow": self.flow,
            "step": self.step,
            "answers": dict(self.answers),
            "path": list(self.path),
            "case_ref": self.case_ref,
            "touched_at": self.touched_at,
            "nonce": self.nonce,
            "selection": list(self.selection),
            "resuming": self.resuming,
            "expired": self.expired,
            "compromised": self.compromised,
            "wrong_codes": self.wrong_codes,
            "plan_step": self.plan_step,
            "notices": list(self.notices),
            "chat_ids": list(self.chat_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        """Rebuild a session saved by :meth:`to_dict` (version 1 sessions too)."""
        flow = data.get("flow")
        return cls(
            language=str(data["language"]),
            flow=flow,
            step=data.get("step"),
            answers=dict(data.get("answers") or {}),
            path=tuple(data.get("path") or ((flow,) if flow else ())),
            case_ref=data.get("case_ref"),
            touched_at=int(data.get("touched_at", 0)),
            nonce=str(data.get("nonce", "")),
            selection=tuple(data.get("selection") or ()),
            resuming=bool(data.get("resuming", False)),
            expired=bool(data.get("expired", False)),
            compromised=bool(data.get("compromised", False)),
            wrong_codes=int(data.get("wrong_codes", 0)),
            plan_step=data.get("plan_step"),
            notices=tuple(data.get("notices") or ()),
            chat_ids=tuple(data.get("chat_ids") or ()),
        )

    def idle(self) -> Session:
        """Return this session with no flow in progress and no draft."""
        return replace(
            self,
            flow=None,
            step=None,
            answers={},
            path=(),
            case_ref=None,
            nonce="",
            selection=(),
            resuming=False,
        )


@dataclass(frozen=True, slots=True)
class StepInput:
    """One cleaned message and the facts about the defender the engine may need.

    Attributes:
        text: the cleaned text (see :func:`bot.core.text.clean_input`).
        truncated_to: the limit the text was cut to, or None if it was not cut.
        open_case_ref: the reference of the defender's most recent open case, if any.
        button: the data of a pressed button (see :func:`button_data`), if any.
        first_contact: this defender has never written before.
        language_hint: the language their app is set to, when the platform says (Telegram).
    """

    text: str
    truncated_to: int | None = None
    open_case_ref: str | None = None
    button: str | None = None
    first_contact: bool = False
    language_hint: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """Say ``text`` to the defender, offering ``choices`` as buttons where the channel can."""

    text: str
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True, slots=True)
class Scrub:
    """The conversation that led to case ``ref`` is stored: clear it from the defender's chat
    where the platform allows (Telegram), leaving a neutral note."""

    ref: str | None


@dataclass(frozen=True, slots=True)
class OpenCase:
    """Open a case (or, for SOS, reuse the defender's open SOS case) and tell the defender.

    Attributes:
        kind: the flow kind that opens it.
        flow_id: the flow, for texts.
        flow_ids: every flow the answers came from, for triage.
        tier_floor: the lowest tier the case may get (SOS: critical).
        answers: the answers to triage and store.
        reply_key: the text to send once the case exists; it gets ``{ref}``.
        repeat_key: for SOS, the text when an open SOS case is reused.
        bind: the flow goes on asking; later answers are added to this case.
    """

    kind: FlowKind
    flow_id: str
    tier_floor: str | None
    answers: Mapping[str, str | None]
    reply_key: str
    repeat_key: str | None = None
    flow_ids: tuple[str, ...] = ()
    bind: bool = False


@dataclass(frozen=True, slots=True)
class AddToCase:
    """Add ``value`` under ``label`` (a step id, or "message") to case ``ref`` and pass it
    to its responders, titled ``title`` (the question, for people) when given."""

    ref: str
    label: str
    value: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Retriage:
    """The answers of case ``ref`` grew: triage them again and raise the tier if they now
    call for a more urgent one (never lower it)."""

    ref: str
    flow_ids: tuple[str, ...]
    answers: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class ShowStatus:
    """Tell the defender the state of their cases (no details)."""


Effect = Reply | OpenCase | AddToCase | Retriage | ShowStatus | Scrub


@dataclass(frozen=True, slots=True)
class StepResult:
    """The new session and the effects, in the order they must happen; ``refused`` names
    why a pressed button was not taken as an answer (``stale_button``), for the log."""

    session: Session
    effects: tuple[Effect, ...]
    refused: str | None = None


def _compact(text: str) -> str:
    """Casefold and drop spaces and punctuation: 'S.O.S!' and 'sos' compare equal."""
    return "".join(
        ch
        for ch in text.casefold()
        if not ch.isspace() and not unicodedata.category(ch).startswith("P")
    )


def is_sos(flows: FlowSet, text: str) -> bool:
    """Return True when the whole message is an alarm word of any language, in any case,
    with spaces and punctuation ignored ("SOS", "sos!", "S.O.S", "S O S", "au secours !").

    Only the whole message counts: "SOS please" is not an alarm.
    """
    if len(text) > 60:
        return False
    folded = _compact(text)
    if folded == "sos":  # whatever the configured words, SOS itself always works
        return True
    return bool(folded) and any(
        folded == _compact(word) for words in flows.catalog.sos_words.values() for word in words
    )


def pick_language(flows: FlowSet, hint: str | None) -> str:
    """Return the offered language matching ``hint`` ("pt-br" -> "pt"), or the default."""
    offered = flows.catalog.languages
    if hint:
        code = hint.strip().replace("_", "-")
        for candidate in (code, code.split("-")[0].casefold()):
            if candidate in offered:
                return candidate
    return flows.catalog.default_language


def step(
    flows: FlowSet,
    session: Session,
    message: StepInput,
    now: datetime,
    timing: Timing = Timing(),
) -> StepResult:
    """Advance ``session`` by one message.

    Guarantees: SOS always opens (or re-alerts) a critical case first, whatever flow is in
    progress; every message gets at least one reply or effect (never a silent drop); an
    intake's answers are only handed over for storage after a "yes" to consent or at a step
    that pages first; ``/cancel`` deletes the draft; a button from an earlier question is
    refused kindly and the current one asked again; a draft older than
    ``timing.draft_expiry`` is gone, and one quiet for ``timing.resume_after`` is only
    continued when the defender says so.
    """
    quiet = now - datetime.fromtimestamp(session.touched_at / 1000, tz=now.tzinfo)
    session = replace(session, touched_at=int(now.timestamp() * 1000))
    if message.first_contact:
        session = replace(session, language=pick_language(flows, message.language_hint))
    flow_in_progress = flows.flows.get(session.flow or "")
    if session.flow is not None and (
        flow_in_progress is None or session.step not in flow_in_progress.steps
    ):
        session = session.idle()  # the flow was changed or removed since this session began
    before: list[Effect] = []
    expired_note: list[Effect] = []
    if session.expired or (session.has_draft and quiet >= timing.draft_expiry):
        session = replace(session.idle(), expired=False)
        expired_note.append(Reply(flows.text(session.language, "draft_expired")))
    if not is_sos(flows, message.text):  # an alarm is handled first; the note can wait
        before.extend(expired_note)
        expired_note = []
    if message.truncated_to is not None:
        before.append(Reply(flows.text(session.language, "truncated", limit=message.truncated_to)))
    result = _dispatch(flows, session, message, before, now, quiet, timing)
    if expired_note:
        result = replace(result, effects=(*result.effects, *expired_note))
    chose = message.text.casefold().startswith("/lang") or (
        message.button is not None and message.button.startswith(LANGUAGE_BUTTON)
    )
    if message.first_contact and len(flows.catalog.languages) > 1 and not chose:
        offer = _language_offer(flows, result.session.language)
        if result.effects and isinstance(result.effects[0], OpenCase):
            result = replace(result, effects=(*result.effects, offer))
        else:
            result = replace(result, effects=(offer, *result.effects))
    return result


def _dispatch(
    flows: FlowSet,
    session: Session,
    message: StepInput,
    before: list[Effect],
    now: datetime,
    quiet: timedelta,
    timing: Timing,
) -> StepResult:
    text = message.text
    if message.button is not None and message.button.startswith(LANGUAGE_BUTTON):
        return _set_language(flows, session, message.button[len(LANGUAGE_BUTTON) :], before)
    if message.button is None and is_sos(flows, text):
        return _start_sos(flows, session, before)
    if session.resuming:
        return _resume_answer(flows, session, message, before)
    if (
        session.has_draft
        and quiet >= timing.resume_after
        and message.button is None  # a press on the question on screen is deliberate
        and not text.startswith("/")
        and session.case_ref is None  # answers to an open case are always welcome
    ):
        return _ask_resume(flows, session, before)
    if message.button is not None:
        return _button(flows, session, message.button, before, now)
    if not text:
        return StepResult(session, (*before, Reply(flows.text(session.language, "empty"))))
    if text.startswith("/"):
        return _command(flows, session, message, before)
    if session.flow is None or session.step is None:
        if message.open_case_ref is not None:
            ref = message.open_case_ref
            reply = Reply(flows.text(session.language, "added_to_case", ref=ref))
            return StepResult(session, (*before, AddToCase(ref, "message", text), reply))
        return _start_intake(flows, session, before)
    flow = flows.flows[session.flow]
    return _answer(flows, flow, session, flow.steps[session.step], text, before, now)


def question(
    flows: FlowSet, flow: Flow, current: Step, language: str, ticked: tuple[str, ...] = ()
) -> str:
    """Render the prompt of ``current`` with numbered options and how to answer or skip."""
    lines = [flows.text(language, current.key, flow)]
    if current.type in (StepType.CHOICE, StepType.MULTI):
        for number, option in enumerate(current.options, start=1):
            mark = CHECK_MARK if option in ticked else ""
            label = flows.text(language, f"{current.key}.{option}", flow)
            lines.append(f"{number}. {mark}{label}")
        hint = "multi_hint" if current.type is StepType.MULTI else "choice_hint"
        lines.append(flows.text(language, hint) + " " + flows.text(language, "skip_hint"))
    elif current.type is StepType.YESNO:
        lines.append(f"1. {flows.text(language, 'option.yes')}")
        lines.append(f"2. {flows.text(language, 'option.no')}")
        lines.append(flows.text(language, "skip_hint"))
    elif current.type is StepType.DATE:
        lines.append(flows.text(language, "date_hint") + " " + flows.text(language, "skip_hint"))
    else:
        lines.append(flows.text(language, "text_skip_hint"))
    return localise("\n".join(lines), language)


def button_data(flow: Flow, current: Step, nonce: str, number: int) -> str:
    """Return the data of button ``number`` (0 = skip) of a question: flow, step, the
    question's nonce and the number, e.g. ``intake:what:3f9a1c:2`` (at most 64 bytes)."""
    return f"{flow.id}:{current.id}:{nonce}:{number}"


def _ask(
    flows: FlowSet, flow: Flow, current: Step, session: Session, *, again: bool = False
) -> tuple[Session, Reply]:
    """Ask ``current``: the session now waits there under a fresh nonce (or, asking ``again``,
    the same one, so the buttons already on screen keep working); the reply carries numbered
    options in its text and, for choices and yes/no, buttons."""
    seed = f"{flow.id}|{current.id}|{session.touched_at}|{len(session.answers)}"
    nonce = session.nonce if again else hashlib.sha256(seed.encode()).hexdigest()[:6]
    asked = replace(
        session,
        flow=flow.id,
        step=current.id,
        nonce=nonce,
        selection=session.selection if again else (),
    )
    language = session.language
    labels: list[str] = []
    if current.type in (StepType.CHOICE, StepType.MULTI):
        labels = [
            (CHECK_MARK if o in asked.selection else "")
            + flows.text(language, f"{current.key}.{o}", flow)
            for o in current.options
        ]
    elif current.type is StepType.YESNO:
        labels = [flows.text(language, "option.yes"), flows.text(language, "option.no")]
    choices: list[Choice] = [
        Choice(label, button_data(flow, current, nonce, number))
        for number, label in enumerate(labels, start=1)
    ]
    if current.type is StepType.MULTI:
        done = len(current.options) + 1
        choices.append(
            Choice(flows.text(language, "option.done"), button_data(flow, current, nonce, done))
        )
    if labels or current.type is StepType.DATE:
        choices.append(
            Choice(flows.text(language, "option.skip"), button_data(flow, current, nonce, 0))
        )
    text = question(flows, flow, current, language, asked.selection)
    return asked, Reply(text, tuple(choices))


def _language_offer(flows: FlowSet, language: str) -> Reply:
    """The first-contact offer: which language this is, and a button per language."""
    name = flows.catalog.languages.get(language, language)
    choices = tuple(
        Choice(own_name, f"{LANGUAGE_BUTTON}{code}")
        for code, own_name in flows.catalog.languages.items()
        if code != language
    )
    return Reply(flows.text(language, "language_offer", name=name), choices)


def _set_language(
    flows: FlowSet, session: Session, wanted: str, before: list[Effect]
) -> StepResult:
    """Switch to the language named by code, own name or list number, then ask the current
    question again in it."""
    offered = list(flows.catalog.languages.items())
    folded = wanted.strip().casefold()
    code = next(
        (
            c
            for number, (c, name) in enumerate(offered, start=1)
            if folded in (c.casefold(), name.casefold(), str(number))
        ),
        None,
    )
    if code is None:
        unknown = Reply(flows.text(session.language, "language_unknown", code=wanted[:20]))
        return StepResult(session, (*before, unknown, _language_menu(flows, session.language)))
    session = replace(session, language=code)
    name = flows.catalog.languages[code]
    done = Reply(flows.text(code, "language_set", name=name))
    if session.resuming:  # the open question is still "continue or start again?"
        return _ask_resume(flows, session, [*before, done])
    return StepResult(session, (*before, done, *_reask(flows, session)))


def _language_menu(flows: FlowSet, language: str) -> Reply:
    lines = [flows.text(language, "language_menu")]
    choices = []
    for code, name in flows.catalog.languages.items():
        lines.append(f"/lang {code} — {name}")
        choices.append(Choice(name, f"{LANGUAGE_BUTTON}{code}"))
    return Reply(localise("\n".join(lines), language), tuple(choices))


def _ask_resume(flows: FlowSet, session: Session, before: list[Effect]) -> StepResult:
    """After a silence, ask before going on: the question on screen may be hours old."""
    language = session.language
    nonce = hashlib.sha256(f"resume|{session.touched_at}".encode()).hexdigest()[:6]
    text = "\n".join(
        [
            flows.text(language, "resume_question"),
            f"1. {flows.text(language, 'option.continue')}",
            f"2. {flows.text(language, 'option.restart')}",
            flows.text(language, "choice_hint"),
        ]
    )
    text = localise(text, language)
    choices = (
        Choice(flows.text(language, "option.continue"), f"{RESUME_BUTTON}::{nonce}:1"),
        Choice(flows.text(language, "option.restart"), f"{RESUME_BUTTON}::{nonce}:2"),
    )
    asked = replace(session, resuming=True, nonce=nonce)
    return StepResult(asked, (*before, Reply(text, choices)))


def _resume_answer(
    flows: FlowSet, session: Session, message: StepInput, before: list[Effect]
) -> StepResult:
    answer = message.text.strip()
    if message.button is not None:
        parts = message.button.split(":")
        answer = parts[3] if len(parts) == 4 and parts[2] == session.nonce else ""
        if not answer:
            stale = Reply(flows.text(session.language, "stale_button"))
            return replace(_ask_resume(flows, session, [*before, stale]), refused="stale_button")
    if answer.startswith("/"):
        return _command(flows, replace(session, resuming=False), message, before)
    folded = answer.casefold()
    if folded == "1" or folded in flows.words(session.language, "yes_words"):
        return _continue(flows, replace(session, resuming=False), before)
    if folded == "2" or folded in flows.words(session.language, "no_words"):
        return _start_intake(flows, session.idle(), before)
    return StepResult(
        session, (*before, Reply(flows.text(session.language, "out_of_range", max=2)))
    )


def _continue(flows: FlowSet, session: Session, before: list[Effect]) -> StepResult:
    """Ask the question in progress again under a fresh nonce (its old buttons go stale)."""
    flow = flows.flows[session.flow or ""]
    asked, ask = _ask(flows, flow, flow.steps[session.step or ""], session)
    return StepResult(asked, (*before, ask))


def _button(
    flows: FlowSet, session: Session, data: str, before: list[Effect], now: datetime
) -> StepResult:
    parts = data.split(":")
    flow = flows.flows.get(session.flow or "")
    current = flow.steps.get(session.step or "") if flow else None
    if (
        flow is not None
        and current is not None
        and len(parts) == 4
        and parts[:3] == [flow.id, current.id, session.nonce]
        and parts[3].isascii()
        and parts[3].isdecimal()
        and len(parts[3]) <= 2
    ):
        number = int(parts[3])
        if current.type is StepType.MULTI and number != 0:
            return _tick(flows, flow, session, current, number, before, now)
        if current.type is StepType.DATE and number != 0:
            return StepResult(session, (*before, *_reask(flows, session)))
        return _answer(flows, flow, session, current, str(number), before, now)
    stale = Reply(flows.text(session.language, "stale_button"))
    return StepResult(session, (*before, stale, *_reask(flows, session)), "stale_button")


def _tick(
    flows: FlowSet,
    flow: Flow,
    session: Session,
    current: Step,
    number: int,
    before: list[Effect],
    now: datetime,
) -> StepResult:
    """A multi-select button: tick or untick an option, or (Done) answer with the ticks."""
    if number == len(current.options) + 1:
        chosen = MULTI_SEPARATOR.join(o for o in current.options if o in session.selection)
        return _record(flows, flow, session, current, chosen or None, before, now)
    if not 1 <= number <= len(current.options):
        return StepResult(session, (*before, *_reask(flows, session)))
    option = current.options[number - 1]
    ticked = tuple(o for o in session.selection if o != option)
    if option not in session.selection:
        ticked = (*ticked, option)
    session = replace(session, selection=ticked)
    language = session.language
    names = ", ".join(
        flows.text(language, f"{current.key}.{o}", flow) for o in current.options if o in ticked
    )
    note = Reply(flows.text(language, "multi_selected", chosen=names or "—"))
    return StepResult(session, (*before, note, *_reask(flows, session)))


def _start_sos(flows: FlowSet, session: Session, before: list[Effect]) -> StepResult:
    flow = flows.by_kind(FlowKind.SOS)
    opened = OpenCase(
        kind=FlowKind.SOS,
        flow_id=flow.id,
        flow_ids=(flow.id,),
        tier_floor=flow.tier,
        answers={},
        reply_key="opened",
        repeat_key="repeated",
    )
    new, ask = _ask(flows, flow, flow.steps[flow.start], replace(session.idle(), path=(flow.id,)))
    return StepResult(new, (*before, opened, ask))


def _start_intake(flows: FlowSet, session: Session, before: list[Effect]) -> StepResult:
    flow = flows.by_kind(FlowKind.INTAKE)
    fresh = replace(session.idle(), path=(flow.id,))
    new, ask = _ask(flows, flow, flow.steps[flow.start], fresh)
    intro = Reply(flows.text(session.language, "intro", flow))
    return StepResult(new, (*before, intro, ask))


def _reask(flows: FlowSet, session: Session, *, again: bool = True) -> tuple[Effect, ...]:
    if session.flow is None or session.step is None:
        return ()
    flow = flows.flows[session.flow]
    _, ask = _ask(flows, flow, flow.steps[session.step], session, again=again)
    return (ask,)


def _command(
    flows: FlowSet, session: Session, message: StepInput, before: list[Effect]
) -> StepResult:
    command, _, argument = message.text.partition(" ")
    command = command.split("@", 1)[0].casefold()
    language = session.language
    if command == "/start":
        return _start_intake(flows, session, before)
    if command == "/lang":
        if argument.strip():
            return _set_language(flows, session, argument, before)
        return StepResult(session, (*before, _language_menu(flows, language)))
    if command == "/help":
        return StepResult(
            session, (*before, Reply(flows.text(language, "help")), *_reask(flows, session))
        )
    if command == "/status":
        return StepResult(session, (*before, ShowStatus(), *_reask(flows, session)))
    if command == "/cancel":
        if session.flow is None:
            return StepResult(session, (*before, Reply(flows.text(language, "nothing_to_cancel"))))
        flow = flows.flows[session.flow]
        if session.case_ref is not None:
            key = "cancelled_sos" if flow.kind is FlowKind.SOS else "cancelled_open"
            reply = Reply(flows.text(language, key, ref=session.case_ref))
            return StepResult(session.idle(), (*before, reply, Scrub(session.case_ref)))
        reply = Reply(flows.text(language, "cancelled"))
        return StepResult(session.idle(), (*before, reply))
    unknown = Reply(flows.text(language, "unknown_command", command=command[:40]))
    return StepResult(session, (*before, unknown, *_reask(flows, session)))


_NUMBERS = re.compile(r"\d+")


def _parse_answer(
    flows: FlowSet, flow: Flow, current: Step, text: str, language: str, now: datetime
) -> tuple[bool, str | None]:
    """Return (understood, answer); answer None means skipped."""
    folded = text.casefold().strip().rstrip(".")
    if folded in flows.words(language, "skip_words"):
        return True, None
    if current.type is StepType.TEXT:
        return True, text
    if current.type is StepType.DATE:
        words = DateWords(
            today=flows.words(language, "today_words"),
            tomorrow=flows.words(language, "tomorrow_words"),
        )
        when = parse_date(text, now.date(), words)
        return (True, when.isoformat()) if when is not None else (False, None)
    if current.type is StepType.YESNO:
        if folded in flows.words(language, "yes_words"):
            return True, "yes"
        if folded in flows.words(language, "no_words"):
            return True, "no"
        return False, None
    if current.type is StepType.MULTI:
        numbers = _NUMBERS.findall(folded)
        leftover = _NUMBERS.sub("", folded).replace(",", "").replace("،", "")
        if numbers and not leftover.strip() and all(len(n) <= 3 for n in numbers):
            picked = {int(n) for n in numbers}
            if all(1 <= n <= len(current.options) for n in picked):
                return True, MULTI_SEPARATOR.join(
                    o for i, o in enumerate(current.options, start=1) if i in picked
                )
        single = _single_option(flows, flow, current, folded, language)
        return (single is not None), single
    if folded.isdecimal():
        number = int(folded) if len(folded) <= 6 else 0
        if 1 <= number <= len(current.options):
            return True, current.options[number - 1]
        return False, None
    found = _single_option(flows, flow, current, folded, language)
    return (found is not None), found


def _single_option(
    flows: FlowSet, flow: Flow, current: Step, folded: str, language: str
) -> str | None:
    """The option whose label (in the defender's language or English) was typed out."""
    for option in current.options:
        for lang in (language, flows.catalog.default_language):
            if folded == flows.text(lang, f"{current.key}.{option}", flow).casefold():
                return option
    return None


def _answer(
    flows: FlowSet,
    flow: Flow,
    session: Session,
    current: Step,
    text: str,
    before: list[Effect],
    now: datetime,
) -> StepResult:
    language = session.language
    folded = text.casefold().strip().rstrip(".")
    if current.type is StepType.MULTI and folded in flows.words(language, "done_words"):
        chosen = MULTI_SEPARATOR.join(o for o in current.options if o in session.selection)
        return _record(flows, flow, session, current, chosen or None, before, now)
    understood, answer = _parse_answer(flows, flow, current, text, language, now)
    if not understood:
        if current.type is StepType.DATE:
            return StepResult(session, (*before, Reply(flows.text(language, "date_invalid"))))
        count = len(current.options) if current.options else 2
        return StepResult(
            session, (*before, Reply(flows.text(language, "out_of_range", max=count)))
        )
    limit = current.max_length
    if current.type is StepType.TEXT and answer is not None and limit and len(answer) > limit:
        answer = answer[:limit]
        before = [*before, Reply(flows.text(language, "truncated", limit=limit))]
    return _record(flows, flow, session, current, answer, before, now)


def display(flows: FlowSet, flow: Flow, current: Step, answer: str | None) -> str:
    """Return an answer as responders read it (option labels in the team's language)."""
    language = flows.catalog.default_language
    if answer is None:
        return "(skipped)"
    if current.type in (StepType.CHOICE, StepType.MULTI):
        return ", ".join(flows.text(language, f"{current.key}.{o}", flow) for o in selected(answer))
    if current.type is StepType.YESNO:
        return flows.text(language, f"option.{answer}")
    return answer


def label(flows: FlowSet, flow: Flow, current: Step) -> str:
    """Return a question as a short label for responders ("Where are you, roughly")."""
    prompt = flows.text(flows.catalog.default_language, current.key, flow)
    return prompt.split("?")[0].split(".")[0].split("\n")[0][:80]


def _record(
    flows: FlowSet,
    flow: Flow,
    session: Session,
    current: Step,
    answer: str | None,
    before: list[Effect],
    now: datetime,
) -> StepResult:
    """Store an answer and move on: through open steps and into other flows, until a
    question is asked or the flow ends."""
    effects = list(before)
    answers = dict(session.answers)
    if current.append:
        if answer is not None and session.case_ref is not None:
            effects.append(AddToCase(session.case_ref, current.id, answer))
    else:
        answers[current.id] = answer
        if session.case_ref is not None and answer is not None:
            shown = display(flows, flow, current, answer)
            title = label(flows, flow, current)
            effects.append(AddToCase(session.case_ref, current.id, shown, title))
            effects.append(Retriage(session.case_ref, session.path, dict(answers)))
    session = replace(session, answers=answers, selection=())
    target = current.next_step(answers)
    for _ in range(len(flows.flows) + 1):  # entering flows cannot loop: ids are unique
        if not target.startswith(FLOW_PREFIX):
            break
        flow = flows.flows[target[len(FLOW_PREFIX) :]]
        session = replace(session, path=(*session.path, flow.id))
        target = flow.start
    following = flow.steps[target]
    while following.type is StepType.OPEN:
        if session.case_ref is None:
            effects.append(
                OpenCase(
                    kind=flow.kind,
                    flow_id=flow.id,
                    flow_ids=session.path,
                    tier_floor=flow.tier,
                    answers=dict(answers),
                    reply_key=following.key,
                    bind=True,
                )
            )
        following = flow.steps[following.next_step(answers)]
    if following.type is not StepType.END:
        new, ask = _ask(flows, flow, following, replace(session, flow=flow.id))
        effects.append(ask)
        return StepResult(new, tuple(effects))
    ref = session.case_ref
    if following.outcome is Outcome.SUBMIT and ref is None:
        effects.append(
            OpenCase(
                kind=flow.kind,
                flow_id=flow.id,
                flow_ids=session.path,
                tier_floor=flow.tier,
                answers=answers,
                reply_key=following.key,
            )
        )
        effects.append(Scrub(None))
    elif following.outcome in (Outcome.SUBMIT, Outcome.CLOSE):
        effects.append(Reply(flows.text(session.language, following.key, flow, ref=ref)))
        effects.append(Scrub(ref))
    else:
        effects.append(Reply(flows.text(session.language, following.key, flow)))
    return StepResult(session.idle(), tuple(effects))
