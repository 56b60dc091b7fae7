"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A running app on a fresh SQLite file; fails the test if a message was left unread."""
    h = await Harness.create(tmp_path)
    try:
        yield h
        h.expect_nothing()
    finally:
        if h.app is not None:
            await h.stop()
