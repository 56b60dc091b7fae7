"""The database connection breaks at the worst moments (what a PostgreSQL restart does to a
running app, made deterministic): the work in hand is retried once the database answers, a
message is processed once, and a page is sent once. The whole-process version against a real
PostgreSQL crash is tests/integration/test_pg_restart.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from db.base import unavailable
from tests.e2e.test_sos import sos
from tests.harness import Harness


def break_transactions(harness: Harness, fail: Callable[[str], BaseException | None]) -> None:
    """Make the app's transactions fail as a broken connection would: ``fail("begin")`` is
    asked before each transaction and ``fail("commit")`` after each commit; an exception it
    returns is raised there (after a commit, the work is committed but the caller never
    hears it, as when the connection breaks while the commit's answer is on its way)."""
    assert harness.app is not None
    store = harness.app.store
    original = store.transaction

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[Any]:
        error = fail("begin")
        if error is not None:
            raise error
        async with original() as tx:
            yield tx
        error = fail("commit")
        if error is not None:
            raise error

    store.transaction = transaction  # type: ignore[method-assign]


def test_a_refused_or_cut_connection_counts_as_unavailable_and_a_bug_does_not() -> None:
    """unavailable() tells a connection problem (retry later) from anything else."""
    assert unavailable(ConnectionRefusedError())
    assert unavailable(TimeoutError())
    assert not unavailable(ValueError("a bug"))
    assert not unavailable(KeyError("x"))


async def test_processing_waits_for_the_database_instead_of_failing_the_message(
    harness: Harness,
) -> None:
    """The connection is refused for the first two processing attempts of an SOS: the app
    waits and processes it when the database answers; the defender gets the confirmation,
    never the "something went wrong" apology, and alice one page."""
    failures = iter([ConnectionRefusedError(), ConnectionRefusedError()])
    assert harness.app is not None
    handle = harness.app.conversations.handle
    attempts = 0

    async def flaky_handle(*args: Any, **kwargs: Any) -> None:
        nonlocal attempts
        attempts += 1
        error = next(failures, None)
        if error is not None:
            raise error
        await handle(*args, **kwargs)

    harness.app.conversations.handle = flaky_handle  # type: ignore[method-assign]
    await sos(harness)
    assert attempts == 3
    assert not any("went wrong" in text for text in harness.inbox["defender"])


async def test_a_commit_whose_answer_was_lost_is_not_processed_twice(harness: Harness) -> None:
    """The processing of an SOS commits but the connection breaks before the app hears it;
    the app processes the message again, finds it already finished and rolls the repetition
    back: one case, one page, one confirmation."""
    assert harness.app is not None
    handle = harness.app.conversations.handle
    handled = 0

    async def counting_handle(*args: Any, **kwargs: Any) -> None:
        nonlocal handled
        handled += 1
        await handle(*args, **kwargs)

    harness.app.conversations.handle = counting_handle  # type: ignore[method-assign]
    cut = []

    def fail(when: str) -> BaseException | None:
        if when == "commit" and handled == 1 and not cut:
            cut.append(when)
            return ConnectionResetError()
        return None

    break_transactions(harness, fail)
    await sos(harness)  # exactly one page to alice and one confirmation, nothing more
    assert handled == 2 and cut


async def test_a_page_sent_while_the_database_is_away_is_recorded_later_not_repeated(
    harness: Harness,
) -> None:
    """The connection is refused twice right after the platform took a page: the sender
    waits and records the delivery when the database answers, so the page is neither lost
    in "sending" until its lease runs out nor sent again as a repeat."""
    sent = []

    def note(message: Any) -> None:
        sent.append(message.kind)

    harness.channel.fail_with = note  # returns None: every send succeeds, and is noted
    refusals: list[str] = []

    def fail(when: str) -> BaseException | None:
        if when == "begin" and sent and len(refusals) < 2:
            refusals.append(when)
            return ConnectionRefusedError()
        return None

    break_transactions(harness, fail)
    ref = await sos(harness)
    assert len(refusals) == 2
    await harness.say("cases", who="alice")  # the app still works afterwards
    harness.expect("alice", rf"^Open cases:\n{ref}  CRITICAL")
    harness.expect_nothing()
