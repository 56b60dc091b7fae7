"""Scale: resident memory with many conversations open, and the cost of the tick with many
open cases. Each measurement runs in a fresh child process of its own, so the numbers are
not polluted by whatever ran before (run_all runs several benchmarks in one process).

    .venv/bin/python bench/bench_scale.py [--quick] [--url postgresql+asyncpg://...]
    .venv/bin/python bench/bench_scale.py memory --conversations 10000 [--trace] [--drain]
    .venv/bin/python bench/bench_scale.py tick --open 100000 --due 100 [--samples 200]

Prints what it measured and returns the figures; asserts nothing.

Memory: N distinct defenders each write a first message and answer the first question
through ``App.receive`` (inbox → conversation engine → session stored with its draft timer
→ replies queued), on a SQLite file. Resident set size (``VmRSS``, the current figure, after
a garbage collection) is read before the app is built, once it is started, halfway and with
all N conversations open; ``ru_maxrss`` gives the peak. The replies stay queued in the
outbox (database rows, not memory) unless ``--drain`` sends them.

``--trace`` prints what Python allocations grew over the second half (tracemalloc).

Tick: N open cases, K of them due at the measured moment. The K due cases are opened
through the store and the paging service (``defender_for``, ``case_open``,
``PagingService.start``: real pages, real escalation rows). The other N - K are bulk-inserted
with SQLAlchemy Core in transactions of 5,000 rows, in the store's own row format: each
defender and case has its own wrapped data key and encrypted address/details (so every row
decrypts), an ``active`` escalation due one to 24 hours later, its first page as a sent
(shredded) outbox row and an ``escalation.paged`` event — what an open case left behind by
the real paging path looks like. Tiers are mixed (10% critical, 30% high, 40% medium, 20%
low). SQLite is not analyzed (the app never runs ANALYZE); on PostgreSQL the bench runs
ANALYZE once, as autovacuum would. Then, timed: ``App.tick`` (what the scheduler runs every
second, without its once-a-minute sweep) with nothing due, and with K due (fewer samples;
the K escalations are put back and their new pages deleted between samples, untimed); the
tick with its minute sweep; the watchdog (every 30 s); ``next_due`` (the precise wake-up's
query, up to every second); and the outbox sender's pass with nothing to send (every second
per channel). Before timing, the plan of every SELECT those send is printed (``EXPLAIN``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import resource
import secrets
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import delete, event, insert, text, update

from bot.app import App, open_app
from bot.config import load_config
from bot.core.clock import FakeClock, to_millis
from bot.core.messages import Address, InboundMessage, Priority
from bot.core.refs import new_reference
from db.crypto import KeyRing, ensure_development_keyring, field_context
from db.ids import new_id
from db.models import Case, Defender, Escalation, EventLog, Outbox
from tests.harness import TEST_CONFIG, RecordingChannel, write_config

RESULT_TAG = "RESULT "


@dataclass(frozen=True)
class Sizes:
    """One run's sizes: conversations for memory; (small, large) open cases for the tick."""

    conversations: int
    open_cases: tuple[int, int]
    due: int
    samples: int


SIZES = {
    "quick": Sizes(conversations=1_000, open_cases=(1_000, 10_000), due=100, samples=60),
    "full": Sizes(conversations=10_000, open_cases=(1_000, 100_000), due=100, samples=200),
}
TIERS = ("critical",) * 1 + ("high",) * 3 + ("medium",) * 4 + ("low",) * 2
BULK_BATCH = 5_000


# -- measuring ---------------------------------------------------------------------------


