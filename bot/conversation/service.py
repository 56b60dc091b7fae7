"""The conversation service: load the defender's session, run one pure engine step, carry
out its effects, and store the session again — all in the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.conversation import engine
from bot.conversation.model import Flow, FlowKind, FlowSet
from bot.core.clock import to_millis
from bot.core.messages import Address, InboundMessage, Priority
from bot.core.ports import Transaction
from bot.core.records import CaseView, OutboxItem
from bot.core.text import clean_input
from bot.paging.service import DURESS_LABEL, SEIZED_LABEL, CaseSummary, PagingService
from bot.safety.commands import Command, safety_command
from bot.safety.service import SafetyResult, SafetyService
from bot.triage.rules import RuleSet, answer_flags, tier_rank, triage

log = logging.getLogger(__name__)


def own_device_seized(flags: Collection[str]) -> bool:
    """True when the answers say a device of the defender themselves (not of someone they
    report about) is in someone else's hands: that device must not be contacted."""
    return "device_seized" in flags and "third_party" not in flags


def _case_kind(kind: FlowKind) -> str:
    """Cases are "sos" (the one-word alarm) or "intake" (anything asked through a form)."""
    return "sos" if kind is FlowKind.SOS else "intake"


MAX_CHAT_IDS = 300  # message ids remembered for clearing a chat (Telegram allows 48 h)
DEFAULT_TIMING = engine.Timing()
# The answers that name what happened, most specific last: a page shows the last one given.
PAGE_LABEL_STEPS = ("what", "situation", "threat_kind", "legal_kind", "incident")
SCRUB_DELAY = timedelta(seconds=20)  # time to read the last answer before the chat is cleared


