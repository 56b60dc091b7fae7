"""With PostgreSQL: throughput of one vs two ``intake run`` processes on Telegram webhook
intake (two instances behind a load balancer). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_instances.py [--quick] [--url postgresql+asyncpg://...]
        [--users 240] [--steps 5] [--concurrency 48] [--limiter] [--profile DIR]

For each instance count (1, then 2) on a fresh database of the same PostgreSQL server:

- ``n`` real ``intake run`` subprocesses (webhook mode, one ``[telegram] listen`` port each,
  the same keys and database), all talking to one in-process fake Bot API;
- a load generator with ``--concurrency`` fake defenders at a time, each POSTing its updates
  to the webhooks the way Telegram does (JSON body, ``X-Telegram-Bot-Api-Secret-Token``),
  round-robin over the instances, and waiting for its reply before answering again;
- an *intake step* is one answer ("2", a choice) whose reply reached the fake's sendMessage:
  webhook → inbox → flow → outbox → sendMessage. Each defender says "hello" first (untimed),
  then ``--steps`` answers (timed: POST started → first reply message stored by the fake).

Reported: steps/s (timed steps / wall time of the load), p50/p99 webhook → reply latency, the
ratio two/one, the CPU count, and where the time goes: CPU per step of the intake processes,
of their PostgreSQL backends (from /proc) and of this process (fake + load generator),
PostgreSQL commits per step, how busy the whole machine was, a sample of ``pg_stat_activity``
every 50 ms (the share of samples in which a backend of the bench database waited on a lock,
the most common wait events and the statements that waited), and ``ratio_cpu_bound``: the
ratio the measured CPU per step allows at most (an instance is one Python thread; all share
the machine's cores). ``--profile DIR`` runs the first instance under cProfile and prints its
top functions.

The instances run with the Telegram channel's local rate limiter off (1 message/s per chat,
30/s overall per process), as bench_intake.py does: with it, the figure is the limiter's.
``--limiter`` keeps it. The fake, the load generator and PostgreSQL share the machine with the
instances, so on a 2-core machine the ratio is bounded by the CPU.

Two things this bench does not model, both worth knowing: the channel registers its webhook
with ``max_connections=1``, so real Telegram has one update in flight per bot at a time and a
second instance behind a load balancer adds fail-over, not intake throughput (the load
generator here posts concurrently, as Telegram would with a higher ``max_connections``); and
each process handles its webhook calls one at a time (``TelegramChannel._handle_lock``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import itertools
import os
import pstats
import resource
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from db.crypto import create_keyring  # noqa: E402
from db.leader import asyncpg_dsn  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeBotApi  # noqa: E402

SECRET = "bench-webhook-secret_0123456789"
ALICE = 111000111  # responder paged for the critical cases the answers open
OLGA = 333000333  # operator
FIRST_USER = 610_000_001
SETTLE = 0.03  # a reply may be two messages: wait this quiet time before the next answer
SAMPLE_EVERY = 0.05  # seconds between two pg_stat_activity samples

CONFIG = """
[database]
url = "{url}"

[keys]
dir = "{dir}/keys"

[languages]
offered = ["en"]

[telegram]
enabled = true
token = "{token}"
base_url = "{telegram}/bot"
mode = "webhook"
webhook_url = "https://intake.invalid/telegram"
webhook_secret = "{secret}"
listen = "127.0.0.1:{port}"

[[operators]]
name = "olga"
telegram = {olga}

[[responders]]
name = "alice"
telegram = {alice}

[paging.critical]
steps = [{{ notify = ["alice"], wait = "1h" }}]

[paging.high]
steps = [{{ notify = ["alice"], wait = "1h" }}]

