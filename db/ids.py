"""Row ids: 32 hex characters, time-ordered (48-bit millisecond time + 80 random bits), so
that ordering by id is ordering by creation, and known before the INSERT (ciphertexts are
bound to their row id)."""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last = 0


def new_id() -> str:
    """Return a new id, strictly greater than every id this process returned before."""
    global _last
    with _lock:
        candidate = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
        _last = max(candidate, _last + 1)
        return f"{_last:032x}"
