"""Chaos: kill `intake run` with SIGKILL at random moments during a stream of SOS alerts and
escalations, restart it, and count at the end what the promises say must hold.

    .venv/bin/python bench/chaos.py --kills 200 [--seed N] [--fast-leases] [--out FILE]

Everything runs against the in-process fake Telegram Bot API (tests/fakes/telegram_api.py):
each alert is "SOS" from a new fake defender (so every alert must open its own case), and the
critical ladder is short (alice, wait 2 s, bob, wait 2 s, no repeat) and never acked, so every
case must page alice once and bob once. Duplicates are allowed only as the declared
"(repeat)" copy after an unknown outcome (a kill while a page was being sent).

Counting, from the fake's record of what each chat received and from the SQLite file:

- alerts: SOS messages queued at the fake (an update not yet fetched when the process dies
  stays in the fake and must be fetched after the restart);
- cases: rows in ``cases``; the defenders' confirmations ("Your case reference is REF") tie
  each alert to its case; lost_alerts = defenders without a confirmation or whose REF has no
  case row; extra_cases = cases no defender was told about;
- pages_expected = 2 x cases; pages_sent = every "CRITICAL case REF" message alice and bob got
  (repeats included); lost_pages = (case, responder) pairs with no page at all;
  repeats = pages whose first line ends in "(repeat)"; unexpected_duplicates = plain copies
  beyond the first, repeat copies beyond one, and pages for a REF that is no case.

Canary: each defender's Telegram id and display name ("Canary<id>"), and the responders' ids,
must never appear in the SQLite file, its WAL or shared-memory file, or the run log — checked
after every kill (the WAL of a killed process is still there) and at the end
(``canary_hits``: how many of those files held one of them).

A message claimed for sending when the process dies stays "sending" until its lease (120 s in
bot/outbox.py) runs out; the final run waits for that. ``fast_leases`` instead moves those
leases into the past before the final restart, as if the process had been dead for 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.crypto import create_keyring  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeBotApi  # noqa: E402

ALICE = 111000111  # responder, step 1
BOB = 222000222  # responder, step 2
OLGA = 333000333  # operator (watchdog and platform alerts)
FIRST_DEFENDER = 900000001
LADDER_SECONDS = 4.0  # 2 s + 2 s
LEASE_SECONDS = 120.0  # bot.outbox.LEASE
KILL_DELAY = (0.2, 1.5)  # seconds after the process is ready
ALERT_GAP = (0.1, 0.6)  # seconds between two alerts while the process runs
EARLY_KILL_SHARE = 0.2  # share of kills aimed at the start-up (before "run.ready")

CONFIG = """
[database]
url = "sqlite+aiosqlite:///{dir}/intake.db"

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
steps = [{{ notify = ["alice"], wait = "2s" }}, {{ notify = ["bob"], wait = "2s" }}]
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


async def start_run(config: Path, log: Path) -> asyncio.subprocess.Process:
    """Start `intake run -c config` with its stderr appended to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "-c",
            str(config),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=fd,
            env={k: v for k, v in os.environ.items() if k != "INTAKE_MASTER_KEY"},
        )
    finally:
        os.close(fd)


def ready_count(log: Path) -> int:
    """How many times a process reported "run.ready" in ``log``."""
    try:
        return log.read_text(errors="replace").count("run.ready")
    except FileNotFoundError:
        return 0


async def wait_ready(process: asyncio.subprocess.Process, log: Path, before: int) -> bool:
    """Wait until this process logs "run.ready" (True) or exits (False); 60 s at most."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ready_count(log) > before:
            return True
        if process.returncode is not None:
            return False
        await asyncio.sleep(0.02)
    raise RuntimeError(f"intake run did not become ready in 60 s; see {log}")


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the SQLite file (no process may be writing a schema change)."""
    if not db.exists():
        return []
    connection = sqlite3.connect(db, timeout=30)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no tables yet: killed before the migration
        return []
    finally:
        connection.close()


def expire_leases(db: Path) -> int:
    """Move the lease of every row left "claimed" or "sending" into the past; return how
    many."""
    if not db.exists():
        return 0
    connection = sqlite3.connect(db, timeout=30)
    try:
        with connection:
            cursor = connection.execute(
                "UPDATE outbox SET lease_until = 0 WHERE state IN ('claimed', 'sending')"
            )
        return cursor.rowcount
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()


def page_counts(telegram: FakeBotApi) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(plain, repeat) page counts per (responder, REF) from what alice and bob received."""
    plain: Counter[tuple[str, str]] = Counter()
    repeat: Counter[tuple[str, str]] = Counter()
    for name, chat_id in (("alice", ALICE), ("bob", BOB)):
        for text in telegram.chat(chat_id).sent_texts():
            for line in text.split("\n"):
                match = PAGE.match(line)
                if match:
                    (repeat if match.group(2) else plain)[(name, match.group(1))] += 1
    return plain, repeat


