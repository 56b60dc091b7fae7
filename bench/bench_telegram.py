"""Throughput and added latency of the Telegram channel against the fake Bot API (local
loopback, one process). Prints numbers; asserts nothing.

    .venv/bin/python bench/bench_telegram.py [--messages 1000] [--concurrency 16]

Measured:
- send, sequential: ``TelegramChannel.send`` per message (rate limiter disabled, so this is
  the adapter + PTB + httpx + the fake), against a bare httpx POST of the same sendMessage
  (the baseline); "added" is the difference of the percentiles.
- send, concurrent: ``--concurrency`` senders to different chats, messages/s.
- receive, backlog: N updates queued before start; polling until all are handed to a no-op
  ``handle``, messages/s.
- receive, one at a time: an update is queued while the channel long-polls; latency until
  ``handle`` sees it (the fake wakes the long poll immediately, so this is the loop's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bot.channels.telegram import TelegramChannel
from bot.core.messages import Address, InboundMessage, OutboundMessage
from tests.fakes.telegram_api import TOKEN, FakeBotApi


def pct(samples: list[float], q: float) -> float:
    """Return the q-quantile of ``samples`` in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def line(name: str, samples: list[float], total: float, baseline: list[float] | None) -> None:
    """Print one result line."""
    rate = len(samples) / total
    text = (
        f"{name:<28} n={len(samples):<5} {rate:8.0f} msg/s  "
        f"p50={pct(samples, 0.5):6.2f}ms p99={pct(samples, 0.99):6.2f}ms"
    )
    if baseline:
        text += (
            f"  added p50={pct(samples, 0.5) - pct(baseline, 0.5):+6.2f}ms "
            f"p99={pct(samples, 0.99) - pct(baseline, 0.99):+6.2f}ms"
        )
    print(text)


def channel_for(fake: FakeBotApi, **options: float) -> TelegramChannel:
    """A channel against the fake, rate limiter off (measures the adapter itself)."""
    return TelegramChannel(
        TOKEN,
        base_url=fake.base_url,
        poll_timeout=10,
        per_chat_interval=options.get("per_chat_interval", 0),
        overall_rate=options.get("overall_rate", 0),
    )


async def noop(message: InboundMessage) -> None:
    """A handle that does nothing."""


