"""Queueing a message to a person who may have several addresses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.core.messages import Address
from bot.core.ports import Transaction
from bot.core.records import OutboxItem

NOBODY = Address("none", "")  # the recipient of an item template, filled in per address


async def queue_to_person(
    tx: Transaction, addresses: Sequence[Address], item: OutboxItem, now: datetime
) -> bool:
    """Queue ``item`` to the first of ``addresses``; every further address gets a copy held
    as a fallback, released only if the one before it is refused or its outcome stays
    unknown. Idempotency keys are ``item.idempotency_key`` plus the channel. Returns False
    when there is no address at all."""
    previous: str | None = None
    for address in addresses:
        key = f"{item.idempotency_key}:{address.channel}"
        await tx.outbox_add(
            replace(item, idempotency_key=key, recipient=address, fallback_for=previous), now
        )
        previous = key
    return previous is not None
