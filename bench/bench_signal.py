"""Throughput and latency of the Signal channel against the fake signal-cli-rest-api (one
process, loopback). Prints messages/s and per-message percentiles; asserts nothing.

    .venv/bin/python bench/bench_signal.py [--messages 1000]

Measured:
- send, sequential: one ``SignalChannel.send`` at a time (one POST /v2/send each);
- send, 8 concurrent: eight senders sharing one channel;
- send to defenders: first message per defender also sets the disappearing timer (PUT);
- receive, poll: N queued messages drained by GET /v1/receive (10 per GET) into a no-op
  handle (queued up front, so only the mean time per GET is shown);
- receive, websocket: N messages pushed over the json-rpc websocket into a no-op handle;
  latency is from the fake's push to the handle call.

The fake answers at once, so this measures our client's overhead, not signal-cli (a real
normal-mode call starts a JVM and takes seconds; native mode takes a fraction of one).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.channels.signal import SignalChannel
from bot.core.messages import Address, InboundMessage, OutboundMessage
from tests.fakes.signal_api import ACCOUNT, FakeSignalApi

UUID = "6e4a1c2b-3f0d-4b8e-9a51-{:012x}"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Return p50 and p99 in milliseconds."""
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return pick(0.5), pick(0.99)


def report(name: str, count: int, elapsed: float, samples: list[float]) -> dict[str, float]:
    """Print one line: count, messages/s, and p50/p99 of the samples (if any); return them."""
    line = f"{name:<38} n={count:<6} {count / elapsed:8.0f} msg/s"
    figures = {"per_s": count / elapsed}
    if samples:
        p50, p99 = percentiles(samples)
        line += f"   p50={p50:7.2f}ms p99={p99:7.2f}ms"
        figures.update(p50_ms=p50, p99_ms=p99)
    print(line)
    return figures


def prefixed(prefix: str, figures: dict[str, float]) -> dict[str, float]:
    """Return ``figures`` with each key prefixed by ``prefix_``."""
    return {f"{prefix}_{key}": value for key, value in figures.items()}


def message(index: int, *, to_defender: bool = False) -> OutboundMessage:
    """A page-sized message to recipient ``index``."""
    return OutboundMessage(
        recipient=Address("signal", UUID.format(index)),
        text=f"[ref 7F3K] Case {index}: defender needs help, reply 1 to take it",
        outbox_id=f"ob-{index}",
        kind="page",
        to_defender=to_defender,
    )


async def timed_send(channel: SignalChannel, item: OutboundMessage, samples: list[float]) -> None:
    """Send ``item`` and record its latency."""
    started = time.perf_counter()
    await channel.send(item)
    samples.append(time.perf_counter() - started)


async def bench_send(count: int) -> dict[str, float]:
    """Sequential, concurrent and defender sends; return the figures."""
    async with FakeSignalApi() as api:
        channel = SignalChannel(api.url, ACCOUNT, "poll", None)
        await channel.send(message(0))  # warm the connection
        samples: list[float] = []
        started = time.perf_counter()
        for index in range(count):
            await timed_send(channel, message(index), samples)
        elapsed = time.perf_counter() - started
        figures = prefixed("send", report("send, sequential", count, elapsed, samples))

        samples = []
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(count):
            queue.put_nowait(index)

        async def worker() -> None:
            while not queue.empty():
                await timed_send(channel, message(queue.get_nowait()), samples)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        elapsed = time.perf_counter() - started
        figures |= prefixed("send_x8", report("send, 8 concurrent", count, elapsed, samples))
        await channel.stop()

        channel = SignalChannel(api.url, ACCOUNT, "poll", timedelta(days=1))
        samples = []
        started = time.perf_counter()
        for index in range(count):
            await timed_send(channel, message(index % (count // 4 or 1), to_defender=True), samples)
        elapsed = time.perf_counter() - started
        name = "send to defenders (+PUT)"
        figures |= prefixed("send_defender", report(name, count, elapsed, samples))
        await channel.stop()
        return figures


async def bench_receive_poll(count: int) -> dict[str, float]:
    """Drain ``count`` queued messages through GET /v1/receive; return the figures."""
    async with FakeSignalApi() as api:
        for index in range(count):
            api.deliver_text(UUID.format(index), None, f"message {index}", 1764450000000 + index)
        done = asyncio.Event()
        received = 0

        async def handle(_: InboundMessage) -> None:
            nonlocal received
            received += 1
            if received == count:
                done.set()

        channel = SignalChannel(api.url, ACCOUNT, "poll", None, poll_interval=0.05)
        started = time.perf_counter()
        await channel.start(handle)
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - started
        await channel.stop()
        gets = len(api.receive_requests)
        name = f"receive, poll ({gets} GETs, {elapsed / gets * 1000:.1f}ms/GET)"
        return prefixed("receive_poll", report(name, count, elapsed, []))


async def bench_receive_websocket(count: int) -> dict[str, float]:
    """Push ``count`` messages over the json-rpc websocket; return the figures."""
    async with FakeSignalApi(mode="json-rpc") as api:
        done = asyncio.Event()
        stamps: dict[str, float] = {}
        samples: list[float] = []

        async def handle(inbound: InboundMessage) -> None:
            samples.append(time.perf_counter() - stamps[inbound.dedup_key])
            if len(samples) == count:
                done.set()

        channel = SignalChannel(api.url, ACCOUNT, "websocket", None)
        await channel.start(handle)
        await api.wait_for_sockets(1)
        started = time.perf_counter()
        for index in range(count):
            uuid, ts = UUID.format(index), 1764450000000 + index
            stamps[f"{uuid}:{ts}"] = time.perf_counter()
            api.deliver_text(uuid, None, f"message {index}", ts)
            if index % 50 == 49:
                await asyncio.sleep(0)  # let the socket writer run, as a real stream would
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - started
        await channel.stop()
        return prefixed("receive_ws", report("receive, websocket", count, elapsed, samples))


async def main(count: int) -> dict[str, float]:
    """Run every measurement once, print the table and return the figures (ms, msg/s)."""
    figures = await bench_send(count)
    figures |= await bench_receive_poll(count)
    figures |= await bench_receive_websocket(count)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    asyncio.run(main(parser.parse_args().messages))
