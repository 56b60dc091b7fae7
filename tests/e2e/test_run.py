"""`intake run` as an operator runs it: a real subprocess against the fake Telegram Bot API and
the fake signal-cli-rest-api, stopped with kill -9 in the middle of an escalation."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos import start_run
from db.crypto import create_keyring
from tests.databases import default_url
from tests.fakes.signal_api import ACCOUNT, FakeSignalApi
from tests.fakes.telegram_api import TOKEN, FakeBotApi

ALICE = "+4915550001"  # on Signal
BOB = 222000222  # on Telegram
DEFENDER = 777000777  # writes on Telegram

CONFIG = """
[database]
url = "{url}"

[keys]
dir = "{dir}/keys"

[telegram]
enabled = true
token = "{token}"
base_url = "{telegram}/bot"

[signal]
enabled = true
api_url = "{signal}"
number = "{account}"
receive = "poll"
disappearing = "1d"

[[operators]]
name = "alice"
signal = "{alice}"

[[responders]]
name = "alice"
signal = "{alice}"

[[responders]]
name = "bob"
telegram = {bob}

[paging.critical]
steps = [{{ notify = ["alice"], wait = "3s" }}, {{ notify = ["bob"], wait = "1h" }}]

[paging.high]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.medium]
steps = [{{ notify = ["bob"], wait = "1h" }}]

[paging.low]
steps = [{{ notify = ["bob"], wait = "8h" }}]
"""


async def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until ``condition()`` is truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def pages(signal_api: FakeSignalApi, telegram: FakeBotApi) -> list[tuple[str, str]]:
    """Every page sent so far as (who, first line)."""
    found = []
    for body in signal_api.sent:
        if body.get("message", "").startswith("CRITICAL"):
            found.append((body["recipients"][0], body["message"].split("\n")[0]))
    for sent in telegram.chat(BOB).sent:
        if sent.text.startswith("CRITICAL"):
            found.append((str(BOB), sent.text.split("\n")[0]))
    return found


@pytest.mark.slow
async def test_kill_9_mid_escalation_then_restart_pages_the_next_step_once(tmp_path: Path) -> None:
    """Telegram SOS → alice paged on Signal; kill -9; the wait runs out while the process is
    dead; after a restart bob is paged on Telegram exactly once; bob's ack reaches the
    defender on Telegram; SIGTERM stops it cleanly."""
    async with FakeBotApi() as telegram, FakeSignalApi() as signal_api:
        create_keyring(tmp_path / "keys", development=False)
        config = tmp_path / "config.toml"
        config.write_text(
            CONFIG.format(
                dir=tmp_path,
                url=default_url(tmp_path),
                token=TOKEN,
                telegram=telegram.url,
                signal=signal_api.url,
                account=ACCOUNT,
                alice=ALICE,
                bob=BOB,
            )
        )
        log = tmp_path / "run.log"
        process = await start_run(config, log)
        try:
            telegram.user_says(DEFENDER, "SOS")
            await until(lambda: pages(signal_api, telegram), 30, "the page to alice")
            ((who, first),) = pages(signal_api, telegram)
            ref = first.removeprefix("CRITICAL case ")
            assert who == ALICE and re.fullmatch(r"[A-Z0-9]{4}", ref)
            await until(
                lambda: any(ref in t for t in telegram.chat(DEFENDER).sent_texts()),
                10,
                "the defender's confirmation",
            )
            process.kill()  # kill -9: no cleanup at all
            await process.wait()
            await asyncio.sleep(3.5)  # alice's wait ends while nothing runs
            process = await start_run(config, log)
            await until(lambda: len(pages(signal_api, telegram)) >= 2, 30, "bob's page")
            await asyncio.sleep(2.5)  # several ticks: nothing may be paged twice
            assert pages(signal_api, telegram) == [(ALICE, first), (str(BOB), first)]
            telegram.user_says(BOB, f"ack {ref}")
            await until(
                lambda: any(
                    "A responder has your case" in t for t in telegram.chat(DEFENDER).sent_texts()
                ),
                15,
                "the defender hearing that the case is taken",
            )
            # Both messages come from one transaction but go out one after the other.
            await until(
                lambda: any(
                    t.startswith(f"You have case {ref}") for t in telegram.chat(BOB).sent_texts()
                ),
                15,
                "bob's case details",
            )
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        output = log.read_text()
        assert "Traceback" not in output
        for secret in (TOKEN, ALICE, str(BOB), str(DEFENDER), ACCOUNT):
            assert secret not in output, "an identity or the token reached the log"
