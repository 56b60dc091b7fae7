"""Nothing a defender typed and no platform identity reaches the database files or the logs
in plaintext; ciphertexts cannot be moved or altered undetected."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.core.messages import Address, InboundMessage
from bot.observability import setup_logging
from db.base import Base
from db.crypto import DecryptionError
from db.models import Case, CaseEntry, Defender
from tests.harness import Harness

CANARY_TEXT = "canary-words-3f9a the police took Ahmed from our office"
CANARY_PLACE = "canary-place-77c1 Kadıköy, İstanbul"
CANARY_IDENTITY = "+4915112345678"  # a phone-number-shaped platform id
CANARY_WORD = "canary-words-3f9a"


def raw_bytes(directory: Path) -> bytes:
    """Return the bytes of the database file and its WAL and shared-memory files."""
    data = b""
    for path in directory.glob("intake.db*"):
        data += path.read_bytes()
    return data


async def database_bytes(h: Harness) -> bytes:
    """Everything the database holds: the raw files for SQLite; for PostgreSQL every value
    of every column of every table (the server's files are not ours to read)."""
    if h.backend == "sqlite":
        return raw_bytes(h.directory)
    assert h.app is not None
    data = b""
    async with h.app.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                for value in row:
                    data += value if isinstance(value, bytes) else str(value).encode()
    return data


async def run_scenario(h: Harness, identity: str) -> None:
    """Intake plus SOS follow-ups from ``identity``, acked and resolved with a note."""
    assert h.app is not None

    async def say(text: str, who: str = identity) -> None:
        h._lines += 1
        await h.app.receive(  # type: ignore[union-attr]
            InboundMessage(Address("console", who), text, f"k{h._lines}", h.clock.now())
        )
        await h.collect()

    await say("/start")
    for answer in ("1", "1", CANARY_PLACE, "1", "yes"):
        await say(answer)
    await say("SOS")
    await say(CANARY_TEXT)
    await say(CANARY_PLACE)
    refs = {m.split("\n")[0][-4:] for m in h.inbox["alice"] if m.startswith("CRITICAL")}
    for ref in refs:
        await say(f"ack {ref}", who="alice")
        await say(f"resolve {ref} {CANARY_WORD} note", who="alice")
    h.inbox.clear()


@pytest.mark.parametrize("identity", [CANARY_IDENTITY, "7123456789"])
async def test_no_canary_in_database_files_or_logs(harness: Harness, identity: str) -> None:
    """After a full intake, SOS, relay, ack and resolve, the raw database files (main, WAL)
    and every log line at DEBUG contain none of the defender's words or their identity."""
    stream = io.StringIO()
    handler = setup_logging("DEBUG", stream)
    try:
        await run_scenario(harness, identity)
        logging.getLogger("test").info("scenario.done")
        during = await database_bytes(harness)
        await harness.restart()
        after = await database_bytes(harness)
    finally:
        logging.getLogger().removeHandler(handler)
    logs = stream.getvalue()
    assert "case.opened" in logs and "scenario.done" in logs  # the logs were captured
    for canary in (CANARY_WORD, "canary-place-77c1", "Ahmed", identity, identity.lstrip("+")):
        for label, blob in (("database during", during), ("database after", after)):
            assert canary.encode() not in blob, f"{canary!r} found in {label}"
            assert canary.encode("utf-16-le") not in blob
        assert canary not in logs, f"{canary!r} found in the logs"
    assert len(during) > 5_000  # the database was really read


async def test_a_ciphertext_moved_to_another_row_does_not_decrypt(harness: Harness) -> None:
    """Swapping an encrypted column between two rows is detected (AAD binds table, column,
    row), not silently accepted."""
    assert harness.app is not None
    await harness.say("SOS")
    await harness.say("first")
    harness.inbox.clear()
    await harness.say("SOS")
    async with harness.app.store.transaction() as tx:
        entries = (await tx._s.execute(select(CaseEntry))).scalars().all()
        cases = (await tx._s.execute(select(Case))).scalars().all()
    assert len(entries) == 1 and len(cases) == 1
    async with harness.app.engine.begin() as conn:
        await conn.execute(update(Case).values(details_ct=entries[0].value_ct))
    with pytest.raises(DecryptionError):
        async with harness.app.store.transaction() as tx:
            await tx.case_details(cases[0].id)
    harness.inbox.clear()


async def test_a_flipped_bit_in_a_session_is_detected(harness: Harness) -> None:
    """A tampered session ciphertext raises DecryptionError instead of yielding garbage."""
    assert harness.app is not None
    await harness.say("hello")
    harness.inbox.clear()
    async with harness.app.engine.begin() as conn:
        row = (await conn.execute(select(Defender.id, Defender.session_ct))).one()
        tampered = bytearray(row.session_ct)
        tampered[-1] ^= 0x01
        await conn.execute(update(Defender).values(session_ct=bytes(tampered)))
    with pytest.raises(DecryptionError):
        async with harness.app.store.transaction() as tx:
            await tx.defender_contact(row.id)


async def test_identities_are_stored_only_as_keyed_pseudonyms(harness: Harness) -> None:
    """The defender's identity hash is an HMAC under the pepper, not a plain hash of the id."""
    import hashlib

    assert harness.app is not None
    await harness.say("hello")
    harness.inbox.clear()
    async with harness.app.engine.connect() as conn:
        stored = (await conn.execute(select(Defender.identity_hash))).scalar_one()
    for plain in ("defender", "console\x00defender", "console:defender"):
        assert stored != hashlib.sha256(plain.encode()).hexdigest()
    assert stored == harness.keyring.pseudonym("address", "console\x00defender")


def test_redaction_masks_identities_and_tokens() -> None:
    """The log filter masks phone numbers, long numeric ids and bot tokens."""
    from bot.observability import redact

    text = redact(
        "to +49 151 1234 5678 id 7123456789 token 123456789:AAE_x1y2z3x1y2z3x1y2z3x1y2z3x1y2z3"
    )
    assert "5678" not in text and "7123456789" not in text and "AAE_" not in text
    assert redact("case=01a22b562de25058a980fa9b6f031185 step=2") == (
        "case=01a22b562de25058a980fa9b6f031185 step=2"
    )


def test_exception_messages_are_not_logged() -> None:
    """An exception's message (which may quote input) never reaches the log, only its type."""
    stream = io.StringIO()
    handler = setup_logging("INFO", stream)
    try:
        try:
            int("defender secret text")
        except ValueError:
            logging.getLogger("test").exception("inbox.process_failed id=1")
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert "inbox.process_failed id=1 error=ValueError" in out
    assert "secret" not in out
