"""ruff and mypy are part of the test suite, so the one test command checks them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def check(*command: str) -> None:
    """Run a checker from the test environment and fail with its output if it complains."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    """`ruff check` finds nothing."""
    check(str(BIN / "ruff"), "check", ".")


def test_ruff_format_is_clean() -> None:
    """`ruff format --check` would change nothing."""
    check(str(BIN / "ruff"), "format", "--check", ".")


def test_mypy_strict_is_clean() -> None:
    """`mypy` (strict, configured in pyproject.toml) finds nothing in bot/ and db/."""
    check(str(BIN / "mypy"))