def rss_mb() -> float:
    """The current resident set size of this process (VmRSS), in MB, after a collection."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # not Linux


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far (ru_maxrss), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@asynccontextmanager
async def fresh_app(
    url: str | None, channel: RecordingChannel
) -> AsyncIterator[tuple[App, FakeClock, KeyRing]]:
    """Yield (app, clock, keys) on a new SQLite file, or on a throw-away database created on
    the PostgreSQL server at ``url`` (dropped afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        database = None
        admin: Any = None
        if url is not None:
            import asyncpg  # type: ignore[import-untyped]

            database = f"intake_bench_{secrets.token_hex(6)}"
            admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            await admin.execute(f'CREATE DATABASE "{database}"')
            url = url.rsplit("/", 1)[0] + "/" + database
        try:
            config = load_config(write_config(Path(tmp), TEST_CONFIG, url))
            keyring, _ = ensure_development_keyring(config.keys.dir, {})
            clock = FakeClock()
            app = await open_app(config, keyring, clock, {"console": channel})
            try:
                yield app, clock, keyring
            finally:
                await app.close()
        finally:
            if admin is not None:
                await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
                await admin.close()


# -- memory --------------------------------------------------------------------------------


async def measure_memory(
    conversations: int, *, drain: bool = False, trace: bool = False
) -> dict[str, float]:
    """Open ``conversations`` intake conversations through the app and return the RSS figures
    (MB; per conversation in KB)."""
    before_app = rss_mb()
    if trace:
        tracemalloc.start(12)
    channel = RecordingChannel()
    async with fresh_app(None, channel) as (app, clock, _):
        started = rss_mb()
        snapshot = None
        counter = 0

        async def say(who: str, words: str) -> None:
            nonlocal counter
            counter += 1
            message = InboundMessage(Address("console", who), words, f"m{counter}", clock.now())
            await app.receive(message)
            clock.advance(timedelta(milliseconds=10))

        half = conversations // 2
        halfway = started
        t0 = time.perf_counter()
        for i in range(conversations):
            await say(f"defender-{i}", "hello")  # the welcome and the first question
            await say(f"defender-{i}", "4")  # "Threats" → the next question
            if drain and i % 500 == 499:
                await app.drain()
                channel.sent.clear()  # the fake device must not be what grows
            if i + 1 == half:
                halfway = rss_mb()
                snapshot = tracemalloc.take_snapshot() if trace else None
        elapsed = time.perf_counter() - t0
        if drain:
            await app.drain()
            channel.sent.clear()
        full = rss_mb()
        async with app.engine.connect() as conn:
            live, drafts, queued = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM defender WHERE session_ct IS NOT NULL), "
                        "(SELECT count(*) FROM defender WHERE draft_expires_at IS NOT NULL), "
                        "(SELECT count(*) FROM outbox WHERE state = 'pending')"
                    )
                )
            ).one()
        if snapshot is not None:
            print("largest growth held in Python over the second half (tracemalloc):")
            diff = tracemalloc.take_snapshot().compare_to(snapshot, "traceback")
            for stat in diff[:8]:
                print(f"  {stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+7d} blocks")
                for line in stat.traceback.format(limit=4):
                    print("     " + line)
    per_kb = (full - started) * 1024 / conversations
    slope_kb = (full - halfway) * 1024 / max(conversations - half, 1)
    print(
        f"memory: {conversations} conversations ({2 * conversations} messages in "
        f"{elapsed:.0f}s, {2 * conversations / elapsed:.0f}/s); stored sessions {live}, "
        f"draft timers {drafts}, replies still queued {queued}"
    )
    print(
        f"  RSS before the app {before_app:.1f} MB, app started {started:.1f} MB, "
        f"halfway {halfway:.1f} MB, all open {full:.1f} MB (peak {max(peak_rss_mb(), full):.1f} MB)"
    )
    print(
        f"  conversations added {full - started:.1f} MB = {per_kb:.2f} KB each "
        f"(second half alone: {slope_kb:.2f} KB each)"
    )
    return {
        "conversations": float(conversations),
        "stored_sessions": float(live),
        "rss_before_app_mb": before_app,
        "rss_app_started_mb": started,
        "rss_half_conversations_mb": halfway,
        "rss_10k_conversations_mb": full,
        "rss_peak_mb": max(peak_rss_mb(), full),  # ru_maxrss lags VmRSS by a few pages
        "rss_conversations_delta_mb": full - started,
        "rss_per_conversation_kb": per_kb,
        "rss_per_conversation_second_half_kb": slope_kb,
        "memory_setup_s": elapsed,
    }


