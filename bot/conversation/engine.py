"""The conversation engine: a pure function from (flows, session, input, now) to the new
session and the effects the service must carry out.

It never awaits, never touches storage or channels, and never reads the clock: everything it
knows arrives as arguments, so every behaviour is a table test away.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bot.conversation.model import Flow, FlowKind, FlowSet, Outcome, Step, StepType
from bot.core.messages import Choice

COMMANDS = ("/start", "/help", "/cancel", "/status")


@dataclass(frozen=True, slots=True)
class Session:
    """Where one defender is in the conversation; stored encrypted after every step.

    Attributes:
        language: the language texts are shown in.
        flow: the flow in progress, if any.
        step: the step waiting for an answer, if any.
        answers: draft answers of an intake in progress (step id -> answer; None = skipped).
        case_ref: the case opened by the SOS flow in progress (bound by the service).
        touched_at: when the session last changed (epoch ms), for draft expiry.
        nonce: identifies the question last asked; its buttons carry it, so a button from an
            earlier question is recognised as stale.
        notices: one-time notices already shown (e.g. the Telegram encryption warning).
        chat_ids: platform ids of the defender's messages in a chat that will be deleted after
            the intake (Telegram), kept only until then.
    """

    language: str
    flow: str | None = None
    step: str | None = None
    answers: Mapping[str, str | None] = field(default_factory=dict)
    case_ref: str | None = None
    touched_at: int = 0
    nonce: str = ""
    notices: tuple[str, ...] = ()
    chat_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; :meth:`from_dict` reverses it."""
        return {
            "v": 1,
            "language": self.language,
            "flow": self.flow,
            "step": self.step,
            "answers": dict(self.answers),
            "case_ref": self.case_ref,
            "touched_at": self.touched_at,
            "nonce": self.nonce,
            "notices": list(self.notices),
            "chat_ids": list(self.chat_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        """Rebuild a session saved by :meth:`to_dict`."""
        return cls(
            language=str(data["language"]),
            flow=data.get("flow"),
            step=data.get("step"),
            answers=dict(data.get("answers") or {}),
            case_ref=data.get("case_ref"),
            touched_at=int(data.get("touched_at", 0)),
            nonce=str(data.get("nonce", "")),
            notices=tuple(data.get("notices") or ()),
            chat_ids=tuple(data.get("chat_ids") or ()),
        )

    def idle(self) -> Session:
        """Return this session with no flow in progress and no draft."""
        return replace(self, flow=None, step=None, answers={}, case_ref=None, nonce="")


@dataclass(frozen=True, slots=True)
class StepInput:
    """One cleaned message and the facts about the defender the engine may need.

    Attributes:
        text: the cleaned text (see :func:`bot.core.text.clean_input`).
        truncated_to: the limit the text was cut to, or None if it was not cut.
        open_case_ref: the reference of the defender's most recent open case, if any.
        button: the data of a pressed button (see :func:`button_data`), if any.
    """

    text: str
    truncated_to: int | None = None
    open_case_ref: str | None = None
    button: str | None = None


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
        tier_floor: the lowest tier the case may get (SOS: critical).
        answers: the answers to triage and store.
        reply_key: the text to send once the case exists; it gets ``{ref}``.
        repeat_key: for SOS, the text when an open SOS case is reused.
    """

    kind: FlowKind
    flow_id: str
    tier_floor: str | None
    answers: Mapping[str, str | None]
    reply_key: str
    repeat_key: str | None = None


@dataclass(frozen=True, slots=True)
class AddToCase:
    """Add ``value`` under ``label`` to case ``ref`` and pass it to its responders."""

    ref: str
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class ShowStatus:
    """Tell the defender the state of their cases (no details)."""


Effect = Reply | OpenCase | AddToCase | ShowStatus | Scrub


@dataclass(frozen=True, slots=True)
class StepResult:
    """The new session and the effects, in the order they must happen."""

    session: Session
    effects: tuple[Effect, ...]


def _compact(text: str) -> str:
    """Casefold and drop spaces and punctuation: 'S.O.S!' and 'sos' compare equal."""
    return "".join(
        ch
        for ch in text.casefold()
        if not ch.isspace() and not unicodedata.category(ch).startswith("P")
    )


def is_sos(flows: FlowSet, text: str) -> bool:
    """Return True when the whole message is an SOS word of any language, in any case, with
    spaces and punctuation ignored ("SOS", "sos!", "S.O.S", "S O S", "au secours !").

    Only the whole message counts: "SOS please" is not an alarm.
    """
    if len(text) > 60:
        return False
    folded = _compact(text)
    return bool(folded) and any(
        folded == _compact(word)
        for words in flows.catalog.words.values()
        for word in words.get("sos_words", ())
    )


def step(flows: FlowSet, session: Session, message: StepInput, now: datetime) -> StepResult:
    """Advance ``session`` by one message.

    Guarantees: SOS always opens (or re-alerts) a critical case first, whatever flow is in
    progress; every message gets at least one reply or effect (never a silent drop); an intake's
    answers are only handed over for storage after a "yes" to consent; ``/cancel`` deletes the
    draft; a button from an earlier question is refused kindly and the current one asked again.
    """
    session = replace(session, touched_at=int(now.timestamp() * 1000))
    flow_in_progress = flows.flows.get(session.flow or "")
    if session.flow is not None and (
        flow_in_progress is None or session.step not in flow_in_progress.steps
    ):
        session = session.idle()  # the flow was changed or removed since this session began
    before: list[Effect] = []
    if message.truncated_to is not None:
        before.append(Reply(flows.text(session.language, "truncated", limit=message.truncated_to)))
    if message.button is not None:
        return _button(flows, session, message.button, before)
    text = message.text
    if is_sos(flows, text):
        return _start_sos(flows, session, before)
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
    return _answer(flows, flow, session, flow.steps[session.step], text, before)


def question(flows: FlowSet, flow: Flow, current: Step, language: str) -> str:
    """Render the prompt of ``current`` with numbered options and how to skip it."""
    lines = [flows.text(language, current.id, flow)]
    if current.type is StepType.CHOICE:
        for number, option in enumerate(current.options, start=1):
            lines.append(f"{number}. {flows.text(language, f'{current.id}.{option}', flow)}")
        hint = flows.text(language, "choice_hint") + " " + flows.text(language, "skip_hint")
        lines.append(hint)
    elif current.type is StepType.YESNO:
        lines.append(f"1. {flows.text(language, 'option.yes')}")
        lines.append(f"2. {flows.text(language, 'option.no')}")
        lines.append(flows.text(language, "skip_hint"))
    else:
        lines.append(flows.text(language, "text_skip_hint"))
    return "\n".join(lines)


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
    asked = replace(session, flow=flow.id, step=current.id, nonce=nonce)
    language = session.language
    labels: list[str] = []
    if current.type is StepType.CHOICE:
        labels = [flows.text(language, f"{current.id}.{o}", flow) for o in current.options]
    elif current.type is StepType.YESNO:
        labels = [flows.text(language, "option.yes"), flows.text(language, "option.no")]
    choices: tuple[Choice, ...] = ()
    if labels:
        skip = Choice(flows.text(language, "option.skip"), button_data(flow, current, nonce, 0))
        choices = (
            *(
                Choice(label, button_data(flow, current, nonce, number))
                for number, label in enumerate(labels, start=1)
            ),
            skip,
        )
    return asked, Reply(question(flows, flow, current, language), choices)


def _button(flows: FlowSet, session: Session, data: str, before: list[Effect]) -> StepResult:
    parts = data.split(":")
    flow = flows.flows.get(session.flow or "")
    current = flow.steps.get(session.step or "") if flow else None
    if (
        flow is not None
        and current is not None
        and len(parts) == 4
        and parts[:3] == [flow.id, current.id, session.nonce]
        and parts[3].isdigit()
        and len(parts[3]) <= 2
    ):
        return _answer(flows, flow, session, current, str(int(parts[3])), before)
    stale = Reply(flows.text(session.language, "stale_button"))
    return StepResult(session, (*before, stale, *_reask(flows, session)))


def _start_sos(flows: FlowSet, session: Session, before: list[Effect]) -> StepResult:
    flow = flows.by_kind(FlowKind.SOS)
    opened = OpenCase(
        kind=FlowKind.SOS,
        flow_id=flow.id,
        tier_floor=flow.tier,
        answers={},
        reply_key="opened",
        repeat_key="repeated",
    )
    new, ask = _ask(flows, flow, flow.steps[flow.start], session.idle())
    return StepResult(new, (*before, opened, ask))


def _start_intake(flows: FlowSet, session: Session, before: list[Effect]) -> StepResult:
    flow = flows.by_kind(FlowKind.INTAKE)
    new, ask = _ask(flows, flow, flow.steps[flow.start], session.idle())
    intro = Reply(flows.text(session.language, "intro", flow))
    return StepResult(new, (*before, intro, ask))


def _reask(flows: FlowSet, session: Session) -> tuple[Effect, ...]:
    if session.flow is None or session.step is None:
        return ()
    flow = flows.flows[session.flow]
    _, ask = _ask(flows, flow, flow.steps[session.step], session, again=True)
    return (ask,)


def _command(
    flows: FlowSet, session: Session, message: StepInput, before: list[Effect]
) -> StepResult:
    command = message.text.split()[0].split("@", 1)[0].casefold()
    language = session.language
    if command == "/start":
        return _start_intake(flows, session, before)
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
        if flow.kind is FlowKind.SOS and session.case_ref is not None:
            reply = Reply(flows.text(language, "cancelled_sos", ref=session.case_ref))
            return StepResult(session.idle(), (*before, reply, Scrub(session.case_ref)))
        reply = Reply(flows.text(language, "cancelled"))
        return StepResult(session.idle(), (*before, reply))
    unknown = Reply(flows.text(language, "unknown_command", command=command[:40]))
    return StepResult(session, (*before, unknown, *_reask(flows, session)))


def _parse_answer(
    flows: FlowSet, flow: Flow, current: Step, text: str, language: str
) -> tuple[bool, str | None]:
    """Return (understood, answer); answer None means skipped."""
    folded = text.casefold().strip().rstrip(".")
    if folded in flows.words(language, "skip_words"):
        return True, None
    if current.type is StepType.TEXT:
        return True, text
    if current.type is StepType.YESNO:
        if folded in flows.words(language, "yes_words"):
            return True, "yes"
        if folded in flows.words(language, "no_words"):
            return True, "no"
        return False, None
    if folded.isdecimal():
        number = int(folded) if len(folded) <= 6 else 0
        if 1 <= number <= len(current.options):
            return True, current.options[number - 1]
        return False, None
    for option in current.options:
        if folded == flows.text(language, f"{current.id}.{option}", flow).casefold():
            return True, option
    return False, None


def _answer(
    flows: FlowSet,
    flow: Flow,
    session: Session,
    current: Step,
    text: str,
    before: list[Effect],
) -> StepResult:
    language = session.language
    understood, answer = _parse_answer(flows, flow, current, text, language)
    if not understood:
        count = len(current.options) if current.type is StepType.CHOICE else 2
        return StepResult(
            session, (*before, Reply(flows.text(language, "out_of_range", max=count)))
        )
    effects = list(before)
    answers = dict(session.answers)
    if current.append:
        if answer is not None and session.case_ref is not None:
            effects.append(AddToCase(session.case_ref, current.id, answer))
    else:
        answers[current.id] = answer
    following = flow.steps[current.next_step(answers)]
    if following.type is not StepType.END:
        new, ask = _ask(flows, flow, following, replace(session, answers=answers))
        effects.append(ask)
        return StepResult(new, tuple(effects))
    if following.outcome is Outcome.SUBMIT:
        effects.append(
            OpenCase(
                kind=flow.kind,
                flow_id=flow.id,
                tier_floor=flow.tier,
                answers=answers,
                reply_key=following.id,
            )
        )
        effects.append(Scrub(None))
    elif following.outcome is Outcome.CLOSE:
        effects.append(Reply(flows.text(language, following.id, flow, ref=session.case_ref)))
        effects.append(Scrub(session.case_ref))
    else:
        effects.append(Reply(flows.text(language, following.id, flow)))
    return StepResult(session.idle(), tuple(effects))
