"""Engines and the declarative base. Nothing is created at import time.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` (a committed page
survives a power cut), foreign keys on, ``secure_delete`` on (deleted content is overwritten),
``trusted_schema`` off, and every transaction begins with ``BEGIN IMMEDIATE`` so that a
read-then-write transaction can never fail half-way with ``SQLITE_BUSY_SNAPSHOT``. One process
owns a SQLite file at a time: a second one refuses to start.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic batch migrations need them)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DatabaseInUse(RuntimeError):
    """Another process already runs the engine on this SQLite file."""


def sqlite_path(url: str | URL) -> Path | None:
    """Return the file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so that our BEGIN is the only one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=5000",
        "PRAGMA secure_delete=ON",
        "PRAGMA trusted_schema=OFF",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    """Return an async engine for ``url`` configured as the module docstring describes.

    SQLite gets a single pooled connection: writers queue in asyncio instead of spinning on
    the busy timeout. The parent directory of a SQLite file is created (mode 0700).
    """
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if make_url(url).get_backend_name() == "sqlite":  # in-memory: tests only
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


# SQLSTATEs of a server that is gone or not there yet: connection exceptions (class 08),
# admin_shutdown, crash_shutdown, cannot_connect_now.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


def unavailable(exc: BaseException) -> bool:
    """Return True when ``exc`` means the database could not be reached or the connection to
    it broke (server stopped, restarting or still starting; network): the same work may
    succeed on a new connection later. False for everything else (a bug, a constraint)."""
    if isinstance(exc, OSError):  # connection refused or reset, timeouts
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if isinstance(exc.orig, BaseException) else exc
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES)


@dataclass
class InstanceLock:
    """An exclusive OS lock on ``<database>.lock``, held while the engine runs."""

    path: Path
    _fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DatabaseInUse` naming the file."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseInUse(
                f"{self.path.with_suffix('')}: another defender-intake process is already "
                "running on this SQLite database; stop it first (SQLite serves one instance — "
                "use PostgreSQL to run several)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def instance_lock(url: str) -> InstanceLock | None:
    """Return the lock guarding a SQLite file database, or None when none is needed."""
    path = sqlite_path(url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return InstanceLock(path.with_name(path.name + ".lock"))
