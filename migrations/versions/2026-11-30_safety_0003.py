"""safety plan and check-in timers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("defender", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_ct", sa.LargeBinary(), nullable=True))
    op.create_table(
        "checkin",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("defender_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("next_at", sa.BigInteger(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("note_ct", sa.LargeBinary(), nullable=True),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["defender_id"],
            ["defender.id"],
            name=op.f("fk_checkin_defender_id_defender"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkin")),
    )
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkin_defender_id"), ["defender_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_checkin_next_at"), ["next_at"], unique=False)


def downgrade() -> None:
    op.drop_table("checkin")
    # recreate="never": see 0002 (a rebuilt defender table would cascade-delete every case).
    with op.batch_alter_table("defender", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("plan_ct")
