"""PostgreSQL restarted mid-run: `intake run` (a real subprocess, Telegram polling against the
fake Bot API, leadership by advisory lock) keeps running through a crash of its database
server, loses no alert and sends every due page once — or a declared "(repeat)" after an
unknown outcome — and serves again once the server is back.

The test starts its OWN throw-away PostgreSQL server (``.ci/postgres.sh`` on a free port in a
temporary directory), so stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.chaos import (
    ALICE,
    BOB,
    FIRST_DEFENDER,
    OLGA,
    confirmations,
    page_counts,
    ready_count,
    start_run,
)
from db.crypto import create_keyring
from tests.fakes.telegram_api import TOKEN, FakeBotApi

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("INTAKE_TEST_PG_URL")
ALERT_GAP = 0.6  # seconds between two SOS alerts, from before the crash until the restart
BEFORE_SECONDS = 1.5  # alerts flow this long before the crash; the server is then away...
DOWN_SECONDS = 3.0  # ...this long (step-2 pages come due meanwhile); one more alert after

CONFIG = """
[database]
url = "{url}"

[keys]
dir = "{dir}/keys"

[telegram]
enabled = true
token = "{token}"
base_url = "{telegram}/bot"

[[operators]]
name = "olga"
telegram = {olga}

[[responders]]
name = "alice"
telegram = {alice}

[[responders]]
name = "bob"
telegram = {bob}

[paging.critical]
steps = [{{ notify = ["alice"], wait = "2s" }}, {{ notify = ["bob"], wait = "1h" }}]
repeat = 0