[paging.medium]
steps = [{{ notify = ["alice"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["alice"], wait = "8h" }}]
"""


class ReplyClock(FakeBotApi):
    """The fake Bot API, also noting when each chat received each message."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: dict[int, list[float]] = {}
        self.arrived: dict[int, asyncio.Event] = {}

    async def _send_message(self, params: dict[str, Any]) -> Any:
        result = await super()._send_message(params)
        chat_id = int(params["chat_id"])
        self.sent_at.setdefault(chat_id, []).append(time.perf_counter())
        event = self.arrived.get(chat_id)
        if event is not None:
            event.set()
        return result


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None if it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


async def start_instance(
    config: Path, log: Path, profile: Path | None, limiter: bool
) -> asyncio.subprocess.Process:
    """Start one ``intake run -c config`` (through :func:`serve`), stderr appended to ``log``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(config)]
    if profile is not None:
        command += ["--serve-profile", str(profile)]
    if limiter:
        command.append("--limiter")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=fd,
            env={k: v for k, v in os.environ.items() if k != "INTAKE_MASTER_KEY"},
        )
    finally:
        os.close(fd)


async def wait_ready(process: asyncio.subprocess.Process, log: Path) -> None:
    """Wait until the instance logs "run.ready"; raise if it exits or takes over 60 s."""
    deadline = time.monotonic() + 60
    while "run.ready" not in log.read_text(errors="replace"):
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"intake run did not become ready; see {log}")
        await asyncio.sleep(0.05)


class PgSampler:
    """Samples ``pg_stat_activity`` for one database while the load runs."""

    def __init__(self, dsn: str, database: str) -> None:
        self._dsn = dsn
        self._database = database
        self.samples = 0
        self.lock_samples = 0
        self.events: Counter[str] = Counter()
        self.lock_queries: Counter[str] = Counter()
        self.pids: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sampling in the background."""
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(self._dsn)
        self._task = asyncio.create_task(self._run(connection))

    async def _run(self, connection: Any) -> None:
        try:
            while True:
                rows = await connection.fetch(
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 200) AS query, "
                    "CASE WHEN wait_event_type = 'Lock' THEN (SELECT left(b.query, 200) "
                    "FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid)) "
                    "LIMIT 1) END AS blocker "
                    "FROM pg_stat_activity a "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    self._database,
                )
                self.samples += 1
                waiting_on_lock = False
                for row in rows:
                    self.pids.add(int(row["pid"]))
                    state = row["state"] or "?"
                    if state == "idle":
                        continue
                    kind = row["wait_event_type"]
                    event = f"{state}:{kind}/{row['wait_event']}" if kind else f"{state}:cpu"
                    self.events[event] += 1
                    if kind == "Lock":
                        waiting_on_lock = True
                        waiter = " ".join(str(row["query"]).split())
                        blocker = " ".join(str(row["blocker"]).split())
                        self.lock_queries[
                            f"{waiter} <- held by a transaction whose last statement is: {blocker}"
                        ] += 1
                self.lock_samples += waiting_on_lock
                await asyncio.sleep(SAMPLE_EVERY)
        finally:
            await connection.close()

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def backend_pids(dsn: str, database: str) -> tuple[set[int], int]:
    """The PostgreSQL backends connected to ``database`` now, and how many transactions
    it has committed so far."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
        )
        commits = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database
        )
    finally:
        await connection.close()
    return {int(row["pid"]) for row in rows}, int(commits or 0)


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (the fake Bot API and the load generator)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(
    fake: ReplyClock, hooks: list[str], users: int, steps: int, concurrency: int, first: int
) -> list[float]:
    """Run ``users`` conversations (defender ids from ``first`` on), ``concurrency`` at a time,
    round-robin over ``hooks``; return the latency of every timed step."""
    samples: list[float] = []
    turn = itertools.count()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(users):
        queue.put_nowait(first + index)
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    connector = aiohttp.TCPConnector(limit=0)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(update: dict[str, Any]) -> None:
            for attempt in range(50):  # Telegram re-delivers after an error answer
                hook = hooks[next(turn) % len(hooks)]
                async with session.post(hook, json=update, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        return
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
            raise RuntimeError("the webhook kept refusing an update")

        async def say(user: int, text: str) -> float:
            arrived = fake.arrived.setdefault(user, asyncio.Event())
            seen = fake.sent_at.setdefault(user, [])
            before = len(seen)
            started = time.perf_counter()
            await post(fake.user_says(user, text))
            while len(seen) <= before:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 60)
            latency = seen[before] - started
            while True:  # let a reply of several messages finish before the next answer
                count = len(seen)
                await asyncio.sleep(SETTLE)
                if len(seen) == count:
                    return latency

        async def worker() -> None:
            while not queue.empty():
                user = queue.get_nowait()
                await say(user, "hello")
                for _ in range(steps):
                    samples.append(await say(user, "2"))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def run_instances(
    server_url: str,
    instances: int,
    users: int,
    steps: int,
    concurrency: int,
    *,
    limiter: bool = False,
    profile: Path | None = None,
) -> dict[str, float]:
    """Run ``instances`` ``intake run`` processes on a fresh database and measure them."""
    import asyncpg

    admin_dsn = asyncpg_dsn(server_url)
    database = f"intake_bench_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = server_url.rsplit("/", 1)[0] + "/" + database
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + database
    processes: list[asyncio.subprocess.Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp:
            workdir = Path(tmp)
            create_keyring(workdir / "keys", development=False)
            async with ReplyClock() as fake:
                for chat_id in (ALICE, OLGA):
                    fake.chat(chat_id, "Responder")
                hooks = []
                logs = []
                for index in range(instances):
                    port = free_port()
                    config = workdir / f"config{index}.toml"
                    config.write_text(
                        CONFIG.format(
                            url=url,
                            dir=workdir,
                            token=TOKEN,
                            telegram=fake.url,
                            secret=SECRET,
                            port=port,
                            olga=OLGA,
                            alice=ALICE,
                        )
                    )
                    log = workdir / f"run{index}.log"
                    log.touch()
                    chosen = profile / f"instance{index}.prof" if profile and index == 0 else None
                    processes.append(await start_instance(config, log, chosen, limiter))
                    hooks.append(f"http://127.0.0.1:{port}/telegram")
                    logs.append(log)
                for process, log in zip(processes, logs, strict=True):
                    await wait_ready(process, log)
                # warm-up (untimed): connection pools, flows, JIT-free but cache-warm paths
                warm = max(concurrency // 4, 2)
                await drive(fake, hooks, warm, 1, warm, FIRST_USER + 900_000)
                fake.arrived.clear()
                sampler = PgSampler(dsn, database)
                await sampler.start()
                pids, commits_before = await backend_pids(dsn, database)
                before_pg = {pid: cpu_seconds(pid) for pid in pids}
                before_driver = own_cpu_seconds()
                before_app = [cpu_seconds(p.pid) or 0.0 for p in processes]
                before_machine = machine_ticks()
                started = time.perf_counter()
                samples = await drive(fake, hooks, users, steps, concurrency, FIRST_USER)
                wall = time.perf_counter() - started
                after_machine = machine_ticks()
                after_app = [cpu_seconds(p.pid) or 0.0 for p in processes]
                driver_cpu = own_cpu_seconds() - before_driver
                pids, commits_after = await backend_pids(dsn, database)
                pg_pids = pids | sampler.pids
                pg_cpu = 0.0
                for pid in pg_pids:
                    now = cpu_seconds(pid)
                    if now is not None:
                        pg_cpu += now - (before_pg.get(pid) or 0.0)
                await sampler.stop()
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                for process in processes:
                    await asyncio.wait_for(process.wait(), 60)
                tracebacks = sum(log.read_text(errors="replace").count("Traceback") for log in logs)
                if profile is not None:
                    print_profile(profile / "instance0.prof")
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    busy = after_machine[0] - before_machine[0]
    total = after_machine[1] - before_machine[1]
    count = len(samples)
    figures = {
        "instances": float(instances),
        "steps": float(count),
        "steps_per_s": count / wall,
        "p50_ms": pct(samples, 0.5),
        "p99_ms": pct(samples, 0.99),
        "wall_s": wall,
        "app_cpu_ms_per_step": 1000 * (sum(after_app) - sum(before_app)) / count,
        "pg_cpu_ms_per_step": 1000 * pg_cpu / count,
        "driver_cpu_ms_per_step": 1000 * driver_cpu / count,
        "pg_commits_per_step": (commits_after - commits_before) / count,
        "machine_busy_share": busy / total if total else 0.0,
        "pg_lock_wait_share": sampler.lock_samples / sampler.samples if sampler.samples else 0.0,
        "tracebacks": float(tracebacks),
    }
    print(
        f"{instances} instance(s): {count} steps in {wall:.1f}s = {figures['steps_per_s']:.0f} "
        f"steps/s, p50 {figures['p50_ms']:.1f}ms p99 {figures['p99_ms']:.1f}ms; CPU/step: "
        f"app {figures['app_cpu_ms_per_step']:.2f}ms, postgres "
        f"{figures['pg_cpu_ms_per_step']:.2f}ms, fake+load generator "
        f"{figures['driver_cpu_ms_per_step']:.2f}ms; "
        f"{figures['pg_commits_per_step']:.1f} commits/step; machine busy "
        f"{100 * figures['machine_busy_share']:.0f}%; samples with a lock wait "
        f"{100 * figures['pg_lock_wait_share']:.1f}%"
    )
    top = ", ".join(f"{event} {n}" for event, n in sampler.events.most_common(6))
    print(f"  pg_stat_activity ({sampler.samples} samples, non-idle backends): {top}")
    for query, n in sampler.lock_queries.most_common(3):
        print(f"  waiting on a lock ({n} samples): {query}")
    return figures


def print_profile(path: Path, top: int = 25) -> None:
    """Print the ``top`` functions of a cProfile dump by cumulative and by own time."""
    if not path.exists():
        print(f"  (no profile at {path})")
        return
    for order in ("cumulative", "tottime"):
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).strip_dirs().sort_stats(order).print_stats(top)
        print(f"  profile of instance 0, by {order}:")
        print("\n".join("    " + line for line in buffer.getvalue().splitlines()[6:]))


async def measure(
    url: str | None = None,
    quick: bool = False,
    *,
    users: int | None = None,
    steps: int = 5,
    concurrency: int | None = None,
    limiter: bool = False,
    profile: Path | None = None,
) -> dict[str, float]:
    """Measure one and two instances on the PostgreSQL server at ``url`` (default: the
    ``INTAKE_TEST_PG_URL`` environment variable); return the figures, prefixed ``one_`` and
    ``two_``, plus ``ratio_steps_per_s``, ``ratio_cpu_bound`` and ``cpu_count``. Empty when
    there is no server."""
    url = url or os.environ.get("INTAKE_TEST_PG_URL")
    if not url:
        print("bench_instances: skipped (no PostgreSQL: give --url or set INTAKE_TEST_PG_URL)")
        return {}
    users = users or (24 if quick else 240)
    concurrency = concurrency or (12 if quick else 48)
    if quick:
        steps = min(steps, 3)
    cpus = float(os.cpu_count() or 0)
    print(
        f"bench_instances: {cpus:.0f} CPUs; {users} defenders x {steps} steps, "
        f"{concurrency} at once"
    )
    result: dict[str, float] = {"cpu_count": cpus}
    for name, instances in (("one", 1), ("two", 2)):
        figures = await run_instances(
            url, instances, users, steps, concurrency, limiter=limiter, profile=profile
        )
        result.update({f"{name}_{key}": value for key, value in figures.items()})
    result["ratio_steps_per_s"] = result["two_steps_per_s"] / result["one_steps_per_s"]
    one = cpu_bound(result, "one", 1, cpus)
    two = cpu_bound(result, "two", 2, cpus)
    result["ratio_cpu_bound"] = two / one
    print(
        f"two/one: x{result['ratio_steps_per_s']:.2f} steps/s (target >= 1.6) on {cpus:.0f} "
        f"CPUs; the CPU measured per step bounds it at x{result['ratio_cpu_bound']:.2f} "
        f"({one:.0f} -> {two:.0f} steps/s at most)"
    )
    return result


def cpu_bound(figures: dict[str, float], name: str, instances: int, cpus: float) -> float:
    """The most steps/s the CPU measured per step allows: each instance is one Python thread
    (at most one core), and everything (instances, PostgreSQL, fake, load generator) shares
    ``cpus`` cores."""
    app = figures[f"{name}_app_cpu_ms_per_step"]
    everything = app + figures[f"{name}_pg_cpu_ms_per_step"]
    everything += figures[f"{name}_driver_cpu_ms_per_step"]
    return min(instances * 1000 / app, cpus * 1000 / everything)


def main(
    url: str | None = None,
    quick: bool = False,
    *,
    users: int | None = None,
    steps: int = 5,
    concurrency: int | None = None,
    limiter: bool = False,
    profile: Path | None = None,
) -> dict[str, float]:
    """Synchronous :func:`measure` (runs its own event loop)."""
    return asyncio.run(
        measure(
            url,
            quick,
            users=users,
            steps=steps,
            concurrency=concurrency,
            limiter=limiter,
            profile=profile,
        )
    )


def serve(config: str, profile: str | None, limiter: bool) -> None:
    """Be ``intake run -c config`` (in this process), with the Telegram channel's local rate
    limiter off unless ``limiter``, and under cProfile when ``profile`` names a file."""
    if not limiter:
        from bot.channels import telegram

        original = telegram.TelegramChannel.__init__

        def unlimited(self: Any, *args: Any, **options: Any) -> None:
            options.setdefault("per_chat_interval", 0)
            options.setdefault("overall_rate", 0)
            original(self, *args, **options)

        telegram.TelegramChannel.__init__ = unlimited  # type: ignore[method-assign]
    from bot.cli import main as intake

    sys.argv = ["intake", "run", "-c", config]
    if profile is None:
        intake()
        return
    profiler = cProfile.Profile()
    try:
        profiler.runcall(intake)
    finally:
        profiler.dump_stats(profile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    parser.add_argument("--url", default=None, help="PostgreSQL URL (INTAKE_TEST_PG_URL)")
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--limiter", action="store_true", help="keep the 30 msg/s limiter")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile instance 0 here")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-profile", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.serve_profile, arguments.limiter)
    else:
        if arguments.profile is not None:
            arguments.profile.mkdir(parents=True, exist_ok=True)
        main(
            arguments.url,
            arguments.quick,
            users=arguments.users,
            steps=arguments.steps,
            concurrency=arguments.concurrency,
            limiter=arguments.limiter,
            profile=arguments.profile,
        )
