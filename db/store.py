"""The storage adapter: transactions that take and return plain values, never ORM rows.

This is the only module that puts data into tables. Everything a defender said and every
platform identity is encrypted here, with a data key per record bound to its table, column
and row, before SQLAlchemy sees it; identities are looked up by keyed pseudonym.

Usage::

    async with store.transaction() as tx:
        defender = await tx.defender_for(address, now)
        ...

A transaction commits when the block ends and rolls back if it raises; on SQLite it holds
the database write lock from its first statement (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy import case as sql_case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.core.clock import from_millis, to_millis
from bot.core.messages import Address, Choice, InboundMessage
from bot.core.records import (
    CaseView,
    CheckinView,
    ClaimedMessage,
    DefenderView,
    EscalationView,
    OutboxItem,
)
from bot.core.refs import new_reference
from bot.paging.watchdog import OpenCaseState, Snapshot
from db.crypto import DataKey, KeyRing, field_context
from db.ids import new_id
from db.models import (
    OUTBOX_UNFINISHED,
    Case,
    CaseEntry,
    Checkin,
    Defender,
    Escalation,
    EventLog,
    Inbox,
    Outbox,
)

# Repeated literally in the queries over the outbox, so that they read ix_outbox_due.
UNFINISHED = text(f"outbox.{OUTBOX_UNFINISHED}")


class Store:
    """Opens transactions over an engine, encrypting with ``keyring``."""

    def __init__(self, engine: AsyncEngine, keyring: KeyRing) -> None:
        self._engine = engine
        self._keyring = keyring
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """The database dialect name (``sqlite`` or ``postgresql``)."""
        return self._engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Yield a :class:`Transaction` that commits on success and rolls back on error."""
        async with self._sessions() as session, session.begin():
            yield Transaction(session, self._keyring, self.dialect)


