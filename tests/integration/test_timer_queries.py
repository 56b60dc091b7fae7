"""What the app queries every second reads an index, not a whole table: its cost must not
grow with the open cases or with the messages ever sent (bench/bench_scale.py measures it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.base import create_engine
from db.crypto import ensure_development_keyring
from db.store import Store, Transaction

NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


# Each call the app makes every second (tick, precise wake-up, sender) or every 30 s
# (watchdog), and the table whose index it must read.
CALLS: dict[str, tuple[str, Callable[[Transaction], Awaitable[object]]]] = {
    "escalations_due": ("escalation", lambda tx: tx.escalations_due(NOW)),
    "next_due": ("escalation", lambda tx: tx.next_due()),
    "checkins_due": ("checkin", lambda tx: tx.checkins_due(NOW)),
    "next_checkin_due": ("checkin", lambda tx: tx.next_checkin_due()),
    "outbox_claim": ("outbox", lambda tx: tx.outbox_claim(["console"], NOW, timedelta(1))),
    "outbox_due_count": ("outbox", lambda tx: tx.outbox_due_count(["console"], NOW)),
    "watchdog_snapshot": ("outbox", lambda tx: tx.watchdog_snapshot(NOW, timedelta(1))),
}


async def _plans(engine: AsyncEngine, store: Store) -> dict[str, str]:
    """Run each call once, capture the SELECT it sends to its table, return each one's plan."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    queries = {}
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        for name, (table, call) in CALLS.items():
            captured.clear()
            async with store.transaction() as tx:
                await call(tx)
            selects = [
                (statement, parameters)
                for statement, parameters in captured
                if statement.lstrip().upper().startswith("SELECT")
                and " ".join(statement.split()).split(" FROM ", 1)[-1].startswith(table)
            ]
            assert len(selects) == 1, (name, captured)
            queries[name] = selects[0]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    plans = {}
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            for name, (statement, parameters) in queries.items():
                found = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plans[name] = " | ".join(str(row[-1]) for row in found)
            return plans
        # No rows: make any usable index cheaper than a scan; and plan the statement as
        # prepared once for any parameter values (the generic plan), not for these values.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        for index, (name, (statement, parameters)) in enumerate(queries.items()):
            await conn.exec_driver_sql(f"PREPARE timer_query_{index} AS {statement}")
            values = ", ".join(_literal(value) for value in parameters)
            execute = f"EXECUTE timer_query_{index}" + (f"({values})" if values else "")
            found = await conn.exec_driver_sql("EXPLAIN " + execute)
            plans[name] = " | ".join(str(row[-1]) for row in found)
    return plans


def _literal(value: object) -> str:
    """``value`` as an SQL literal (the parameters here are numbers and plain words)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else repr(value)
    return "'" + str(value).replace("'", "''") + "'"


async def test_the_per_second_work_reads_its_rows_through_indexes(
    tmp_path: Path, pg_database: str | None
) -> None:
    """The tick and the precise wake-up (due escalations in any state with a timer, due
    check-ins), the outbox sender and the watchdog's stuck-message count each read an index
    holding only what they look for, never a whole table."""
    engine = create_engine(pg_database or f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        await migrate.upgrade(engine)
        keyring, _ = ensure_development_keyring(tmp_path / "keys", {})
        plans = await _plans(engine, Store(engine, keyring))
        expected = {
            "escalation": "ix_escalation_due",
            "checkin": "ix_checkin_next_at",
            "outbox": "ix_outbox_due",
        }
        for name, (table, _) in CALLS.items():
            assert expected[table] in plans[name], (name, plans[name])
    finally:
        await engine.dispose()


async def _index(engine: AsyncEngine, name: str) -> str:
    """The definition of index ``name`` as the database stores it."""
    if engine.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    async with engine.connect() as conn:
        return str((await conn.execute(text(query), {"name": name})).scalar_one())


async def _predicates(engine: AsyncEngine) -> tuple[bool, bool]:
    """Whether ix_escalation_due covers every timer, and ix_outbox_due claimed rows."""
    escalation = await _index(engine, "ix_escalation_due")
    outbox = await _index(engine, "ix_outbox_due")
    assert "pending" in outbox and "sending" in outbox, outbox
    return "NOT NULL" in escalation and "active" not in escalation, "claimed" in outbox


async def test_0004_swaps_both_index_predicates_and_back(
    tmp_path: Path, pg_database: str | None
) -> None:
    """0004 makes ix_escalation_due partial on "has a timer" and ix_outbox_due cover claimed
    rows; its downgrade restores both earlier predicates; upgrading again reaches head."""
    engine = create_engine(pg_database or f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        await migrate.upgrade(engine)
        assert await _predicates(engine) == (True, True)

        def downgrade(connection: Any) -> None:
            config = migrate.alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert await _predicates(engine) == (False, False)
        assert "active" in await _index(engine, "ix_escalation_due")
        assert await migrate.upgrade(engine) == ("0003", "0004")
        assert await _predicates(engine) == (True, True)
    finally:
        await engine.dispose()
