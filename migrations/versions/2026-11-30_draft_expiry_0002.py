"""draft expiry

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Adding a nullable column and an index needs no table rebuild, not even on SQLite.
    with op.batch_alter_table("defender", schema=None) as batch_op:
        batch_op.add_column(sa.Column("draft_expires_at", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_defender_draft_expires_at"), ["draft_expires_at"], unique=False
        )


def downgrade() -> None:
    # recreate="never": SQLite (3.35+) drops the column in place. A rebuilt table would be
    # dropped with foreign keys on, and that DROP would cascade to every case and outbox row.
    with op.batch_alter_table("defender", schema=None, recreate="never") as batch_op:
        batch_op.drop_index(batch_op.f("ix_defender_draft_expires_at"))
        batch_op.drop_column("draft_expires_at")