class Transaction:
    """One database transaction and every operation the services need inside it."""

    def __init__(self, session: AsyncSession, keyring: KeyRing, dialect: str) -> None:
        self._s = session
        self._keys = keyring
        self._dialect = dialect

    # -- helpers -------------------------------------------------------------------------

    def _new_key(self, table: str, row_id: str) -> tuple[DataKey, bytes]:
        return self._keys.new_data_key(field_context(table, "key", row_id))

    def _key(self, table: str, row_id: str, wrapped: bytes) -> DataKey:
        return self._keys.unwrap(wrapped, field_context(table, "key", row_id))

    async def _insert_ignore(self, model: Any, values: Mapping[str, Any], key: str) -> bool:
        """INSERT unless a row with the same unique ``key`` exists; True if inserted."""
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = (
            dialect_insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
        )
        result = await self._s.execute(statement)
        return bool(getattr(result, "rowcount", 0))

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
        self._s.add(
            EventLog(
                id=new_id(),
                case_id=case_id,
                event=event,
                actor=actor,
                detail=detail,
                at=to_millis(now),
            )
        )

    # -- inbox ---------------------------------------------------------------------------

    def _dedup_hash(self, channel: str, dedup_key: str) -> str:
        return self._keys.pseudonym("inbox", f"{channel}\x00{dedup_key}")

    async def inbox_add(self, message: InboundMessage, now: datetime) -> str | None:
        """Store ``message`` encrypted; return its inbox id, or None if it was seen before."""
        row_id = new_id()
        key, wrapped = self._new_key("inbox", row_id)
        payload = {
            "channel": message.sender.channel,
            "identity": message.sender.identity,
            "text": message.text,
            "dedup_key": message.dedup_key,
            "received_at": to_millis(message.received_at),
            "aliases": [[a.channel, a.identity] for a in message.aliases],
            "platform_message_id": message.platform_message_id,
            "button": message.button,
            "language_hint": message.language_hint,
        }
        inserted = await self._insert_ignore(
            Inbox,
            {
                "id": row_id,
                "dedup_hash": self._dedup_hash(message.sender.channel, message.dedup_key),
                "channel": message.sender.channel,
                "state": "pending",
                "wrapped_key": wrapped,
                "message_ct": key.encrypt_json(payload, field_context("inbox", "message", row_id)),
                "received_at": to_millis(now),
            },
            "dedup_hash",
        )
        return row_id if inserted else None

    async def inbox_pending(self, limit: int = 100) -> list[tuple[str, InboundMessage]]:
        """Return unprocessed inbox messages, oldest first, exactly as they were received
        (button presses, chat message ids and language hints included)."""
        rows = (
            await self._s.execute(
                select(Inbox).where(Inbox.state == "pending").order_by(Inbox.id).limit(limit)
            )
        ).scalars()
        result = []
        for row in rows:
            assert row.wrapped_key is not None and row.message_ct is not None
            data = self._key("inbox", row.id, row.wrapped_key).decrypt_json(
                row.message_ct, field_context("inbox", "message", row.id)
            )
            message = InboundMessage(
                sender=Address(data["channel"], data["identity"]),
                text=data["text"],
                dedup_key=data["dedup_key"],
                received_at=from_millis(data["received_at"]),
                aliases=tuple(Address(c, i) for c, i in data.get("aliases") or ()),
                platform_message_id=data.get("platform_message_id"),
                button=data.get("button"),
                language_hint=data.get("language_hint"),
            )
            result.append((row.id, message))
        return result

    async def inbox_finish(self, inbox_id: str, now: datetime, *, failed: bool = False) -> bool:
        """Mark a pending message processed (or failed) and destroy its content and key; return
        False, changing nothing, when it is no longer pending (another attempt finished it: the
        caller rolls back, so a message is processed once even if processing is repeated)."""
        result = await self._s.execute(
            update(Inbox)
            .where(Inbox.id == inbox_id, Inbox.state == "pending")
            .values(
                state="failed" if failed else "done",
                wrapped_key=None,
                message_ct=None,
                processed_at=to_millis(now),
            )
        )
        return bool(getattr(result, "rowcount", 0))

    # -- defenders -----------------------------------------------------------------------

    async def defender_for(self, address: Address, now: datetime) -> DefenderView:
        """Return the defender behind ``address``, creating the record on first contact.

        The defender's row stays locked until the transaction ends (PostgreSQL ``FOR NO KEY
        UPDATE``; SQLite's write lock), so two messages from one person are processed one
        after the other, never interleaved — even on several instances. The lock leaves the
        row's key alone, so rows referring to the defender (an outbox row marked sent, a new
        message queued to them) are written meanwhile without waiting for this transaction.
        """
        identity_hash = self._keys.pseudonym("address", f"{address.channel}\x00{address.identity}")
        query = select(Defender).where(Defender.identity_hash == identity_hash)
        if self._dialect == "postgresql":
            query = query.with_for_update(key_share=True)
        row = (await self._s.execute(query)).scalar_one_or_none()
        if row is None:
            row_id = new_id()
            key, wrapped = self._new_key("defender", row_id)
            address_ct = key.encrypt_json(
                [address.channel, address.identity], field_context("defender", "address", row_id)
            )
            await self._insert_ignore(
                Defender,
                {
                    "id": row_id,
                    "identity_hash": identity_hash,
                    "wrapped_key": wrapped,
                    "address_ct": address_ct,
                    "session_ct": None,
                    "created_at": to_millis(now),
                    "updated_at": to_millis(now),
                },
                "identity_hash",
            )  # a concurrent first message may have created it: then we lock theirs below
            row = (await self._s.execute(query)).scalar_one()
        return DefenderView(id=row.id, session=self._session_of(row))

    def _session_of(self, row: Defender, key: DataKey | None = None) -> dict[str, Any] | None:
        """Decrypt the defender's stored session (None if there is none); ``key`` is the
        row's unwrapped data key, when the caller already has it."""
        if row.session_ct is None:
            return None
        key = key or self._key("defender", row.id, row.wrapped_key)
        session: dict[str, Any] = key.decrypt_json(
            row.session_ct, field_context("defender", "session", row.id)
        )
        return session

    async def _defender_row(self, defender_id: str) -> Defender:
        return (
            await self._s.execute(select(Defender).where(Defender.id == defender_id))
        ).scalar_one()

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
        row = await self._defender_row(defender_id)
        key = self._key("defender", row.id, row.wrapped_key)
        row.session_ct = (
            None
            if session is None
            else key.encrypt_json(dict(session), field_context("defender", "session", row.id))
        )
        row.draft_expires_at = None if draft_expires_at is None else to_millis(draft_expires_at)
        row.updated_at = to_millis(now)

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
        query = (
            select(Defender)
            .where(Defender.draft_expires_at <= to_millis(now))
            .order_by(Defender.draft_expires_at, Defender.id)
            .limit(limit)
        )
        if self._dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = await self._s.execute(query)
        return [(row.id, self._session_of(row)) for row in rows.scalars()]

    async def defender_contact(self, defender_id: str) -> tuple[Address, dict[str, Any] | None]:
        """Return the defender's address and stored session (for their language)."""
        row = await self._defender_row(defender_id)
        key = self._key("defender", row.id, row.wrapped_key)
        channel, identity = key.decrypt_json(
            row.address_ct, field_context("defender", "address", row.id)
        )
        return Address(channel, identity), self._session_of(row, key)

    # -- safety plan and check-ins --------------------------------------------------------

    def code_digest(self, defender_id: str, code: str) -> str:
        """Return the keyed hash of a safety code (HMAC under the server pepper, bound to
        the defender): codes are compared and stored only as these."""
        return self._keys.pseudonym("code", f"{defender_id}\x00{code}")

    async def defender_plan(self, defender_id: str) -> dict[str, Any] | None:
        """Return the defender's safety plan, decrypted (None if they have none)."""
        row = await self._defender_row(defender_id)
        if row.plan_ct is None:
            return None
        key = self._key("defender", row.id, row.wrapped_key)
        plan: dict[str, Any] = key.decrypt_json(
            row.plan_ct, field_context("defender", "plan", row.id)
        )
        return plan

    async def defender_save_plan(
        self, defender_id: str, plan: Mapping[str, Any] | None, now: datetime
    ) -> None:
        """Store the defender's safety plan encrypted under their key (None deletes it)."""
        row = await self._defender_row(defender_id)
        key = self._key("defender", row.id, row.wrapped_key)
        row.plan_ct = (
            None
            if plan is None
            else key.encrypt_json(dict(plan), field_context("defender", "plan", row.id))
        )
        row.updated_at = to_millis(now)

    def _checkin_view(self, row: Checkin) -> CheckinView:
        note = None
        if row.note_ct is not None:
            key = self._key("checkin", row.id, row.wrapped_key)
            note = key.decrypt_text(row.note_ct, field_context("checkin", "note", row.id))
        return CheckinView(
            id=row.id,
            defender_id=row.defender_id,
            state=row.state,
            due_at=from_millis(row.due_at),
            next_at=None if row.next_at is None else from_millis(row.next_at),
            note=note,
            case_id=row.case_id,
        )

    async def checkin_start(
        self, defender_id: str, due_at: datetime, note: str | None, now: datetime
    ) -> CheckinView:
        """Start a check-in timer due at ``due_at`` (the note encrypted); a running one of
        the same defender is replaced, so there is at most one."""
        await self._s.execute(
            update(Checkin)
            .where(Checkin.defender_id == defender_id, Checkin.state.in_(("active", "nudged")))
            .values(state="replaced", next_at=None, updated_at=to_millis(now))
        )
        row_id = new_id()
        key, wrapped = self._new_key("checkin", row_id)
        row = Checkin(
            id=row_id,
            defender_id=defender_id,
            state="active",
            due_at=to_millis(due_at),
            next_at=to_millis(due_at),
            wrapped_key=wrapped,
            note_ct=None
            if note is None
            else key.encrypt_text(note, field_context("checkin", "note", row_id)),
            created_at=to_millis(now),
            updated_at=to_millis(now),
        )
        self._s.add(row)
        await self._s.flush()
        return self._checkin_view(row)

    async def checkin_running(self, defender_id: str) -> CheckinView | None:
        """Return the defender's running check-in (active or nudged), if any."""
        row = (
            await self._s.execute(
                select(Checkin).where(
                    Checkin.defender_id == defender_id, Checkin.state.in_(("active", "nudged"))
                )
            )
        ).scalar_one_or_none()
        return None if row is None else self._checkin_view(row)

    async def checkins_due(self, now: datetime, limit: int = 50) -> list[CheckinView]:
        """Return running check-ins whose next action is due, oldest first; on PostgreSQL
        locked so that several instances never act on one twice."""
        query = (
            select(Checkin)
            .where(Checkin.next_at <= to_millis(now))
            .order_by(Checkin.next_at, Checkin.id)
            .limit(limit)
        )
        if self._dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = (await self._s.execute(query)).scalars()
        return [self._checkin_view(row) for row in rows]

    async def checkin_set(
        self,
        checkin_id: str,
        state: str,
        next_at: datetime | None,
        now: datetime,
        case_id: str | None = None,
    ) -> None:
        """Move a check-in to ``state`` with its next action at ``next_at`` (None: none)."""
        values: dict[str, Any] = {
            "state": state,
            "next_at": None if next_at is None else to_millis(next_at),
            "updated_at": to_millis(now),
        }
        if case_id is not None:
            values["case_id"] = case_id
        await self._s.execute(update(Checkin).where(Checkin.id == checkin_id).values(**values))

    async def defender_forget(self, defender_id: str, withdraw_cases: bool, now: datetime) -> int:
        """Crypto-shred what the defender asked us to forget; return how many cases were
        withdrawn.

        Always: the safety plan, the session and drafts, check-in timers, and every message
        still waiting to be sent to them are destroyed. With ``withdraw_cases``, also every
        case of theirs loses its key, details and entries, and the defender record loses its
        key, address and pseudonym, so nothing left in the database can be decrypted or
        linked to them (the caller stops the cases' paging first). Without it the key and
        address stay, because the team still needs to reach them about open cases.
        """
        row = await self._defender_row(defender_id)
        row.plan_ct = None
        row.session_ct = None
        row.draft_expires_at = None
        row.updated_at = to_millis(now)
        await self._s.execute(delete(Checkin).where(Checkin.defender_id == defender_id))
        await self._s.execute(
            update(Outbox)
            .where(Outbox.defender_id == defender_id, Outbox.state.in_(("pending", "held")))
            .values(state="cancelled", wrapped_key=None, recipient_ct=None, payload_ct=None)
        )
        if not withdraw_cases:
            return 0
        cases = (
            (await self._s.execute(select(Case).where(Case.defender_id == defender_id)))
            .scalars()
            .all()
        )
        for case in cases:
            await self._s.execute(delete(CaseEntry).where(CaseEntry.case_id == case.id))
            case.wrapped_key = b""
            case.details_ct = b""
            case.resolve_note_ct = None
            if case.status != "resolved":
                case.status = "resolved"
                case.resolved_by = "defender"
                case.resolved_at = to_millis(now)
            case.updated_at = to_millis(now)
        row.wrapped_key = b""
        row.address_ct = b""
        row.identity_hash = f"forgotten:{new_id()}"  # unlinkable: a new message starts afresh
        return len(cases)

    async def shred_closed_cases(self, closed_before: datetime, limit: int = 100) -> int:
        """Crypto-shred cases resolved before ``closed_before``: their key, details, note and
        entries are destroyed; the row stays as a record that a case existed (tier, status,
        dates). Returns how many were shredded."""
        rows = (
            (
                await self._s.execute(
                    select(Case)
                    .where(
                        Case.status == "resolved",
                        Case.resolved_at <= to_millis(closed_before),
                        Case.wrapped_key != b"",
                    )
                    .order_by(Case.resolved_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        for case in rows:
            await self._s.execute(delete(CaseEntry).where(CaseEntry.case_id == case.id))
            case.wrapped_key = b""
            case.details_ct = b""
            case.resolve_note_ct = None
        return len(rows)

    async def next_checkin_due(self) -> datetime | None:
        """Return when the earliest check-in action is due (for precise wake-ups)."""
        value = (await self._s.execute(select(func.min(Checkin.next_at)))).scalar_one_or_none()
        return None if value is None else from_millis(value)

    # -- cases ---------------------------------------------------------------------------

    @staticmethod
    def _case_view(row: Case) -> CaseView:
        return CaseView(
            id=row.id,
            ref=row.ref,
            defender_id=row.defender_id,
            kind=row.kind,
            tier=row.tier,
            status=row.status,
            taken_by=row.taken_by,
            created_at=from_millis(row.created_at),
            resolved_by=row.resolved_by,
        )

    async def case_open(
        self, defender_id: str, kind: str, tier: str, details: Mapping[str, Any], now: datetime
    ) -> CaseView:
        """Open a case with a fresh unique reference and its details encrypted."""
        for _ in range(50):
            ref = new_reference()
            taken = await self._s.execute(select(Case.id).where(Case.ref == ref))
            if taken.first() is None:
                break
        else:  # pragma: no cover - 810,000 references; 50 collisions in a row means a full table
            raise RuntimeError("no free case reference")
        row_id = new_id()
        key, wrapped = self._new_key("cases", row_id)
        row = Case(
            id=row_id,
            ref=ref,
            defender_id=defender_id,
            kind=kind,
            tier=tier,
            status="open",
            wrapped_key=wrapped,
            details_ct=key.encrypt_json(dict(details), field_context("cases", "details", row_id)),
            created_at=to_millis(now),
            updated_at=to_millis(now),
        )
        self._s.add(row)
        await self._s.flush()
        return self._case_view(row)

    async def case_by_ref(self, ref: str) -> CaseView | None:
        """Return the case with reference ``ref`` (canonical form), if any."""
        row = (await self._s.execute(select(Case).where(Case.ref == ref))).scalar_one_or_none()
        return None if row is None else self._case_view(row)

    async def case_by_id(self, case_id: str) -> CaseView:
        """Return the case ``case_id`` (it must exist)."""
        return self._case_view(
            (await self._s.execute(select(Case).where(Case.id == case_id))).scalar_one()
        )

    async def cases_open(self) -> list[CaseView]:
        """Return every case not yet resolved, oldest first."""
        rows = await self._s.execute(
            select(Case).where(Case.status != "resolved").order_by(Case.created_at, Case.id)
        )
        return [self._case_view(row) for row in rows.scalars()]

    async def cases_for_auto_alert(
        self, opened_before: datetime, limit: int = 50
    ) -> list[CaseView]:
        """Critical cases nobody has taken, opened before ``opened_before``, that are not
        drills and whose trusted contacts were not auto-alerted yet (oldest first)."""
        alerted = select(EventLog.id).where(
            EventLog.case_id == Case.id, EventLog.event == "contacts.auto_alerted"
        )
        rows = await self._s.execute(
            select(Case)
            .where(
                Case.tier == "critical",
                Case.status == "open",
                Case.kind != "drill",
                Case.created_at <= to_millis(opened_before),
                ~alerted.exists(),
            )
            .order_by(Case.created_at, Case.id)
            .limit(limit)
        )
        return [self._case_view(row) for row in rows.scalars()]

    async def case_has_event(self, case_id: str, event: str) -> bool:
        """Return True when the case's log holds ``event`` (e.g. an automatic alert sent)."""
        found = await self._s.execute(
            select(EventLog.id).where(EventLog.case_id == case_id, EventLog.event == event).limit(1)
        )
        return found.first() is not None

    async def cases_of_defender(self, defender_id: str) -> list[CaseView]:
        """Return the defender's cases, newest first."""
        rows = await self._s.execute(
            select(Case).where(Case.defender_id == defender_id).order_by(Case.id.desc())
        )
        return [self._case_view(row) for row in rows.scalars()]

    async def case_details(self, case_id: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Return a case's decrypted details and its added entries (label, value), in order;
        a shredded case (key destroyed: forgotten or past retention) has none."""
        row = (await self._s.execute(select(Case).where(Case.id == case_id))).scalar_one()
        if not row.wrapped_key:
            return {"kind": row.kind, "shredded": True}, []
        key = self._key("cases", row.id, row.wrapped_key)
        details = key.decrypt_json(row.details_ct, field_context("cases", "details", row.id))
        entries = await self._s.execute(
            select(CaseEntry).where(CaseEntry.case_id == case_id).order_by(CaseEntry.id)
        )
        added = [
            (e.label, key.decrypt_text(e.value_ct, field_context("case_entry", "value", e.id)))
            for e in entries.scalars()
        ]
        return details, added

    async def case_add_entry(self, case_id: str, label: str, value: str, now: datetime) -> None:
        """Append ``value`` to the case, encrypted with the case's key."""
        row = (await self._s.execute(select(Case).where(Case.id == case_id))).scalar_one()
        key = self._key("cases", row.id, row.wrapped_key)
        entry_id = new_id()
        self._s.add(
            CaseEntry(
                id=entry_id,
                case_id=case_id,
                label=label,
                value_ct=key.encrypt_text(value, field_context("case_entry", "value", entry_id)),
                created_at=to_millis(now),
            )
        )
        row.updated_at = to_millis(now)

    async def case_set_tier(self, case_id: str, tier: str, now: datetime) -> None:
        """Change the case's tier (the caller logs who and why)."""
        await self._s.execute(
            update(Case).where(Case.id == case_id).values(tier=tier, updated_at=to_millis(now))
        )
        await self._s.execute(
            update(Escalation).where(Escalation.case_id == case_id).values(tier=tier)
        )

    async def events_of(self, case_id: str) -> list[tuple[datetime, str, str, str | None]]:
        """Return the case's log: (time, event, actor, detail), oldest first. No content."""
        rows = await self._s.execute(
            select(EventLog).where(EventLog.case_id == case_id).order_by(EventLog.id)
        )
        return [(from_millis(r.at), r.event, r.actor, r.detail) for r in rows.scalars()]

    async def case_take(self, case_id: str, responder: str, now: datetime) -> bool:
        """Mark an open case taken by ``responder``; False if it was no longer open."""
        result = await self._s.execute(
            update(Case)
            .where(Case.id == case_id, Case.status == "open")
            .values(
                status="taken",
                taken_by=responder,
                taken_at=to_millis(now),
                updated_at=to_millis(now),
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def case_resolve(
        self, case_id: str, responder: str, note: str | None, now: datetime
    ) -> bool:
        """Mark a case resolved (note encrypted); False if it was already resolved."""
        row = (await self._s.execute(select(Case).where(Case.id == case_id))).scalar_one()
        if row.status == "resolved":
            return False
        row.status = "resolved"
        row.resolved_by = responder
        row.resolved_at = to_millis(now)
        row.updated_at = to_millis(now)
        if note:
            key = self._key("cases", row.id, row.wrapped_key)
            row.resolve_note_ct = key.encrypt_text(
                note, field_context("cases", "resolve_note", row.id)
            )
        return True

    # -- escalations ---------------------------------------------------------------------

    @staticmethod
    def _escalation_view(row: Escalation) -> EscalationView:
        return EscalationView(
            case_id=row.case_id,
            tier=row.tier,
            state=row.state,
            step=row.step,
            loop=row.loop,
            next_due_at=None if row.next_due_at is None else from_millis(row.next_due_at),
        )

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
        row = await self._s.get(Escalation, case_id)
        due = None if next_due_at is None else to_millis(next_due_at)
        if row is None:
            self._s.add(
                Escalation(
                    case_id=case_id,
                    tier=tier,
                    state=state,
                    step=step,
                    loop=loop,
                    next_due_at=due,
                    updated_at=to_millis(now),
                )
            )
        else:
            row.tier, row.state, row.step, row.loop = tier, state, step, loop
            row.next_due_at = due
            row.updated_at = to_millis(now)
        await self._s.flush()

    async def escalation_of(self, case_id: str) -> EscalationView | None:
        """Return the escalation of ``case_id``, if it has one."""
        row = await self._s.get(Escalation, case_id)
        return None if row is None else self._escalation_view(row)

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[EscalationView]:
        """Return escalations whose next step is due — active ones whose wait ran out, and
        acked ones whose taker showed no activity within the ack timeout — most overdue first.

        On PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``) so that several
        instances never advance the same escalation; on SQLite the write lock does that.
        """
        query = (
            select(Escalation)
            .where(
                Escalation.state.in_(("active", "acked", "queued")),
                Escalation.next_due_at <= to_millis(now),
            )
            .order_by(Escalation.next_due_at)
            .limit(limit)
        )
        if self._dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = await self._s.execute(query)
        return [self._escalation_view(row) for row in rows.scalars()]

    async def next_due(self) -> datetime | None:
        """Return the earliest due time of any escalation (active, or acked with a timeout)."""
        result = await self._s.execute(
            select(func.min(Escalation.next_due_at)).where(
                Escalation.state.in_(("active", "acked", "queued")),
                Escalation.next_due_at.is_not(None),  # min() skips NULLs; this uses the index
            )
        )
        millis = result.scalar_one_or_none()
        return None if millis is None else from_millis(millis)

    async def escalation_stop(self, case_id: str, state: str, now: datetime) -> None:
        """End the escalation of ``case_id`` with ``state`` (acked, cancelled, exhausted)."""
        await self._s.execute(
            update(Escalation)
            .where(Escalation.case_id == case_id)
            .values(state=state, next_due_at=None, updated_at=to_millis(now))
        )

    async def escalation_watch(self, case_id: str, due: datetime | None, now: datetime) -> None:
        """Set when an acked case is re-paged unless its taker shows activity (None: never)."""
        await self._s.execute(
            update(Escalation)
            .where(Escalation.case_id == case_id, Escalation.state == "acked")
            .values(next_due_at=None if due is None else to_millis(due), updated_at=to_millis(now))
        )

    async def case_release(self, case_id: str, now: datetime) -> None:
        """Give a taken case back to the ladder (its taker went silent); it can be acked again."""
        await self._s.execute(
            update(Case)
            .where(Case.id == case_id, Case.status == "taken")
            .values(status="open", taken_by=None, taken_at=None, updated_at=to_millis(now))
        )

    async def escalation_hurry(self, case_id: str, loop: int, step: int, now: datetime) -> bool:
        """Make the next step due now if the escalation is still at (loop, step) and active."""
        result = await self._s.execute(
            update(Escalation)
            .where(
                Escalation.case_id == case_id,
                Escalation.state == "active",
                Escalation.loop == loop,
                Escalation.step == step,
            )
            .values(next_due_at=to_millis(now), updated_at=to_millis(now))
        )
        return bool(getattr(result, "rowcount", 0))

    # -- outbox --------------------------------------------------------------------------

    async def outbox_add(self, item: OutboxItem, now: datetime) -> bool:
        """Queue ``item`` for sending now; False if its idempotency key was queued before."""
        row_id = new_id()
        key, wrapped = self._new_key("outbox", row_id)
        return await self._insert_ignore(
            Outbox,
            {
                "id": row_id,
                "idempotency_key": item.idempotency_key,
                "kind": item.kind,
                "priority": item.priority,
                "channel": item.recipient.channel,
                "responder": item.responder,
                "case_id": item.case_id,
                "loop": item.loop,
                "step": item.step,
                "defender_id": item.defender_id,
                "wrapped_key": wrapped,
                "recipient_ct": key.encrypt_json(
                    [item.recipient.channel, item.recipient.identity],
                    field_context("outbox", "recipient", row_id),
                ),
                "payload_ct": key.encrypt_json(
                    {
                        "text": item.text,
                        "choices": [[c.label, c.data] for c in item.choices],
                        "delete_ids": list(item.delete_ids),
                    },
                    field_context("outbox", "payload", row_id),
                ),
                "state": "held" if item.fallback_for else "pending",
                "fallback_for": item.fallback_for,
                "attempts": 0,
                "ambiguous": False,
                "next_attempt_at": to_millis(max(now, item.not_before or now)),
                "created_at": to_millis(now),
            },
            "idempotency_key",
        )

    async def page_hold_until(
        self, responder: str, now: datetime, window: timedelta
    ) -> datetime | None:
        """When a new non-critical page to ``responder`` should go out so that it travels with
        the others of the same window: with a page already held for them (join it), or one
        window after a page sent moments ago; None to send at once."""
        held = await self._s.execute(
            select(func.min(Outbox.next_attempt_at)).where(
                Outbox.kind == "page",
                Outbox.responder == responder,
                Outbox.state == "pending",
                Outbox.next_attempt_at > to_millis(now),
            )
        )
        millis = held.scalar_one_or_none()
        if millis is not None:
            return from_millis(millis)
        recent = await self._s.execute(
            select(func.max(Outbox.created_at)).where(
                Outbox.kind == "page",
                Outbox.responder == responder,
                Outbox.created_at > to_millis(now - window),
            )
        )
        millis = recent.scalar_one_or_none()
        return None if millis is None else from_millis(millis) + window

    async def outbox_cancel_pages(self, case_id: str) -> int:
        """Cancel every page of ``case_id`` not yet claimed; return how many."""
        result = await self._s.execute(
            update(Outbox)
            .where(
                Outbox.case_id == case_id,
                Outbox.kind == "page",
                Outbox.state.in_(("pending", "held")),
            )
            .values(state="cancelled", wrapped_key=None, recipient_ct=None, payload_ct=None)
        )
        return int(getattr(result, "rowcount", 0))

    async def paged_responders(self, case_id: str) -> list[str]:
        """Return the names of responders paged for ``case_id`` so far (not cancelled)."""
        rows = await self._s.execute(
            select(Outbox.responder)
            .where(Outbox.case_id == case_id, Outbox.kind == "page", Outbox.state != "cancelled")
            .distinct()
        )
        return sorted(name for name in rows.scalars() if name)

    def _due(self, channels: Iterable[str], now: datetime) -> Any:
        millis = to_millis(now)
        return and_(
            UNFINISHED,
            Outbox.channel.in_(list(channels)),
            or_(
                and_(Outbox.state == "pending", Outbox.next_attempt_at <= millis),
                and_(Outbox.state.in_(("claimed", "sending")), Outbox.lease_until < millis),
            ),
        )

    async def watchdog_snapshot(self, now: datetime, stuck_after: timedelta) -> Snapshot:
        """The open, untaken cases that may have a problem at ``now`` (no ladder, a ladder
        not climbing, or one due already), with their escalation state, and how many outbox
        rows are stuck: due more than ``stuck_after`` ago but not sent, or left sending past
        their lease. The case filter is a superset of what :func:`watchdog.check` flags, so
        the check stays the judge; it keeps the cases paged on time (nearly all of them) out
        of Python, so the watchdog's cost does not grow with the number of open cases."""
        rows = await self._s.execute(
            select(
                Case.id, Case.ref, Case.tier, Case.status, Escalation.state, Escalation.next_due_at
            )
            .outerjoin(Escalation, Escalation.case_id == Case.id)
            .where(
                Case.status.not_in(("resolved", "taken")),
                or_(
                    Escalation.case_id.is_(None),
                    Escalation.state.not_in(("active", "queued")),
                    Escalation.next_due_at.is_(None),
                    Escalation.next_due_at < to_millis(now),
                ),
            )
        )
        cases = [
            OpenCaseState(
                case_id=r.id,
                ref=r.ref,
                tier=r.tier,
                taken=r.status == "taken",
                escalation_state=r.state,
                next_due_at=None if r.next_due_at is None else from_millis(r.next_due_at),
            )
            for r in rows
        ]
        limit = to_millis(now - stuck_after)
        stuck = and_(
            UNFINISHED,
            or_(
                and_(Outbox.state == "pending", Outbox.next_attempt_at < limit),
                and_(Outbox.state.in_(("claimed", "sending")), Outbox.lease_until < limit),
            ),
        )
        count, oldest = (
            await self._s.execute(
                select(func.count(), func.min(Outbox.next_attempt_at)).where(stuck)
            )
        ).one()
        return Snapshot(
            cases=cases,
            stuck_outbox=int(count),
            oldest_stuck=None if oldest is None else from_millis(oldest),
        )

    async def outbox_due_count(self, channels: Sequence[str], now: datetime) -> int:
        """Return how many messages for ``channels`` are waiting to be sent now."""
        result = await self._s.execute(select(func.count()).where(self._due(channels, now)))
        return int(result.scalar_one())

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

        Order: priority (highest first); within a priority, pages before everything else (so
        a critical page goes before the replies, relays and notices of the same priority);
        then oldest first. Rows for a responder in ``skip_responders`` (whose chat the
        platform is rate-limiting right now) are left for a later claim. With ``early``, a
        pending row whose back-off ends within ``early`` counts as due too (the sender's probe
        of a channel that was failing: is the platform back?).

        Claimed rows are ``claimed``: nothing has been tried yet. The sender marks each one
        ``sending`` (:meth:`outbox_attempting`) just before handing it to the platform. A row
        found ``claimed`` past its lease was never tried (its process died first): it is
        simply claimed again. A row found ``sending`` past its lease was being sent when a
        process died: its outcome is unknown, so it is claimed once more as a repeat; a row
        whose repeat's outcome is unknown too is marked failed, never sent a third time.
        """
        due = self._due(channels, now)
        if early:
            due = or_(
                due,
                and_(
                    UNFINISHED,
                    Outbox.channel.in_(list(channels)),
                    Outbox.state == "pending",
                    Outbox.next_attempt_at <= to_millis(now + early),
                ),
            )
        if skip_responders:
            due = and_(
                due,
                or_(Outbox.responder.is_(None), Outbox.responder.not_in(list(skip_responders))),
            )
        query = (
            select(Outbox)
            .where(due)
            .order_by(
                Outbox.priority.desc(),
                sql_case((Outbox.kind == "page", 0), else_=1),
                Outbox.id,
            )
            .limit(limit)
        )
        if self._dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = []
        for row in (await self._s.execute(query)).scalars():
            if row.state == "sending":
                if row.ambiguous:
                    self._fail(row, "outcome unknown twice; not sent a third time")
                    await self._release_fallbacks(row, now)
                    await self.log("outbox.given_up", now, case_id=row.case_id, detail=row.id)
                    continue
                row.ambiguous = True
                await self._release_fallbacks(row, now)
                await self.log("outbox.reclaimed", now, case_id=row.case_id, detail=row.id)
            assert row.wrapped_key and row.recipient_ct and row.payload_ct
            key = self._key("outbox", row.id, row.wrapped_key)
            channel, identity = key.decrypt_json(
                row.recipient_ct, field_context("outbox", "recipient", row.id)
            )
            payload = key.decrypt_json(row.payload_ct, field_context("outbox", "payload", row.id))
            if row.kind == "scrub" and row.defender_id is not None:
                # Move the ids of what we sent into this row, so a retry still has them.
                payload["delete_ids"] += await self._sent_ids(row.defender_id, now)
                row.payload_ct = key.encrypt_json(
                    payload, field_context("outbox", "payload", row.id)
                )
            delete_ids = tuple(payload["delete_ids"])
            row.state = "claimed"
            row.claim_token = secrets.token_hex(16)
            row.lease_until = to_millis(now + lease)
            row.attempts += 1
            claimed.append(
                ClaimedMessage(
                    id=row.id,
                    token=row.claim_token,
                    kind=row.kind,
                    priority=row.priority,
                    recipient=Address(channel, identity),
                    text=payload["text"],
                    case_id=row.case_id,
                    responder=row.responder,
                    loop=row.loop,
                    step=row.step,
                    repeat=row.ambiguous,
                    attempts=row.attempts,
                    to_defender=row.defender_id is not None,
                    choices=tuple(Choice(label, data) for label, data in payload["choices"]),
                    delete_ids=delete_ids,
                )
            )
        return claimed

    async def _sent_ids(self, defender_id: str, now: datetime) -> list[str]:
        """Platform ids of what we sent this defender that can still be deleted (Telegram
        allows 48 hours), taken off their rows so a later scrub does not try them again."""
        rows = await self._s.execute(
            select(Outbox).where(
                Outbox.defender_id == defender_id,
                Outbox.kind != "scrub",
                Outbox.provider_ids.is_not(None),
                Outbox.sent_at >= to_millis(now - timedelta(hours=47)),
            )
        )
        ids: list[str] = []
        for row in rows.scalars():
            assert row.provider_ids is not None
            ids += row.provider_ids.split(",")
            row.provider_ids = None
        return ids

    async def _release_fallbacks(self, row: Outbox, now: datetime) -> int:
        """The page ``row`` failed or its outcome is unknown: send its held fallback now.
        Returns how many were released."""
        result = await self._s.execute(
            update(Outbox)
            .where(Outbox.fallback_for == row.idempotency_key, Outbox.state == "held")
            .values(state="pending", next_attempt_at=to_millis(now))
        )
        return int(getattr(result, "rowcount", 0))

    async def _cancel_fallbacks(self, row: Outbox) -> None:
        """The page ``row`` arrived: its held fallbacks (and theirs) will never be needed."""
        keys = [row.idempotency_key]
        while keys:
            held = (
                (
                    await self._s.execute(
                        select(Outbox).where(Outbox.fallback_for.in_(keys), Outbox.state == "held")
                    )
                )
                .scalars()
                .all()
            )
            keys = [h.idempotency_key for h in held]
            for h in held:
                h.state = "cancelled"
                self._shred(h)

    async def outbox_release_leases(self) -> int:
        """End the lease of every row left ``claimed`` or ``sending`` by a dead process, so
        it is sent (or repeated) now rather than when its lease would have run out. Only for
        a sole instance (SQLite's instance lock): with several, a lease may be alive."""
        result = await self._s.execute(
            update(Outbox).where(Outbox.state.in_(("claimed", "sending"))).values(lease_until=0)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def outbox_attempting(self, claims: Sequence[tuple[str, str]], now: datetime) -> set[str]:
        """Mark claimed rows (id, token) ``sending``: their platform call starts now, so a
        crash from here on leaves their outcome unknown. Returns the ids still held by these
        claims (a row whose lease ran out may belong to another sender by now); a row already
        ``sending`` under the same claim counts (this call is repeated when the database
        connection broke while it committed)."""
        ours: set[str] = set()
        for message_id, token in claims:
            row = await self._s.get(Outbox, message_id)
            if row is None or row.state not in ("claimed", "sending") or row.claim_token != token:
                continue
            row.state = "sending"
            ours.add(message_id)
        return ours

    async def outbox_release(self, claims: Sequence[tuple[str, str]], at: datetime) -> None:
        """Put claimed rows (id, token) that were never tried back to ``pending`` until
        ``at``: the claim does not count as an attempt and nothing about their outcome is
        unknown (our own pacing held them before any platform call)."""
        for message_id, token in claims:
            row = await self._s.get(Outbox, message_id)
            if row is None or row.state != "claimed" or row.claim_token != token:
                continue
            row.state = "pending"
            row.next_attempt_at = to_millis(at)
            row.lease_until = None
            row.attempts = max(0, row.attempts - 1)

    async def outbox_hurry(self, channel: str, now: datetime) -> int:
        """Make every pending row of ``channel`` that waits out a back-off after a failed
        attempt due now (the platform is back: a success just came); return how many."""
        result = await self._s.execute(
            update(Outbox)
            .where(
                Outbox.channel == channel,
                Outbox.state == "pending",
                Outbox.last_error.is_not(None),
                Outbox.next_attempt_at > to_millis(now),
            )
            .values(next_attempt_at=to_millis(now))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def _claimed(self, message_id: str, token: str) -> Outbox | None:
        row = await self._s.get(Outbox, message_id)
        if row is None or row.state != "sending" or row.claim_token != token:
            return None
        return row

    @staticmethod
    def _shred(row: Outbox) -> None:
        row.wrapped_key = row.recipient_ct = row.payload_ct = None

    def _fail(self, row: Outbox, error: str) -> None:
        row.state = "failed"
        row.last_error = error[:200]
        row.lease_until = None
        self._shred(row)

    async def outbox_sent(
        self, message_id: str, token: str, now: datetime, provider_ids: Sequence[str] = ()
    ) -> bool:
        """Record a delivery and the platform's message ids (kept only for messages to
        defenders, so their chat can be cleared); False if the claim had been lost."""
        row = await self._claimed(message_id, token)
        if row is None:
            return False
        # Before changing the row: the query in here would flush the change as a first UPDATE,
        # and PostgreSQL re-checks the foreign keys of a row updated twice in a transaction.
        await self._cancel_fallbacks(row)
        if row.defender_id is not None and provider_ids and row.kind != "scrub":
            row.provider_ids = ",".join(provider_ids)[:400]
        row.state = "sent"
        row.sent_at = to_millis(now)
        row.lease_until = None
        self._shred(row)
        return True

    async def outbox_retry(
        self, message_id: str, token: str, at: datetime, error: str, *, ambiguous: bool = False
    ) -> str:
        """Put a claimed row back to pending until ``at``; return its new state.

        With ``ambiguous`` (the outcome of this attempt is unknown), a row that was already a
        repeat is failed instead: it is never sent a third time.
        """
        row = await self._claimed(message_id, token)
        if row is None:
            return "lost"
        if ambiguous:
            await self._release_fallbacks(row, at)
            if row.ambiguous:
                self._fail(row, f"{error}; outcome unknown twice, not sent again")
                fallback = await self._s.execute(
                    select(Outbox.id).where(Outbox.fallback_for == row.idempotency_key).limit(1)
                )
                return "failed_fallback" if fallback.first() is not None else "failed"
            row.ambiguous = True
        row.state = "pending"
        row.next_attempt_at = to_millis(at)
        row.lease_until = None
        row.last_error = error[:200]
        return "pending"

    async def outbox_failed(
        self, message_id: str, token: str, error: str, now: datetime
    ) -> int | None:
        """Record a permanent refusal, releasing a held fallback page at once; return how many
        fallbacks were released, or None if the claim had been lost."""
        row = await self._claimed(message_id, token)
        if row is None:
            return None
        self._fail(row, error)
        return await self._release_fallbacks(row, now)
