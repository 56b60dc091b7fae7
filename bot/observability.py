"""Logging that cannot leak: event names and ids only, third-party loggers quietened, and a
redaction filter as the last line of defence against identities and secrets.

Logs must never carry what a defender typed or a platform identity. Our own code logs events
as ``name key=value`` with ids only; the filter below additionally masks anything shaped like
a phone number, a Telegram bot token or a long numeric id, whoever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import TextIO

_PATTERNS = (
    re.compile(r"\d{6,12}:[A-Za-z0-9_-]{30,}"),  # Telegram bot token
    re.compile(r"\+\d[\d\s().-]{5,}\d"),  # phone number in international form
    re.compile(r"(?<![0-9a-fA-F])\d{7,}(?![0-9a-fA-F])"),  # long numeric ids (Telegram ids)
)
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "telegram",
    "apscheduler",
    "aiosqlite",
    "asyncio",
    "alembic",
    "aiohttp",
)


def redact(text: str) -> str:
    """Return ``text`` with every token, phone number and long numeric id replaced."""
    for pattern in _PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class RedactionFilter(logging.Filter):
    """Rewrites each record's message through :func:`redact` and drops exception text.

    Exception messages can quote input (``int("...")`` does), so only the exception type and
    the stack frames are kept, never ``str(exc)``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always lets it through."""
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = traceback.extract_tb(exc.__traceback__)
            where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[::-1])
            record.msg = f"{record.msg} error={type(exc).__name__} at={where}"
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send logs to ``stream`` (stderr) through the redaction filter; quieten chatty
    third-party loggers to WARNING. Returns the handler (tests attach to it)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_intake", False):
            root.removeHandler(old)
    handler._intake = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
