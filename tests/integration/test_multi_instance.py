"""Several instances on one PostgreSQL database: due work is shared without doubles, and
leadership of single-consumer work moves when the leader dies."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app import App, open_app
from bot.config import load_config
from bot.core.clock import FakeClock
from bot.core.messages import Address, OutboundMessage
from db.crypto import ensure_development_keyring
from db.leader import Leadership, asyncpg_dsn
from tests.harness import TEST_CONFIG, RecordingChannel, write_config

CASES = 1000


@pytest.fixture
async def pg(pg_database: str | None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database (these tests make no sense on SQLite)."""
    if pg_database is None:
        pytest.skip("several instances need PostgreSQL")
    yield pg_database


async def open_instance(tmp_path: Path, url: str, clock: FakeClock) -> tuple[App, RecordingChannel]:
    """One more instance on the shared database, with its own fake device."""
    config = load_config(write_config(tmp_path, TEST_CONFIG, url))
    keyring, _ = ensure_development_keyring(config.keys.dir, {})
    channel = RecordingChannel()
    return await open_app(config, keyring, clock, {"console": channel}), channel


def page_refs(sent: list[OutboundMessage]) -> list[str]:
    """The case reference of every page in ``sent``, one per page (a bundle lists several)."""
    return re.findall(r"^CRITICAL case ([A-Z0-9]{4})$", "\n".join(m.text for m in sent), re.M)


async def test_two_instances_page_each_due_step_of_1000_cases_exactly_once(
    tmp_path: Path, pg: str
) -> None:
    """1,000 critical cases come due at once; two instances tick and send concurrently; bob
    receives exactly one step-2 page per case, and no page is sent twice."""
    clock = FakeClock()
    first, first_device = await open_instance(tmp_path, pg, clock)
    second, second_device = await open_instance(tmp_path, pg, clock)
    try:
        now = clock.now()
        for batch in range(0, CASES, 100):
            async with first.store.transaction() as tx:
                for i in range(batch, batch + 100):
                    defender = await tx.defender_for(Address("console", f"d{i}"), now)
                    case = await tx.case_open(defender.id, "sos", "critical", {"kind": "sos"}, now)
                    await first.paging.start(tx, case, now)
        await asyncio.gather(first.drain(), second.drain())
        step1 = first_device.sent + second_device.sent
        assert {m.recipient.identity for m in step1} == {"alice"}
        assert len(page_refs(step1)) == CASES  # a backlog to one person comes in bundles
        first_device.sent.clear()
        second_device.sent.clear()

        clock.advance(timedelta(minutes=2))
        fired = await asyncio.gather(first.tick(), second.tick())
        assert sum(fired) == CASES and all(fired), fired  # both did a share of the work
        await asyncio.gather(first.drain(), second.drain(), first.drain(), second.drain())
        pages = first_device.sent + second_device.sent
        refs = page_refs(pages)
        assert {m.recipient.identity for m in pages} == {"bob"}
        assert len(refs) == CASES and len(set(refs)) == CASES
    finally:
        await first.close()
        await second.close()


async def test_leadership_moves_within_seconds_when_the_leader_dies(pg: str) -> None:
    """Two instances want to lead the Signal receive loop; only one does. When the leader's
    database session dies, the other takes over within seconds and the old one stands down."""
    import asyncpg  # type: ignore[import-untyped]

    events: list[str] = []

    def leadership(who: str) -> Leadership:
        async def on_lead() -> None:
            events.append(f"{who} leads")

        async def on_lose() -> None:
            events.append(f"{who} stands down")

        return Leadership(pg, "channel:signal", on_lead, on_lose, interval=0.2)

    a, b = leadership("a"), leadership("b")
    await a.start()
    await asyncio.sleep(0.5)
    await b.start()
    try:
        await asyncio.sleep(1.0)
        assert events == ["a leads"] and a.leading and not b.leading
        admin = await asyncpg.connect(asyncpg_dsn(pg))
        try:
            pid = a._connection.get_server_pid()
            started = time.monotonic()
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        while not b.leading:
            assert time.monotonic() - started < 5, events
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert "a stands down" in events and not a.leading
        assert events.index("a stands down") < events.index("b leads") or (
            events.count("b leads") == 1
        )
    finally:
        await a.stop()
        await b.stop()
    assert events[-1] == "b stands down"


async def leader_pid(url: str) -> int | None:
    """Return the OS pid of the `intake run` process holding the Signal leadership lock."""
    import asyncpg  # type: ignore[import-untyped]

    from db.leader import lock_key

    key = lock_key("channel:signal")
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        name = await connection.fetchval(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = $1 AND l.objid = $2",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
    finally:
        await connection.close()
    return int(name.rsplit(" ", 1)[1]) if name else None


@pytest.mark.slow
async def test_killing_the_leader_moves_signal_receive_to_the_other_instance(
    tmp_path: Path, pg: str
) -> None:
    """Two `intake run` processes on one PostgreSQL database: only one receives from Signal.
    kill -9 the leader; the other takes over within seconds and handles the next SOS."""
    import os
    import signal
    import sys

    from db.crypto import create_keyring
    from tests.fakes.signal_api import ACCOUNT, FakeSignalApi

    root = Path(__file__).resolve().parents[2]
    async with FakeSignalApi() as signal_api:
        create_keyring(tmp_path / "keys", development=False)
        body = TEST_CONFIG.replace(
            '[[responders]]\nname = "alice"\nconsole = true\n',
            '[[responders]]\nname = "alice"\nsignal = "+4915550001"\n',
        ).replace(
            "[[responders]]",
            f'[signal]\nenabled = true\napi_url = "{signal_api.url}"\nnumber = "{ACCOUNT}"\n'
            'disappearing = "off"\n\n[[operators]]\nname = "alice"\nsignal = "+4915550001"\n'
            "\n[[responders]]",
            1,
        )
        config = write_config(tmp_path, body, pg)

        async def start() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "-c",
                str(config),
                cwd=root,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if k != "INTAKE_MASTER_KEY"},
            )

        def pages() -> int:
            return sum(
                b["recipients"] == ["+4915550001"] and b["message"].startswith("CRITICAL")
                for b in signal_api.sent
            )

        async def wait_pages(count: int, what: str) -> None:
            deadline = time.monotonic() + 30
            while pages() < count:
                assert time.monotonic() < deadline, what
                await asyncio.sleep(0.05)

        processes = [await start(), await start()]
        try:
            signal_api.deliver_text("9d3b6c52-0000-4000-8000-0000000000d1", None, "SOS")
            await wait_pages(1, "no page to alice")
            leader = await leader_pid(pg)
            assert leader in {p.pid for p in processes}
            victim = next(p for p in processes if p.pid == leader)
            victim.send_signal(signal.SIGKILL)  # kill -9 the leader
            await victim.wait()
            killed_at = time.monotonic()
            signal_api.deliver_text("aaaa0000-0000-4000-8000-0000000000d2", None, "SOS")
            await wait_pages(2, "the surviving instance never handled the next SOS")
            assert time.monotonic() - killed_at < 15
            survivor = next(p for p in processes if p is not victim)
            assert await leader_pid(pg) == survivor.pid
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                if process.returncode is None:
                    try:
                        await asyncio.wait_for(process.wait(), 20)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