def confirmations(telegram: FakeBotApi, defenders: list[int]) -> dict[int, list[str]]:
    """Every case reference each defender was told, in order (one per copy received)."""
    told: dict[int, list[str]] = {}
    for defender in defenders:
        refs = []
        for text in telegram.chat(defender).sent_texts():
            refs += CONFIRMATION.findall(text)
        told[defender] = refs
    return told


def count(telegram: FakeBotApi, defenders: list[int], db: Path) -> dict[str, Any]:
    """Compare what was sent with what arrived; see the module docstring."""
    case_refs = {str(ref) for (ref,) in query(db, "SELECT ref FROM cases")}
    told = confirmations(telegram, defenders)
    plain, repeat = page_counts(telegram)
    lost_alerts = sum(1 for refs in told.values() if not refs or refs[0] not in case_refs)
    two_cases = sum(1 for refs in told.values() if len(set(refs)) > 1)
    confirmation_copies = sum(max(0, len(refs) - 1) for refs in told.values())
    told_refs = {ref for refs in told.values() for ref in refs}
    lost_pages = 0
    unexpected = 0
    for ref in case_refs:
        for name in ("alice", "bob"):
            got_plain, got_repeat = plain[(name, ref)], repeat[(name, ref)]
            if got_plain + got_repeat == 0:
                lost_pages += 1
            unexpected += max(0, got_plain - 1) + max(0, got_repeat - 1)
    stray = sum(n for (_, ref), n in (plain + repeat).items() if ref not in case_refs)
    outbox = dict(query(db, "SELECT state, count(*) FROM outbox GROUP BY state"))
    escalations = dict(query(db, "SELECT state, count(*) FROM escalation GROUP BY state"))
    ambiguous = query(db, "SELECT count(*) FROM outbox WHERE ambiguous AND kind = 'page'")
    return {
        "alerts": len(defenders),
        "cases": len(case_refs),
        "pages_expected": 2 * len(case_refs),
        "pages_sent": sum(plain.values()) + sum(repeat.values()),
        "repeats": sum(repeat.values()),
        "unexpected_duplicates": unexpected + stray + two_cases,
        "lost_alerts": lost_alerts,
        "lost_pages": lost_pages,
        "extra_cases": len(case_refs - told_refs),
        "alerts_with_two_cases": two_cases,
        "pages_for_unknown_cases": stray,
        "confirmation_copies": confirmation_copies,
        "ambiguous_page_rows": ambiguous[0][0] if ambiguous else 0,
        "outbox_states": outbox,
        "escalation_states": escalations,
        "operator_messages": len(telegram.chat(OLGA).sent),
    }


def settled(telegram: FakeBotApi, defenders: list[int], db: Path) -> bool:
    """Every defender confirmed, every case paged at both steps, nothing left to send and no
    ladder still climbing."""
    told = confirmations(telegram, defenders)
    if not all(told.values()):
        return False
    refs = {str(ref) for (ref,) in query(db, "SELECT ref FROM cases")}
    plain, repeat = page_counts(telegram)
    if any(plain[(n, r)] + repeat[(n, r)] == 0 for r in refs for n in ("alice", "bob")):
        return False
    busy = query(
        db,
        "SELECT (SELECT count(*) FROM outbox WHERE state IN ('pending', 'claimed', 'sending'))"
        " + (SELECT count(*) FROM escalation WHERE state = 'active')"
        " + (SELECT count(*) FROM inbox WHERE processed_at IS NULL)",
    )
    return bool(busy) and busy[0][0] == 0


def canary_hits(workdir: Path, needles: list[str]) -> int:
    """How many (file, needle) pairs: a platform id or display name found in plain bytes in the
    database, its WAL and shared-memory files or the run log."""
    encoded = [needle.encode() for needle in needles]
    hits = 0
    for name in ("intake.db", "intake.db-wal", "intake.db-shm", "run.log"):
        path = workdir / name
        if path.exists():
            data = path.read_bytes()
            hits += sum(1 for needle in encoded if needle in data)
    return hits


