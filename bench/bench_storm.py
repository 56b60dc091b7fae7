"""1,000 simultaneous SOS through a Telegram fake that enforces Telegram's flood limits: the time
until every critical page is out, and the proof that no lower-tier message went first. Prints
the figures and the verdict; asserts nothing (the CLI exits 1 when the verdict fails).

    .venv/bin/python bench/bench_storm.py [--sos 1000] [--quick] [--workdir DIR]

The scenario: a real `intake run` subprocess (SQLite) with the real Telegram channel (PTB)
against the in-process fake Bot API started with ``FakeBotApi(rate_limit=True)``: at most one
message per second to a chat and 30 per second overall, 429 with ``parameters.retry_after``
beyond that. The responders alice and bob are on Telegram and both on the critical ladder's
first step (wait 1 hour, so the ladder does not move during the run); the operator too. N
distinct Telegram users each send "SOS", queued at the fake at the same moment ("the storm");
among them (after N/10), alice and bob each send "cases".

Tiers, as the outbox defines them (``Priority`` in bot/core/messages.py, the claim order in
``Store.outbox_claim``): a critical page (kind ``page``, priority URGENT, first line
"CRITICAL case REF") is the top tier. Everything else is lower tier: the replies to the
defenders (confirmation, next question, the Telegram warning), the replies to the responders'
commands, relays, notices (an operator alert) and non-critical pages.

"A lower-tier message went first" is judged from the fake's own record of what it accepted and
when, and from when each critical page was queued (its outbox row's ``created_at``). A critical
page is *sendable* at time t when it was queued by t, is not accepted yet, and its chat is free
(nothing accepted there in the second before t: Telegram allows one message per second per
chat, so while a responder's chat is busy, messages to other chats take nothing from their
pages). The sender hands messages over in claimed batches of ``CLAIM_BATCH`` (bot/outbox.py)
and a claim is not recalled, so up to that many lower-tier messages claimed just before a page
became sendable may still go out ahead of it; every further lower-tier message accepted while a
critical page was sendable is counted as having gone first (``lower_before_critical``; 0 is the
pass). The same count without that allowance and the lower-tier messages taken to a responder's
own chat while a critical page for it was queued are printed too. Counting in messages rather
than seconds keeps the verdict independent of how loaded the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos import query, start_run, stop, wait_ready  # noqa: E402
from db.crypto import create_keyring  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeBotApi  # noqa: E402

ALICE = 111000111
BOB = 222000222
OLGA = 333000333  # operator
RESPONDERS = {ALICE: "alice", BOB: "bob"}
FIRST_DEFENDER = 500000001
QUICK_SOS = 40
CLAIM_BATCH = 20  # OutboxSender's batch (bot/outbox.py)
FULL_SOS = 1000

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
steps = [{{ notify = ["alice", "bob"], wait = "1h" }}]
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


@dataclass(frozen=True)
class Accepted:
    """One message the fake accepted: when, to which chat, and whether a critical page."""

    at: float
    chat: int
    critical: bool
    ref: str | None = None


def accepted(telegram: FakeBotApi) -> list[Accepted]:
    """Every message the fake accepted, in the order it accepted them; a bundle of critical
    pages counts once per page (all accepted at the same moment)."""
    events = []
    for chat in telegram.chats.values():
        for sent in chat.sent:
            refs = page_refs(sent.text) if chat.chat_id in RESPONDERS else []
            if not refs:
                events.append(Accepted(sent.accepted_at, chat.chat_id, False, None))
            for ref in refs:
                events.append(Accepted(sent.accepted_at, chat.chat_id, True, ref))
    return sorted(events, key=lambda e: e.at)


def page_refs(text: str) -> list[str]:
    """The case references of the critical pages in one message (a bundle lists several)."""
    return [match[1] for line in text.split("\n") if (match := PAGE.match(line))]


def critical_count(telegram: FakeBotApi) -> int:
    """How many critical pages the responders got so far."""
    return sum(
        len(page_refs(sent.text)) for chat_id in RESPONDERS for sent in telegram.chat(chat_id).sent
    )


def confirmed_at(telegram: FakeBotApi, defenders: list[int]) -> list[float]:
    """When each defender who was told their case reference was told it."""
    times = []
    for defender in defenders:
        for sent in telegram.chat(defender).sent:
            if CONFIRMATION.search(sent.text):
                times.append(sent.accepted_at)
                break
    return times


def inversions(
    events: list[Accepted], queued: dict[tuple[int, str], float], interval: float, allowance: int
) -> tuple[int, list[str]]:
    """Count the lower-tier messages accepted while a critical page was sendable, beyond the
    first ``allowance`` since it became so (module docstring); return the count and a few
    examples."""
    chat_times: dict[int, list[float]] = {}
    for event in events:
        chat_times.setdefault(event.chat, []).append(event.at)
    lower_times = [e.at for e in events if not e.critical]
    # Per responder chat: its critical pages as (queued, accepted), in queue order.
    pages = {
        chat: sorted(
            (queued[(chat, e.ref)], e.at)
            for e in events
            if e.critical and e.chat == chat and e.ref is not None and (chat, e.ref) in queued
        )
        for chat in RESPONDERS
    }
    first_unsent = dict.fromkeys(RESPONDERS, 0)
    count = 0
    examples: list[str] = []
    for event in events:
        if event.critical:
            continue
        t = event.at
        for chat, queue in pages.items():
            i = first_unsent[chat]
            while i < len(queue) and queue[i][1] <= t:  # accepted by now
                i += 1
            first_unsent[chat] = i
            # The earliest-queued page still unsent (pages sent out of order are skipped).
            oldest = next((q for q, at in queue[i:] if at > t), None)
            if oldest is None or oldest > t:
                continue
            times = chat_times[chat]
            before = bisect.bisect_left(times, t)
            free_since = times[before - 1] + interval if before else float("-inf")
            since = max(oldest, free_since)
            if since > t:
                continue  # the chat was busy: the page could not have gone anyway
            ahead = bisect.bisect_right(lower_times, t) - bisect.bisect_right(lower_times, since)
            if ahead <= allowance:
                continue
            count += 1
            if len(examples) < 5:
                whom = RESPONDERS.get(event.chat, "a defender")
                examples.append(
                    f"a lower-tier message to {whom} at +{t - events[0].at:.3f} s, the "
                    f"{ahead}th since a critical page to {RESPONDERS[chat]} became sendable "
                    f"{t - since:.3f} s earlier"
                )
            break
    return count, examples


def max_per_window(times: list[float], window: float = 1.0) -> int:
    """The most accepted messages in any ``window`` seconds (the fake's limit is 30)."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main(sos: int = FULL_SOS, workdir: Path | None = None) -> dict[str, float]:
    """Run the storm (module docstring) with ``sos`` defenders; print and return the figures
    (seconds from the storm, counts, and ``lower_before_critical``: 0 is the pass)."""
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        directory = workdir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        return await _run(sos, directory)


async def _run(sos: int, directory: Path) -> dict[str, float]:
    db = directory / "intake.db"
    log = directory / "run.log"
    async with FakeBotApi(rate_limit=True) as telegram:
        for chat_id in (ALICE, BOB, OLGA):
            telegram.chat(chat_id, "Responder")
        create_keyring(directory / "keys", development=False)
        config = directory / "config.toml"
        config.write_text(
            CONFIG.format(
                dir=directory, token=TOKEN, telegram=telegram.url, olga=OLGA, alice=ALICE, bob=BOB
            )
        )
        process = await start_run(config, log)
        try:
            if not await wait_ready(process, log, 0):
                raise RuntimeError(f"intake run exited early; see {log}")
            defenders = [FIRST_DEFENDER + i for i in range(sos)]
            for index, defender in enumerate(defenders):
                telegram.user_says(defender, "SOS")
                if index == sos // 10:
                    telegram.user_says(ALICE, "cases", first_name="Alice")
                    telegram.user_says(BOB, "cases", first_name="Bob")
            storm = time.time()
            deadline = time.monotonic() + 120 + 3.0 * sos
            expected = len(RESPONDERS) * sos
            while critical_count(telegram) < expected or len(
                confirmed_at(telegram, defenders)
            ) < len(defenders):
                if process.returncode is not None:
                    raise RuntimeError(f"intake run exited with {process.returncode}; see {log}")
                if time.monotonic() > deadline:
                    print(f"timed out; see {log}", file=sys.stderr)
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.5)  # room for a late duplicate or a last reply
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
        finally:
            await stop(process)
        events = accepted(telegram)
        confirmations = confirmed_at(telegram, defenders)
        rate_limited = telegram.rate_limited
    names = {name: chat for chat, name in RESPONDERS.items()}
    queued = {
        (names[str(responder)], str(ref)): int(created) / 1000
        for ref, responder, created in query(
            db,
            "SELECT cases.ref, outbox.responder, outbox.created_at FROM outbox"
            " JOIN cases ON cases.id = outbox.case_id"
            " WHERE outbox.kind = 'page' AND cases.tier = 'critical'",
        )
        if str(responder) in names
    }
    attempts = query(
        db,
        "SELECT count(*), sum(attempts) FROM outbox"
        " JOIN cases ON cases.id = outbox.case_id"
        " WHERE outbox.kind = 'page' AND cases.tier = 'critical'",
    )
    critical = [e for e in events if e.critical]
    lower = [e for e in events if not e.critical]
    per_page = Counter((e.chat, e.ref) for e in critical)
    counted, examples = inversions(events, queued, 1.0, CLAIM_BATCH)
    strict, _ = inversions(events, queued, 1.0, 0)
    same_chat_first = sum(
        1
        for e in lower
        if e.chat in RESPONDERS
        and any(
            c.chat == e.chat and c.at > e.at and queued.get((c.chat, c.ref or ""), 1e18) < e.at
            for c in critical
        )
    )
    first_per_responder = [
        min((e.at for e in critical if e.chat == chat), default=float("nan")) - storm
        for chat in RESPONDERS
    ]
    figures: dict[str, float] = {
        "sos": sos,
        "critical_pages": len(critical),
        "critical_pages_expected": len(RESPONDERS) * sos,
        "critical_duplicates": len(critical) - len(per_page),
        "critical_first_s": min(first_per_responder),
        "critical_all_out_s": (max(e.at for e in critical) - storm) if critical else float("nan"),
        "critical_per_s_per_responder": (
            len(critical) / len(RESPONDERS) / max(e.at - storm for e in critical)
            if critical
            else float("nan")
        ),
        "critical_attempts_per_page": (
            float(attempts[0][1]) / attempts[0][0] if attempts and attempts[0][0] else float("nan")
        ),
        "defenders_confirmed": len(confirmations),
        "confirmation_p50_s": pct([t - storm for t in confirmations], 0.5),
        "confirmation_p99_s": pct([t - storm for t in confirmations], 0.99),
        "confirmation_all_s": (max(confirmations) - storm) if confirmations else float("nan"),
        "lower_tier_messages": len(lower),
        "accepted_max_per_1s": max_per_window([e.at for e in events]),
        "fake_429s": rate_limited,
        "claim_batch": CLAIM_BATCH,
        "lower_before_critical": counted,
        "lower_before_critical_no_allowance": strict,
        "lower_to_a_responder_before_its_queued_critical": same_chat_first,
        "tracebacks_in_log": log.read_text(errors="replace").count("Traceback"),
    }
    report(figures, examples)
    return figures


