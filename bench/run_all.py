"""Run every benchmark once, print one table (figure | value | target | status) and write the
same figures, with the machine, as JSON.

    .venv/bin/python bench/run_all.py [--quick] [--out bench/results/latest.json] [--no-ptb]
                                      [--pg-url URL]

Targets are those of issue 7; "n/a" where a figure is not measured here. ``--quick`` uses
small sizes (a few minutes); the full run takes longer (the escalation benchmark runs in real
time: 1,000 and 10,000 open cases, dues spread over 30 s each; the tick benchmark builds
100,000 open cases). The two-instance figure needs PostgreSQL: ``--pg-url``, else
``INTAKE_TEST_PG_URL``, else a throw-away server started with ``.ci/postgres.sh`` (Debian's
``postgresql`` binaries) and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    bench_escalation,
    bench_instances,
    bench_intake,
    bench_paths,
    bench_restart,
    bench_scale,
    bench_signal,
    bench_storm,
    bench_telegram,
)

ROOT = Path(__file__).resolve().parents[1]
BENCH_PG_PORT = "54339"

SIZES = {
    "quick": {
        "paths_defenders": 50,
        "telegram_messages": 200,
        "signal_messages": 200,
        "intake_users": 10,
        "escalation": [(1_000, 100, 20, 2.0, 3.0)],  # open, due, sos, lead s, spread s
        "conversations": bench_scale.SIZES["quick"].conversations,
        "open_cases": bench_scale.SIZES["quick"].open_cases,
        "overdue": 100,
        "storm": 40,
    },
    "full": {
        "paths_defenders": 200,
        "telegram_messages": 1000,
        "signal_messages": 1000,
        "intake_users": 40,
        "escalation": [(1_000, 1_000, 100, 10.0, 30.0), (10_000, 1_000, 100, 10.0, 30.0)],
        "conversations": bench_scale.SIZES["full"].conversations,
        "open_cases": bench_scale.SIZES["full"].open_cases,
        "overdue": 500,
        "storm": 1000,
    },
}


def run(what: str, coroutine: Any, log: list[str]) -> Any:
    """Run one benchmark, keeping its own printout for the JSON (and out of the table)."""
    started = time.perf_counter()
    buffer = io.StringIO()
    print(f"running {what} ...", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(buffer):
        result = asyncio.run(coroutine)
    log.append(f"## {what} ({time.perf_counter() - started:.1f}s)\n{buffer.getvalue()}")
    return result


@contextlib.contextmanager
def postgresql(url: str | None) -> Iterator[str | None]:
    """Yield a PostgreSQL URL: ``url``, or a throw-away server's (None if none can start)."""
    if url:
        yield url
        return
    directory = tempfile.mkdtemp(prefix="intake-bench-pg-")
    script = str(ROOT / ".ci" / "postgres.sh")
    env = {**os.environ, "INTAKE_TEST_PG_PORT": BENCH_PG_PORT}
    started = subprocess.run(
        [script, "start", directory], capture_output=True, text=True, env=env, check=False
    )
    if started.returncode != 0:
        print(f"no PostgreSQL for the two-instance figure: {started.stderr.strip()[-200:]}")
        shutil.rmtree(directory, ignore_errors=True)
        yield None
        return
    try:
        yield started.stdout.strip().split("=", 1)[1]
    finally:
        subprocess.run([script, "stop", directory], env=env, check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def status(value: float | None, limit: float | None, higher_is_better: bool) -> str:
    """ok / MISS / n/a."""
    if value is None or limit is None:
        return "n/a"
    good = value >= limit if higher_is_better else value <= limit
    return "ok" if good else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 minute)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--no-ptb", action="store_true", help="skip the PTB baseline")
    parser.add_argument("--pg-url", help="PostgreSQL server for the two-instance figure")
    arguments = parser.parse_args()
    sizes = SIZES["quick" if arguments.quick else "full"]
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)  # the benchmarks' app logs are noise here
    log: list[str] = []
    started = time.perf_counter()

    paths = run("bench_paths", bench_paths.main(sizes["paths_defenders"], None), log)
    telegram = run("bench_telegram", bench_telegram.main(sizes["telegram_messages"], 16), log)
    logging.getLogger().setLevel(logging.CRITICAL)  # bench_telegram sets WARNING
    intake = run(
        "bench_intake",
        bench_intake.main(sizes["intake_users"], 5, 4, not arguments.no_ptb),
        log,
    )
    logging.getLogger().setLevel(logging.CRITICAL)
    signal = run("bench_signal", bench_signal.main(sizes["signal_messages"]), log)
    escalation = {}
    for open_cases, due, sos, lead, spread in sizes["escalation"]:
        escalation[open_cases] = run(
            f"bench_escalation --open {open_cases}",
            bench_escalation.main(open_cases, due, None, sos, lead, spread),
            log,
        )
    scale = run("bench_scale", bench_scale.main(quick=arguments.quick), log)
    restart = run("bench_restart", bench_restart.main(sizes["overdue"]), log)
    storm = run("bench_storm", bench_storm.main(sizes["storm"]), log)
    with postgresql(arguments.pg_url or os.environ.get("INTAKE_TEST_PG_URL")) as url:
        instances = (
            run("bench_instances", bench_instances.measure(url, arguments.quick), log)
            if url
            else {}
        )
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    ours = intake["ours"]
    rows: list[tuple[str, float | None, str, float | None, bool, str]] = []

    def row(
        name: str,
        value: float | None,
        unit: str,
        limit: float | None = None,
        higher: bool = False,
        target: str = "",
    ) -> None:
        if not target and limit is not None:
            target = f"{'≥' if higher else '≤'}{limit:g} {unit}"
        rows.append((name, value, unit, limit, higher, target or "—"))

    row("intake steps/s (SQLite, app only)", paths["intake_steps_per_s"], "/s", 300, True)
    row("intake steps/s via Telegram (ours)", ours["steps_per_s"], "/s", 300, True)
    row("intake step p50 via Telegram (ours)", ours["step_p50_ms"], "ms")
    row("intake step p99 via Telegram (ours)", ours["step_p99_ms"], "ms")
    if "ptb" in intake:
        ptb = intake["ptb"]
        row("intake steps/s via Telegram (PTB baseline)", ptb["steps_per_s"], "/s")
        row("intake step p50 via Telegram (PTB baseline)", ptb["step_p50_ms"], "ms")
        row("intake step p99 via Telegram (PTB baseline)", ptb["step_p99_ms"], "ms")
        row("steps/s ours/PTB", intake["ratio"]["steps_per_s"], "x")
        row("step p50 ours/PTB", intake["ratio"]["step_p50"], "x")
        row("step p99 ours/PTB", intake["ratio"]["step_p99"], "x")
    row("Telegram send added p50 (vs bare httpx)", telegram["send_added_p50_ms"], "ms", 5)
    row("Telegram send added p99 (vs bare httpx)", telegram["send_added_p99_ms"], "ms", 25)
    row("Telegram receive p50 (poll → handle)", telegram["receive_p50_ms"], "ms")
    row("Telegram receive p99 (poll → handle)", telegram["receive_p99_ms"], "ms")
    for open_cases, figures in escalation.items():
        suffix = f" ({open_cases:,} open)"
        row("SOS → first page p50" + suffix, figures["first_page_p50_ms"], "ms")
        row("SOS → first page p99" + suffix, figures["first_page_p99_ms"], "ms", 100)
        row("escalation lateness p50" + suffix, figures["lateness_p50_ms"], "ms")
        row("escalation lateness p99" + suffix, figures["lateness_p99_ms"], "ms", 1000)
    row("tick cost per due escalation", paths["tick_ms_per_escalation"], "ms")
    row("SOS path p99 (app only)", paths["sos_p99_ms"], "ms")
    row("Signal send p50", signal["send_p50_ms"], "ms")
    row("Signal send p99", signal["send_p99_ms"], "ms")
    row("Signal send msg/s", signal["send_per_s"], "/s")
    row("Signal receive (websocket) p99", signal["receive_ws_p99_ms"], "ms")
    conversations = sizes["conversations"]
    row(
        f"memory, {conversations:,} conversations (RSS)",
        scale.get("rss_10k_conversations_mb"),
        "MB",
        150,
    )
    row("memory per conversation", scale.get("rss_per_conversation_kb"), "KB")
    small, large = sizes["open_cases"]
    row(f"tick p50, nothing due, {small:,} open", scale.get("tick_idle_p50_ms_1k"), "ms")
    row(f"tick p50, nothing due, {large:,} open", scale.get("tick_idle_p50_ms_100k"), "ms")
    row(f"tick p50, 100 due, {small:,} open", scale.get("tick_due_p50_ms_1k"), "ms")
    row(f"tick p50, 100 due, {large:,} open", scale.get("tick_due_p50_ms_100k"), "ms")
    row(
        f"tick cost {large:,}/{small:,} open (100 due)",
        scale.get("tick_ratio_100k_over_1k"),
        "x",
        1.5,
        target="flat (≤1.5x)",
    )
    row(f"watchdog {large:,}/{small:,} open", scale.get("watchdog_ratio_100k_over_1k"), "x")
    overdue, storm_size = sizes["overdue"], sizes["storm"]
    row(f"kill -9, restart: {overdue} overdue steps all sent", restart.get("all_sent_s"), "s", 2)
    row("kill -9, restart: first overdue step sent", restart.get("first_page_s"), "s")
    row("kill -9, restart: overdue pages counted right", restart.get("count_ok"), "", 1, True)
    row(
        f"{storm_size} SOS at 30 msg/s: all critical pages out",
        storm.get("critical_all_out_s"),
        "s",
    )
    row(
        f"{storm_size} SOS: lower tier sent before critical",
        storm.get("lower_before_critical"),
        "",
        0,
    )
    row(f"{storm_size} SOS: every defender told (p99)", storm.get("confirmation_p99_s"), "s")
    if instances:
        row("webhook steps/s, 1 instance (PostgreSQL)", instances["one_steps_per_s"], "/s")
        row("webhook steps/s, 2 instances (PostgreSQL)", instances["two_steps_per_s"], "/s")
        row("2 instances / 1", instances["ratio_steps_per_s"], "x", 1.6, True)
        row("2 instances / 1, as the CPU allows", instances["ratio_cpu_bound"], "x")
    else:
        row("2 instances / 1", None, "x", 1.6, True)
    row("(info) peak RSS of this whole run", peak_rss_mb, "MB")

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}} | {'value':>12} | {'target':<10} | status")
    print(f"{'-' * width}-+-{'-' * 12}-+-{'-' * 10}-+-------")
    table = []
    for name, value, unit, limit, higher, target in rows:
        shown = "n/a" if value is None else f"{value:.2f} {unit}"
        verdict = status(value, limit, higher)
        print(f"{name:<{width}} | {shown:>12} | {target:<10} | {verdict}")
        table.append(
            {"figure": name, "value": value, "unit": unit, "target": target, "status": verdict}
        )
    elapsed = time.perf_counter() - started
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if arguments.quick else "full",
        "elapsed_s": elapsed,
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "cpu_count": os.cpu_count(),
        },
        "sizes": sizes,
        "table": table,
        "raw": {
            "paths": paths,
            "telegram": telegram,
            "intake": intake,
            "signal": signal,
            "escalation": {str(k): v for k, v in escalation.items()},
            "scale": scale,
            "restart": restart,
            "storm": storm,
            "instances": instances,
            "peak_rss_mb": peak_rss_mb,
        },
        "printout": log,
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    machine = report["machine"]
    print(
        f"\n{machine['platform']}, python {machine['python']}, {machine['cpu_count']} CPUs; "
        f"{elapsed:.0f}s; figures written to {arguments.out}"
    )


if __name__ == "__main__":
    main()
