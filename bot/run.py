"""``intake run``: every enabled channel, the escalation tick and the outbox sender in one
asyncio program, stopped cleanly by SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping

from bot.app import App, open_app
from bot.config import Config
from bot.core.clock import Clock, SystemClock
from bot.core.ports import ReceivingChannel
from bot.errors import ChannelStartError
from db.crypto import load_keyring
from db.leader import Leadership, uses_lock

log = logging.getLogger(__name__)


def startup_problems(config: Config, env: Mapping[str, str]) -> list[str]:
    """Return every reason ``intake run`` must refuse to start (empty when it may start):
    example values left in the config, development or missing keys, no channel enabled."""
    problems = config.example_values() + config.operator_problems()
    try:
        keyring = load_keyring(config.keys.dir, env)
        if keyring.development:
            problems.append(
                f"{config.keys.dir}: these are development keys made by `intake shell`; "
                "create real ones with `intake keys init --dir DIR` (and keep a backup)"
            )
    except Exception as exc:  # CryptoError: the message names the file or variable
        problems.append(str(exc))
    if not (config.telegram.enabled or config.signal.enabled):
        problems.append(
            f"{config.source}: no channel is enabled; set [telegram] enabled = true or "
            "[signal] enabled = true — or try the bot locally with `intake shell`"
        )
    return problems


def build_channels(
    config: Config, on_operator_alert: Callable[[str], Awaitable[None]] | None = None
) -> dict[str, ReceivingChannel]:
    """Create the enabled channels (not started yet); ``on_operator_alert`` receives the event
    names of platform trouble an operator must see (e.g. an untrusted Signal identity)."""
    channels: dict[str, ReceivingChannel] = {}
    if config.telegram.enabled:
        from bot.channels.telegram import TelegramChannel

        channels["telegram"] = TelegramChannel.from_config(config.telegram)
    if config.signal.enabled:
        from bot.channels.signal import SignalChannel

        channels["signal"] = SignalChannel.from_config(config.signal, on_operator_alert)
    return channels


def needs_leader(config: Config, name: str) -> bool:
    """Return True when only one instance may run channel ``name`` at a time: Signal's receive
    is destructive, and Telegram allows a single poller (webhooks can land on any instance)."""
    return name == "signal" or (name == "telegram" and config.telegram.mode == "polling")


async def run_service(
    config: Config,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    channels: Mapping[str, ReceivingChannel] | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); return the exit code.

    Start order: keys → database (migrated) → recovery of stored-but-unprocessed messages →
    tick, watchdog and sender → channels → the first tick (overdue escalations fire while the
    channels already send what each committed chunk queued). On PostgreSQL a channel that
    only one instance may run starts when this instance wins its advisory lock, and another
    instance takes over within seconds if this one dies. Stop order is the reverse: channels
    stop receiving first (finishing and confirming the message in hand), then everything due
    is sent, then the database closes.
    """
    keyring = load_keyring(config.keys.dir, os.environ)
    holder: list[App] = []

    async def operator_alert(event: str) -> None:
        if holder:
            await holder[0].operator_alert(event)

    given = channels
    channels = dict(given) if given is not None else build_channels(config, operator_alert)
    app = await open_app(config, keyring, clock or SystemClock(), channels)
    holder.append(app)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started: list[ReceivingChannel] = []
    leaderships: list[Leadership] = []
    try:
        recovered = await app.recover()
        app.start_background()
        for name, channel in channels.items():
            if needs_leader(config, name) and uses_lock(config.database.url):
                leaderships.append(await _lead(app, config, name, channel, given, operator_alert))
                continue
            await channel.start(app.receive)
            started.append(channel)
            log.info("run.channel_started channel=%s", name)
        # Steps that came due while no process ran fire now, a chunk at a time, each chunk's
        # pages going out while the next fires; what recovery queued goes out at once too.
        fired = await app.tick()
        log.info("run.resumed recovered=%s fired=%s", recovered, fired)
        app.wake()
        log.info("run.ready channels=%s", ",".join(channels))
        await stop.wait()
        log.info("run.stopping")
        return 0
    except ChannelStartError:
        raise
    finally:
        for leadership in leaderships:
            await leadership.stop()
        for channel in reversed(started):
            try:
                await channel.stop()
            except Exception:
                log.exception("run.channel_stop_failed channel=%s", channel.name)
        try:
            await asyncio.wait_for(app.drain(), timeout=10)
        except Exception:
            log.exception("run.final_drain_failed")
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await app.close()


async def _lead(
    app: App,
    config: Config,
    name: str,
    first: ReceivingChannel,
    given: Mapping[str, ReceivingChannel] | None,
    operator_alert: Callable[[str], Awaitable[None]],
) -> Leadership:
    """Run channel ``name`` only while this instance holds its lock; a fresh channel object is
    made for every term (a stopped client is never reused)."""
    app.sender.remove_channel(name)
    current: list[ReceivingChannel] = []
    terms = 0

    async def on_lead() -> None:
        nonlocal terms
        terms += 1
        if terms == 1 or given is not None:
            channel = first
        else:
            channel = build_channels(config, operator_alert)[name]
        await channel.start(app.receive)
        current.append(channel)
        app.sender.add_channel(name, channel)
        app.wake()
        log.info("run.channel_leading channel=%s", name)

    async def on_lose() -> None:
        app.sender.remove_channel(name)
        while current:
            await current.pop().stop()
        log.warning("run.channel_standby channel=%s", name)

    leadership = Leadership(config.database.url, f"channel:{name}", on_lead, on_lose)
    await leadership.start()
    return leadership


__all__ = ["App", "build_channels", "run_service", "startup_problems"]
