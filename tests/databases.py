"""Which database the tests run on, and throw-away PostgreSQL databases for them.

``INTAKE_TEST_DB`` picks the backend of a test run:

- unset (a developer's run): tests that take the ``database_url`` fixture run on SQLite and, when
  ``INTAKE_TEST_PG_URL`` names a server, on PostgreSQL too; every other test uses a SQLite file;
- ``sqlite``: everything on SQLite files (the first pass of ``.ci/run``);
- ``postgresql``: everything that opens a database gets a fresh PostgreSQL database on the server
  at ``INTAKE_TEST_PG_URL`` (the second pass of ``.ci/run``); tests marked ``sqlite_only`` (they
  inspect the SQLite file itself) are skipped, having run in the first pass.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine
from typing import Any

PG_URL = os.environ.get("INTAKE_TEST_PG_URL")
BACKEND = os.environ.get("INTAKE_TEST_DB", "")
if BACKEND not in ("", "sqlite", "postgresql"):
    raise RuntimeError(f"INTAKE_TEST_DB must be 'sqlite' or 'postgresql', not {BACKEND!r}")
if BACKEND == "postgresql" and not PG_URL:
    raise RuntimeError("INTAKE_TEST_DB=postgresql needs INTAKE_TEST_PG_URL (see .ci/run)")

_created: list[str] = []


def everything_on_postgresql() -> bool:
    """True when every test database of this run is a PostgreSQL one."""
    return BACKEND == "postgresql"


def backends() -> list[str]:
    """The backends a ``database_url``-parametrised test runs on in this run."""
    if BACKEND:
        return [BACKEND]
    return ["sqlite", "postgresql"]


def _run_in_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to completion on its own loop, even when called from inside a running
    event loop (a sync helper such as ``write_config`` is called from async tests)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _admin_dsn() -> str:
    assert PG_URL is not None
    return PG_URL.replace("postgresql+asyncpg", "postgresql")


def fresh_postgresql_url() -> str:
    """Create an empty database on the test server and return its SQLAlchemy URL; it is
    dropped by :func:`drop_created`."""
    import asyncpg  # type: ignore[import-untyped]

    assert PG_URL is not None
    name = f"intake_test_{secrets.token_hex(6)}"

    async def create() -> None:
        admin = await asyncpg.connect(_admin_dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    _run_in_thread(create())
    _created.append(name)
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def drop_created() -> None:
    """Drop every database :func:`fresh_postgresql_url` made so far (connections are closed
    by force: a test that failed may have left an app running)."""
    if not _created:
        return
    import asyncpg

    names = list(_created)
    _created.clear()

    async def drop() -> None:
        admin = await asyncpg.connect(_admin_dsn())
        try:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    _run_in_thread(drop())


def default_url(directory: os.PathLike[str] | str) -> str:
    """The database URL a test that did not ask for one gets: a SQLite file in ``directory``,
    or a fresh PostgreSQL database when the whole run is on PostgreSQL."""
    if everything_on_postgresql():
        return fresh_postgresql_url()
    return f"sqlite+aiosqlite:///{os.fspath(directory)}/intake.db"
