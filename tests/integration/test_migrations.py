"""The Alembic migrations create exactly the schema the models describe, on a real SQLite file
configured as the design requires."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.engine import Connection

from db import migrate
from db.base import Base, DatabaseInUse, create_engine, instance_lock
from db.models import Case, Defender


async def test_upgrade_creates_the_models_schema_and_is_idempotent(tmp_path: Path) -> None:
    """upgrade() on an empty file reaches head; the schema equals the models; a second
    upgrade changes nothing."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        before, after = await migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head_revision())
        assert await migrate.upgrade(engine) == (after, after)

        def diff(connection: object) -> list[object]:
            context = MigrationContext.configure(connection)  # type: ignore[arg-type]
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_sqlite_runs_in_wal_full_with_foreign_keys_and_immediate_writes(
    tmp_path: Path,
) -> None:
    """Every connection has WAL, synchronous=FULL (2), foreign keys and secure_delete on, and
    a transaction holds the write lock from its start (BEGIN IMMEDIATE)."""
    path = tmp_path / "x.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            values = [
                (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "secure_delete")
            ]
            assert values == ["wal", 2, 1, 1]
            import sqlite3

            other = sqlite3.connect(path, timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    finally:
        await engine.dispose()


def test_a_second_engine_on_the_same_file_refuses_to_start(tmp_path: Path) -> None:
    """The instance lock makes a second process on one SQLite file fail with a clear error."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    first, second = instance_lock(url), instance_lock(url)
    assert first is not None and second is not None
    first.acquire()
    try:
        with pytest.raises(DatabaseInUse, match="another defender-intake process"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()


def _migrate(connection: Connection, action: str, target: str) -> None:
    """Run ``alembic upgrade|downgrade target`` on ``connection`` (inside its transaction)."""
    config = migrate.alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, target)


def _draft_schema(connection: Connection) -> tuple[bool, bool]:
    """Whether ``defender`` has the draft_expires_at column, and its index."""
    inspector = inspect(connection)
    columns = {c["name"] for c in inspector.get_columns("defender")}
    indexes = {i["name"] for i in inspector.get_indexes("defender")}
    return "draft_expires_at" in columns, "ix_defender_draft_expires_at" in indexes


async def test_0002_adds_and_drops_the_draft_timer_keeping_every_row(
    tmp_path: Path, pg_database: str | None
) -> None:
    """From 0001 with data, 0002 adds defender.draft_expires_at (NULL for existing rows) and
    its index, and the schema equals the models; downgrading to 0001 removes both and keeps
    the defender and its case (on SQLite a rebuilt defender table would cascade-delete them);
    upgrading again reaches head."""
    engine = create_engine(pg_database or f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    defender = {
        "id": "d" * 32,
        "identity_hash": "h" * 64,
        "wrapped_key": b"k",
        "address_ct": b"a",
        "session_ct": b"s",
        "created_at": 1,
        "updated_at": 1,
    }
    case = {
        "id": "c" * 32,
        "ref": "AB12",
        "defender_id": "d" * 32,
        "kind": "intake",
        "tier": "high",
        "status": "open",
        "wrapped_key": b"k",
        "details_ct": b"x",
        "created_at": 1,
        "updated_at": 1,
    }
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate, "upgrade", "0001")
            assert await conn.run_sync(_draft_schema) == (False, False)
            await conn.execute(insert(Defender).values(**defender))
            await conn.execute(insert(Case).values(**case))

        assert await migrate.upgrade(engine) == ("0001", migrate.head_revision())
        assert migrate.head_revision() == "0004"

        def diff(connection: Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

        async with engine.begin() as conn:
            assert await conn.run_sync(_draft_schema) == (True, True)
            assert await conn.run_sync(diff) == []
            assert (await conn.execute(select(Defender.draft_expires_at))).scalar_one() is None
            await conn.execute(update(Defender).values(draft_expires_at=5))

        async with engine.begin() as conn:
            await conn.run_sync(_migrate, "downgrade", "0001")
        assert await migrate.current_revision(engine) == "0001"
        async with engine.connect() as conn:
            assert await conn.run_sync(_draft_schema) == (False, False)
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert "checkin" not in tables  # 0003 went down too
            assert (await conn.execute(select(Defender.id))).scalars().all() == [defender["id"]]
            assert (await conn.execute(select(Case.defender_id))).scalars().all() == [
                defender["id"]
            ]

        assert await migrate.upgrade(engine) == ("0001", "0004")
        async with engine.connect() as conn:
            assert await conn.run_sync(_draft_schema) == (True, True)
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert "checkin" in tables
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("defender")}
            )
            assert "plan_ct" in columns
    finally:
        await engine.dispose()
