"""Tables. Columns ending in ``_ct`` hold AES-GCM ciphertext (see :mod:`db.crypto`), bound to
their table, column and row; ``wrapped_key`` columns hold that row's data key wrapped by the
server key. Times are integer epoch milliseconds (UTC) on every dialect.

Plaintext columns carry only what paging needs: ids, tier, state, times, responder names
(from the operator's config), and keyed pseudonyms of platform identities.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base

ID = String(32)  # time-ordered hex ids, see db.ids


class Defender(Base):
    """A person who wrote to us, known only by a keyed pseudonym of their platform identity."""

    __tablename__ = "defender"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    identity_hash: Mapped[str] = mapped_column(String(64), unique=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    address_ct: Mapped[bytes] = mapped_column(LargeBinary)
    session_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    plan_ct: Mapped[bytes | None] = mapped_column(LargeBinary)  # the safety plan, encrypted
    # When the unfinished intake form kept in the session expires (the durable draft timer);
    # NULL when there is no draft.
    draft_expires_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Checkin(Base):
    """A check-in timer: ``next_at`` is when the engine acts next (nudge, then a case).

    States: ``active`` (waiting for the deadline), ``nudged`` (deadline passed, defender
    nudged, grace running), ``missed`` (a case was opened), ``done`` (ended with /safe),
    ``replaced`` (a newer check-in took over)."""

    __tablename__ = "checkin"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    defender_id: Mapped[str] = mapped_column(
        ForeignKey("defender.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[int] = mapped_column(BigInteger)
    next_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    note_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    case_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Case(Base):
    """A request for help. ``tier`` and ``status`` are plaintext; what the defender said is not."""

    __tablename__ = "cases"  # "case" is an SQL keyword

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    ref: Mapped[str] = mapped_column(String(8), unique=True)
    defender_id: Mapped[str] = mapped_column(ForeignKey("defender.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # open | taken | resolved
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    details_ct: Mapped[bytes] = mapped_column(LargeBinary)
    taken_by: Mapped[str | None] = mapped_column(String(64))
    taken_at: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[int | None] = mapped_column(BigInteger)
    resolve_note_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_cases_defender_status", "defender_id", "status"),)


class CaseEntry(Base):
    """Something added to a case after it was opened (SOS follow-ups, later messages)."""

    __tablename__ = "case_entry"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(40))  # a flow step id or "message"
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Escalation(Base):
    """Where a case is on its paging ladder; ``next_due_at`` is the durable timer."""

    __tablename__ = "escalation"

    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # active | acked | exhausted | cancelled
    step: Mapped[int] = mapped_column(Integer)
    loop: Mapped[int] = mapped_column(Integer)
    next_due_at: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    # Partial on "has a timer" rather than on a state: every query for due steps compares
    # next_due_at, which implies IS NOT NULL on both dialects (even with bound parameters), so
    # the tick reads only what is due, however many cases are open (see migration 0004).
    __table_args__ = (
        Index(
            "ix_escalation_due",
            "next_due_at",
            sqlite_where=text("next_due_at IS NOT NULL"),
            postgresql_where=text("next_due_at IS NOT NULL"),
        ),
    )


class Inbox(Base):
    """Every inbound message, stored before it is processed; de-duplicated by platform key.

    Once processed, the content and its key are destroyed; the pseudonymous dedup key stays
    so a redelivered message is still recognised.
    """

    __tablename__ = "inbox"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    dedup_hash: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # pending | done | failed
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    message_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[int] = mapped_column(BigInteger)
    processed_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(
            "ix_inbox_pending",
            "id",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )


# The rows the sender and the watchdog look at. Their queries repeat this predicate word for
# word (see db.store), which lets SQLite and PostgreSQL (even in a generic plan) read only the
# unfinished rows through ix_outbox_due instead of every message ever sent (migration 0004).
OUTBOX_UNFINISHED = "state IN ('pending', 'claimed', 'sending')"


class Outbox(Base):
    """Every message we send, written in the transaction that decided to send it.

    States: pending -> sending (claimed, lease until ``lease_until``) -> sent | failed;
    pending -> cancelled (an ack made the page pointless); held -> pending | cancelled (a
    fallback address, released only if the primary page fails). ``ambiguous`` marks a row whose
    earlier attempt has an unknown outcome: it is sent once more, as a repeat, never a third time.
    """

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # page | reply | relay | notice
    priority: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    responder: Mapped[str | None] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    loop: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)
    defender_id: Mapped[str | None] = mapped_column(
        ForeignKey("defender.id", ondelete="CASCADE"), index=True
    )
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    recipient_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_ct: Mapped[bytes | None] = mapped_column(LargeBinary)  # text, buttons, ids to delete
    provider_ids: Mapped[str | None] = mapped_column(String(400))  # platform message ids, once sent
    state: Mapped[str] = mapped_column(String(16))
    # A fallback page (the responder's next address) is "held" until the page with this
    # idempotency key is refused or its outcome stays unknown; it is cancelled if that one is sent.
    fallback_for: Mapped[str | None] = mapped_column(String(200), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    ambiguous: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    lease_until: Mapped[int | None] = mapped_column(BigInteger)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_outbox_case", "case_id"),
        Index(
            "ix_outbox_due",
            "priority",
            "next_attempt_at",
            sqlite_where=text(OUTBOX_UNFINISHED),
            postgresql_where=text(OUTBOX_UNFINISHED),
        ),
    )


class EventLog(Base):
    """Append-only log of what happened to cases and pages: event names and ids, no content."""

    __tablename__ = "event_log"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    case_id: Mapped[str | None] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))  # responder name, "defender" or "system"
    detail: Mapped[str | None] = mapped_column(String(200))  # ids, tiers, steps — never content
    at: Mapped[int] = mapped_column(BigInteger)
