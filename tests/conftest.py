"""Shared fixtures. Scenario tests run on a real SQLite file and, when INTAKE_TEST_PG_URL
names a PostgreSQL server (`.ci/run` starts one), on a fresh PostgreSQL database too;
``INTAKE_TEST_DB`` runs the whole suite on one backend (see tests/databases.py)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import databases
from tests.harness import Harness

PG_URL = databases.PG_URL


@pytest.fixture(autouse=True)
def _backend_of_this_run(request: pytest.FixtureRequest) -> Iterator[None]:
    """Skip SQLite-only tests in a PostgreSQL run, and drop the databases a test made."""
    if databases.everything_on_postgresql() and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("inspects the SQLite file; this run is on PostgreSQL")
    yield
    databases.drop_created()


@pytest.fixture(params=databases.backends())
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for a SQLite file in the test's directory, or a fresh PostgreSQL database URL."""
    if request.param == "sqlite":
        return None
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: INTAKE_TEST_PG_URL is not set")
        pytest.skip("INTAKE_TEST_PG_URL is not set (run .ci/run, which starts PostgreSQL)")
    return PG_URL


@pytest.fixture
async def pg_database(database_url: str | None) -> AsyncIterator[str | None]:
    """Create a throw-away database on the PostgreSQL server (dropped afterwards)."""
    if database_url is None:
        yield None
        return
    import asyncpg  # type: ignore[import-untyped]

    name = f"intake_test_{secrets.token_hex(6)}"
    admin_dsn = database_url.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield database_url.rsplit("/", 1)[0] + "/" + name
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def harness(tmp_path: Path, pg_database: str | None) -> AsyncIterator[Harness]:
    """A running app on a fresh database; fails the test if a message was left unread."""
    h = await Harness.create(tmp_path, url=pg_database)
    try:
        yield h
        h.expect_nothing()
    finally:
        if h.app is not None:
            await h.stop()