# -- tick ------------------------------------------------------------------------------------


def _bulk_rows(
    keyring: KeyRing, count: int, now_ms: int, refs: Iterator[str]
) -> tuple[list[dict[str, Any]], ...]:
    """Rows for ``count`` open cases in the store's format (see the module docstring)."""
    defenders, cases, escalations, pages, events = [], [], [], [], []
    for _ in range(count):
        defender_id = new_id()
        key, wrapped = keyring.new_data_key(field_context("defender", "key", defender_id))
        identity = secrets.token_hex(8)
        defenders.append(
            {
                "id": defender_id,
                "identity_hash": keyring.pseudonym("address", f"console\x00{identity}"),
                "wrapped_key": wrapped,
                "address_ct": key.encrypt_json(
                    ["console", identity], field_context("defender", "address", defender_id)
                ),
                "session_ct": None,
                "plan_ct": None,
                "draft_expires_at": None,
                "created_at": now_ms,
                "updated_at": now_ms,
            }
        )
        case_id = new_id()
        tier = random.choice(TIERS)
        key, wrapped = keyring.new_data_key(field_context("cases", "key", case_id))
        cases.append(
            {
                "id": case_id,
                "ref": next(refs),
                "defender_id": defender_id,
                "kind": "intake",
                "tier": tier,
                "status": "open",
                "wrapped_key": wrapped,
                "details_ct": key.encrypt_json(
                    {"kind": "intake", "tier": tier}, field_context("cases", "details", case_id)
                ),
                "created_at": now_ms,
                "updated_at": now_ms,
            }
        )
        escalations.append(
            {
                "case_id": case_id,
                "tier": tier,
                "state": "active",
                "step": 0,
                "loop": 0,
                "next_due_at": now_ms + random.randint(3_600_000, 86_400_000),
                "updated_at": now_ms,
            }
        )
        pages.append(
            {
                "id": new_id(),
                "idempotency_key": f"bench:{case_id}:0:0:carol",
                "kind": "page",
                "priority": int(Priority.URGENT if tier == "critical" else Priority.PAGE),
                "channel": "console",
                "responder": "carol",
                "case_id": case_id,
                "loop": 0,
                "step": 0,
                "state": "sent",
                "attempts": 1,
                "ambiguous": False,
                "next_attempt_at": now_ms,
                "created_at": now_ms,
                "sent_at": now_ms,
            }
        )
        events.append(
            {
                "id": new_id(),
                "case_id": case_id,
                "event": "escalation.paged",
                "actor": "system",
                "detail": "loop=0 step=0 to=carol",
                "at": now_ms,
            }
        )
    return defenders, cases, escalations, pages, events


async def _open_cases(
    app: App, keyring: KeyRing, clock: FakeClock, total: int, due: int
) -> list[str]:
    """Open ``due`` cases through the app's own paths and ``total - due`` in bulk; return the
    ids of the ``due`` ones."""
    now = clock.now()
    due_ids = []
    async with app.store.transaction() as tx:
        for i in range(due):
            defender = await tx.defender_for(Address("console", f"due-{i}"), now)
            case = await tx.case_open(defender.id, "sos", "critical", {"kind": "sos"}, now)
            await app.paging.start(tx, case, now)
            due_ids.append(case.id)
    async with app.engine.connect() as conn:
        taken = set((await conn.execute(text("SELECT ref FROM cases"))).scalars())

    def fresh_refs() -> Iterator[str]:
        while True:
            ref = new_reference()
            if ref not in taken:
                taken.add(ref)
                yield ref

    refs = fresh_refs()
    remaining = total - due
    while remaining > 0:
        batch = min(BULK_BATCH, remaining)
        tables = (Defender, Case, Escalation, Outbox, EventLog)
        rows = _bulk_rows(keyring, batch, to_millis(now), refs)
        async with app.engine.begin() as conn:
            for table, values in zip(tables, rows, strict=True):
                await conn.execute(insert(table), values)
        remaining -= batch
    if app.store.dialect == "postgresql":  # what autovacuum does; SQLite is never analyzed
        async with app.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return due_ids


