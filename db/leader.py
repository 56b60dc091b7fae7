"""Leadership for work only one instance may do at a time (Signal receive, Telegram polling),
when several instances share one PostgreSQL database.

A PostgreSQL session-level advisory lock, held on a dedicated connection (never a pooled one),
is the leadership: if the leader dies, PostgreSQL ends its session and the lock is free; the
others try every few seconds and one takes over. The leader checks its connection every few
seconds and steps down at once if it fails. On SQLite (one instance by construction) every
instance leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """Return the signed 64-bit advisory-lock key for ``name`` (stable across processes)."""
    return int.from_bytes(
        hashlib.sha256(f"defender-intake:{name}".encode()).digest()[:8], "big", signed=True
    )


def uses_lock(url: str) -> bool:
    """Return True when several instances may share ``url`` (PostgreSQL), so that leadership
    needs a lock; on SQLite the single instance always leads."""
    return make_url(url).get_backend_name() == "postgresql"


def asyncpg_dsn(url: str) -> str:
    """Turn a SQLAlchemy ``postgresql+asyncpg://`` URL into a plain asyncpg DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Leadership:
    """Runs ``on_lead`` while this instance holds the lock ``name``; ``on_lose`` when it stops.

    Args:
        url: the database URL (PostgreSQL: a lock is used; SQLite: always the leader).
        name: what is led, e.g. ``channel:signal``.
        on_lead: called when leadership is gained (e.g. start receiving).
        on_lose: called when it is lost or given up (e.g. stop receiving).
        interval: seconds between attempts to lead and between heartbeats.
    """

    def __init__(
        self,
        url: str,
        name: str,
        on_lead: Callable[[], Awaitable[None]],
        on_lose: Callable[[], Awaitable[None]],
        interval: float = 2.0,
    ) -> None:
        self._url = url
        self._name = name
        self._on_lead = on_lead
        self._on_lose = on_lose
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        self.leading = False

    async def start(self) -> None:
        """Lead at once on SQLite; on PostgreSQL start trying in the background."""
        if not uses_lock(self._url):
            await self._on_lead()
            self.leading = True
            return
        self._task = asyncio.create_task(self._run(), name=f"leader-{self._name}")

    async def stop(self) -> None:
        """Stop leading (calling ``on_lose`` if leading) and release the lock."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._step_down()

    async def _step_down(self) -> None:
        if self.leading:
            self.leading = False
            try:
                await self._on_lose()
            except Exception:
                log.exception("leader.on_lose_failed name=%s", self._name)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        key = lock_key(self._name)
        while True:
            try:
                if self._connection is None:
                    self._connection = await asyncpg.connect(
                        asyncpg_dsn(self._url),
                        timeout=10,
                        # lets an operator see in pg_stat_activity which process leads what
                        server_settings={"application_name": f"defender-intake {os.getpid()}"},
                    )
                if not self.leading:
                    if await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", key):
                        log.info("leader.acquired name=%s", self._name)
                        self.leading = True
                        await self._on_lead()
                else:
                    await asyncio.wait_for(self._connection.fetchval("SELECT 1"), self._interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("leader.connection_failed name=%s leading=%s", self._name, self.leading)
                await self._step_down()
            await asyncio.sleep(self._interval)
