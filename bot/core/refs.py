"""Case references: short, unambiguous when read aloud or typed on a phone, case-insensitive."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L, no U (avoids accidental words); 30 symbols, 4 characters: 810,000 references.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 4


def new_reference() -> str:
    """Return a fresh random reference such as ``K7Q2`` (uniqueness is the database's job)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise_reference(text: str) -> str | None:
    """Return the canonical form of a typed reference, or None if it cannot be one.

    Accepts any case and surrounding decoration such as ``#k7q2`` or ``K7Q2.``.
    """
    candidate = text.strip().strip("#.,;:!?()[]<>\"'").upper()
    if len(candidate) != LENGTH or any(ch not in ALPHABET for ch in candidate):
        return None
    return candidate
