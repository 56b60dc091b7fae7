"""The Alembic migrations create exactly the schema the models describe, on a real SQLite file
configured as the design requires."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from db import migrate
from db.base import Base, DatabaseInUse, create_engine, instance_lock


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
