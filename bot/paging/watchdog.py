"""The watchdog: an independent check, every 30 s, that nothing is silently stuck — and the
operator alerts it (and the escalation engine, for rota holes) sends.

The checks are a pure function of a snapshot of the stored state and the time; sending the
alerts goes through the outbox like every page, once per problem per hour.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.messages import Priority
from bot.core.ports import Transaction
from bot.core.records import OutboxItem
from bot.paging.delivery import NOBODY, queue_to_person
from bot.paging.directory import Directory

log = logging.getLogger(__name__)

REALERT_EVERY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class OpenCaseState:
    """What the watchdog needs to know about one open case."""

    case_id: str
    ref: str
    tier: str
    taken: bool
    escalation_state: str | None  # None: the case has no escalation at all
    next_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state the checks run over."""

    cases: Sequence[OpenCaseState]
    stuck_outbox: int  # rows due longer than the allowed delay, or sending past their lease
    oldest_stuck: datetime | None


@dataclass(frozen=True, slots=True)
class Problem:
    """Something an operator must look at: ``key`` de-duplicates alerts, ``text`` says what."""

    key: str
    text: str


def check(snapshot: Snapshot, now: datetime, overdue_after: timedelta) -> list[Problem]:
    """Return every problem in ``snapshot`` at ``now``.

    - an untaken case whose escalation is overdue by more than ``overdue_after`` (the tick is
      not running), exhausted (nobody acked the whole ladder), missing, or stopped;
    - outbox rows stuck (not sent long after they were due, or left sending by a crash).
    """
    problems = []
    for case in snapshot.cases:
        if case.taken:
            continue
        state = case.escalation_state
        if state is None or state == "cancelled":
            problems.append(
                Problem(
                    f"noladder:{case.case_id}",
                    f"Case {case.ref} ({case.tier.upper()}) is open and nobody "
                    "is being paged for it.",
                )
            )
        elif state == "exhausted":
            problems.append(
                Problem(
                    f"exhausted:{case.case_id}",
                    f"Case {case.ref} ({case.tier.upper()}): the whole paging "
                    "ladder ran and nobody took it. Find someone now.",
                )
            )
        elif state in ("active", "queued") and (
            case.next_due_at is None or case.next_due_at < now - overdue_after
        ):
            problems.append(
                Problem(
                    f"overdue:{case.case_id}",
                    f"Case {case.ref}: its next page is overdue — the escalation "
                    "engine may be stopped.",
                )
            )
    if snapshot.stuck_outbox:
        since = ""
        if snapshot.oldest_stuck is not None:
            since = (
                f" (oldest due {int((now - snapshot.oldest_stuck).total_seconds() // 60)} min ago)"
            )
        problems.append(
            Problem(
                "outbox",
                f"{snapshot.stuck_outbox} message(s) are stuck in the "
                f"outbox{since}: a channel may be down.",
            )
        )
    return problems


class OperatorAlerts:
    """Sends alerts to the operators through the outbox, at most once per problem per hour."""

    def __init__(self, operators: Directory) -> None:
        self.operators = operators

    async def alert(self, tx: Transaction, problem: Problem, now: datetime) -> int:
        """Queue ``problem`` to every operator (first reachable address, others held as
        fallbacks); return how many operators it was queued for (0 = nobody reachable)."""
        bucket = int(now.timestamp() // REALERT_EVERY.total_seconds())
        text = f"ALERT (defender-intake)\n{problem.text}"
        queued = 0
        for name in self.operators.names():
            queued += await queue_to_person(
                tx,
                self.operators.reachable_addresses(name),
                OutboxItem(
                    idempotency_key=f"alert:{problem.key}:{bucket}:{name}",
                    kind="notice",
                    priority=Priority.URGENT,
                    recipient=NOBODY,
                    text=text,
                    responder=name,
                ),
                now,
            )
        await tx.log("operator.alerted", now, detail=f"{problem.key[:120]} to={queued}")
        if not queued:
            log.error("operator.alert_unreachable problem=%s", problem.key.split(":")[0])
        return queued
