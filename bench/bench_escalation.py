"""Alert-to-first-page latency and escalation lateness with many open cases, through the real
app (tick every second, outbox sender woken at once), on SQLite by default or PostgreSQL.

    .venv/bin/python bench/bench_escalation.py [--open 10000] [--due 1000] [--url ...]

Prints percentiles; asserts nothing. "Lateness" is the time from a step's due time to the
moment the fake device received its page.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import update

from bot.app import open_app
from bot.config import load_config
from bot.core.clock import SystemClock, to_millis
from bot.core.messages import Address, Delivered, InboundMessage, OutboundMessage
from db.crypto import ensure_development_keyring
from db.models import Escalation
from tests.harness import TEST_CONFIG, write_config

PAGE_HEADER = re.compile(r"^[A-Z]+ case ([A-Z0-9]{4})(?: \(repeat\))?$", re.MULTILINE)


class TimingDevice:
    """Records when each page arrived, by recipient and case reference."""

    name = "console"

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}

    async def send(self, message: OutboundMessage) -> Delivered:
        if message.kind == "page":  # a bundle lists several pages, one header line each
            for ref in PAGE_HEADER.findall(message.text):
                self.arrivals.setdefault((message.recipient.identity, ref), time.time())
        return Delivered()


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of samples, in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(
    open_cases: int,
    due: int,
    url: str | None,
    sos: int,
    lead: float = 10.0,
    spread: float = 30.0,
) -> dict[str, float | int | str]:
    """Build the load, run the app in real time, print the numbers and return them (ms).

    ``due`` cases come due over ``spread`` seconds, starting ``lead`` seconds after setup.
    """
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), TEST_CONFIG, url))
        keyring, _ = ensure_development_keyring(config.keys.dir, {})
        device = TimingDevice()
        app = await open_app(config, keyring, SystemClock(), {"console": device})
        try:
            started = time.perf_counter()
            refs: list[str] = []
            now = datetime.now(UTC)
            for batch in range(0, open_cases, 500):
                async with app.store.transaction() as tx:
                    for i in range(batch, min(open_cases, batch + 500)):
                        defender = await tx.defender_for(Address("console", f"d{i}"), now)
                        case = await tx.case_open(
                            defender.id, "sos", "critical", {"kind": "sos"}, now
                        )
                        await app.paging.start(tx, case, now)
                        refs.append(case.ref)
            await app.drain()
            setup = time.perf_counter() - started
            # `due` of them come due over `spread` s (starting in `lead` s); the rest tomorrow.
            base = datetime.now(UTC) + timedelta(seconds=lead)
            due_at: dict[str, float] = {}
            async with app.store.transaction() as tx:
                cases = [await tx.case_by_ref(ref) for ref in refs[:due]]
            async with app.engine.begin() as conn:
                await conn.execute(
                    update(Escalation).values(next_due_at=to_millis(base + timedelta(days=1)))
                )
                for index, case in enumerate(cases):
                    assert case is not None
                    moment = base + timedelta(seconds=spread * index / max(due, 1))
                    due_at[case.ref] = moment.timestamp()
                    await conn.execute(
                        update(Escalation)
                        .where(Escalation.case_id == case.id)
                        .values(next_due_at=to_millis(moment))
                    )
            app.start_background()
            first_page: list[float] = []
            for n in range(sos):
                message = InboundMessage(
                    Address("console", f"new{n}"), "SOS", f"sos{n}", datetime.now(UTC)
                )
                sent_before = set(device.arrivals)
                t0 = time.time()
                await app.receive(message)
                while True:
                    new = [k for k in device.arrivals if k not in sent_before and k[0] == "alice"]
                    if new:
                        first_page.append(device.arrivals[new[0]] - t0)
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.05)
            deadline = time.time() + lead + spread + 60
            while time.time() < deadline:
                if all(("bob", ref) in device.arrivals for ref in due_at):
                    break
                await asyncio.sleep(0.2)
            lateness = [
                device.arrivals[("bob", ref)] - at
                for ref, at in due_at.items()
                if ("bob", ref) in device.arrivals
            ]
            print(f"database: {app.store.dialect}; {open_cases} open cases (setup {setup:.1f}s)")
            print(
                f"alert → first page   n={len(first_page):<5} p50={pct(first_page, 0.5):7.1f}ms "
                f"p99={pct(first_page, 0.99):7.1f}ms max={max(first_page) * 1000:7.1f}ms"
            )
            print(
                f"escalation lateness  n={len(lateness):<5} (of {due} due over {spread:g} s) "
                f"p50={pct(lateness, 0.5):7.1f}ms p99={pct(lateness, 0.99):7.1f}ms "
                f"max={max(lateness) * 1000:7.1f}ms"
            )
            return {
                "database": app.store.dialect,
                "open_cases": open_cases,
                "setup_s": setup,
                "sos": len(first_page),
                "first_page_p50_ms": pct(first_page, 0.5),
                "first_page_p99_ms": pct(first_page, 0.99),
                "due": due,
                "paged_late": len(lateness),
                "lateness_p50_ms": pct(lateness, 0.5),
                "lateness_p99_ms": pct(lateness, 0.99),
                "lateness_max_ms": max(lateness) * 1000,
            }
        finally:
            await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--sos", type=int, default=100)
    parser.add_argument("--url")
    parser.add_argument("--lead", type=float, default=10.0, help="seconds until the first due")
    parser.add_argument("--spread", type=float, default=30.0, help="seconds the dues spread over")
    args = parser.parse_args()
    asyncio.run(main(args.open, args.due, args.url, args.sos, args.lead, args.spread))
