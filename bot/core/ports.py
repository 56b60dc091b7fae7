"""The ports the services need, as Protocols: the storage adapter in ``db/`` implements them,
the services depend only on these, and tests may substitute their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.messages import Address, Delivered, InboundMessage, OutboundMessage

if TYPE_CHECKING:
    from bot.paging.watchdog import Snapshot

from bot.core.records import (
    CaseView,
    CheckinView,
    ClaimedMessage,
    DefenderView,
    EscalationView,
    OutboxItem,
)


class Transaction(Protocol):
    """One atomic unit of work over the stored state (see ``db.store.Transaction``)."""

    async def log(
        self,
        event: str,
        now: datetime,
        *,
        case_id: str | None = None,
        actor: str = "system",
        detail: str | None = None,
    ) -> None:
        """Append an entry to the event log. ``detail`` must hold ids and names, never content."""
        ...

    async def inbox_add(self, message: InboundMessage, now: datetime) -> str | None:
        """Store ``message`` encrypted; return its inbox id, or None if it was seen before."""
        ...

    async def inbox_pending(self, limit: int = 100) -> list[tuple[str, InboundMessage]]:
        """Return unprocessed inbox messages, oldest first."""
        ...

    async def inbox_finish(self, inbox_id: str, now: datetime, *, failed: bool = False) -> bool:
        """Mark a pending message processed (or failed) and destroy its content and key; return
        False, changing nothing, when it is no longer pending (another attempt finished it)."""
        ...

    async def defender_for(self, address: Address, now: datetime) -> DefenderView:
        """Return the defender behind ``address``, creating the record on first contact.

        The defender's row stays locked until the transaction ends (PostgreSQL ``FOR UPDATE``;
        SQLite's write lock), so two messages from one person are processed one after the
        other, never interleaved — even on several instances.
        """
        ...

    async def defender_save_session(
        self,
        defender_id: str,
        session: Mapping[str, Any] | None,
        now: datetime,
        draft_expires_at: datetime | None = None,
    ) -> None:
        """Store the defender's conversation session, encrypted (None clears it).

        ``draft_expires_at`` is the draft timer, stored with the session in the same write:
        every save replaces it, so a save without it (None) cancels any pending expiry.
        """
        ...

    async def defenders_with_expired_drafts(
        self, now: datetime, limit: int = 100
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """Return up to ``limit`` defenders whose draft timer is due (``draft_expires_at`` at
        or before ``now``), most overdue first, each as (defender id, decrypted session).

        The timer stays set: it ends only when the caller saves the session again. On
        PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``), so several instances never
        expire the same draft and a defender whose message is being processed is skipped; on
        SQLite the write lock does that.
        """
        ...

    async def defender_contact(self, defender_id: str) -> tuple[Address, dict[str, Any] | None]:
        """Return the defender's address and stored session (for their language)."""
        ...

    def code_digest(self, defender_id: str, code: str) -> str:
        """Return the keyed hash of a safety code (HMAC under the server pepper, bound to
        the defender): codes are compared and stored only as these."""
        ...

    async def defender_plan(self, defender_id: str) -> dict[str, Any] | None:
        """Return the defender's safety plan, decrypted (None if they have none)."""
        ...

    async def defender_save_plan(
        self, defender_id: str, plan: Mapping[str, Any] | None, now: datetime
    ) -> None:
        """Store the defender's safety plan encrypted under their key (None deletes it)."""
        ...

    async def checkin_start(
        self, defender_id: str, due_at: datetime, note: str | None, now: datetime
    ) -> CheckinView:
        """Start a check-in timer due at ``due_at`` (the note encrypted); a running one of
        the same defender is replaced, so there is at most one."""
        ...

    async def checkin_running(self, defender_id: str) -> CheckinView | None:
        """Return the defender's running check-in (active or nudged), if any."""
        ...

    async def checkins_due(self, now: datetime, limit: int = 50) -> list[CheckinView]:
        """Return running check-ins whose next action is due, oldest first; on PostgreSQL
        locked so that several instances never act on one twice."""
        ...

    async def checkin_set(
        self,
        checkin_id: str,
        state: str,
        next_at: datetime | None,
        now: datetime,
        case_id: str | None = None,
    ) -> None:
        """Move a check-in to ``state`` with its next action at ``next_at`` (None: none)."""
        ...

    async def next_checkin_due(self) -> datetime | None:
        """Return when the earliest check-in action is due (for precise wake-ups)."""
        ...

    async def defender_forget(self, defender_id: str, withdraw_cases: bool, now: datetime) -> int:
        """Crypto-shred what the defender asked us to forget; return how many cases were
        withdrawn (see ``db.store.Transaction.defender_forget``)."""
        ...

    async def outbox_release_leases(self) -> int:
        """End the lease of every row left ``claimed`` or ``sending`` by a dead process (a
        sole instance only)."""
        ...

    async def outbox_attempting(self, claims: Sequence[tuple[str, str]], now: datetime) -> set[str]:
        """Mark claimed rows (id, token) ``sending`` just before their platform call;
        return the ids still held by these claims."""
        ...

    async def outbox_release(self, claims: Sequence[tuple[str, str]], at: datetime) -> None:
        """Put claimed, never-tried rows back to pending until ``at`` (not an attempt)."""
        ...

    async def outbox_hurry(self, channel: str, now: datetime) -> int:
        """Make the rows of ``channel`` waiting out a back-off due now; return how many."""
        ...

    async def shred_closed_cases(self, closed_before: datetime, limit: int = 100) -> int:
        """Crypto-shred cases resolved before ``closed_before`` (key, details, note, entries
        destroyed; the row stays as a record that a case existed)."""
        ...

    async def cases_for_auto_alert(
        self, opened_before: datetime, limit: int = 50
    ) -> list[CaseView]:
        """Critical cases nobody has taken, opened before ``opened_before``, that are not
        drills and whose trusted contacts were not auto-alerted yet (oldest first)."""
        ...

    async def case_has_event(self, case_id: str, event: str) -> bool:
        """Return True when the case's log holds ``event`` (e.g. an automatic alert sent)."""
        ...

    async def case_open(
        self, defender_id: str, kind: str, tier: str, details: Mapping[str, Any], now: datetime
    ) -> CaseView:
        """Open a case with a fresh unique reference and its details encrypted."""
        ...

    async def case_by_ref(self, ref: str) -> CaseView | None:
        """Return the case with reference ``ref`` (canonical form), if any."""
        ...

    async def case_by_id(self, case_id: str) -> CaseView:
        """Return the case ``case_id`` (it must exist)."""
        ...

    async def cases_open(self) -> list[CaseView]:
        """Return every case not yet resolved, oldest first."""
        ...

    async def cases_of_defender(self, defender_id: str) -> list[CaseView]:
        """Return the defender's cases, newest first."""
        ...

    async def case_details(self, case_id: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Return a case's decrypted details and its added entries (label, value), in order."""
        ...

    async def case_add_entry(self, case_id: str, label: str, value: str, now: datetime) -> None:
        """Append ``value`` to the case, encrypted with the case's key."""
        ...

    async def case_set_tier(self, case_id: str, tier: str, now: datetime) -> None:
        """Change the case's tier (the caller logs who and why)."""
        ...

    async def events_of(self, case_id: str) -> list[tuple[datetime, str, str, str | None]]:
        """Return the case's log: (time, event, actor, detail), oldest first. No content."""
        ...

    async def case_take(self, case_id: str, responder: str, now: datetime) -> bool:
        """Mark an open case taken by ``responder``; False if it was no longer open."""
        ...

    async def case_resolve(
        self, case_id: str, responder: str, note: str | None, now: datetime
    ) -> bool:
        """Mark a case resolved (note encrypted); False if it was already resolved."""
        ...

    async def escalation_save(
        self,
        case_id: str,
        tier: str,
        state: str,
        step: int,
        loop: int,
        next_due_at: datetime | None,
        now: datetime,
    ) -> None:
        """Create or update the escalation of ``case_id``."""
        ...

    async def escalation_of(self, case_id: str) -> EscalationView | None:
        """Return the escalation of ``case_id``, if it has one."""
        ...

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[EscalationView]:
        """Return escalations whose next step is due — active ones whose wait ran out, and
        acked ones whose taker showed no activity within the ack timeout — most overdue first.

        On PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``) so that several
        instances never advance the same escalation; on SQLite the write lock does that.
        """
        ...

    async def next_due(self) -> datetime | None:
        """Return the earliest due time of any escalation (active, or acked with a timeout)."""
        ...

    async def escalation_stop(self, case_id: str, state: str, now: datetime) -> None:
        """End the escalation of ``case_id`` with ``state`` (acked, cancelled, exhausted)."""
        ...

    async def escalation_watch(self, case_id: str, due: datetime | None, now: datetime) -> None:
        """Set when an acked case is re-paged unless its taker shows activity (None: never)."""
        ...

    async def case_release(self, case_id: str, now: datetime) -> None:
        """Give a taken case back to the ladder (its taker went silent); it can be acked again."""
        ...

    async def escalation_hurry(self, case_id: str, loop: int, step: int, now: datetime) -> bool:
        """Make the next step due now if the escalation is still at (loop, step) and active."""
        ...

    async def outbox_add(self, item: OutboxItem, now: datetime) -> bool:
        """Queue ``item`` for sending now; False if its idempotency key was queued before."""
        ...

    async def page_hold_until(
        self, responder: str, now: datetime, window: timedelta
    ) -> datetime | None:
        """When a new non-critical page to ``responder`` should go out so that it travels with
        the others of the same window: with a page already held for them (join it), or one
        window after a page sent moments ago; None to send at once."""
        ...

    async def outbox_cancel_pages(self, case_id: str) -> int:
        """Cancel every page of ``case_id`` not yet claimed; return how many."""
        ...

    async def paged_responders(self, case_id: str) -> list[str]:
        """Return the names of responders paged for ``case_id`` so far (not cancelled)."""
        ...

    async def watchdog_snapshot(self, now: datetime, stuck_after: timedelta) -> Snapshot:
        """Open cases with their escalation state, and how many outbox rows are stuck: due
        more than ``stuck_after`` ago but not sent, or left sending past their lease."""
        ...

    async def outbox_due_count(self, channels: Sequence[str], now: datetime) -> int:
        """Return how many messages for ``channels`` are waiting to be sent now."""
        ...

    async def outbox_claim(
        self,
        channels: Sequence[str],
        now: datetime,
        lease: timedelta,
        limit: int = 20,
        skip_responders: Collection[str] = (),
        early: timedelta = timedelta(0),
    ) -> list[ClaimedMessage]:
        """Claim up to ``limit`` due messages, most urgent first, under a lease.

        Order: priority (highest first); within a priority, pages first; then oldest first.
        Rows for a responder in ``skip_responders`` (rate-limited right now) are left. With
        ``early``, pending rows whose back-off ends within ``early`` count as due (a probe).

        A row found in ``sending`` past its lease was being sent when a process died: its
        outcome is unknown, so it is claimed once more as a repeat; a row whose repeat's
        outcome is unknown too is marked failed, never sent a third time.
        """
        ...

    async def outbox_sent(
        self, message_id: str, token: str, now: datetime, provider_ids: Sequence[str] = ()
    ) -> bool:
        """Record a delivery and the platform's message ids (kept only for messages to
        defenders, so their chat can be cleared); False if the claim had been lost."""
        ...

    async def outbox_retry(
        self, message_id: str, token: str, at: datetime, error: str, *, ambiguous: bool = False
    ) -> str:
        """Put a claimed row back to pending until ``at``; return its new state.

        With ``ambiguous`` (the outcome of this attempt is unknown), a row that was already a
        repeat is failed instead: it is never sent a third time.
        """
        ...

    async def outbox_failed(
        self, message_id: str, token: str, error: str, now: datetime
    ) -> int | None:
        """Record a permanent refusal, releasing a held fallback page at once; return how many
        fallbacks were released, or None if the claim had been lost."""
        ...


class Store(Protocol):
    """Opens transactions."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Return a context manager yielding a transaction that commits on success."""
        ...


class Channel(Protocol):
    """A transport the outbox sender can deliver through."""

    name: str

    async def send(self, message: OutboundMessage) -> Delivered | None:
        """Deliver ``message`` or raise a ``bot.core.messages.DeliveryError`` subclass.

        Must not raise anything else for platform trouble, must return within about 30 s
        (well inside the outbox lease), and must not log text or identities.
        """
        ...


Handler = Callable[[InboundMessage], Awaitable[object]]


class ReceivingChannel(Channel, Protocol):
    """A channel that also receives (Telegram, Signal), run by ``intake run``."""

    async def start(self, handle: Handler) -> None:
        """Check the platform (fail with ``bot.errors.ChannelStartError`` and a clear reason if
        it is unreachable or misconfigured), then start receiving in background tasks, handing
        every message to ``handle``. ``handle`` returns once the message is stored in the
        inbox and processed; only then may the channel confirm the message to the platform."""
        ...

    async def stop(self) -> None:
        """Stop receiving: finish the message in hand, confirm what was stored, close clients."""
        ...
