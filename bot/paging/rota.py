"""On-call rotas: who is on call at any instant, correct across time zones and DST.

Pure: standard library only (zoneinfo, datetime, dataclasses), no I/O beyond reading the
system's time zone data through `zoneinfo`.

Terms used in every docstring here:

* **wall time**: what a clock on the wall in the rota's `Rota.zone` shows (a naive datetime).
* **instant**: a point in time (an aware datetime). Every instant this module returns is in UTC
  (``tzinfo=datetime.UTC``), so comparing and subtracting them is always exact; convert with
  ``.astimezone(ZoneInfo(rota.zone))`` for display. (Python compares two datetimes that share
  one ``ZoneInfo`` by wall time, ignoring ``fold``, which is wrong around a fall-back.)
* **the wall-time rule** (`from_wall`): a wall time is reached at the *first* instant at
  which the zone's clock shows that time or later. So a wall time skipped by a spring-forward
  gap (02:30 on a day clocks jump 02:00 -> 03:00) is reached when the gap ends (03:00 local),
  and a wall time that occurs twice on a fall-back day is reached at its first occurrence
  (``fold=0``) only, never a second time.
* **hand-off**: an instant at which the scheduled member changes (or would change: with a
  single member the same person takes over from themself).
* **shift**: the half-open interval ``[hand-off, next hand-off)``; the scheduled member of a
  shift is on call for all of it.

Guarantees of `on_call` (see there): for a rota with members, exactly one scheduled member at
every instant: no gap and no overlap, on both sides of every DST transition, before and after
`Rota.start`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ALL_DAYS",
    "Override",
    "Rota",
    "Shift",
    "from_wall",
    "next_handoffs",
    "on_call",
    "shift_start",
]

ALL_DAYS: frozenset[int] = frozenset(range(7))
"""Every weekday, 0 = Monday ... 6 = Sunday (`datetime.date.weekday` numbering)."""

Shift: TypeAlias = Literal["daily", "weekly"] | timedelta
"""How a rota advances: ``"daily"``, ``"weekly"`` or a fixed wall-clock length (see `Rota`)."""

_MICROSECOND = timedelta(microseconds=1)


def _tz(zone: ZoneInfo | str) -> ZoneInfo:
    """The zone object for an IANA name (cached by `ZoneInfo` itself)."""
    if isinstance(zone, ZoneInfo):
        return zone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {zone!r}: {exc}") from None


def _utc(instant: datetime, what: str) -> datetime:
    """`instant` in UTC; refuses naive datetimes, whose instant is unknown."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a time zone), got {instant!r}")
    return instant.astimezone(UTC)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The wall time the clock in `tz` shows at `instant` (naive)."""
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def from_wall(wall: datetime, zone: ZoneInfo | str) -> datetime:
    """Return the first instant at which the clock in `zone` shows `wall` or a later time.

    This is the wall-time rule every hand-off, override and business-hours boundary uses:

    * a wall time that exists once gives that instant;
    * an ambiguous wall time (it occurs twice on a fall-back day) gives its first occurrence,
      the one with ``fold=0``; the `fold` of `wall` is ignored;
    * a wall time skipped by a spring-forward gap gives the instant the gap ends: 02:30 on
      2026-03-29 in Europe/Berlin (clocks jump from 02:00 to 03:00) gives 03:00 CEST, which is
      01:00 UTC.

    The result is non-decreasing in `wall`: a later wall time never gives an earlier instant.

    Args:
        wall: A naive datetime, read as wall time in `zone`.
        zone: An IANA zone name such as ``"Europe/Berlin"``, or a `ZoneInfo`.

    Returns:
        The instant, in UTC.

    Raises:
        ValueError: If `wall` is aware or `zone` is unknown.
        OverflowError: Within a day or so of `datetime.min` / `datetime.max`.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"wall time must be naive (no time zone), got {wall!r}")
    tz = _tz(zone)
    naive = wall.replace(fold=0)
    first = naive.replace(tzinfo=tz).astimezone(UTC)
    if _wall(first, tz) == naive:
        return first  # exists; fold=0 is the first occurrence of an ambiguous time
    # Skipped by a gap. The two readings of the offset bracket the end of the gap: before it the
    # clock shows less than `naive`, from it on at least `naive`. Bisect to the microsecond.
    other = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(first, other), max(first, other)
    lo, hi = 0, (high - low) // _MICROSECOND
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(low + mid * _MICROSECOND, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return low + hi * _MICROSECOND


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """A temporary change to a rota, in force for instants ``start <= t < end``.

    * ``replaces="bob"``: whenever bob is the *scheduled* member during the override,
      `responder` is on call instead of bob. It has no effect while someone else is scheduled,
      and it acts on the schedule only, never on another override: two overrides "bob replaces
      alice" and "alice replaces bob" for the same period swap their shifts.
    * ``replaces=None``: `responder` is on call in addition to whoever else is, for the whole
      period.

    Attributes:
        rota: Name of the rota this override belongs to (must equal `Rota.name`).
        responder: Who covers.
        replaces: Whom they cover for, or None to add cover.
        start: First instant in force (aware).
        end: First instant no longer in force (aware, after `start`).

    Raises:
        ValueError: On construction, for naive datetimes, ``end <= start`` or empty names.
    """

    rota: str
    responder: str
    replaces: str | None = None
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not self.rota or not self.responder or self.replaces == "":
            raise ValueError("an override needs a rota, a responder and a non-empty replaces")
        if _utc(self.end, "override end") <= _utc(self.start, "override start"):
            raise ValueError(f"override end {self.end} must be after its start {self.start}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rota:
    """A rotation of members through shifts, plus overrides.

    Hand-offs happen at the wall time `handoff` in `zone` (by the wall-time rule of
    `from_wall`, so on both sides of DST), and depend on `shift`:

    * ``"daily"``: one hand-off on every date (in `zone`) whose weekday is in `days`; each
      hand-off passes the rota to the next member. With ``days = {0, 3}`` (Monday and
      Thursday) shifts run Monday -> Thursday -> Monday.
    * ``"weekly"``: one hand-off per calendar week, on the earliest weekday in `days` (Monday
      first); with the default `days` that is Monday. Every hand-off passes to the next member.
    * a `timedelta` ``L``: hand-offs at the wall times ``w0 + k * L`` for every integer ``k``,
      where ``w0`` is the wall time of `start`. Shifts are ``L`` long as the wall clock counts,
      so "12h" from 09:00 hands off at 09:00 and 21:00 local all year; the shift across a DST
      change lasts an hour more or less in elapsed time. `handoff` is not used and `days`
      must be left at `ALL_DAYS`. If a clock jump is at least ``L`` long, a shift can fall
      wholly into it: it then lasts zero time and its member is passed over for that turn.

    The shift containing the instant `start` belongs to ``members[0]``; the shifts after it go
    to ``members[1]``, ``members[2]``, ... cyclically, and the shifts before it go backwards
    the same way (so the rota also answers for instants before `start`). A name may appear
    more than once in `members` to give that person more turns.

    Attributes:
        name: The rota's name (``rota:NAME`` in paging policies).
        members: Responder names in rotation order; may be empty (then only overrides that add
            cover put anyone on call).
        zone: IANA time zone of `handoff`, e.g. ``"Europe/Berlin"``.
        handoff: Wall time of each hand-off (naive `datetime.time`).
        days: Weekdays with hand-offs, 0 = Monday ... 6 = Sunday; non-empty.
        shift: ``"daily"``, ``"weekly"`` or a positive wall-clock length.
        start: An instant (aware) inside the first shift of ``members[0]``.
        overrides: Overrides of this rota (each with ``rota == name``).

    Raises:
        ValueError: On construction, for an unknown zone, an aware `handoff`, empty or
            out-of-range `days`, a non-positive or unknown `shift`, `days` with a timedelta
            shift, a naive `start`, or an override of another rota.
    """

    name: str
    members: tuple[str, ...]
    zone: str
    handoff: time
    days: frozenset[int] = ALL_DAYS
    shift: Shift = "daily"
    start: datetime
    overrides: tuple[Override, ...] = ()

    def __post_init__(self) -> None:
        _tz(self.zone)
        if self.handoff.tzinfo is not None:
            raise ValueError("handoff must be a wall time without a time zone")
        if not self.days or not self.days <= ALL_DAYS:
            raise ValueError(f"days must be a non-empty set of 0..6, got {sorted(self.days)}")
        if isinstance(self.shift, timedelta):
            if self.shift <= timedelta(0):
                raise ValueError(f"shift must be positive, got {self.shift}")
            if self.days != ALL_DAYS:
                raise ValueError("days only applies to daily and weekly shifts")
        elif self.shift not in ("daily", "weekly"):
            raise ValueError(f'shift must be "daily", "weekly" or a timedelta, not {self.shift!r}')
        _utc(self.start, "rota start")
        for override in self.overrides:
            if override.rota != self.name:
                raise ValueError(f"override of rota {override.rota!r} given to rota {self.name!r}")


# --------------------------------------------------------------------------- the schedule


@dataclass(frozen=True, slots=True)
class _Schedule:
    """A rota's hand-offs as a non-decreasing sequence ``boundary(k)`` over all integers k."""

    boundary: Callable[[int], datetime]
    guess: Callable[[datetime], int]

    def index(self, instant: datetime) -> int:
        """The largest k with ``boundary(k) <= instant`` (`instant` in UTC)."""
        boundary = self.boundary
        lo = self.guess(instant)
        hi = lo + 1
        step = 1
        while boundary(lo) > instant:
            hi, lo, step = lo, lo - step, step * 2
        step = 1
        while boundary(hi) <= instant:
            lo, hi, step = hi, hi + step, step * 2
        while hi - lo > 1:  # boundary(lo) <= instant < boundary(hi)
            mid = (lo + hi) // 2
            if boundary(mid) <= instant:
                lo = mid
            else:
                hi = mid
        return lo


def _schedule(rota: Rota) -> _Schedule:
    tz = _tz(rota.zone)
    shift = rota.shift
    if isinstance(shift, timedelta):
        origin = _wall(_utc(rota.start, "rota start"), tz)

        def boundary(k: int) -> datetime:
            return from_wall(origin + k * shift, tz)

        def guess(instant: datetime) -> int:
            return (_wall(instant, tz) - origin) // shift

        return _Schedule(boundary, guess)

    days = sorted(rota.days) if shift == "daily" else [min(rota.days)]
    per_week = len(days)
    handoff = rota.handoff

    def dated_boundary(k: int) -> datetime:
        week, rank = divmod(k, per_week)
        day = date.fromordinal(week * 7 + days[rank] + 1)  # ordinal 1 is a Monday
        return from_wall(datetime.combine(day, handoff), tz)

    def dated_guess(instant: datetime) -> int:
        week, weekday = divmod(_wall(instant, tz).toordinal() - 1, 7)
        return week * per_week + sum(1 for day in days if day <= weekday) - 1

    return _Schedule(dated_boundary, dated_guess)


def _scheduled(rota: Rota, schedule: _Schedule, instant: datetime) -> str | None:
    if not rota.members:
        return None
    offset = schedule.index(instant) - schedule.index(_utc(rota.start, "rota start"))
    return rota.members[offset % len(rota.members)]


def _on_call(rota: Rota, schedule: _Schedule, instant: datetime) -> tuple[str, ...]:
    scheduled = _scheduled(rota, schedule, instant)
    active = [
        (_utc(o.start, "override start"), index, o)
        for index, o in enumerate(rota.overrides)
        if _utc(o.start, "override start") <= instant < _utc(o.end, "override end")
    ]
    active.sort(key=lambda item: item[:2])
    names: list[str] = []
    if scheduled is not None:
        covering = [
            o
            for _, _, o in active
            if o.replaces is not None and o.replaces.casefold() == scheduled.casefold()
        ]
        names.append(covering[-1].responder if covering else scheduled)
    names.extend(o.responder for _, _, o in active if o.replaces is None)
    unique: dict[str, str] = {}
    for name in names:
        unique.setdefault(name.casefold(), name)
    return tuple(unique.values())


def on_call(rota: Rota, at: datetime) -> tuple[str, ...]:
    """Return who is on call on `rota` at the instant `at`.

    The scheduled member is the member of the shift containing `at` (see `Rota`). Then:

    1. If overrides in force at `at` replace the scheduled member, the responder of the one
       that started last is on call instead (of two starting together, the later in
       `Rota.overrides`). Replacing someone who is not scheduled at `at` changes nothing.
    2. The responders of overrides in force at `at` that add cover (``replaces=None``) follow,
       in order of their start (then their order in `Rota.overrides`).

    Names are compared ignoring case and each person is listed once (first spelling kept).

    Guarantees, for every instant: with at least one member, the result holds exactly one
    scheduled (or replacing) person plus any added cover, so there is never a gap and never two
    scheduled people at once; with no members, only added cover (possibly nobody). The answer
    changes only at the instants `next_handoffs` lists.

    Args:
        rota: The rota.
        at: The instant (aware, any zone).

    Returns:
        The names on call, the scheduled (or replacing) person first.

    Raises:
        ValueError: If `at` is naive.
    """
    return _on_call(rota, _schedule(rota), _utc(at, "at"))


def shift_start(rota: Rota, at: datetime) -> datetime:
    """Return the hand-off that began the shift containing `at` (in UTC).

    It is at most `at`, and `on_call` ignoring overrides is the same from it up to `at`.

    Raises:
        ValueError: If `at` is naive.
    """
    schedule = _schedule(rota)
    return schedule.boundary(schedule.index(_utc(at, "at")))


def next_handoffs(
    rota: Rota, after: datetime, count: int
) -> list[tuple[datetime, tuple[str, ...]]]:
    """Return the next `count` instants after `after` at which `on_call` changes.

    An instant is listed when the *set* of people on call from it differs from the set just
    before it: a scheduled hand-off to another person, or an override starting or ending while
    it matters. Hand-offs that change nobody (a one-member rota, a member following themself,
    an override covering both sides) are not listed.

    Guarantees: the instants are strictly increasing and all later than `after`; each comes with
    ``on_call(rota, instant)``; `on_call` is constant between `after` and the first instant and
    between consecutive instants. Fewer than `count` entries are returned only when the on-call
    set never changes again: fewer than two distinct members, and no later override start or
    end changes anything. (The search walks every hand-off until the set changes, so an override
    that hides all changes for years makes it correspondingly slower.)

    Args:
        rota: The rota.
        after: The instant to look after (aware, any zone); a change exactly at `after` is not
            listed.
        count: How many changes to return; 0 or less gives an empty list.

    Returns:
        ``(instant in UTC, names on call from that instant)`` pairs, earliest first.

    Raises:
        ValueError: If `after` is naive.
    """
    begin = _utc(after, "after")
    if count <= 0:
        return []
    schedule = _schedule(rota)
    edges = sorted(
        {
            edge
            for o in rota.overrides
            for edge in (_utc(o.start, "override start"), _utc(o.end, "override end"))
            if edge > begin
        }
    )
    candidates: Iterator[datetime] = iter(edges)
    if len({member.casefold() for member in rota.members}) > 1:

        def handoffs() -> Iterator[datetime]:
            k = schedule.index(begin) + 1
            while True:
                yield schedule.boundary(k)
                k += 1

        candidates = heapq.merge(edges, handoffs())

    current = {name.casefold() for name in _on_call(rota, schedule, begin)}
    found: list[tuple[datetime, tuple[str, ...]]] = []
    previous: datetime | None = None
    for instant in candidates:
        if instant == previous:
            continue
        previous = instant
        names = _on_call(rota, schedule, instant)
        folded = {name.casefold() for name in names}
        if folded != current:
            found.append((instant, names))
            current = folded
            if len(found) >= count:
                break
    return found
