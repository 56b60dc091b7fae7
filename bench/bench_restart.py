"""After kill -9 with N overdue escalation steps: seconds from `intake run`'s start to all of
them sent. Prints the figures and a count check; asserts nothing (the CLI exits 1 when the
count check fails).

    .venv/bin/python bench/bench_restart.py [--cases 500] [--quick] [--workdir DIR]

The scenario, against the in-process fake signal-cli-rest-api (tests/fakes/signal_api.py):

1. A real `intake run` subprocess on a SQLite file, with Signal as its only channel. N
   defenders each send "SOS" from their own Signal account; the critical ladder pages alice
   (wait 10 minutes), then bob (wait 1 hour). We wait until alice has all N pages and every
   defender its confirmation, and the outbox is empty.
2. kill -9 (no cleanup at all).
3. The wait runs out while the process is dead. Every due time is a stored column
   (``escalation.next_due_at``, epoch milliseconds) that the tick compares with the clock, so
   instead of sleeping ten minutes we move each case's due time back by the same amount: the
   newest becomes due 1 s before the restart, the oldest as long before as the intake took.
   That is exactly the state the database is in when a process has been dead for longer than
   the wait (nothing else in the database depends on the wall clock here), so bob's N
   pages are all overdue at the restart, spread the way real due times would be.
4. Restart. The clock starts at the spawn of the process. The fake records when it accepted
   each send; the figures are the seconds from spawn to the first, the median, the 99th
   percentile and the last of bob's N pages, and to "run.ready" in the process's log
   (polled, ±10 ms).

Responders are on Signal because Telegram could not meet the ≤2 s target whatever the code
does: its flood limits (one message per second per chat, 30 per second overall) put N pages to
one responder at N seconds (see bench_storm.py for that case).

Count check, printed: exactly N pages reached bob after the restart, one per case, no
duplicate (a "(repeat)" copy would be one), none for an unknown case, none to alice again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos import query, ready_count, start_run, stop, wait_ready  # noqa: E402
from db.crypto import create_keyring  # noqa: E402
from tests.fakes.signal_api import ACCOUNT, FakeSignalApi  # noqa: E402

ALICE = "+4915550001"  # responder, step 1
BOB = "+4915550002"  # responder, step 2: the pages measured
OLGA = "+4915550009"  # operator
QUICK_CASES = 100
FULL_CASES = 500

CONFIG = """
[database]
url = "sqlite+aiosqlite:///{dir}/intake.db"

[keys]
dir = "{dir}/keys"

[signal]
enabled = true
api_url = "{signal}"
number = "{account}"
receive = "poll"

[[operators]]
name = "olga"
signal = "{olga}"

[[responders]]
name = "alice"
signal = "{alice}"

[[responders]]
name = "bob"
signal = "{bob}"

[paging.critical]
steps = [{{ notify = ["alice"], wait = "10m" }}, {{ notify = ["bob"], wait = "1h" }}]
repeat = 0

