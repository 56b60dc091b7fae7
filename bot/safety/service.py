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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bot.conversation.engine import Session
from bot.conversation.model import FlowSet
from bot.core.messages import Priority
from bot.core.ports import Transaction
from bot.core.records import CaseView, OutboxItem
from bot.paging.service import PagingService
from bot.safety.commands import (
    MAX_CODE_LENGTH,
    MAX_NOTE_LENGTH,
    WRONG_CODES_BEFORE_DURESS,
    CodeMatch,
    Command,
    match_code,
    normalise_code,
    parse_deadline,
    parse_zone,
)

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(minutes=10)
CODE_KINDS = ("safe", "duress")
OFF_WORDS = ("off", "-", "delete")
COMPROMISED_TITLE = "from the device marked compromised — it may not be the defender"


@dataclass(frozen=True, slots=True)
class SafetyResult:
    """What the conversation service must do: store ``session``, send ``replies`` and, if
    ``delete_message``, delete the defender's message from the chat where it can."""

    session: Session
    replies: tuple[str, ...] = ()
    delete_message: bool = False
    opened: Sequence[CaseView] = field(default_factory=tuple)


class SafetyService:
    """Runs ``/plan``, ``/code``, ``/tz``, ``/checkin``, ``/safe`` and ``/cancel CODE``, and
    the check-in timers.

    Args:
        flows: texts (the safety texts live in the shared catalog).
        paging: opens and flags cases, calls them off.
        grace: how long after a missed check-in (and its nudge) a case is opened.
    """

    def __init__(
        self, flows: FlowSet, paging: PagingService, grace: timedelta = DEFAULT_GRACE
    ) -> None:
        self._flows = flows
        self._paging = paging
        self._grace = grace

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
            return SafetyResult(session, (self._show_plan(session, plan),))
        if command.name == "/tz":
            return await self._set_zone(tx, defender_id, session, plan, command.argument, now)
        if command.name == "/code":
            return await self._set_code(tx, defender_id, session, plan, command.argument, now)
        if command.name == "/checkin":
            return await self._start_checkin(tx, defender_id, session, plan, command, now)
        return await self._code_given(tx, defender_id, session, plan, command, cases, now)

    # -- the plan ---------------------------------------------------------------------------

    def _show_plan(self, session: Session, plan: dict[str, Any]) -> str:
        def state(present: object) -> str:
            return self._text(session, "plan.set" if present else "plan.not_set")

        return self._text(
            session,
            "plan_show",
            safe=state(plan.get("safe_code")),
            duress=state(plan.get("duress_code")),
            tz=plan.get("tz") or state(None),
        )

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
        return SafetyResult(session, (self._text(session, "tz_set", tz=zone),))

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
            return SafetyResult(session, (self._text(session, f"code_removed_{kind}"),), True)
        digest = tx.code_digest(defender_id, code)
        other = plan.get("duress_code" if kind == "safe" else "safe_code")
        if digest == other:
            return SafetyResult(session, (self._text(session, "code_same"),), True)
        await tx.defender_save_plan(defender_id, {**plan, f"{kind}_code": digest}, now)
        await tx.log("plan.code_set", now, actor="defender")
        return SafetyResult(session, (self._text(session, f"code_set_{kind}"),), True)

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
            details: dict[str, Any] = {
                "kind": "checkin",
                "flow": None,
                "flows": [],
                "answers": {},
                "note": checkin.note,
                "reasons": ["missed check-in (no /safe after the reminder and grace period)"],
            }
            case = await tx.case_open(checkin.defender_id, "checkin", "critical", details, now)
            await tx.log("case.opened", now, case_id=case.id, actor="system", detail="checkin")
            await self._paging.start(tx, case, now)
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
            details: dict[str, Any] = {
                "kind": "sos",
                "flow": None,
                "flows": [],
                "answers": {},
                "duress": True,
                "reasons": [why],
            }
            case = await tx.case_open(defender_id, "sos", "critical", details, now)
            await tx.log("case.opened", now, case_id=case.id, actor="defender", detail="duress")
            await self._paging.start(tx, case, now)
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
            details: dict[str, Any] = {
                "kind": "sos",
                "flow": None,
                "flows": [],
                "answers": {},
                "duress": True,
                "reasons": ["a message from a device marked compromised"],
            }
            open_case = await tx.case_open(defender_id, "sos", "critical", details, now)
            await tx.log("case.opened", now, case_id=open_case.id, actor="defender")
            await self._paging.start(tx, open_case, now)
        value = text or "(an empty message or a file)"
        await tx.case_add_entry(open_case.id, "compromised", value, now)
        await self._paging.relay(tx, open_case, COMPROMISED_TITLE, value, now, f"{key}:compromised")