def canaries(defenders: list[int]) -> list[str]:
    """The strings no file may hold: every platform id and display name of the run."""
    ids = [str(person) for person in (ALICE, BOB, OLGA, *defenders)]
    return ids + [f"Canary{defender}" for defender in defenders]


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGKILL ``process`` (if alive) and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


async def run_chaos(
    kills: int,
    seed: int,
    workdir: Path,
    *,
    fast_leases: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the chaos scenario in ``workdir`` and return the counts (module docstring)."""
    rng = random.Random(seed)
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "intake.db"
    log = workdir / "run.log"
    defenders: list[int] = []
    killed_before_ready = 0
    leaks = 0
    async with FakeBotApi() as telegram:
        for chat_id in (ALICE, BOB, OLGA):
            telegram.chat(chat_id, "Responder")
        create_keyring(workdir / "keys", development=False)
        config = workdir / "config.toml"
        config.write_text(
            CONFIG.format(
                dir=workdir, token=TOKEN, telegram=telegram.url, olga=OLGA, alice=ALICE, bob=BOB
            )
        )

        def alert() -> None:
            defender = FIRST_DEFENDER + len(defenders)
            defenders.append(defender)
            telegram.user_says(defender, "SOS", first_name=f"Canary{defender}")

        for kill in range(kills):
            before = ready_count(log)
            process = await start_run(config, log)
            try:
                if rng.random() < EARLY_KILL_SHARE:
                    await asyncio.sleep(rng.uniform(0.0, 1.0))  # somewhere in the start-up
                    killed_before_ready += ready_count(log) == before
                else:
                    if not await wait_ready(process, log, before):
                        raise RuntimeError(f"intake run exited early; see {log}")
                    deadline = time.monotonic() + rng.uniform(*KILL_DELAY)
                    while True:
                        gap = rng.uniform(*ALERT_GAP)
                        if time.monotonic() + gap >= deadline:
                            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                            break
                        await asyncio.sleep(gap)
                        alert()
                if process.returncode is not None:
                    raise RuntimeError(f"intake run exited with {process.returncode}; see {log}")
            finally:
                await stop(process)
            leaks += canary_hits(workdir, canaries(defenders))
            if progress and (kill + 1) % 10 == 0:
                print(
                    f"  {kill + 1}/{kills} kills, {len(defenders)} alerts, "
                    f"{time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        if not defenders:  # every kill hit the start-up: one alert so there is something
            alert()
        reclaimed = expire_leases(db) if fast_leases else 0
        # Telegram sends at most one message a second to a chat (bot/channels/telegram.py):
        # a backlog of pages to alice and bob drains at that pace.
        final_wait = LADDER_SECONDS + 30 + 1.2 * len(defenders)
        final_wait += 0 if fast_leases else LEASE_SECONDS
        before = ready_count(log)
        process = await start_run(config, log)
        try:
            if not await wait_ready(process, log, before):
                raise RuntimeError(f"intake run exited with {process.returncode}; see {log}")
            deadline = time.monotonic() + final_wait
            while not settled(telegram, defenders, db) and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            await asyncio.sleep(LADDER_SECONDS / 2)  # room for a late duplicate to show up
            process.send_signal(signal.SIGTERM)
            exit_code = await asyncio.wait_for(process.wait(), 30)
        finally:
            await stop(process)
        result = count(telegram, defenders, db)
        leaks += canary_hits(workdir, canaries(defenders))
    output = log.read_text(errors="replace")
    return {
        "kills": kills,
        "seed": seed,
        **result,
        "killed_before_ready": killed_before_ready,
        "leases_expired_by_hand": reclaimed,
        "final_exit_code": exit_code,
        "tracebacks_in_log": output.count("Traceback"),
        "canary_hits": leaks,
        "seconds": round(time.monotonic() - started, 1),
    }


def table(result: dict[str, Any]) -> str:
    """The result as a two-column text table."""
    width = max(len(key) for key in result)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in result.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--fast-leases",
        action="store_true",
        help="expire leases of rows left claimed or sending before the final run, not after 120 s",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        result = asyncio.run(
            run_chaos(args.kills, seed, workdir, fast_leases=args.fast_leases, progress=True)
        )
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    ok = (
        result["lost_alerts"] == 0
        and result["lost_pages"] == 0
        and result["unexpected_duplicates"] == 0
        and result["cases"] == result["alerts"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
