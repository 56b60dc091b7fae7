"""Intake steps end to end through Telegram: a fake user's answer queued at the fake Bot API →
long poll → our app (inbox, flow, outbox, SQLite) → sendMessage back at the fake. Prints
steps/s and per-step latency (answer queued → reply stored by the fake); asserts nothing.

    .venv/bin/python bench/bench_intake.py [--users 20] [--steps 5] [--concurrency 4] [--ptb]

Each user sends a first message, then ``--steps`` answers ("2", a choice); only the answers
are timed. ``--concurrency`` users talk at once (each waits for its reply before answering
again). With ``--ptb`` the same run also drives bench/baseline_ptb.py (python-telegram-bot
``ConversationHandler`` + ``PicklePersistence``) and prints ours/baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import open_app
from bot.channels.telegram import TelegramChannel
from bot.config import load_config
from bot.core.clock import SystemClock
from db.crypto import ensure_development_keyring
from tests.fakes.telegram_api import TOKEN, FakeBotApi
from tests.harness import TEST_CONFIG, write_config

FIRST_USER = 500_000


class ReplyWatch(FakeBotApi):
    """The fake Bot API, also waking whoever waits for a chat's next bot message."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: dict[int, asyncio.Event] = {}

    async def _send_message(self, params: dict[str, Any]) -> Any:
        result = await super()._send_message(params)
        event = self.waiters.get(int(params["chat_id"]))
        if event is not None:
            event.set()
        return result


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of samples, in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def converse(
    fake: ReplyWatch, users: int, steps: int, concurrency: int, answer: str = "2"
) -> dict[str, float]:
    """Drive ``users`` conversations (``concurrency`` at once) and time each answer."""
    samples: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(users):
        queue.put_nowait(FIRST_USER + index)

    async def say(user: int, text: str) -> float:
        event = fake.waiters.setdefault(user, asyncio.Event())
        event.clear()
        started = time.perf_counter()
        fake.user_says(user, text)
        await asyncio.wait_for(event.wait(), 30)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.02)  # let a multi-message reply finish before the next answer
        return elapsed

    async def worker() -> None:
        while not queue.empty():
            user = queue.get_nowait()
            await say(user, "hello")
            for _ in range(steps):
                samples.append(await say(user, answer))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    # steps/s from the timed answers only (the 20 ms settle pause is not ours to count)
    busy = sum(samples) / concurrency
    return {
        "steps": len(samples),
        "steps_per_s": len(samples) / busy,
        "step_p50_ms": pct(samples, 0.5),
        "step_p99_ms": pct(samples, 0.99),
        "wall_s": wall,
    }


async def ours(users: int, steps: int, concurrency: int) -> dict[str, float]:
    """Our app (SQLite) behind our TelegramChannel, against the fake."""
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), TEST_CONFIG, None))
        keyring, _ = ensure_development_keyring(config.keys.dir, {})
        async with ReplyWatch() as fake:
            channel = TelegramChannel(
                TOKEN, base_url=fake.base_url, poll_timeout=10, per_chat_interval=0, overall_rate=0
            )
            app = await open_app(config, keyring, SystemClock(), {"telegram": channel})
            try:
                app.start_background()
                await channel.start(app.receive)
                figures = await converse(fake, users, steps, concurrency)
                sample = fake.chats[FIRST_USER].transcript()
                figures["transcript_lines"] = len(sample)
            finally:
                await channel.stop()
                await app.stop_background()
                await app.close()
    return figures


Runner = Callable[[int, int, int], Awaitable[dict[str, float]]]


async def main(users: int, steps: int, concurrency: int, ptb: bool) -> dict[str, Any]:
    """Run ours (and the PTB baseline), print and return the figures."""
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"ours": await ours(users, steps, concurrency)}
    runners: dict[str, Runner] = {}
    if ptb:
        from bench.baseline_ptb import baseline

        runners["ptb"] = baseline
    for name, runner in runners.items():
        result[name] = await runner(users, steps, concurrency)
    for name, figures in result.items():
        print(
            f"intake via telegram, {name:<5} n={figures['steps']:<5.0f} "
            f"{figures['steps_per_s']:7.0f} steps/s  p50={figures['step_p50_ms']:7.2f}ms "
            f"p99={figures['step_p99_ms']:7.2f}ms"
        )
    if "ptb" in result:
        a, b = result["ours"], result["ptb"]
        result["ratio"] = {
            "steps_per_s": a["steps_per_s"] / b["steps_per_s"],
            "step_p50": a["step_p50_ms"] / b["step_p50_ms"],
            "step_p99": a["step_p99_ms"] / b["step_p99_ms"],
            "added_p50_ms": a["step_p50_ms"] - b["step_p50_ms"],
            "added_p99_ms": a["step_p99_ms"] - b["step_p99_ms"],
        }
        ratio = result["ratio"]
        print(
            f"ours/ptb: steps/s x{ratio['steps_per_s']:.2f}, p50 x{ratio['step_p50']:.2f} "
            f"({ratio['added_p50_ms']:+.2f}ms), p99 x{ratio['step_p99']:.2f} "
            f"({ratio['added_p99_ms']:+.2f}ms)"
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ptb", action="store_true", help="also run the PTB baseline")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.users, arguments.steps, arguments.concurrency, arguments.ptb))