def report(figures: dict[str, float], examples: list[str]) -> None:
    """Print the figures and the verdict."""
    print(
        f"storm of {int(figures['sos'])} SOS through a Telegram fake enforcing 1 msg/s per chat "
        f"and 30 msg/s overall ({int(figures['fake_429s'])} answered 429; at most "
        f"{int(figures['accepted_max_per_1s'])} accepted in any second)"
    )
    print(
        f"  critical pages: {int(figures['critical_pages'])}/"
        f"{int(figures['critical_pages_expected'])} out, first after "
        f"{figures['critical_first_s']:.2f} s, all after {figures['critical_all_out_s']:.1f} s "
        f"({figures['critical_per_s_per_responder']:.2f}/s per responder; "
        f"{figures['critical_attempts_per_page']:.1f} claims per page), "
        f"{int(figures['critical_duplicates'])} duplicates"
    )
    print(
        f"  defenders told their reference: {int(figures['defenders_confirmed'])}/"
        f"{int(figures['sos'])}, p50 {figures['confirmation_p50_s']:.1f} s, p99 "
        f"{figures['confirmation_p99_s']:.1f} s, all {figures['confirmation_all_s']:.1f} s; "
        f"{int(figures['lower_tier_messages'])} lower-tier messages in all"
    )
    verdict = "ok" if figures["lower_before_critical"] == 0 else "FAILED"
    print(
        f"  verdict {verdict}: lower-tier before critical: {int(figures['lower_before_critical'])}"
        f" (beyond one claimed batch of {int(figures['claim_batch'])}; counting that batch too: "
        f"{int(figures['lower_before_critical_no_allowance'])}); lower-tier to a responder "
        f"ahead of a critical page for it queued before: "
        f"{int(figures['lower_to_a_responder_before_its_queued_critical'])}"
    )
    for example in examples:
        print(f"    e.g. {example}")


def cli() -> int:
    """Parse the command line, run, print; exit 1 when the verdict failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sos", type=int, default=None, help=f"default {FULL_SOS}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SOS} SOS")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    sos = args.sos or (QUICK_SOS if args.quick else FULL_SOS)
    figures = asyncio.run(main(sos, args.workdir))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = (
        figures["lower_before_critical"] == 0
        and figures["critical_pages"] == figures["critical_pages_expected"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(cli())