[paging.high]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.medium]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["bob"], wait = "8h" }}]
"""

PAGE = re.compile(r"CRITICAL case ([A-Z0-9]+)( \(repeat\))?$")
CONFIRMATION = re.compile(r"Your case reference is ([A-Z0-9]+)\.")


def pages_to(api: FakeSignalApi, number: str, start: int = 0) -> list[tuple[str, bool, float]]:
    """(REF, is a repeat, accepted at) of every page ``number`` got from send ``start`` on."""
    found = []
    for body, at in zip(api.sent[start:], api.sent_at[start:], strict=True):
        if body.get("recipients") != [number]:
            continue
        for line in str(body.get("message", "")).split("\n"):  # a bundle lists several
            if match := PAGE.match(line):
                found.append((match.group(1), bool(match.group(2)), at))
    return found


def confirmed(api: FakeSignalApi, defenders: set[str]) -> int:
    """How many of ``defenders`` were told their case reference."""
    told = {
        body["recipients"][0]
        for body in api.sent
        if len(body.get("recipients") or ()) == 1
        and body["recipients"][0] in defenders
        and CONFIRMATION.search(str(body.get("message", "")))
    }
    return len(told)


def busy(db: Path) -> int:
    """Outbox rows still to send plus inbox rows still to process."""
    rows = query(
        db,
        "SELECT (SELECT count(*) FROM outbox WHERE state IN ('pending', 'claimed', 'sending'))"
        " + (SELECT count(*) FROM inbox WHERE processed_at IS NULL)",
    )
    return int(rows[0][0]) if rows else -1


def make_overdue(db: Path) -> tuple[int, float, float]:
    """Move every active escalation's due time back so that the newest is due 1 s from now
    (module docstring, step 3); return (rows moved, oldest and newest overdue in s)."""
    connection = sqlite3.connect(db, timeout=30)
    try:
        with connection:
            (newest,) = connection.execute(
                "SELECT max(next_due_at) FROM escalation WHERE state = 'active'"
            ).fetchone()
            shift = int(newest) - (int(time.time() * 1000) - 1000)
            moved = connection.execute(
                "UPDATE escalation SET next_due_at = next_due_at - ? WHERE state = 'active'",
                (shift,),
            ).rowcount
            low, high = connection.execute(
                "SELECT min(next_due_at), max(next_due_at) FROM escalation WHERE state = 'active'"
            ).fetchone()
        now = time.time() * 1000
        return moved, (now - low) / 1000, (now - high) / 1000
    finally:
        connection.close()


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (nearest rank), in the samples' unit."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def until(condition: object, timeout: float, what: str, log: Path) -> None:
    """Wait until ``condition()`` is truthy, or raise naming ``what``."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; see {log}")
        await asyncio.sleep(0.01)


async def main(cases: int = FULL_CASES, workdir: Path | None = None) -> dict[str, float]:
    """Run the scenario (module docstring) with ``cases`` overdue steps; print and return the
    figures (seconds from the spawn of the restarted process, and the counts)."""
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        directory = workdir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        return await _run(cases, directory)


