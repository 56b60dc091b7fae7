"""``intake shell``: the whole bot on the local console, on the embedded default (a SQLite
file and development keys made on first start). Scripted or interactive."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TextIO

from bot.app import open_app
from bot.channels.console import ConsoleChannel
from bot.config import Config
from bot.core.clock import Clock, SystemClock
from bot.core.messages import InboundMessage
from db.crypto import ensure_development_keyring

log = logging.getLogger(__name__)


async def run_shell(
    config: Config,
    *,
    linger: float = 0.0,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Clock | None = None,
) -> int:
    """Run the console chat until end of input (plus ``linger`` seconds); return an exit code.

    Each line is handled in order and its replies are printed before the next line is read;
    at the end, everything due is sent before the shell exits.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    clock = clock or SystemClock()
    keyring, created = ensure_development_keyring(config.keys.dir, os.environ)
    if created:
        stderr.write(
            f"warning: generated DEVELOPMENT keys in {config.keys.dir} — for trying the bot "
            "only, never for real cases (use `intake keys init` for those)\n"
        )
    elif keyring.development:
        stderr.write(f"warning: using DEVELOPMENT keys from {config.keys.dir}\n")
    speakers = [r.name for r in config.responders if r.console]
    console = ConsoleChannel(stdin, stdout, speakers, clock.now)
    app = await open_app(config, keyring, clock, {"console": console})
    try:
        recovered = await app.recover()
        fired = await app.tick()
        if recovered or fired:
            log.info("shell.resumed recovered=%s fired=%s", recovered, fired)
        await app.drain()
        app.start_background()
        if stdin.isatty():
            names = ", ".join("@" + n for n in speakers) or "(none)"
            stderr.write(
                "defender-intake shell. Type as the defender; start a line with "
                f"{names} to speak as that responder. Ctrl-D quits.\n"
            )

        async def handle(message: InboundMessage) -> None:
            await app.receive(message)
            await app.drain()

        await console.listen(handle)
        await app.drain()
        if linger > 0:
            await asyncio.sleep(linger)
        await app.drain()
        return 0
    finally:
        await app.close()
