"""timer and outbox indexes the per-second work can use

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Neither partial index matched the queries it was made for, so both were full table scans,
every second, growing with the open cases and with every message ever sent:

- ``ix_escalation_due`` was partial on ``state = 'active'``, but the tick asks for steps due
  in states active, acked and queued. It is now partial on ``next_due_at IS NOT NULL``, which
  every due-time comparison implies.
- ``ix_outbox_due`` was partial on ``state IN ('pending', 'sending')``, but the sender's claim
  also takes expired ``claimed`` rows, in an OR no planner matches against it. It now covers
  ``pending``, ``claimed`` and ``sending``, and the queries repeat that predicate word for word.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, index, columns, predicate before 0004, predicate from 0004 on)
INDEXES = (
    (
        "escalation",
        "ix_escalation_due",
        ["next_due_at"],
        "state = 'active'",
        "next_due_at IS NOT NULL",
    ),
    (
        "outbox",
        "ix_outbox_due",
        ["priority", "next_attempt_at"],
        "state IN ('pending', 'sending')",
        "state IN ('pending', 'claimed', 'sending')",
    ),
)


def _replace(table: str, name: str, columns: list[str], old: str, new: str) -> None:
    # Dropping and creating an index needs no table rebuild, not even on SQLite.
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_index(name, sqlite_where=sa.text(old), postgresql_where=sa.text(old))
        batch_op.create_index(
            name, columns, unique=False, sqlite_where=sa.text(new), postgresql_where=sa.text(new)
        )


def upgrade() -> None:
    for table, name, columns, old, new in INDEXES:
        _replace(table, name, columns, old, new)


def downgrade() -> None:
    for table, name, columns, old, new in INDEXES:
        _replace(table, name, columns, new, old)
