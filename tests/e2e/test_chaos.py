"""Chaos, short: `intake run` killed with SIGKILL at random moments during a stream of SOS
alerts and escalations (bench/chaos.py), then run until quiet; nothing may be lost and
nothing paged twice except as a declared "(repeat)"; no platform id or display name is ever
in the database files or the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import run_chaos


@pytest.mark.slow
@pytest.mark.sqlite_only
async def test_five_kills_lose_no_alert_and_no_page(tmp_path: Path) -> None:
    """5 kills: every SOS has its case, every case paged alice and bob, no stray copies."""
    result = await run_chaos(kills=5, seed=20240607, workdir=tmp_path, fast_leases=True)
    assert result["lost_alerts"] == 0, result
    assert result["lost_pages"] == 0, result
    assert result["unexpected_duplicates"] == 0, result
    assert result["cases"] == result["alerts"] > 0, result
    # A repeat follows an unknown outcome: the first copy may or may not have arrived.
    expected, repeats = result["pages_expected"], result["repeats"]
    assert expected <= result["pages_sent"] <= expected + repeats, result
    assert result["final_exit_code"] == 0, result
    assert result["tracebacks_in_log"] == 0, result
    assert result["canary_hits"] == 0, result  # no platform id or name in the files or log
