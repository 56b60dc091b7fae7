"""Schema migrations with Alembic, driven from code (no alembic.ini needed).

``upgrade(engine)`` brings any database to the newest revision; ``intake db upgrade`` and the
start of ``intake shell`` / ``intake run`` call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_LOCK = 0x696E74616B65  # advisory lock key serialising migrations on PostgreSQL


def alembic_config(url: str | None = None) -> AlembicConfig:
    """Return an Alembic config pointing at ``migrations/`` (and at ``url``, if given)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """Return the newest revision id shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Any, config: AlembicConfig) -> None:
    if connection.dialect.name == "postgresql":
        # Several instances may start at once: one migrates, the others wait, then find the
        # schema current. The lock ends with the transaction.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _current(connection: Any) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """Return the revision the database is at, or None if it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Apply every missing migration in one transaction; return (revision before, after).

    Safe to call on every start: an up-to-date database is left untouched.
    """
    before = await current_revision(engine)
    config = alembic_config()
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, config)
    return before, head_revision()
