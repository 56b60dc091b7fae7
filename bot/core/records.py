"""Plain records the storage port returns and accepts: no ORM rows leave the database layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.messages import Address, Choice


@dataclass(frozen=True, slots=True)
class DefenderView:
    """A defender as the services see them."""

    id: str
    session: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CheckinView:
    """A check-in timer with its note decrypted.

    Attributes:
        state: active | nudged | missed | done | replaced.
        due_at: the deadline the defender set.
        next_at: when the engine acts next (None once finished).
    """

    id: str
    defender_id: str
    state: str
    due_at: datetime
    next_at: datetime | None
    note: str | None
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case without its content."""

    id: str
    ref: str
    defender_id: str
    kind: str
    tier: str
    status: str
    taken_by: str | None
    created_at: datetime
    resolved_by: str | None = None


@dataclass(frozen=True, slots=True)
class EscalationView:
    """A case's position on its paging ladder."""

    case_id: str
    tier: str
    state: str
    step: int
    loop: int
    next_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message to queue. ``idempotency_key`` is derived from the decision, not the attempt,
    so deciding twice queues once."""

    idempotency_key: str
    kind: str
    priority: int
    recipient: Address
    text: str
    case_id: str | None = None
    responder: str | None = None
    loop: int | None = None
    step: int | None = None
    defender_id: str | None = None  # set for everything sent to a defender
    choices: tuple[Choice, ...] = ()
    delete_ids: tuple[str, ...] = ()
    not_before: datetime | None = None  # send no earlier than this (scrubbing waits a little)
    fallback_for: str | None = None  # held until the page with this idempotency key fails


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """An outbox row claimed for sending; ``token`` proves the claim when reporting back."""

    id: str
    token: str
    kind: str
    priority: int
    recipient: Address
    text: str
    case_id: str | None
    responder: str | None
    loop: int | None
    step: int | None
    repeat: bool
    attempts: int
    to_defender: bool = False
    choices: tuple[Choice, ...] = ()
    delete_ids: tuple[str, ...] = ()
