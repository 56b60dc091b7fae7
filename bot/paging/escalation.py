"""Escalation decisions: pure functions of (policy, position, who is reachable, now).

A policy is a ladder of steps, each paging some responders and then waiting for an ``ack``
before the next step; the whole ladder runs ``repeat`` more times before it is exhausted.
A step with nobody reachable does not wait its delay: the next step is taken at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class StepPolicy(Protocol):
    """One rung: who to notify and how long to wait for an ack (see ``bot.config.PagingStep``)."""

    @property
    def notify(self) -> Sequence[str]: ...

    @property
    def wait(self) -> timedelta: ...


class LadderPolicy(Protocol):
    """A ladder of steps and how many extra times it repeats (``bot.config.PagingPolicy``)."""

    @property
    def steps(self) -> Sequence[StepPolicy]: ...

    @property
    def repeat(self) -> int: ...


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A rung of the ladder: ``loop`` counts repeats of the whole ladder from 0."""

    loop: int
    step: int


@dataclass(frozen=True, slots=True)
class Page:
    """Page ``responder`` for the step at ``position``."""

    responder: str
    position: Position


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: send ``pages``; then wait at ``position`` until ``next_due_at``, or stop
    (``exhausted``) when the ladder has run out."""

    pages: tuple[Page, ...]
    position: Position
    next_due_at: datetime | None
    exhausted: bool
    skipped: tuple[Position, ...] = ()  # steps with nobody reachable


def following(policy: LadderPolicy, position: Position) -> Position | None:
    """Return the rung after ``position``, or None when the ladder is exhausted."""
    if position.step + 1 < len(policy.steps):
        return Position(position.loop, position.step + 1)
    if position.loop < policy.repeat:
        return Position(position.loop + 1, 0)
    return None


Resolve = Callable[[Sequence[str], datetime], Sequence[str]]


def by_name(notify: Sequence[str], at: datetime) -> Sequence[str]:
    """The trivial resolver: every target is a responder's name."""
    return notify


def enter(
    policy: LadderPolicy,
    position: Position | None,
    reachable: Callable[[str], bool],
    due_from: datetime,
    resolve: Resolve = by_name,
) -> Decision:
    """Decide the pages for entering ``position`` at time ``due_from``.

    ``resolve`` turns a step's targets (names, ``rota:NAME``, ``rota-all:NAME``) into
    responder names at the moment the step fires, so a hand-off between steps is respected.
    Steps whose responders are all unreachable (or where nobody is on call) are passed over
    without waiting. ``due_from`` is when this step became due (not when we noticed), so that
    a restart after downtime makes every overdue step fire once, in order, instead of starting
    the ladder's clock again.
    """
    skipped: list[Position] = []
    while position is not None:
        rung = policy.steps[position.step]
        targets = resolve(rung.notify, due_from)
        names = tuple(dict.fromkeys(name for name in targets if reachable(name)))
        if names:
            return Decision(
                pages=tuple(Page(name, position) for name in names),
                position=position,
                next_due_at=due_from + rung.wait,
                exhausted=False,
                skipped=tuple(skipped),
            )
        skipped.append(position)
        position = following(policy, position)
    last = skipped[-1] if skipped else Position(0, 0)
    return Decision(
        pages=(), position=last, next_due_at=None, exhausted=True, skipped=tuple(skipped)
    )


def start(
    policy: LadderPolicy,
    reachable: Callable[[str], bool],
    now: datetime,
    resolve: Resolve = by_name,
) -> Decision:
    """Decide the first pages of a new case."""
    return enter(policy, Position(0, 0), reachable, now, resolve)


def advance(
    policy: LadderPolicy,
    position: Position,
    due_at: datetime,
    reachable: Callable[[str], bool],
    resolve: Resolve = by_name,
) -> Decision:
    """Decide what happens when the wait at ``position`` (due at ``due_at``) ran out unacked."""
    return enter(policy, following(policy, position), reachable, due_at, resolve)