async def bench_send(messages: int, concurrency: int) -> dict[str, float]:
    """Sequential and concurrent sends, with a bare-httpx baseline; return the figures."""
    async with FakeBotApi() as fake:
        users = [100_000 + i for i in range(max(concurrency, 1))]
        for user in users:
            fake.chat(user)
        url = f"{fake.base_url}{TOKEN}/sendMessage"
        baseline: list[float] = []
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)  # as PTB
        async with httpx.AsyncClient(limits=limits) as client:
            for i in range(messages):
                started = time.perf_counter()
                response = await client.post(
                    url, data={"chat_id": str(users[0]), "text": f"baseline {i}"}
                )
                json.loads(response.content)
                baseline.append(time.perf_counter() - started)
            line("send baseline (bare httpx)", baseline, sum(baseline), None)

            concurrent_baseline: list[float] = []

            async def bare(user: int, count: int) -> None:
                for i in range(count):
                    started = time.perf_counter()
                    response = await client.post(url, data={"chat_id": str(user), "text": str(i)})
                    json.loads(response.content)
                    concurrent_baseline.append(time.perf_counter() - started)

            started = time.perf_counter()
            per_worker = max(messages // concurrency, 1)
            await asyncio.gather(*(bare(user, per_worker) for user in users))
            line(
                f"send baseline x{concurrency}",
                concurrent_baseline,
                time.perf_counter() - started,
                None,
            )

        channel = channel_for(fake)
        await channel.start(noop)
        try:
            samples: list[float] = []
            for i in range(messages):
                message = OutboundMessage(
                    Address("telegram", str(users[0])), f"message {i}", outbox_id=str(i)
                )
                started = time.perf_counter()
                await channel.send(message)
                samples.append(time.perf_counter() - started)
            line("send sequential (channel)", samples, sum(samples), baseline)
            figures = {
                "send_baseline_p50_ms": pct(baseline, 0.5),
                "send_baseline_p99_ms": pct(baseline, 0.99),
                "send_p50_ms": pct(samples, 0.5),
                "send_p99_ms": pct(samples, 0.99),
                "send_added_p50_ms": pct(samples, 0.5) - pct(baseline, 0.5),
                "send_added_p99_ms": pct(samples, 0.99) - pct(baseline, 0.99),
                "send_per_s": len(samples) / sum(samples),
            }

            latencies: list[float] = []

            async def worker(user: int, count: int) -> None:
                for i in range(count):
                    message = OutboundMessage(
                        Address("telegram", str(user)), f"message {i}", outbox_id=str(i)
                    )
                    started = time.perf_counter()
                    await channel.send(message)
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker(user, per_worker) for user in users))
            elapsed = time.perf_counter() - started
            line(f"send concurrent x{concurrency}", latencies, elapsed, concurrent_baseline)
            figures["send_concurrent_per_s"] = len(latencies) / elapsed
        finally:
            await channel.stop()

        limited = channel_for(fake, per_chat_interval=1.0, overall_rate=30)
        await limited.start(noop)
        try:
            refused = 0
            started = time.perf_counter()
            for i in range(messages):
                message = OutboundMessage(
                    Address("telegram", str(users[0])), f"limited {i}", outbox_id=str(i)
                )
                try:
                    await limited.send(message)
                except Exception:
                    refused += 1
            elapsed = time.perf_counter() - started
            print(
                f"{'send, limiter on, one chat':<28} n={messages:<5} {refused} answered "
                f"DeliveryRetry in {elapsed * 1000:.1f}ms (no sleeping)"
            )
        finally:
            await limited.stop()
        return figures


async def bench_receive(messages: int) -> dict[str, float]:
    """Backlog drain and one-at-a-time latency through the polling loop; return the figures."""
    async with FakeBotApi() as fake:
        for i in range(messages):
            fake.user_says(200_000 + i % 50, f"backlog {i}")
        done = asyncio.Event()
        count = 0

        async def counting(message: InboundMessage) -> None:
            nonlocal count
            count += 1
            if count == messages:
                done.set()

        channel = channel_for(fake)
        started = time.perf_counter()
        await channel.start(counting)
        await done.wait()
        elapsed = time.perf_counter() - started
        await channel.stop()
        print(
            f"{'receive backlog (polling)':<28} n={messages:<5} "
            f"{messages / elapsed:8.0f} msg/s  (start included, batches of 100)"
        )

        seen = asyncio.Event()

        async def signal(message: InboundMessage) -> None:
            seen.set()

        channel = channel_for(fake)
        await channel.start(signal)
        await asyncio.sleep(0.05)
        latencies: list[float] = []
        rounds = min(messages, 300)
        for i in range(rounds):
            seen.clear()
            started = time.perf_counter()
            fake.user_says(300_000, f"live {i}")
            await seen.wait()
            latencies.append(time.perf_counter() - started)
        await channel.stop()
        line("receive one at a time", latencies, sum(latencies), None)
        return {
            "receive_backlog_per_s": messages / elapsed,
            "receive_p50_ms": pct(latencies, 0.5),
            "receive_p99_ms": pct(latencies, 0.99),
        }


async def main(messages: int, concurrency: int) -> dict[str, float]:
    """Run both benchmarks; return their figures (ms, messages/s)."""
    logging.basicConfig(level=logging.WARNING)
    figures = await bench_send(messages, concurrency)
    figures.update(await bench_receive(messages))
    print(f"(one run, python {sys.version.split()[0]}, loopback; rerun to compare)")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.concurrency))
