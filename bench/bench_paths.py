"""Latency and throughput of the hot paths, on a real database (SQLite WAL/FULL by default;
PostgreSQL with --url). Prints percentiles and ratios; asserts nothing.

    .venv/bin/python bench/bench_paths.py [--defenders 200] [--url postgresql+asyncpg://...]

Measured per path (wall clock, one process):
- intake step: a defender's answer → session stored → reply queued (1 inbox tx + 1 processing tx)
- SOS: case + triage + escalation + page rows + reply, all committed
- ack: case taken, pages cancelled, three notices queued
- send: outbox claim → channel → outcome, per message (fake channel)
- tick: advancing N due escalations in one tick
The ratio column compares with one bare SQLAlchemy-async transaction measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bot.app import open_app
from bot.config import load_config
from bot.core.clock import FakeClock
from bot.core.messages import Address, InboundMessage
from db.crypto import ensure_development_keyring
from tests.harness import TEST_CONFIG, RecordingChannel, write_config

CRITICAL = re.compile(r"^CRITICAL case ([A-Z0-9]{4})$", re.MULTILINE)  # one line per page


def percentiles(samples: list[float]) -> dict[str, float]:
    """Return p50/p90/p99/max in milliseconds."""
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ordered[-1] * 1000}


def report(name: str, samples: list[float], baseline_ms: float) -> None:
    """Print one line: percentiles, throughput and the ratio to a bare transaction."""
    stats = percentiles(samples)
    rate = len(samples) / sum(samples)
    print(
        f"{name:<26} n={len(samples):<5} p50={stats['p50']:6.2f}ms p90={stats['p90']:6.2f}ms "
        f"p99={stats['p99']:6.2f}ms max={stats['max']:7.2f}ms  {rate:7.0f}/s  "
        f"x{stats['p50'] / baseline_ms:4.1f} bare-tx"
    )


async def main(defenders: int, url: str | None) -> dict[str, float | int | str]:
    """Run every measurement once, print the table and return the figures (ms, per second)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = load_config(write_config(directory, TEST_CONFIG, url))
        keyring, _ = ensure_development_keyring(config.keys.dir, {})
        clock = FakeClock()
        channel = RecordingChannel()
        app = await open_app(config, keyring, clock, {"console": channel})
        try:
            bare = []
            for _ in range(300):
                start = time.perf_counter()
                async with app.engine.begin() as conn:
                    await conn.execute(text("SELECT 1"))
                bare.append(time.perf_counter() - start)
            baseline = statistics.median(bare) * 1000
            print(f"database: {app.store.dialect}; bare transaction p50 = {baseline:.2f} ms")

            counter = 0

            async def say(who: str, words: str) -> float:
                nonlocal counter
                counter += 1
                message = InboundMessage(Address("console", who), words, f"b{counter}", clock.now())
                start = time.perf_counter()
                await app.receive(message)
                return time.perf_counter() - start

            first = [await say(f"d{i}", "hello") for i in range(defenders)]
            steps = [await say(f"d{i}", "1") for i in range(defenders)]
            sos = [await say(f"s{i}", "SOS") for i in range(defenders)]
            start = time.perf_counter()
            sent = await app.drain()
            drain = time.perf_counter() - start
            refs = sorted({ref for m in channel.sent for ref in CRITICAL.findall(m.text)})
            channel.sent.clear()
            half = refs[: len(refs) // 2]
            acks = [await say("alice", f"ack {ref}") for ref in half]
            await app.drain()
            channel.sent.clear()
            clock.advance(timedelta(minutes=2))
            start = time.perf_counter()
            fired = await app.tick()
            tick = time.perf_counter() - start
            start = time.perf_counter()
            paged = await app.drain()
            tick_drain = time.perf_counter() - start

            report("first message (intake)", first, baseline)
            report("intake step", steps, baseline)
            report("SOS (case+pages)", sos, baseline)
            report("ack", acks, baseline)
            print(
                f"{'send (drain)':<26} n={sent:<5} {drain / max(sent, 1) * 1000:6.2f}ms/message  "
                f"{sent / drain:7.0f}/s"
            )
            print(
                f"{'escalation tick':<26} n={fired:<5} {tick * 1000:7.1f}ms for {fired} due "
                f"escalations ({tick / max(fired, 1) * 1000:.2f}ms each); "
                f"{paged} pages sent in {tick_drain * 1000:.0f}ms"
            )
            step_stats = percentiles(steps)
            sos_stats = percentiles(sos)
            return {
                "database": app.store.dialect,
                "defenders": defenders,
                "bare_tx_p50_ms": baseline,
                "intake_step_p50_ms": step_stats["p50"],
                "intake_step_p99_ms": step_stats["p99"],
                "intake_steps_per_s": len(steps) / sum(steps),
                "sos_p50_ms": sos_stats["p50"],
                "sos_p99_ms": sos_stats["p99"],
                "send_per_s": sent / drain if drain else 0.0,
                "tick_escalations": fired,
                "tick_ms": tick * 1000,
                "tick_ms_per_escalation": tick / max(fired, 1) * 1000,
            }
        finally:
            await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--defenders", type=int, default=200)
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temp dir)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.defenders, arguments.url))