[paging.high]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.medium]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["bob"], wait = "8h" }}]
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A PostgreSQL server of this test alone (started by ``.ci/postgres.sh``)."""

    directory: Path
    port: int
    url: str

    def _pg_ctl(self, *arguments: str) -> list[str]:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        command = [str(bins[-1] / "pg_ctl"), "-D", str(self.directory / "data"), *arguments]
        if os.getuid() == 0:  # as .ci/postgres.sh does: the server runs as "postgres"
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

    async def crash(self) -> None:
        """Stop the server the hard way (``pg_ctl stop -m immediate``: no clean shutdown,
        every connection cut; it recovers from its WAL at the next start)."""
        await self._run(self._pg_ctl("stop", "-m", "immediate", "-w"))

    async def start_again(self) -> None:
        """Start the stopped server again, with the options ``.ci/postgres.sh`` uses."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "log")
        await self._run(self._pg_ctl("start", "-w", "-l", log, "-o", options))

    @staticmethod
    async def _run(command: list[str]) -> None:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, error = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, error.decode(errors="replace")


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A throw-away PostgreSQL server on a free port (only where PostgreSQL is tested)."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: INTAKE_TEST_PG_URL is not set")
        pytest.skip("INTAKE_TEST_PG_URL is not set (run .ci/run, which starts PostgreSQL)")
    directory = Path(tempfile.mkdtemp(prefix="intake-pg-restart-"))  # not under tmp_path:
    port = free_port()  # the server's user must be able to reach it
    script = str(ROOT / ".ci" / "postgres.sh")
    env = {**os.environ, "INTAKE_TEST_PG_PORT": str(port)}
    try:
        started = subprocess.run(
            [script, "start", str(directory)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        url = started.stdout.strip().rsplit("=", 1)[1]
        yield PgServer(directory, port, url)
    finally:
        subprocess.run([script, "stop", str(directory)], env=env, capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


async def until(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Wait until ``condition()`` is truthy and return the seconds it took, or fail."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.postgres
async def test_postgres_crash_mid_run_loses_nothing_and_service_resumes(
    tmp_path: Path, own_pg: PgServer
) -> None:
    """A stream of SOS alerts (one every 0.6 s) runs across a crash of the database server
    (pg_ctl stop -m immediate, 3 s down, start; one more alert after): every alert gets its
    own case and its reference back, alice is paged once per case and bob once when alice's
    2 s run out (the step-2 pages of the first alerts come due while the server is down); a
    copy beyond that only as a declared "(repeat)" of a row whose outcome was unknown. The
    process never exits and stops cleanly afterwards; no traceback and no identity reaches
    its log. The times until service is back are printed, not asserted."""
    defenders: list[int] = []
    async with FakeBotApi() as telegram:
        for chat_id in (ALICE, BOB, OLGA):
            telegram.chat(chat_id, "Responder")
        create_keyring(tmp_path / "keys", development=False)
        config = tmp_path / "config.toml"
        config.write_text(
            CONFIG.format(
                url=own_pg.url,
                dir=tmp_path,
                token=TOKEN,
                telegram=telegram.url,
                olga=OLGA,
                alice=ALICE,
                bob=BOB,
            )
        )

        def alert() -> int:
            defender = FIRST_DEFENDER + len(defenders)
            defenders.append(defender)
            telegram.user_says(defender, "SOS")
            return defender

        async def stream(stop: asyncio.Event) -> None:
            while not stop.is_set():
                alert()
                await asyncio.sleep(ALERT_GAP)

        def confirmed(who: list[int]) -> bool:
            told = confirmations(telegram, who)
            return all(told[d] for d in who)

        def paged(who: list[int]) -> bool:
            plain, repeat = page_counts(telegram)
            refs = {refs[0] for refs in confirmations(telegram, who).values() if refs}
            return len(refs) == len(who) and all(
                plain[(name, ref)] + repeat[(name, ref)] > 0
                for ref in refs
                for name in ("alice", "bob")
            )

        log = tmp_path / "run.log"
        process = await start_run(config, log)
        try:
            await until(lambda: ready_count(log) > 0, 60, "intake run to be ready")
            await until(
                lambda: "run.channel_leading" in log.read_text(), 30, "the Telegram leadership"
            )
            stop = asyncio.Event()
            streaming = asyncio.create_task(stream(stop))
            await asyncio.sleep(BEFORE_SECONDS)
            await own_pg.crash()
            await asyncio.sleep(DOWN_SECONDS)
            assert process.returncode is None, "intake run exited when its database went away"
            stop.set()
            await streaming
            await own_pg.start_again()
            back = time.monotonic()
            first = alert()
            await until(lambda: confirmed([first]), 60, "an alert sent after the restart")
            service_back = time.monotonic() - back
            await until(lambda: confirmed(defenders), 60, "every alert's reference")
            all_confirmed = time.monotonic() - back
            await until(lambda: paged(defenders), 60, "every case paged at both steps")
            print(
                f"\n{len(defenders)} alerts; PostgreSQL back -> a new alert confirmed: "
                f"{service_back:.1f}s; -> every alert confirmed: {all_confirmed:.1f}s; "
                f"-> every page out: {time.monotonic() - back:.1f}s (1 message/s per chat)"
            )
            await asyncio.sleep(2.5)  # more ticks and sends: nothing may go out twice
            assert process.returncode is None, "intake run exited"
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        except AssertionError as exc:
            plain, repeat = page_counts(telegram)
            raise AssertionError(
                f"{exc}\npages {dict(plain)} repeats {dict(repeat)}\n"
                f"outbox {await outbox_states(own_pg.url)}\n"
                f"log (event names and ids only):\n{log.read_text()[-6000:]}"
            ) from None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

        told = confirmations(telegram, defenders)
        plain, repeat = page_counts(telegram)

    refs = {d: told[d] for d in defenders}
    assert all(len(set(r)) == 1 for r in refs.values()), refs  # one case per alert
    cases = {r[0] for r in refs.values()}
    assert len(cases) == len(defenders)
    ambiguous = await ambiguous_pages(own_pg.url)
    for ref in cases:
        for name in ("alice", "bob"):
            assert plain[(name, ref)] + repeat[(name, ref)] >= 1, (name, ref)
            assert plain[(name, ref)] <= 1 and repeat[(name, ref)] <= 1, (name, ref)
            if repeat[(name, ref)]:  # declared, and only after an unknown outcome
                assert (name, ref) in ambiguous, (name, ref)
    stray = [key for key in plain + repeat if key[1] not in cases]
    assert not stray, stray
    assert await case_count(own_pg.url) == len(cases)
    output = log.read_text()
    assert "Traceback" not in output
    for secret in (TOKEN, str(ALICE), str(BOB), str(OLGA), *map(str, defenders)):
        assert secret not in output, "an identity or the token reached the log"


async def ambiguous_pages(url: str) -> set[tuple[str, str]]:
    """(responder, case ref) of every page whose outcome was once unknown (sent as a repeat)."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch(
            "SELECT o.responder, c.ref FROM outbox o JOIN cases c ON c.id = o.case_id "
            "WHERE o.kind = 'page' AND o.ambiguous"
        )
    finally:
        await connection.close()
    return {(row["responder"], row["ref"]) for row in rows}


async def outbox_states(url: str) -> dict[str, int]:
    """How many outbox rows are in each state (for a failure's message)."""
    import asyncpg

    try:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    except (OSError, asyncpg.PostgresError):
        return {}
    try:
        rows = await connection.fetch("SELECT state, count(*) AS n FROM outbox GROUP BY state")
    finally:
        await connection.close()
    return {row["state"]: row["n"] for row in rows}


async def case_count(url: str) -> int:
    """How many cases the database holds."""
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await connection.fetchval("SELECT count(*) FROM cases"))
    finally:
        await connection.close()