async def _run(cases: int, directory: Path) -> dict[str, float]:
    db = directory / "intake.db"
    log = directory / "run.log"
    async with FakeSignalApi() as api:
        create_keyring(directory / "keys", development=False)
        config = directory / "config.toml"
        config.write_text(
            CONFIG.format(
                dir=directory, signal=api.url, account=ACCOUNT, olga=OLGA, alice=ALICE, bob=BOB
            )
        )
        # 1. open the cases
        process = await start_run(config, log)
        try:
            if not await wait_ready(process, log, 0):
                raise RuntimeError(f"intake run exited early; see {log}")
            setup_started = time.monotonic()
            defenders = {str(uuid.uuid4()) for _ in range(cases)}
            for defender in defenders:
                api.deliver_text(defender, None, "SOS")
            await until(
                lambda: len(pages_to(api, ALICE)) >= cases and confirmed(api, defenders) >= cases,
                120 + cases * 0.5,
                f"{cases} pages to alice and {cases} confirmations",
                log,
            )
            await until(lambda: busy(db) == 0, 60, "an empty outbox", log)
            setup_s = time.monotonic() - setup_started
            # 2. kill -9
            process.kill()
            await process.wait()
        finally:
            await stop(process)
        # 3. the wait runs out while nothing runs
        moved, oldest, newest = make_overdue(db)
        refs = {str(ref) for (ref,) in query(db, "SELECT ref FROM cases")}
        before = len(api.sent)
        ready_before = ready_count(log)
        # 4. restart and time it
        spawned = time.time()
        process = await start_run(config, log)
        ready_at: float | None = None
        try:
            deadline = time.monotonic() + 60 + cases * 0.2
            while len(pages_to(api, BOB, before)) < cases:
                if ready_at is None and ready_count(log) > ready_before:
                    ready_at = time.time()
                if process.returncode is not None:
                    raise RuntimeError(f"intake run exited with {process.returncode}; see {log}")
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.005)
            if ready_at is None:
                await wait_ready(process, log, ready_before)
                ready_at = time.time()
            await asyncio.sleep(2.0)  # room for a late duplicate to show up
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
        finally:
            await stop(process)
        bob = pages_to(api, BOB, before)
        again_to_alice = len(pages_to(api, ALICE, before))
        operator_messages = sum(1 for body in api.sent[before:] if body.get("recipients") == [OLGA])
    per_ref = Counter(ref for ref, _, _ in bob)
    arrivals = sorted(at - spawned for _, _, at in bob)
    figures: dict[str, float] = {
        "cases": cases,
        "overdue_steps": moved,
        "oldest_overdue_s": oldest,
        "newest_overdue_s": newest,
        "setup_s": setup_s,
        "ready_s": ready_at - spawned,
        "first_page_s": arrivals[0] if arrivals else float("nan"),
        "page_p50_s": pct(arrivals, 0.5) if arrivals else float("nan"),
        "page_p99_s": pct(arrivals, 0.99) if arrivals else float("nan"),
        "all_sent_s": arrivals[-1] if len(arrivals) >= cases else float("nan"),
        "pages": len(bob),
        "distinct_cases_paged": len(per_ref),
        "duplicates": len(bob) - len(per_ref),
        "repeats": sum(1 for _, repeat, _ in bob if repeat),
        "pages_for_unknown_cases": sum(n for ref, n in per_ref.items() if ref not in refs),
        "cases_not_paged": len(refs - set(per_ref)),
        "pages_to_alice_again": again_to_alice,
        "operator_messages": operator_messages,
        "tracebacks_in_log": log.read_text(errors="replace").count("Traceback"),
    }
    figures["count_ok"] = float(
        figures["pages"] == cases
        and figures["distinct_cases_paged"] == cases
        and figures["duplicates"] == 0
        and figures["pages_for_unknown_cases"] == 0
        and figures["cases_not_paged"] == 0
        and figures["pages_to_alice_again"] == 0
    )
    report(figures)
    return figures


def report(figures: dict[str, float]) -> None:
    """Print the figures and the count check."""
    cases = int(figures["cases"])
    print(
        f"restart after kill -9, {int(figures['overdue_steps'])} overdue steps "
        f"(due {figures['newest_overdue_s']:.1f}-{figures['oldest_overdue_s']:.1f} s ago); "
        f"opening the {cases} cases took {figures['setup_s']:.1f} s"
    )
    print(
        f"  from spawn: ready {figures['ready_s']:.2f} s, first page {figures['first_page_s']:.2f}"
        f" s, p50 {figures['page_p50_s']:.2f} s, p99 {figures['page_p99_s']:.2f} s, "
        f"all {cases} sent {figures['all_sent_s']:.2f} s (target <= 2 s)"
    )
    verdict = "ok" if figures["count_ok"] else "FAILED"
    print(
        f"  count check {verdict}: {int(figures['pages'])} pages to bob (expected {cases}), "
        f"{int(figures['distinct_cases_paged'])} cases, {int(figures['duplicates'])} duplicates "
        f"({int(figures['repeats'])} marked repeat), "
        f"{int(figures['pages_for_unknown_cases'])} for unknown cases, "
        f"{int(figures['cases_not_paged'])} cases not paged, "
        f"{int(figures['pages_to_alice_again'])} pages to alice again; "
        f"{int(figures['operator_messages'])} operator alerts, "
        f"{int(figures['tracebacks_in_log'])} tracebacks in the log"
    )


def cli() -> int:
    """Parse the command line, run, print; exit 1 when the count check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=None, help=f"default {FULL_CASES}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    cases = args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    figures = asyncio.run(main(cases, args.workdir))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["count_ok"] else 1


if __name__ == "__main__":
    sys.exit(cli())