class ConversationService:
    """Runs defenders' conversations.

    Args:
        flows: the loaded flows and texts.
        rules: the triage rules.
        paging: starts escalations and relays additions to responders.
        default_language: the language of a new defender.
        max_chars: the longest message kept; longer ones are cut and the defender is told.
        scrub_channels: channels whose chats are cleared after an intake or SOS is stored.
        scrub_delay: how long after storing the chat is cleared (time to read the answer).
        signal_number: the bot's Signal number, offered to Telegram users as the safer way.
        timing: when a quiet draft is questioned and when it expires.
        safety: runs codes, check-ins and duress (None: safety commands are unknown).
        deleting_channels: channels where the bot can delete a defender's message (Telegram):
            a message that carried a safety code is deleted there at once.
    """

    def __init__(
        self,
        flows: FlowSet,
        rules: RuleSet,
        paging: PagingService,
        default_language: str,
        max_chars: int,
        *,
        scrub_channels: Collection[str] = (),
        scrub_delay: timedelta = SCRUB_DELAY,
        signal_number: str | None = None,
        timing: engine.Timing = DEFAULT_TIMING,
        safety: SafetyService | None = None,
        deleting_channels: Collection[str] = (),
    ) -> None:
        self._timing = timing
        self._safety = safety
        self._deleting_channels = frozenset(deleting_channels)
        self._scrub_channels = frozenset(scrub_channels)
        self._scrub_delay = scrub_delay
        self._warnings: dict[str, Callable[[str], str]] = {
            "telegram": (
                (lambda lang: flows.text(lang, "telegram_warning_signal", number=signal_number))
                if signal_number
                else (lambda lang: flows.text(lang, "telegram_warning"))
            )
        }
        self._flows = flows
        self._rules = rules
        self._paging = paging
        self._default_language = default_language
        self._max_chars = max_chars

    async def handle(
        self, tx: Transaction, key: str, message: InboundMessage, now: datetime
    ) -> None:
        """Process one message from a defender.

        ``key`` (the inbox id) makes every message this step queues idempotent. Guarantees the
        defender gets at least one reply, and that the session is stored (encrypted) before
        the transaction commits.
        """
        sender = message.sender
        defender = await tx.defender_for(sender, now)
        first_contact = defender.session is None
        if defender.session is not None:
            session = engine.Session.from_dict(defender.session)
        else:
            session = engine.Session(language=self._default_language, touched_at=to_millis(now))
        cleaned = clean_input(message.text, self._max_chars)
        cases = await tx.cases_of_defender(defender.id)
        open_case = next((c for c in cases if c.status != "resolved"), None)
        command = safety_command(cleaned.text) if message.button is None else None
        if self._safety is not None and session.plan_step and not session.compromised:
            answering = (
                command is None
                and message.button is None
                and bool(cleaned.text)
                and not cleaned.text.startswith("/")
                and not engine.is_sos(self._flows, cleaned.text)
            )
            if answering:
                walked = await self._safety.plan_answer(tx, defender.id, session, cleaned.text, now)
                stored = await self._deliver(tx, key, defender.id, walked, message, now)
                if stored is not None:
                    await tx.defender_save_session(defender.id, stored.to_dict(), now)
                return
            if command is None:  # anything else ends the walk and is handled as usual
                session = replace(session, plan_step=None)
        if self._safety is not None and (command is not None or session.compromised):
            stored = await self._safely(
                tx, key, defender.id, session, command, message, cleaned.text, cases, now
            )
            if stored is not None:
                await tx.defender_save_session(defender.id, stored.to_dict(), now)
            return
        step_input = engine.StepInput(
            text=cleaned.text,
            truncated_to=self._max_chars if cleaned.truncated else None,
            open_case_ref=open_case.ref if open_case else None,
            button=message.button,
            first_contact=first_contact,
            language_hint=message.language_hint,
        )
        result = engine.step(self._flows, session, step_input, now, self._timing)
        if result.refused is not None:
            log.info(
                "conversation.button_refused reason=%s channel=%s", result.refused, sender.channel
            )
        session = result.session
        scrubbing = sender.channel in self._scrub_channels
        if scrubbing and message.platform_message_id is not None:
            kept = (*session.chat_ids, message.platform_message_id)[-MAX_CHAT_IDS:]
            session = replace(session, chat_ids=kept)
        outgoing: list[engine.Reply] = []
        if sender.channel in self._warnings and sender.channel not in session.notices:
            outgoing.append(engine.Reply(self._warnings[sender.channel](session.language)))
            session = replace(session, notices=(*session.notices, sender.channel))
        opened: CaseView | None = None
        seized_mid_flow = False
        for index, effect in enumerate(result.effects):
            if isinstance(effect, engine.Reply):
                outgoing.append(effect)
            elif isinstance(effect, engine.OpenCase):
                opened, text, seized = await self._open_case(
                    tx, defender.id, cases, effect, session, now, key
                )
                outgoing.append(engine.Reply(text))
                if seized:
                    session = self._mark_seized(session)
                bound = effect.bind or effect.kind is FlowKind.SOS
                if bound and session.flow is not None and effect.flow_id in session.path:
                    session = replace(session, case_ref=opened.ref)
            elif isinstance(effect, engine.Retriage):
                if await self._retriage(tx, effect, now) and not session.compromised:
                    session = self._mark_seized(session)
                    seized_mid_flow = True
                    target = await tx.case_by_ref(effect.ref)
                    if target is not None:
                        await tx.case_add_entry(target.id, "flag", "seized", now)
                        await tx.log("defender.compromised", now, case_id=target.id)
            elif isinstance(effect, engine.AddToCase):
                target = await tx.case_by_ref(effect.ref)
                if target is None:  # pragma: no cover - refs come from this defender's own cases
                    continue
                await tx.case_add_entry(target.id, effect.label, effect.value, now)
                await self._paging.relay(
                    tx, target, effect.title or effect.label, effect.value, now, f"{key}:{index}"
                )
            elif isinstance(effect, engine.ShowStatus):
                outgoing.append(engine.Reply(self._status(session.language, cases)))
            elif isinstance(effect, engine.Scrub) and scrubbing:
                ref = effect.ref or (opened.ref if opened else None)
                await tx.outbox_add(
                    OutboxItem(
                        idempotency_key=f"scrub:{key}",
                        kind="scrub",
                        priority=Priority.NOTICE,
                        recipient=sender,
                        text=self._flows.text(session.language, "scrubbed", ref=ref or "—"),
                        defender_id=defender.id,
                        delete_ids=session.chat_ids,
                        not_before=now + self._scrub_delay,
                    ),
                    now,
                )
                session = replace(session, chat_ids=())
        if seized_mid_flow:  # the next question would go to whoever holds the device
            outgoing = []
            session = replace(session.idle(), compromised=True)
        await self._queue_replies(tx, key, defender.id, sender, outgoing, now)
        expires = now + self._timing.draft_expiry if session.has_draft else None
        await tx.defender_save_session(
            defender.id, session.to_dict(), now, draft_expires_at=expires
        )

    async def _safely(
        self,
        tx: Transaction,
        key: str,
        defender_id: str,
        session: engine.Session,
        command: Command | None,
        message: InboundMessage,
        text: str,
        cases: Sequence[CaseView],
        now: datetime,
    ) -> engine.Session | None:
        """A safety command, or anything from a device marked compromised. Returns the
        session to store (None: the defender was forgotten, nothing is stored)."""
        assert self._safety is not None
        if command is None:  # a compromised device: keep what it says, reply nothing
            await self._safety.from_compromised(tx, defender_id, text, cases, now, key)
            return session
        result = await self._safety.handle(tx, defender_id, session, command, cases, now)
        return await self._deliver(tx, key, defender_id, result, message, now)

    async def _deliver(
        self,
        tx: Transaction,
        key: str,
        defender_id: str,
        result: SafetyResult,
        message: InboundMessage,
        now: datetime,
    ) -> engine.Session | None:
        """Queue what the safety service decided: the Telegram warning once, the deletion of
        a message that carried a code, the replies. Returns the session to store."""
        sender = message.sender
        replies = list(result.replies)
        session = result.session
        if sender.channel in self._warnings and sender.channel not in session.notices:
            replies.insert(0, self._warnings[sender.channel](session.language))
            session = replace(session, notices=(*session.notices, sender.channel))
        if (
            result.delete_message
            and message.platform_message_id is not None
            and sender.channel in self._deleting_channels
        ):
            await tx.outbox_add(
                OutboxItem(
                    idempotency_key=f"delete:{key}",
                    kind="scrub",
                    priority=Priority.URGENT,
                    recipient=sender,
                    text="",
                    # No defender_id: a scrub tied to the defender also deletes what we sent
                    # them; this one deletes only the message that carried the code.
                    delete_ids=(message.platform_message_id,),
                ),
                now,
            )
        answers = [engine.Reply(text) for text in replies]
        await self._queue_replies(tx, key, defender_id, sender, answers, now)
        return None if result.forgotten else session

    @staticmethod
    async def _queue_replies(
        tx: Transaction,
        key: str,
        defender_id: str,
        recipient: Address,
        replies: Sequence[engine.Reply],
        now: datetime,
    ) -> None:
        """Queue the answers to one message, in order, each idempotent under ``key``."""
        for index, reply in enumerate(replies):
            await tx.outbox_add(
                OutboxItem(
                    idempotency_key=f"reply:{key}:{index}",
                    kind="reply",
                    priority=Priority.URGENT,
                    recipient=recipient,
                    text=reply.text,
                    choices=reply.choices,
                    defender_id=defender_id,
                ),
                now,
            )

    async def expire_drafts(self, tx: Transaction, now: datetime, limit: int = 100) -> int:
        """Delete the drafts that have been quiet for the draft expiry; return how many.

        Guarantees: only the draft goes (language and notices stay), and a case the draft
        had already opened stays open. The engine applies the same expiry when a defender
        writes before this sweep has run.
        """
        expired = await tx.defenders_with_expired_drafts(now, limit)
        for defender_id, saved in expired:
            if saved is None:  # a timer without a session: nothing to delete but the timer
                saved = engine.Session(language=self._default_language).to_dict()
            session = engine.Session.from_dict(saved)
            idle = replace(session.idle(), expired=True)
            await tx.defender_save_session(defender_id, idle.to_dict(), now, draft_expires_at=None)
            await tx.log("draft.expired", now, actor="system")
        return len(expired)

    async def _retriage(self, tx: Transaction, effect: engine.Retriage, now: datetime) -> bool:
        """Raise an open case's tier when its answers now call for a more urgent one.
        Returns True when the answers say the defender's own device was seized."""
        case = await tx.case_by_ref(effect.ref)
        if case is None or case.status == "resolved":
            return False
        flows = [self._flows.flows[f] for f in effect.flow_ids if f in self._flows.flows]
        flags = answer_flags(flows, effect.answers, now.date())
        result = triage(self._rules, flags)
        if tier_rank(result.tier) < tier_rank(case.tier):
            await self._paging.raise_tier(tx, case, result.tier, result.reasons, now)
        return own_device_seized(flags)

    @staticmethod
    def _mark_seized(session: engine.Session) -> engine.Session:
        """The defender's own device is in someone else's hands: from now on it gets
        nothing (see ``bot.safety``); what it sends still reaches the responders."""
        log.info("defender.compromised reason=seized")
        return replace(session, compromised=True)

    async def _open_case(
        self,
        tx: Transaction,
        defender_id: str,
        cases: Sequence[CaseView],
        effect: engine.OpenCase,
        session: engine.Session,
        now: datetime,
        key: str,
    ) -> tuple[CaseView, str, bool]:
        """Open the case (or reuse the open SOS case); return it, the text for the defender,
        and whether the answers say the defender's own device was seized."""
        flow = self._flows.flows[effect.flow_id]
        if effect.kind is FlowKind.SOS and effect.repeat_key is not None:
            active = next(
                (
                    c
                    for c in cases
                    if c.status != "resolved" and (c.kind == "sos" or c.tier == "critical")
                ),
                None,
            )
            if active is not None:
                await tx.log("case.sos_repeated", now, case_id=active.id, actor="defender")
                await self._paging.relay(tx, active, "SOS", "SOS sent again", now, f"{key}:sos")
                text = self._flows.text(session.language, effect.repeat_key, flow, ref=active.ref)
                return active, text, False
        flows = [self._flows.flows[f] for f in effect.flow_ids or (effect.flow_id,)]
        flags = answer_flags(flows, effect.answers, now.date())
        result = triage(self._rules, flags, effect.tier_floor)
        details = {
            "flow": effect.flow_id,
            "flows": [f.id for f in flows],
            "kind": effect.kind.value,
            "answers": dict(effect.answers),
            "reasons": list(result.reasons),
            "language": session.language,
            "seized": own_device_seized(flags),
        }
        case = await tx.case_open(defender_id, _case_kind(effect.kind), result.tier, details, now)
        await tx.log(
            "case.opened", now, case_id=case.id, actor="defender", detail=f"tier={case.tier}"
        )
        log.info("case.opened case=%s kind=%s tier=%s", case.id, case.kind, case.tier)
        await self._paging.start(tx, case, now)
        text = self._flows.text(session.language, effect.reply_key, flow, ref=case.ref)
        return case, text, bool(details["seized"])

    def _status(self, language: str, cases: Sequence[CaseView]) -> str:
        if not cases:
            return self._flows.text(language, "status_none")
        lines = [self._flows.text(language, "status_header")]
        for case in cases[:5]:
            lines.append(self._flows.text(language, f"status.{case.status}", ref=case.ref))
        return "\n".join(lines)


