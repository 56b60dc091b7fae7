"""The safety service: codes, check-in timers and duress, at the I/O edge.

Every decision it makes is one of :mod:`bot.safety.commands`; this module only loads and
stores (the plan encrypted under the defender's key, codes as keyed hashes, timers as rows)
and hands cases to paging — all in the caller's transaction.

What the defender sees after the safe code and after the duress code is the same text, in
the same number of messages, with the same deletion of the message that carried the code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bot.conversation.engine import Session
from bot.conversation.model import FlowSet
from bot.core.clock import to_millis
from bot.core.messages import Address, Priority
from bot.core.ports import Transaction
from bot.core.records import CaseView, OutboxItem
from bot.paging.service import PagingService
from bot.safety.commands import (
    MAX_CODE_LENGTH,
    MAX_CONTACTS,
    MAX_NOTE_LENGTH,
    WRONG_CODES_BEFORE_DURESS,
    CodeMatch,
    Command,
    match_code,
    normalise_code,
    parse_contact,
    parse_deadline,
    parse_zone,
)

log = logging.getLogger(__name__)


DEFAULT_GRACE = timedelta(minutes=10)
CODE_KINDS = ("safe", "duress")
PLAN_STEPS = ("safe", "duress", "contact", "referrer", "tz")
OFF_WORDS = ("off", "-", "delete")
COMPROMISED_TITLE = "from the device marked compromised — it may not be the defender"


@dataclass(frozen=True, slots=True)
class SafetyResult:
    """What the conversation service must do: store ``session``, send ``replies`` and, if
    ``delete_message``, delete the defender's message from the chat where it can."""

    session: Session
    replies: tuple[str, ...] = ()
    delete_message: bool = False
    forgotten: bool = False  # the session was destroyed: store nothing but the language
    saved: bool = False  # the plan item was stored (or deleted) as asked


