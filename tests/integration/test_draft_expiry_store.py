"""The draft timer is a row in the database: ``defender.draft_expires_at``, written with the
session and found again by ``defenders_with_expired_drafts`` on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.core.messages import Address
from db.models import Defender
from tests.harness import Harness


async def new_defender(h: Harness, name: str) -> str:
    """Create the defender behind console identity ``name``; return their id."""
    assert h.app is not None
    async with h.app.store.transaction() as tx:
        return (await tx.defender_for(Address("console", name), h.clock.now())).id


async def test_only_drafts_due_by_now_are_returned_with_their_session_decrypted(
    harness: Harness,
) -> None:
    """A draft whose timer ran out (or runs out exactly now) comes back with its session
    decrypted; one due later, one saved without a timer and one never saved do not. Finding
    it does not end the timer."""
    assert harness.app is not None
    now = harness.clock.now()
    past, exact, future, untimed = [
        await new_defender(harness, name) for name in ("past", "exact", "future", "untimed")
    ]
    await new_defender(harness, "never-saved")
    async with harness.app.store.transaction() as tx:
        await tx.defender_save_session(
            past, {"draft": {"place": "x"}}, now, draft_expires_at=now - timedelta(minutes=1)
        )
        await tx.defender_save_session(exact, {"draft": {"n": 2}}, now, draft_expires_at=now)
        await tx.defender_save_session(
            future, {"draft": {}}, now, draft_expires_at=now + timedelta(seconds=1)
        )
        await tx.defender_save_session(untimed, {"lang": "en"}, now)
    for _ in range(2):
        async with harness.app.store.transaction() as tx:
            assert await tx.defenders_with_expired_drafts(now) == [
                (past, {"draft": {"place": "x"}}),
                (exact, {"draft": {"n": 2}}),
            ]


async def test_the_limit_keeps_the_most_overdue(harness: Harness) -> None:
    """With more drafts due than ``limit``, the ones that expired first are returned, in
    order of expiry (not of creation)."""
    assert harness.app is not None
    now = harness.clock.now()
    ids = [await new_defender(harness, f"d{i}") for i in range(3)]
    async with harness.app.store.transaction() as tx:
        for minutes, defender_id in zip((1, 3, 2), ids, strict=True):
            await tx.defender_save_session(
                defender_id, {"i": minutes}, now, now - timedelta(minutes=minutes)
            )
    async with harness.app.store.transaction() as tx:
        assert await tx.defenders_with_expired_drafts(now, limit=2) == [
            (ids[1], {"i": 3}),
            (ids[2], {"i": 2}),
        ]
        assert len(await tx.defenders_with_expired_drafts(now, limit=3)) == 3


async def test_saving_again_without_a_timer_clears_it(harness: Harness) -> None:
    """A later save without ``draft_expires_at`` sets the column back to NULL, so the draft
    is no longer found."""
    assert harness.app is not None
    now = harness.clock.now()
    defender_id = await new_defender(harness, "someone")
    async with harness.app.store.transaction() as tx:
        await tx.defender_save_session(
            defender_id, {"draft": {}}, now, draft_expires_at=now - timedelta(hours=1)
        )
    async with harness.app.store.transaction() as tx:
        assert [d for d, _ in await tx.defenders_with_expired_drafts(now)] == [defender_id]
        await tx.defender_save_session(defender_id, {"lang": "en"}, now)
    async with harness.app.store.transaction() as tx:
        assert await tx.defenders_with_expired_drafts(now) == []
    async with harness.app.engine.connect() as conn:
        stored = await conn.execute(
            select(Defender.draft_expires_at).where(Defender.id == defender_id)
        )
        assert stored.scalar_one() is None