class CaseTexts:
    """How a case is shown: the summary a page may carry, the details the responder who
    takes it sees, and the defender's notices — rendered from the flow texts."""

    def __init__(self, flows: FlowSet, default_language: str) -> None:
        self._flows = flows
        self._default_language = default_language

    def _flows_of(self, details: Mapping[str, Any]) -> list[Flow]:
        ids = details.get("flows") or [details.get("flow")]
        return [self._flows.flows[str(f)] for f in ids if str(f) in self._flows.flows]

    def describe(self, details: Mapping[str, Any], added: Sequence[tuple[str, str]]) -> CaseSummary:
        """Return the type and coarse place of a case for a page (never more than that)."""
        answers: Mapping[str, Any] = details.get("answers", {})
        if details.get("duress") or ("flag", "duress") in added:
            label = DURESS_LABEL

        elif details.get("kind") == "checkin":
            label = "Missed check-in"
        elif details.get("kind") == "drill":
            label = "DRILL — a practice alert: acknowledge it as you would a real one"
        elif details.get("kind") == FlowKind.SOS.value:
            label = "SOS alert"
        else:
            label = "Emergency intake (type not given)"
            for flow in self._flows_of(details):
                for step_id in PAGE_LABEL_STEPS:
                    step = flow.steps.get(step_id)
                    if step is not None and answers.get(step_id):
                        label = engine.display(self._flows, flow, step, answers[step_id])
        if details.get("seized") or ("flag", "seized") in added:
            label = f"{SEIZED_LABEL} · {label}"
        place = answers.get("where") or next((v for k, v in reversed(added) if k == "where"), None)
        if place:
            place = " ".join(str(place).split())
            place = place if len(place) <= 60 else place[:59] + "…"
        return CaseSummary(kind_label=label, place=place or None)

    def detail_lines(
        self, details: Mapping[str, Any], added: Sequence[tuple[str, str]]
    ) -> list[str]:
        """Return every answer and addition of a case, labelled, for the responder who has it."""
        lines: list[str] = []
        answers: Mapping[str, Any] = details.get("answers", {})
        for flow in self._flows_of(details):
            for step_id, value in answers.items():
                step = flow.steps.get(step_id)
                if step is None:
                    continue
                shown = engine.display(self._flows, flow, step, value)
                lines.append(f"{engine.label(self._flows, flow, step)}: {shown}")
        if details.get("note"):
            lines.append(f"Check-in note: {details['note']}")
        compromised = ("flag", "duress") in added or ("flag", "seized") in added
        if details.get("duress") or details.get("seized") or compromised:
            lines.append(
                "The defender's device is under duress or seized: do not write or call it. "
                "Reach them through their referrer or a trusted contact."
            )
        reasons = details.get("reasons") or []
        if reasons:
            lines.append("Why this tier: " + "; ".join(reasons))
        steps = {s.id: (f, s) for f in reversed(self._flows_of(details)) for s in f.steps.values()}
        for label, value in added:
            found = steps.get(label)
            title = engine.label(self._flows, *found) if found else label
            lines.append(f"Added ({title}): {value}")
        return lines

    def defender_text(self, key: str, language: str, ref: str) -> str:
        """Render a catalog text for a defender (used by paging for taken/resolved notices)."""
        return self._flows.text(language, key, ref=ref)
