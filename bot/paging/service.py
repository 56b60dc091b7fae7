"""Paging: opening a case's escalation, advancing due escalations, and the responder
commands (``ack``, ``resolve``, ``cases``, ``help``).

Every state change and the messages it causes are written in the caller's transaction, so a
crash can never leave a case taken without its pages cancelled, or a step advanced without its
pages queued. Decisions come from :mod:`bot.paging.escalation`; this module only reads and
writes through the storage port.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.core.clock import to_millis
from bot.core.messages import Address, Priority
from bot.core.ports import Transaction
from bot.core.records import CaseView, EscalationView, OutboxItem
from bot.core.refs import normalise_reference
from bot.paging import escalation
from bot.paging.delivery import NOBODY, queue_to_person
from bot.paging.directory import Directory
from bot.paging.watchdog import OperatorAlerts, Problem

log = logging.getLogger(__name__)

NOT_END_TO_END = frozenset({"telegram"})  # channels whose pages carry the least

RESPONDER_HELP = (
    "Commands:\n"
    "ack REF — take the case (stops the paging)\n"
    "reply REF text — write to the defender (signed only as the responder team)\n"
    "escalate REF — page the next step now\n"
    "tier REF critical|high|medium|low [why] — change the urgency\n"
    "resolve REF [note] — close the case\n"
    "alert-contacts REF — send the defender's trusted contacts the message they chose\n"
    "cases — list open cases\n"
    "oncall — who is on call now, and the next hand-offs\n"
    "help — this list"
)
TIERS = ("critical", "high", "medium", "low")
DURESS_LABEL = "DURESS — do not contact this device"
SEIZED_LABEL = "DEVICE SEIZED — do not contact this device"


def format_age(delta: timedelta) -> str:
    """Return a short human age such as ``45s``, ``12m``, ``3h05m`` or ``2d4h``."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """What a page may say about a case: its type and coarse place, if known."""

    kind_label: str
    place: str | None


ContactAlerter = Callable[["Transaction", "CaseView", str, datetime], Awaitable[str]]
Describe = Callable[[Mapping[str, Any], Sequence[tuple[str, str]]], CaseSummary]
Detail = Callable[[Mapping[str, Any], Sequence[tuple[str, str]]], list[str]]


class PagingService:
    """Pages responders for cases and handles what responders say back.

    Args:
        directory: responders and the channels running in this process.
        policies: tier -> ladder policy (``bot.config.PagingPolicy``).
        describe: turns a case's details into the type and place a page shows.
        detail_lines: turns a case's details into the lines shown to the responder who acks.
        defender_text: renders a text for the defender in their language (key, language, ref).
        default_language: the language used when a defender's is unknown.
    """

    def __init__(
        self,
        directory: Directory,
        policies: Mapping[str, Any],
        describe: Describe,
        detail_lines: Detail,
        defender_text: Callable[[str, str, str], str],
        default_language: str,
        alerts: OperatorAlerts | None = None,
        resolve: escalation.Resolve = escalation.by_name,
        oncall: Callable[[datetime], str] | None = None,
        bundle_window: timedelta = timedelta(0),
    ) -> None:
        self._oncall = oncall
        self._bundle_window = bundle_window
        self.alerts = alerts
        self._targets = resolve
        self.directory = directory
        self._policies = policies
        self._describe = describe
        self._detail_lines = detail_lines
        self._defender_text = defender_text
        self.contact_alerter: ContactAlerter | None = None  # set by the safety service
        self._default_language = default_language

    # -- pages ---------------------------------------------------------------------------

    async def start(
        self, tx: Transaction, case: CaseView, now: datetime, note: str | None = None
    ) -> None:
        """Start the escalation of a new case: queue the first step's pages and store the
        next due time, in the caller's transaction. With a ``note`` (a restart for a reason,
        e.g. duress) the pages carry it and are new pages, not repeats of the first ones."""
        policy = self._policies[case.tier]
        hours = getattr(policy, "hours", None)
        if hours is not None and not hours.is_open(now):
            await self._queue(tx, case, now)
            return
        decision = escalation.start(policy, self.directory.reachable, now, self._targets)
        await self._apply(tx, case, decision, now, note)

    def _due_to_raise(self, case: CaseView, now: datetime) -> bool:
        """True when ``case`` has waited untaken past its tier's ``raise_after``."""
        raise_at = self._raise_at(case)
        return raise_at is not None and now >= raise_at

    def _raise_at(self, case: CaseView) -> datetime | None:
        """When an untaken case of a tier with ``raise_after`` is raised to the next tier."""
        after = getattr(self._policies[case.tier], "raise_after", None)
        return None if after is None else case.created_at + after

    async def _queue(self, tx: Transaction, case: CaseView, now: datetime) -> None:
        """Hold a case outside its tier's business hours: nobody is paged until the hours
        open (or, sooner, until it is raised for being untouched too long)."""
        policy = self._policies[case.tier]
        opens = policy.hours.next_open(now)
        raise_at = self._raise_at(case)
        due = min(opens, raise_at) if raise_at is not None else opens
        await tx.escalation_save(case.id, case.tier, "queued", 0, 0, due, now)
        await tx.log(
            "escalation.queued", now, case_id=case.id, detail=f"until={opens:%Y-%m-%dT%H:%MZ}"
        )

    async def _raise(self, tx: Transaction, case: CaseView, now: datetime) -> None:
        """Raise an untouched case one tier (low → medium …) and page on that tier's ladder."""
        higher = TIERS[max(TIERS.index(case.tier) - 1, 0)]
        await tx.case_set_tier(case.id, higher, now)
        await tx.log(
            "case.retiered",
            now,
            case_id=case.id,
            actor="system",
            detail=f"from={case.tier} to={higher} untouched",
        )
        log.warning("case.raised case=%s to=%s", case.id, higher)
        await self.start(tx, await tx.case_by_id(case.id), now)

    async def tick(self, tx: Transaction, now: datetime, limit: int = 50) -> int:
        """Advance up to ``limit`` escalations whose wait ran out, one step each; return how
        many steps fired (0: none is due).

        Each overdue step fires exactly once: the new due time counts from when the step
        was due, so after downtime the caller's next call fires the ladder's next step.
        """
        fired = 0
        for state in await tx.escalations_due(now, limit):
            assert state.next_due_at is not None
            case = await tx.case_by_id(state.case_id)
            if state.state == "acked":
                await self._ack_timed_out(tx, case, state, now)
            elif case.status == "open" and self._due_to_raise(case, now):
                await self._raise(tx, case, now)
            elif state.state == "queued":
                await self.start(tx, case, now)  # the hours opened: page, or queue again
            else:
                decision = escalation.advance(
                    self._policies[state.tier],
                    escalation.Position(state.loop, state.step),
                    state.next_due_at,
                    self.directory.reachable,
                    self._targets,
                )
                await self._apply(tx, case, decision, now)
            fired += 1
        return fired

    async def _ack_timed_out(
        self, tx: Transaction, case: CaseView, state: EscalationView, now: datetime
    ) -> None:
        """The responder who took a case showed no activity within the tier's ack timeout:
        the case goes back on the ladder at the next step, and the page says why."""
        taker = case.taken_by or "someone"
        policy = self._policies[case.tier]
        timeout = getattr(policy, "ack_timeout", None) or timedelta(0)
        await tx.case_release(case.id, now)
        await tx.log("case.ack_timeout", now, case_id=case.id, actor="system", detail=taker)
        released = await tx.case_by_id(case.id)
        following = escalation.following(policy, escalation.Position(state.loop, state.step))
        decision = escalation.enter(
            policy,
            following or escalation.Position(0, 0),
            self.directory.reachable,
            now,
            self._targets,
        )
        minutes = int(timeout.total_seconds() // 60)
        note = f"Taken by {taker}, no activity for {minutes} min."
        await self._send_pages(tx, released, decision, now, note=note)
        due = decision.next_due_at
        raise_at = self._raise_at(case)
        if due is not None and raise_at is not None and case.status == "open":
            due = min(due, max(raise_at, now))  # wake up in time to raise an untouched case
        await tx.escalation_save(
            case.id,
            case.tier,
            "active",
            decision.position.step,
            decision.position.loop,
            due,
            now,
        )
        log.warning("case.ack_timeout case=%s", case.id)

    async def _watch_taker(self, tx: Transaction, case: CaseView, now: datetime) -> None:
        """Restart the ack timeout of a taken case (its taker just acted)."""
        timeout = getattr(self._policies[case.tier], "ack_timeout", None)
        if timeout:
            await tx.escalation_watch(case.id, now + timeout, now)

    async def _apply(
        self,
        tx: Transaction,
        case: CaseView,
        decision: escalation.Decision,
        now: datetime,
        note: str | None = None,
    ) -> None:
        for skipped in decision.skipped:
            await tx.log(
                "escalation.step_unreachable",
                now,
                case_id=case.id,
                detail=f"loop={skipped.loop} step={skipped.step}",
            )
            log.warning("escalation.step_unreachable case=%s step=%s", case.id, skipped.step)
            if self.alerts is not None:
                hole = Problem(
                    f"hole:{case.tier}:{skipped.step}",
                    f"Nobody could be paged at step {skipped.step + 1} of the {case.tier} ladder "
                    f"(case {case.ref}): the rota has a hole or the responders are unreachable. "
                    "The case moved on to the next step.",
                )
                await self.alerts.alert(tx, hole, now)
        if decision.exhausted:
            await tx.escalation_save(
                case.id,
                case.tier,
                "exhausted",
                decision.position.step,
                decision.position.loop,
                None,
                now,
            )
            await tx.log("escalation.exhausted", now, case_id=case.id)
            log.warning("escalation.exhausted case=%s tier=%s", case.id, case.tier)
            return
        await self._send_pages(tx, case, decision, now, note=note)
        await tx.escalation_save(
            case.id,
            case.tier,
            "active",
            decision.position.step,
            decision.position.loop,
            decision.next_due_at,
            now,
        )
        names = ",".join(p.responder for p in decision.pages)
        await tx.log(
            "escalation.paged",
            now,
            case_id=case.id,
            detail=f"loop={decision.position.loop} step={decision.position.step} to={names}",
        )
        log.info(
            "escalation.paged case=%s tier=%s step=%s", case.id, case.tier, decision.position.step
        )

    async def _send_pages(
        self,
        tx: Transaction,
        case: CaseView,
        decision: escalation.Decision,
        now: datetime,
        note: str | None = None,
    ) -> None:
        """Queue the pages of ``decision``: each responder on their first reachable address,
        with their other addresses held as fallbacks that are released only if that page is
        refused or its outcome stays unknown."""
        details, added = await tx.case_details(case.id)
        texts = {
            with_place: self._page_text(
                case, details, added, decision.position, now, with_place=with_place, note=note
            )
            for with_place in (True, False)
        }
        priority = Priority.URGENT if case.tier == "critical" else Priority.PAGE
        extra = f":extra{int(now.timestamp() * 1000)}" if note else ""
        for page in decision.pages:
            position = page.position
            previous: str | None = None
            not_before = None
            if priority < Priority.URGENT and self._bundle_window:
                # Another page went to this person moments ago: hold this one until the window
                # ends, so the pages arriving meanwhile go out together as one message.
                not_before = await tx.page_hold_until(page.responder, now, self._bundle_window)
            for address in self.directory.reachable_addresses(page.responder):
                key = (
                    f"page:{case.id}:{position.loop}:{position.step}{extra}:"
                    f"{page.responder}:{address.channel}"
                )
                await tx.outbox_add(
                    OutboxItem(
                        idempotency_key=key,
                        kind="page",
                        priority=priority,
                        recipient=address,
                        # Telegram is not end-to-end encrypted: its pages leave out the place.
                        text=texts[address.channel not in NOT_END_TO_END],
                        case_id=case.id,
                        responder=page.responder,
                        loop=position.loop,
                        step=position.step,
                        fallback_for=previous,
                        not_before=not_before,
                    ),
                    now,
                )
                previous = key

    def _page_text(
        self,
        case: CaseView,
        details: Mapping[str, Any],
        added: Sequence[tuple[str, str]],
        position: escalation.Position,
        now: datetime,
        *,
        with_place: bool,
        note: str | None = None,
    ) -> str:
        summary = self._describe(details, added)
        lines = [f"{case.tier.upper()} case {case.ref}"]
        place = f" · {summary.place}" if summary.place and with_place else ""
        lines.append(summary.kind_label + place)
        if note:
            lines.append(note)
        if position != escalation.Position(0, 0) and case.taken_by is None:
            lines.append(f"Not taken after {format_age(now - case.created_at)}.")
        lines.append(f"Reply: ack {case.ref}")
        return "\n".join(lines)

    # -- relaying what the defender adds ---------------------------------------------------

    async def relay(
        self, tx: Transaction, case: CaseView, label: str, value: str, now: datetime, key: str
    ) -> None:
        """Pass something the defender added to whoever has the case, or else to everyone
        paged for it so far. ``key`` makes the relay idempotent."""
        if case.status == "taken" and case.taken_by:
            recipients = [case.taken_by]
        else:
            recipients = await tx.paged_responders(case.id)
        text = f"Case {case.ref} — the defender added ({label}):\n{value}"
        priority = Priority.URGENT if case.tier == "critical" else Priority.PAGE
        for name in recipients:
            await queue_to_person(
                tx,
                self.directory.reachable_addresses(name),
                OutboxItem(
                    idempotency_key=f"relay:{key}:{name}",
                    kind="relay",
                    priority=priority,
                    recipient=NOBODY,
                    text=text,
                    case_id=case.id,
                    responder=name,
                ),
                now,
            )
        await tx.log("case.relayed", now, case_id=case.id, detail=f"to={','.join(recipients)}")

    # -- responder commands ----------------------------------------------------------------

    async def command(
        self, tx: Transaction, responder: str, sender: Address, text: str, now: datetime, key: str
    ) -> None:
        """Handle one message from a responder and queue the answers.

        ``key`` (the inbox id) makes every queued answer idempotent.
        """
        words = text.split()
        verb = words[0].casefold() if words else ""
        replies: list[tuple[Address, str, int]] = []

        def answer(message: str) -> None:
            replies.append((sender, message, Priority.URGENT))

        if verb in {"ack", "resolve", "reply", "escalate", "tier", "alert-contacts"}:
            ref = normalise_reference(words[1]) if len(words) > 1 else None
            case = await tx.case_by_ref(ref) if ref else None
            rest = text.split(None, 2)[2].strip() if len(words) > 2 else ""
            if len(words) < 2:
                example = {"reply": "reply K7Q2 We are on our way", "tier": "tier K7Q2 high"}
                answer(
                    f"Which case? Write {verb} and the reference, e.g. "
                    f"{example.get(verb, verb + ' K7Q2')}."
                )
            elif case is None:
                answer(f"There is no case {words[1][:12].upper()}. Send cases to see open cases.")
            elif verb == "ack":
                replies += await self._ack(tx, responder, sender, case, now, key)
            elif verb == "resolve":
                replies += await self._resolve(tx, responder, sender, case, rest or None, now, key)
            elif case.status == "resolved":
                answer(f"Case {case.ref} is already resolved.")
            elif verb == "reply":
                answer(await self._reply(tx, responder, case, rest, now, key))
            elif verb == "escalate":
                answer(await self._escalate(tx, responder, case, now))
            elif verb == "alert-contacts":
                if self.contact_alerter is None:
                    answer("Trusted contacts are not available here.")
                else:
                    answer(await self.contact_alerter(tx, case, responder, now))
            else:
                answer(await self._retier(tx, responder, case, rest, now))
        elif verb == "cases":
            answer(await self._cases(tx, now))
        elif verb == "oncall":
            answer(self._oncall(now) if self._oncall else "No rotas are configured.")
        elif verb in {"help", "/help", "/start", "?"}:
            answer(RESPONDER_HELP)
        elif not words:
            answer("Your message arrived empty.\n" + RESPONDER_HELP)
        else:
            answer(f"I did not understand {words[0][:20]!r}.\n" + RESPONDER_HELP)
        for index, (address, message, priority) in enumerate(replies):
            await tx.outbox_add(
                OutboxItem(
                    idempotency_key=f"responder:{key}:{index}",
                    kind="reply",
                    priority=priority,
                    recipient=address,
                    text=message,
                    # Named, so that it waits with the pages while their chat is rate-limited
                    # (bot.outbox) instead of taking the slot a page is waiting for.
                    responder=responder if address == sender else None,
                ),
                now,
            )

    async def _reply(
        self, tx: Transaction, responder: str, case: CaseView, text: str, now: datetime, key: str
    ) -> str:
        """Send ``text`` to the case's defender, signed only as the team; keep it encrypted."""
        if not text:
            return f"Nothing to send. Write: reply {case.ref} followed by your message."
        _, session = await tx.defender_contact(case.defender_id)
        if (session or {}).get("compromised"):
            return (
                f"Not sent: the defender's device for case {case.ref} is marked compromised "
                "(duress or seized). Do not write or call it; reach them through their "
                "referrer or a trusted contact."
            )
        await tx.case_add_entry(case.id, f"reply:{responder}", text, now)
        if case.taken_by == responder:
            await self._watch_taker(tx, case, now)
        await self._tell_defender(tx, case, "team_message", now, key, body=text)
        await tx.log("case.replied", now, case_id=case.id, actor=responder)
        return f"Sent to the defender of case {case.ref}."

    async def _escalate(
        self, tx: Transaction, responder: str, case: CaseView, now: datetime
    ) -> str:
        """Page the next step of the case's ladder now."""
        state = await tx.escalation_of(case.id)
        if state is None:
            return f"Case {case.ref} has no paging ladder."
        policy = self._policies[case.tier]
        position = escalation.Position(state.loop, state.step)
        if state.state == "active":
            decision = escalation.advance(
                policy, position, now, self.directory.reachable, self._targets
            )
            await self._apply(tx, case, decision, now)
        else:
            following = escalation.following(policy, position) or escalation.Position(0, 0)
            decision = escalation.enter(
                policy, following, self.directory.reachable, now, self._targets
            )
            await self._send_pages(tx, case, decision, now, note=f"{responder} asks for help.")
        await tx.log("case.escalated", now, case_id=case.id, actor=responder)
        names = ", ".join(p.responder for p in decision.pages) or "nobody reachable"
        return f"Case {case.ref}: paged {names}."

    async def _retier(
        self, tx: Transaction, responder: str, case: CaseView, rest: str, now: datetime
    ) -> str:
        """Change the case's tier; an untaken case restarts paging on the new tier's ladder."""
        parts = rest.split(None, 1)
        tier = parts[0].casefold() if parts else ""
        if tier not in TIERS:
            return f"Write: tier {case.ref} critical|high|medium|low [why]"
        if tier == case.tier:
            return f"Case {case.ref} is already {tier.upper()}."
        why = parts[1] if len(parts) > 1 else ""
        await self._set_tier(tx, case, tier, f"tier:{responder}", why, responder, now)
        return f"Case {case.ref} is now {tier.upper()} (was {case.tier.upper()})."

    async def raise_tier(
        self, tx: Transaction, case: CaseView, tier: str, reasons: Sequence[str], now: datetime
    ) -> None:
        """Raise ``case`` to the more urgent ``tier`` because its answers now call for it:
        an untaken case is paged afresh on the new tier's ladder, the responder who has it
        is told. Guarantees the tier never goes down here (a lower ``tier`` is ignored)."""
        if TIERS.index(tier) >= TIERS.index(case.tier):
            return
        why = "; ".join(reasons)
        await self._set_tier(tx, case, tier, "tier:triage", why, "triage", now)
        text = f"Case {case.ref} is now {tier.upper()}: {why}"
        await self._tell_taker(tx, case, f"raise:{case.id}:{tier}", text, now)

    async def call_off(
        self, tx: Transaction, case: CaseView, now: datetime, *, withdrawn: bool = False
    ) -> None:
        """The defender called the case off with their safe code (or ``withdrawn`` it when
        asking to be forgotten): close it, stop its paging, tell everyone paged for it."""
        why = "withdrawn by the defender" if withdrawn else "called off with the safe code"
        if not await tx.case_resolve(case.id, "defender", why, now):
            return
        await tx.escalation_stop(case.id, "cancelled", now)
        cancelled = await tx.outbox_cancel_pages(case.id)
        await tx.log(
            "case.called_off",
            now,
            case_id=case.id,
            actor="defender",
            detail=f"cancelled={cancelled}",
        )
        text = (
            f"Case {case.ref} was withdrawn by the defender, who asked to be forgotten. "
            "No action needed."
            if withdrawn
            else f"Case {case.ref} was called off by the defender with their safe code "
            "(false alarm). No action needed."
        )
        await self._tell_paged(tx, case, f"calledoff:{case.id}", text, Priority.URGENT, now)

    async def flag_duress(self, tx: Transaction, case: CaseView, why: str, now: datetime) -> None:
        """Keep ``case`` open, flag it DURESS and make it critical: an untaken case is paged
        afresh on the critical ladder; the responder who has it is told at once."""
        await tx.case_add_entry(case.id, "flag", "duress", now)
        await tx.log("case.duress", now, case_id=case.id, actor="defender")
        if case.tier != "critical":
            await self._set_tier(
                tx, case, "critical", "tier:duress", why, "defender", now, note=why
            )
        else:
            state = await tx.escalation_of(case.id)
            if case.status == "open" and state is not None:
                await self.start(tx, case, now, note=why)
        text = f"CRITICAL case {case.ref}\n{DURESS_LABEL}\n{why}"
        await self._tell_taker(tx, case, f"duress:{case.id}:{to_millis(now)}", text, now)

    async def _tell_paged(
        self,
        tx: Transaction,
        case: CaseView,
        key: str,
        text: str,
        priority: int,
        now: datetime,
        besides: str | None = None,
    ) -> None:
        """Queue ``text`` to everyone paged for ``case`` (but ``besides``), each on their
        first reachable address with the others held as fallbacks."""
        for name in await tx.paged_responders(case.id):
            if name == besides:
                continue
            await queue_to_person(
                tx,
                self.directory.reachable_addresses(name),
                OutboxItem(
                    idempotency_key=f"{key}:{name}",
                    kind="notice",
                    priority=priority,
                    recipient=NOBODY,
                    text=text,
                    case_id=case.id,
                    responder=name,
                ),
                now,
            )

    async def _tell_taker(
        self, tx: Transaction, case: CaseView, key: str, text: str, now: datetime
    ) -> None:
        """Queue an urgent notice to the responder who has taken ``case``, if anyone has."""
        if case.status != "taken" or not case.taken_by:
            return
        await queue_to_person(
            tx,
            self.directory.reachable_addresses(case.taken_by),
            OutboxItem(
                idempotency_key=key,
                kind="notice",
                priority=Priority.URGENT,
                recipient=NOBODY,
                text=text,
                case_id=case.id,
                responder=case.taken_by,
            ),
            now,
        )

    async def _set_tier(
        self,
        tx: Transaction,
        case: CaseView,
        tier: str,
        label: str,
        why: str,
        actor: str,
        now: datetime,
        note: str | None = None,
    ) -> None:
        """Store the new tier (and why); an untaken case restarts paging on its ladder (its
        pages carrying ``note``, when given)."""
        await tx.case_set_tier(case.id, tier, now)
        if why:
            await tx.case_add_entry(case.id, label, why, now)
        await tx.log(
            "case.retiered", now, case_id=case.id, actor=actor, detail=f"from={case.tier} to={tier}"
        )
        state = await tx.escalation_of(case.id)
        if case.status == "open" and state is not None and state.state in {"active", "exhausted"}:
            updated = await tx.case_by_id(case.id)
            await self.start(tx, updated, now, note)

    async def _ack(
        self,
        tx: Transaction,
        responder: str,
        sender: Address,
        case: CaseView,
        now: datetime,
        key: str,
    ) -> list[tuple[Address, str, int]]:
        if case.status == "resolved":
            return [(sender, f"Case {case.ref} is already resolved.", Priority.URGENT)]
        if not await tx.case_take(case.id, responder, now):
            current = await tx.case_by_id(case.id)
            if current.taken_by == responder:
                return [(sender, f"You already have case {case.ref}.", Priority.URGENT)]
            return [
                (
                    sender,
                    f"Case {case.ref} is already taken by {current.taken_by}.",
                    Priority.URGENT,
                )
            ]
        await tx.escalation_stop(case.id, "acked", now)
        await self._watch_taker(tx, case, now)
        cancelled = await tx.outbox_cancel_pages(case.id)
        await tx.log(
            "case.taken", now, case_id=case.id, actor=responder, detail=f"cancelled={cancelled}"
        )
        log.info("case.taken case=%s cancelled_pages=%s", case.id, cancelled)
        details, added = await tx.case_details(case.id)
        if case.kind == "drill":
            return await self._drill_acked(tx, responder, sender, case, now, key)
        told = await self._tell_defender(tx, case, "taken", now, key)
        lines = [
            f"You have case {case.ref} ({case.tier.upper()}, opened "
            f"{format_age(now - case.created_at)} ago).",
            *self._detail_lines(details, added),
            "The defender has been told that a responder has their case."
            if told
            else "The defender was NOT told: their device is marked compromised.",
            f"When it is done: resolve {case.ref} [note]",
        ]
        out: list[tuple[Address, str, int]] = [(sender, "\n".join(lines), Priority.URGENT)]
        taken = f"Case {case.ref} was taken by {responder}. No action needed."
        await self._tell_paged(
            tx, case, f"taken:{key}", taken, Priority.NOTICE, now, besides=responder
        )
        return out

    async def _drill_acked(
        self,
        tx: Transaction,
        responder: str,
        sender: Address,
        case: CaseView,
        now: datetime,
        key: str,
    ) -> list[tuple[Address, str, int]]:
        """A drill reached a responder: tell the defender how long it took, close it."""
        took = format_age(now - case.created_at)
        await self._tell_defender(tx, case, "drill_acked", now, key, body=took)
        await tx.case_resolve(case.id, responder, "drill acknowledged", now)
        await tx.log("drill.acked", now, case_id=case.id, actor=responder, detail=f"after={took}")
        return [
            (
                sender,
                f"Drill {case.ref} acknowledged after {took}: thank you. The defender has been "
                "told; the drill is closed.",
                Priority.URGENT,
            )
        ]

    async def _resolve(
        self,
        tx: Transaction,
        responder: str,
        sender: Address,
        case: CaseView,
        note: str | None,
        now: datetime,
        key: str,
    ) -> list[tuple[Address, str, int]]:
        if not await tx.case_resolve(case.id, responder, note, now):
            return [(sender, f"Case {case.ref} is already resolved.", Priority.URGENT)]
        await tx.escalation_stop(case.id, "cancelled", now)
        cancelled = await tx.outbox_cancel_pages(case.id)
        await tx.log(
            "case.resolved", now, case_id=case.id, actor=responder, detail=f"cancelled={cancelled}"
        )
        log.info("case.resolved case=%s", case.id)
        out: list[tuple[Address, str, int]] = [
            (sender, f"Case {case.ref} is resolved.", Priority.URGENT)
        ]
        await self._tell_defender(tx, case, "resolved", now, key)
        return out

    async def _tell_defender(
        self,
        tx: Transaction,
        case: CaseView,
        text_key: str,
        now: datetime,
        key: str,
        body: str | None = None,
    ) -> bool:
        """Queue a notice to the case's defender, on the platform they used, in their language
        (``body``, if given, follows the notice on its own lines). Returns False, queueing
        nothing, when their device is marked compromised."""
        address, session = await tx.defender_contact(case.defender_id)
        if (session or {}).get("compromised"):
            return False  # nothing more goes to a device under duress or seized
        language = (session or {}).get("language") or self._default_language
        text = self._defender_text(text_key, language, case.ref)
        await tx.outbox_add(
            OutboxItem(
                idempotency_key=f"defender:{key}:{text_key}",
                kind="reply",
                priority=Priority.URGENT,
                recipient=address,
                text=text if body is None else f"{text}\n{body}",
                case_id=case.id,
                defender_id=case.defender_id,
            ),
            now,
        )
        return True

    async def _cases(self, tx: Transaction, now: datetime) -> str:
        cases = await tx.cases_open()
        if not cases:
            return "No open cases."
        lines = ["Open cases:"]
        for case in cases:
            who = f"taken by {case.taken_by}" if case.taken_by else "not taken"
            if case.taken_by is None:
                state = await tx.escalation_of(case.id)
                if state is not None and state.state == "exhausted":
                    who += ", paging exhausted"
            age = format_age(now - case.created_at)
            drill = "  (drill)" if case.kind == "drill" else ""
            lines.append(f"{case.ref}  {case.tier.upper()}  {age}  {who}{drill}")
        return "\n".join(lines)