class SafetyService:
    """Runs ``/plan``, ``/code``, ``/tz``, ``/checkin``, ``/safe`` and ``/cancel CODE``, and
    the check-in timers.

    Args:
        flows: texts (the safety texts live in the shared catalog).
        paging: opens and flags cases, calls them off.
        grace: how long after a missed check-in (and its nudge) a case is opened.
        auto_alert_after: how long a critical case may stay untaken before the trusted
            contacts the defender allowed are alerted automatically (None: never).
        closed_case_days: how many days after a case is resolved what it holds is destroyed.
    """

    def __init__(
        self,
        flows: FlowSet,
        paging: PagingService,
        grace: timedelta = DEFAULT_GRACE,
        auto_alert_after: timedelta | None = None,
        closed_case_days: int = 90,
    ) -> None:
        self._closed_case_days = closed_case_days
        self._flows = flows
        self._paging = paging
        self._grace = grace
        self._auto_after = auto_alert_after
        paging.contact_alerter = self.alert_contacts

    def _text(self, session: Session, key: str, **params: object) -> str:
        return self._flows.text(session.language, key, None, **params)

    async def handle(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        command: Command,
        cases: Sequence[CaseView],
        now: datetime,
    ) -> SafetyResult:
        """Carry out one safety command. Guarantees: codes are stored and compared only as
        keyed hashes; a message that carried a code is deleted from the chat; the safe and
        the duress code give the same visible answer."""
        plan: dict[str, Any] = await tx.defender_plan(defender_id) or {}
        if command.name == "/plan":
            walking = replace(session, plan_step=PLAN_STEPS[0])
            shown = (
                self._show_plan(session, plan),
                self._text(session, f"plan_walk.{PLAN_STEPS[0]}"),
            )
            return SafetyResult(walking, shown)
        session = replace(session, plan_step=None)  # another command ends the walk
        if command.name == "/tz":
            return await self._set_zone(tx, defender_id, session, plan, command.argument, now)
        if command.name == "/code":
            return await self._set_code(tx, defender_id, session, plan, command.argument, now)
        if command.name == "/checkin":
            return await self._start_checkin(tx, defender_id, session, plan, command, now)
        if command.name == "/contact":
            return await self._contact(tx, defender_id, session, plan, command.argument, now)
        if command.name == "/referrer":
            return await self._referrer(tx, defender_id, session, plan, command.argument, now)
        if command.name == "/drill":
            return await self._drill(tx, defender_id, session, now)
        if command.name == "/forget":
            return await self._forget(tx, defender_id, session, command.argument, cases, now)
        return await self._code_given(tx, defender_id, session, plan, command, cases, now)

    # -- the plan ---------------------------------------------------------------------------

    def _show_plan(self, session: Session, plan: dict[str, Any]) -> str:
        def state(present: object) -> str:
            return self._text(session, "plan.set" if present else "plan.not_set")

        lines = [
            self._text(
                session,
                "plan_show",
                safe=state(plan.get("safe_code")),
                duress=state(plan.get("duress_code")),
                tz=plan.get("tz") or state(None),
            )
        ]
        contacts = plan.get("contacts") or []
        listed = "; ".join(
            f"{n}. {c['name']} ({c['channel'].title()}, "
            f"{self._text(session, 'plan.auto' if c['auto'] else 'plan.ask')})"
            for n, c in enumerate(contacts, start=1)
        )
        lines.append(self._text(session, "plan_contacts", contacts=listed or state(None)))
        lines.append(self._text(session, "plan_referrer", referrer=state(plan.get("referrer"))))
        return "\n".join(lines)

    async def plan_answer(
        self, tx: Transaction, defender_id: str, session: Session, text: str, now: datetime
    ) -> SafetyResult:
        """An answer during the ``/plan`` walk: save it the way the one-line command would,
        then ask the next item; ``skip`` keeps the item as it is. A code answer is deleted
        from the chat like ``/code``; an answer that cannot be used is explained and the
        same item asked again."""
        step = session.plan_step or PLAN_STEPS[0]
        plan: dict[str, Any] = await tx.defender_plan(defender_id) or {}
        said: list[str] = []
        carried_code = step in CODE_KINDS
        if normalise_code(text) not in self._flows.words(session.language, "skip_words"):
            if step in CODE_KINDS:
                result = await self._set_code(tx, defender_id, session, plan, f"{step} {text}", now)
            elif step == "contact":
                result = await self._contact(tx, defender_id, session, plan, text, now)
            elif step == "referrer":
                result = await self._referrer(tx, defender_id, session, plan, text, now)
            else:
                result = await self._set_zone(tx, defender_id, session, plan, text, now)
            said = list(result.replies)
            if not result.saved:
                again = self._text(session, f"plan_walk.{step}")
                return SafetyResult(session, (*said, again), carried_code)
        position = PLAN_STEPS.index(step) + 1
        if position == len(PLAN_STEPS):
            done = self._text(session, "plan_walk.done")
            return SafetyResult(replace(session, plan_step=None), (*said, done), carried_code)
        following = PLAN_STEPS[position]
        asked = self._text(session, f"plan_walk.{following}")
        return SafetyResult(replace(session, plan_step=following), (*said, asked), carried_code)

    async def _contact(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        argument: str,
        now: datetime,
    ) -> SafetyResult:
        contacts: list[dict[str, Any]] = list(plan.get("contacts") or [])
        verb, _, rest = argument.partition(" ")
        if verb.casefold() == "delete":
            number = int(rest) if rest.strip().isdecimal() and len(rest.strip()) < 3 else 0
            if not 1 <= number <= len(contacts):
                return SafetyResult(session, (self._text(session, "contact_usage"),))
            gone = contacts.pop(number - 1)
            await tx.defender_save_plan(defender_id, {**plan, "contacts": contacts}, now)
            await tx.log("plan.contact_deleted", now, actor="defender")
            return SafetyResult(
                session, (self._text(session, "contact_deleted", name=gone["name"]),)
            )
        found = parse_contact(argument)
        if isinstance(found, str):
            return SafetyResult(session, (self._text(session, found),))
        if len(contacts) >= MAX_CONTACTS:
            return SafetyResult(session, (self._text(session, "contact_full"),))
        contacts.append(found.to_dict())
        await tx.defender_save_plan(defender_id, {**plan, "contacts": contacts}, now)
        await tx.log("plan.contact_added", now, actor="defender")
        saved = self._text(session, "contact_saved", name=found.name)
        return SafetyResult(session, (saved,), saved=True)

    async def _referrer(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        argument: str,
        now: datetime,
    ) -> SafetyResult:
        text = argument.strip()[:MAX_NOTE_LENGTH]
        if not text:
            return SafetyResult(session, (self._text(session, "referrer_usage"),))
        removing = text.casefold() in OFF_WORDS
        await tx.defender_save_plan(
            defender_id, {**plan, "referrer": None if removing else text}, now
        )
        key = "referrer_deleted" if removing else "referrer_saved"
        return SafetyResult(session, (self._text(session, key),), saved=True)

    # -- trusted contacts -----------------------------------------------------------------------

    async def alert_contacts(
        self, tx: Transaction, case: CaseView, actor: str, now: datetime, *, auto: bool = False
    ) -> str:
        """Send each trusted contact of the case's defender the message the defender chose
        (and nothing of the case), on Signal or Telegram; only those who may be alerted
        automatically when ``auto``. Every alert is in the case log. Returns a line for the
        responder."""
        plan = await tx.defender_plan(case.defender_id) or {}
        contacts = [c for c in plan.get("contacts") or [] if c.get("auto") or not auto]
        if not contacts:
            return f"Case {case.ref}: the defender listed no trusted contacts who may be alerted."
        _, stored = await tx.defender_contact(case.defender_id)
        language = (stored or {}).get("language") or self._flows.catalog.default_language
        header = self._flows.text(language, "contact_alert")
        batch = "auto" if auto else to_millis(now)
        for index, contact in enumerate(contacts):
            await tx.outbox_add(
                OutboxItem(
                    idempotency_key=f"contact:{case.id}:{index}:{batch}",
                    kind="notice",
                    priority=Priority.URGENT,
                    recipient=Address(contact["channel"], contact["identity"]),
                    text=f"{header}\n{contact['message']}",
                    case_id=case.id,
                ),
                now,
            )
        event = "contacts.auto_alerted" if auto else "contacts.alerted"
        await tx.log(event, now, case_id=case.id, actor=actor, detail=f"count={len(contacts)}")
        count = len(contacts)
        return f"Case {case.ref}: {count} trusted contact(s) sent the defender's own message."

    async def auto_alerts(self, tx: Transaction, now: datetime) -> int:
        """Alert the automatic trusted contacts of every critical case nobody has taken for
        ``auto_alert_after``, once per case. Returns how many cases it alerted for."""
        if self._auto_after is None:
            return 0
        alerted = 0
        for case in await tx.cases_for_auto_alert(now - self._auto_after):
            plan = await tx.defender_plan(case.defender_id) or {}
            if any(c.get("auto") for c in plan.get("contacts") or []):
                await self.alert_contacts(tx, case, "system", now, auto=True)
                alerted += 1
            else:
                await tx.log("contacts.auto_alerted", now, case_id=case.id, detail="count=0")
        return alerted

    async def shred_closed(self, tx: Transaction, now: datetime) -> int:
        """Crypto-shred what cases resolved more than ``closed_case_days`` ago held."""
        shredded = await tx.shred_closed_cases(now - timedelta(days=self._closed_case_days))
        if shredded:
            await tx.log("retention.shredded", now, detail=f"cases={shredded}")
        return shredded

    # -- drills and forgetting ------------------------------------------------------------------

    async def _drill(
        self, tx: Transaction, defender_id: str, session: Session, now: datetime
    ) -> SafetyResult:
        case = await self._open_critical(
            tx, defender_id, "drill", "a drill the defender asked for", now
        )
        return SafetyResult(session, (self._text(session, "drill_started", ref=case.ref),))

    async def _forget(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        argument: str,
        cases: Sequence[CaseView],
        now: datetime,
    ) -> SafetyResult:
        choice = argument.strip().casefold()
        if choice not in ("confirm", "withdraw"):
            explain = self._text(session, "forget_explain", days=self._closed_case_days)
            return SafetyResult(session, (explain,))
        withdraw = choice == "withdraw"
        if withdraw:
            for case in cases:
                if case.status != "resolved":
                    await self._paging.call_off(tx, case, now, withdrawn=True)
        count = await tx.defender_forget(defender_id, withdraw, now)
        await tx.log("defender.forgotten", now, actor="defender", detail=f"withdrawn={count}")
        fresh = Session(language=session.language, notices=session.notices)
        key = "forget_done_withdrawn" if withdraw else "forget_done"
        return SafetyResult(fresh, (self._text(session, key),), forgotten=True)

    async def _set_zone(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        argument: str,
        now: datetime,
    ) -> SafetyResult:
        zone = parse_zone(argument) if argument else None
        if zone is None:
            key = "tz_unknown" if argument else "tz_usage"
            return SafetyResult(session, (self._text(session, key, tz=argument[:40]),))
        await tx.defender_save_plan(defender_id, {**plan, "tz": zone}, now)
        return SafetyResult(session, (self._text(session, "tz_set", tz=zone),), saved=True)

    async def _set_code(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        argument: str,
        now: datetime,
    ) -> SafetyResult:
        kind, _, word = argument.partition(" ")
        kind = kind.casefold()
        code = normalise_code(word)
        if kind not in CODE_KINDS or not code or len(code) > MAX_CODE_LENGTH:
            return SafetyResult(session, (self._text(session, "code_usage"),), bool(word))
        if code in OFF_WORDS:
            await tx.defender_save_plan(defender_id, {**plan, f"{kind}_code": None}, now)
            await tx.log("plan.code_removed", now, actor="defender")
            removed = self._text(session, f"code_removed_{kind}")
            return SafetyResult(session, (removed,), True, saved=True)
        digest = tx.code_digest(defender_id, code)
        other = plan.get("duress_code" if kind == "safe" else "safe_code")
        if digest == other:
            return SafetyResult(session, (self._text(session, "code_same"),), True)
        await tx.defender_save_plan(defender_id, {**plan, f"{kind}_code": digest}, now)
        await tx.log("plan.code_set", now, actor="defender")
        return SafetyResult(session, (self._text(session, f"code_set_{kind}"),), True, saved=True)

    # -- check-ins ----------------------------------------------------------------------------

    async def _start_checkin(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        command: Command,
        now: datetime,
    ) -> SafetyResult:
        when, _, note = command.argument.partition(" ")
        deadline = parse_deadline(when, now, plan.get("tz")) if when else "checkin_usage"
        if isinstance(deadline, str):
            return SafetyResult(session, (self._text(session, deadline),))
        await tx.checkin_start(defender_id, deadline.due_at, note[:MAX_NOTE_LENGTH] or None, now)
        await tx.log("checkin.started", now, actor="defender")
        minutes = int(self._grace.total_seconds() // 60)
        reply = self._text(session, "checkin_set", deadline=deadline.shown, grace=minutes)
        return SafetyResult(session, (reply,))

    async def tick(self, tx: Transaction, now: datetime) -> int:
        """Act on every due check-in: nudge the defender once at the deadline, then after
        the grace period open a critical "missed check-in" case. Returns how many acted on."""
        due = await tx.checkins_due(now)
        for checkin in due:
            if checkin.state == "active":
                await self._nudge(tx, checkin.defender_id, checkin.id, now)
                await tx.checkin_set(checkin.id, "nudged", now + self._grace, now)
                await tx.log("checkin.nudged", now, actor="system")
                continue
            case = await self._open_critical(
                tx,
                checkin.defender_id,
                "checkin",
                "missed check-in (no /safe after the reminder and grace period)",
                now,
                note=checkin.note,
            )
            await tx.checkin_set(checkin.id, "missed", None, now, case_id=case.id)
            log.info("checkin.missed case=%s", case.id)
        return len(due)

    async def _nudge(
        self, tx: Transaction, defender_id: str, checkin_id: str, now: datetime
    ) -> None:
        address, stored = await tx.defender_contact(defender_id)
        session = Session.from_dict(stored) if stored else None
        if session is not None and session.compromised:
            return
        language = session.language if session else self._flows.catalog.default_language
        await tx.outbox_add(
            OutboxItem(
                idempotency_key=f"checkin-nudge:{checkin_id}",
                kind="reply",
                priority=Priority.URGENT,
                recipient=address,
                text=self._flows.text(language, "checkin_nudge"),
                defender_id=defender_id,
            ),
            now,
        )

    # -- codes: /safe and /cancel CODE --------------------------------------------------------

    async def _code_given(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        command: Command,
        cases: Sequence[CaseView],
        now: datetime,
    ) -> SafetyResult:
        code = normalise_code(command.argument)[:MAX_CODE_LENGTH]
        digest = tx.code_digest(defender_id, code) if code else None
        found = match_code(code, digest, plan)
        carried_code = bool(command.argument)
        if found is CodeMatch.MISSING:
            return SafetyResult(session, (self._text(session, "code_needed"),))
        if found is CodeMatch.WRONG:
            wrong = session.wrong_codes + 1
            session = replace(session, wrong_codes=wrong)
            await tx.log("code.wrong", now, actor="defender")
            if wrong >= WRONG_CODES_BEFORE_DURESS:  # treated as duress; the answer stays
                session = await self._duress(
                    tx,
                    defender_id,
                    replace(session, wrong_codes=0),
                    plan,
                    cases,
                    f"{wrong} wrong codes in a row",
                    now,
                )
            return SafetyResult(session, (self._text(session, "code_wrong"),), carried_code)
        session = replace(session, wrong_codes=0)
        open_case = next((c for c in cases if c.status != "resolved"), None)
        if command.name == "/safe":
            running = await tx.checkin_running(defender_id)
            if running is not None:
                await tx.checkin_set(running.id, "done", None, now)
                await tx.log("checkin.done", now, actor="defender")
            reply = "safe_ok" if running is not None else "safe_none"
        else:
            reply = "cancel_ok" if open_case is not None else "cancel_nothing"
            session = session.idle() if session.flow else session
        if found is CodeMatch.DURESS:
            why = "duress code given" + (" at a check-in" if command.name == "/safe" else "")
            session = await self._duress(tx, defender_id, session, plan, cases, why, now)
        elif command.name == "/cancel" and open_case is not None:
            await self._paging.call_off(tx, open_case, now)
        return SafetyResult(session, (self._text(session, reply),), carried_code)

    async def _duress(
        self,
        tx: Transaction,
        defender_id: str,
        session: Session,
        plan: dict[str, Any],
        cases: Sequence[CaseView],
        why: str,
        now: datetime,
    ) -> Session:
        """Behind an ordinary-looking answer: keep (or open) a critical case flagged DURESS,
        and mark the device compromised."""
        open_case = next((c for c in cases if c.status != "resolved"), None)
        if open_case is not None:
            await self._paging.flag_duress(tx, open_case, why, now)
        else:
            await self._open_critical(tx, defender_id, "sos", why, now, duress=True)
        await tx.log("defender.compromised", now, actor="defender")
        return replace(session, compromised=True)

    async def from_compromised(
        self,
        tx: Transaction,
        defender_id: str,
        text: str,
        cases: Sequence[CaseView],
        now: datetime,
        key: str,
    ) -> None:
        """A message from a device marked compromised: never answered (it may be read by
        whoever holds it), never dropped — it goes to the open case's responders, labelled,
        or opens a critical case if none is open."""
        open_case = next((c for c in cases if c.status != "resolved"), None)
        if open_case is None:
            open_case = await self._open_critical(
                tx,
                defender_id,
                "sos",
                "a message from a device marked compromised",
                now,
                duress=True,
            )
        value = text or "(an empty message or a file)"
        await tx.case_add_entry(open_case.id, "compromised", value, now)
        await self._paging.relay(tx, open_case, COMPROMISED_TITLE, value, now, f"{key}:compromised")

    async def _open_critical(
        self,
        tx: Transaction,
        defender_id: str,
        kind: str,
        reason: str,
        now: datetime,
        **flags: object,
    ) -> CaseView:
        """Open a critical case of ``kind`` for ``reason`` (no form answers; ``flags`` such as
        ``duress`` or ``note`` go into its encrypted details) and start paging it."""
        details: dict[str, Any] = {
            "kind": kind,
            "flow": None,
            "flows": [],
            "answers": {},
            "reasons": [reason],
            **flags,
        }
        case = await tx.case_open(defender_id, kind, "critical", details, now)
        await tx.log("case.opened", now, case_id=case.id, actor="system", detail=kind)
        await self._paging.start(tx, case, now)
        return case