async def measure_tick(
    open_cases: int, due: int, samples: int, url: str | None = None, explain: bool = True
) -> dict[str, float]:
    """Build ``open_cases`` open cases with ``due`` of them due at the measured moment and
    time the tick, the sweep, the watchdog and ``next_due``; return the figures (ms, s)."""
    channel = RecordingChannel()
    async with fresh_app(url, channel) as (app, clock, keyring):
        t0 = time.perf_counter()
        due_ids = await _open_cases(app, keyring, clock, open_cases, due)
        setup = time.perf_counter() - t0
        await app.drain()
        channel.sent.clear()
        start = clock.now()
        due_at = to_millis(start + timedelta(minutes=30))

        async def reset() -> None:
            """Put the K due escalations back at their first step, due at ``due_at``."""
            async with app.engine.begin() as conn:
                await conn.execute(
                    delete(Outbox).where(Outbox.case_id.in_(due_ids), Outbox.state == "pending")
                )
                await conn.execute(
                    update(Escalation)
                    .where(Escalation.case_id.in_(due_ids))
                    .values(state="active", step=0, loop=0, next_due_at=due_at)
                )

        await reset()
        if explain:
            await _explain(app)

        async def timed_tick(sweep: bool) -> tuple[float, int]:
            app._swept_at = None if sweep else clock.now()  # the minute sweep: only if asked
            began = time.perf_counter()
            fired = await app.tick()
            return time.perf_counter() - began, fired

        idle, busy, sweeps, watchdog, next_due, send_idle = [], [], [], [], [], []
        fired_counts = set()
        for _ in range(samples):  # nothing due: ticks one second apart, before the due time
            clock.advance(timedelta(seconds=1))
            elapsed, fired = await timed_tick(sweep=False)
            idle.append(elapsed)
            fired_counts.add(("idle", fired))
        for _ in range(max(samples // 20, 5)):  # the watchdog takes seconds at 100k
            clock.advance(timedelta(seconds=1))
            sweeps.append((await timed_tick(sweep=True))[0])
            began = time.perf_counter()
            await app.watchdog()
            watchdog.append(time.perf_counter() - began)
        for _ in range(samples):
            began = time.perf_counter()
            async with app.store.transaction() as tx:
                await tx.next_due()
            next_due.append(time.perf_counter() - began)
            began = time.perf_counter()
            await app.drain()  # nothing to send: what each channel's sender does every second
            send_idle.append(time.perf_counter() - began)
        clock.advance(timedelta(minutes=31) - (clock.now() - start))  # K due, none other
        for _ in range(max(samples // 5, 10)):  # each takes K steps' work
            elapsed, fired = await timed_tick(sweep=False)
            busy.append(elapsed)
            fired_counts.add(("due", fired))
            await reset()
        print(
            f"tick: {open_cases} open cases ({app.store.dialect}), {due} due; setup "
            f"{setup:.1f}s; fired per tick: {sorted(fired_counts)}"
        )
        figures = {
            "open_cases": float(open_cases),
            "due": float(due),
            "setup_s": setup,
            "tick_idle_p50_ms": pct(idle, 0.5),
            "tick_idle_p99_ms": pct(idle, 0.99),
            "tick_due_p50_ms": pct(busy, 0.5),
            "tick_due_p99_ms": pct(busy, 0.99),
            "tick_due_per_step_ms": pct(busy, 0.5) / max(due, 1),
            "sweep_p50_ms": pct(sweeps, 0.5),
            "sweep_max_ms": max(sweeps) * 1000,
            "watchdog_p50_ms": pct(watchdog, 0.5),
            "watchdog_max_ms": max(watchdog) * 1000,
            "next_due_p50_ms": pct(next_due, 0.5),
            "next_due_p99_ms": pct(next_due, 0.99),
            "send_idle_p50_ms": pct(send_idle, 0.5),
            "send_idle_p99_ms": pct(send_idle, 0.99),
        }
        for name, samples_ in (("tick, nothing due", idle), (f"tick, {due} due", busy)):
            print(
                f"  {name:<18} n={len(samples_):<4} p50={pct(samples_, 0.5):8.2f}ms "
                f"p99={pct(samples_, 0.99):8.2f}ms"
            )
        print(
            f"  minute sweep p50={figures['sweep_p50_ms']:.2f}ms; watchdog "
            f"p50={figures['watchdog_p50_ms']:.2f}ms; next_due p50="
            f"{figures['next_due_p50_ms']:.2f}ms; outbox sender with nothing to send p50="
            f"{figures['send_idle_p50_ms']:.2f}ms"
        )
        return figures


async def _explain(app: App) -> None:
    """Print the plan of every SELECT that one tick with its minute sweep, one watchdog run
    and one outbox drain send (captured from the store: exactly the app's queries)."""
    captured: dict[str, Any] = {}

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.setdefault(" ".join(statement.split()), parameters)

    event.listen(app.engine.sync_engine, "before_cursor_execute", capture)
    try:
        app._swept_at = None
        await app.tick()
        await app.watchdog()
        await app.drain()
    finally:
        event.remove(app.engine.sync_engine, "before_cursor_execute", capture)
    sqlite = app.store.dialect == "sqlite"
    async with app.engine.connect() as conn:
        for statement, parameters in captured.items():
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = (await conn.exec_driver_sql(prefix + statement, parameters)).all()
            plan = " | ".join(str(row[-1]).strip() for row in rows)
            table = statement.split(" FROM ", 1)[-1].split()[0]
            print(f"  plan ({table}) {statement[:90]}...\n      {plan[:400]}")


# -- orchestration ---------------------------------------------------------------------------


async def _child(*arguments: str) -> dict[str, float]:
    """Run this file with ``arguments`` in a fresh interpreter, echo its printout and return
    the figures it reports on its last line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *arguments,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    figures: dict[str, float] = {}
    for line in output.decode().splitlines():
        if line.startswith(RESULT_TAG):
            figures = json.loads(line[len(RESULT_TAG) :])
        else:
            print(line)
    if process.returncode:
        print(f"bench_scale {' '.join(arguments)}: exit status {process.returncode}")
    return figures


async def main(
    quick: bool = False,
    *,
    conversations: int | None = None,
    open_cases: tuple[int, int] | None = None,
    due: int | None = None,
    samples: int | None = None,
    url: str | None = None,
) -> dict[str, float]:
    """Measure memory and tick cost, each size in its own child process; print them and
    return the figures (MB, KB, ms, s; ratios as plain numbers).

    Keys: ``rss_*`` (memory with ``conversations`` open; ``rss_10k_conversations_mb`` is the
    RSS with all of them open, whatever their number), and for each of the two ``open_cases``
    sizes (suffix ``_1k``, ``_100k`` in the full run: small and large) ``tick_idle_p50_ms``,
    ``tick_idle_p99_ms``, ``tick_due_p50_ms``, ``tick_due_p99_ms``, ``sweep_p50_ms``,
    ``watchdog_p50_ms``, ``next_due_p50_ms``, ``send_idle_p50_ms``, ``setup_s`` (and more);
    then ``tick_ratio_100k_over_1k`` (due p50), ``tick_idle_ratio_100k_over_1k``,
    ``tick_due_p99_ratio_100k_over_1k``, ``sweep_ratio_100k_over_1k``,
    ``watchdog_ratio_100k_over_1k``, ``next_due_ratio_100k_over_1k`` and
    ``send_idle_ratio_100k_over_1k``. The keys keep the names ``1k``/``100k`` in the quick run
    too (there the sizes are ``SIZES['quick']``). ``url`` (PostgreSQL) applies to the tick
    only; memory is always measured on SQLite.
    """
    sizes = SIZES["quick" if quick else "full"]
    conversations = conversations or sizes.conversations
    small, large = open_cases or sizes.open_cases
    due = due or sizes.due
    samples = samples or sizes.samples
    result: dict[str, float] = {}
    memory = await _child("memory", "--conversations", str(conversations))
    result.update(memory)
    extra = ["--url", url] if url else []
    for label, size in (("1k", small), ("100k", large)):
        figures = await _child(
            "tick", "--open", str(size), "--due", str(due), "--samples", str(samples), *extra
        )
        for key, value in figures.items():
            result[f"{key}_{label}"] = value
    for name, key in (
        ("tick_ratio_100k_over_1k", "tick_due_p50_ms"),
        ("tick_idle_ratio_100k_over_1k", "tick_idle_p50_ms"),
        ("tick_due_p99_ratio_100k_over_1k", "tick_due_p99_ms"),
        ("sweep_ratio_100k_over_1k", "sweep_p50_ms"),
        ("watchdog_ratio_100k_over_1k", "watchdog_p50_ms"),
        ("next_due_ratio_100k_over_1k", "next_due_p50_ms"),
        ("send_idle_ratio_100k_over_1k", "send_idle_p50_ms"),
    ):
        if f"{key}_1k" in result and f"{key}_100k" in result:
            result[name] = result[f"{key}_100k"] / result[f"{key}_1k"]
    if "tick_ratio_100k_over_1k" in result:
        print(
            f"tick {large:,} / {small:,} open cases ({due} due): x"
            f"{result['tick_ratio_100k_over_1k']:.2f} (due, p50), x"
            f"{result['tick_idle_ratio_100k_over_1k']:.2f} (idle, p50); minute sweep x"
            f"{result['sweep_ratio_100k_over_1k']:.2f}; watchdog x"
            f"{result['watchdog_ratio_100k_over_1k']:.2f}"
        )
    return result


def _cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=("all", "memory", "tick"), default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--conversations", type=int)
    parser.add_argument("--open", type=int, help="open cases (tick)")
    parser.add_argument("--due", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--url", help="PostgreSQL server for the tick (a database is created)")
    parser.add_argument("--drain", action="store_true", help="memory: send the replies too")
    parser.add_argument("--trace", action="store_true", help="memory: tracemalloc top growth")
    arguments = parser.parse_args()
    sizes = SIZES["quick" if arguments.quick else "full"]
    if arguments.what != "all":
        logging.basicConfig(level=logging.ERROR)  # the app's info and warnings are noise here
    if arguments.what == "memory":
        figures = asyncio.run(
            measure_memory(
                arguments.conversations or sizes.conversations,
                drain=arguments.drain,
                trace=arguments.trace,
            )
        )
    elif arguments.what == "tick":
        figures = asyncio.run(
            measure_tick(
                arguments.open or 1_000,
                arguments.due or sizes.due,
                arguments.samples or sizes.samples,
                arguments.url,
            )
        )
    else:
        began = time.perf_counter()
        figures = asyncio.run(
            main(
                arguments.quick,
                conversations=arguments.conversations,
                due=arguments.due,
                samples=arguments.samples,
                url=arguments.url,
            )
        )
        print(f"bench_scale: {time.perf_counter() - began:.0f}s")
        for key, value in figures.items():
            print(f"  {key:<40} {value:12.3f}")
        return
    print(RESULT_TAG + json.dumps(figures))


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        _cli()
