"""Tests for bot.paging.rota (who is on call when, across DST) and business hours.

Table tests pin hand-offs to exact UTC instants in zones with and without DST; hypothesis
properties check the guarantees (exactly one scheduled member at every instant, changes only
at the listed hand-offs, hand-offs at the right wall time) against a brute-force oracle.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import BusinessHours
from bot.paging.rota import (
    ALL_DAYS,
    Override,
    Rota,
    Shift,
    from_wall,
    next_handoffs,
    on_call,
    shift_start,
)

BERLIN = "Europe/Berlin"  # CET/CEST; 2026: forward 03-29 02:00->03:00, back 10-25 03:00->02:00
NEW_YORK = "America/New_York"  # 2026: forward 03-08 02:00->03:00, back 11-01 02:00->01:00
BOGOTA = "America/Bogota"  # -05:00, no DST
KABUL = "Asia/Kabul"  # +04:30, no DST
LORD_HOWE = "Australia/Lord_Howe"  # 30-minute DST
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
US = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    """An instant given as UTC fields."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    """An aware datetime in `zone` (for inputs; results are compared in UTC)."""
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


def make(
    members: tuple[str, ...] = ("alice", "bob", "carol"),
    zone: str = BERLIN,
    handoff: time = time(9),
    days: frozenset[int] = ALL_DAYS,
    shift: Shift = "daily",
    start: date = date(2026, 1, 5),
    overrides: tuple[Override, ...] = (),
) -> Rota:
    """A rota whose members[0] starts at `start`'s hand-off (like the config builds it)."""
    return Rota(
        name="r",
        members=members,
        zone=zone,
        handoff=handoff,
        days=days,
        shift=shift,
        start=from_wall(datetime.combine(start, handoff), zone),
        overrides=overrides,
    )


def cover(responder: str, start: datetime, end: datetime, replaces: str | None = None) -> Override:
    """An override of rota "r"."""
    return Override(rota="r", responder=responder, replaces=replaces, start=start, end=end)


def walls(rota: Rota, after: datetime, count: int) -> list[tuple[str, str]]:
    """next_handoffs as (local wall time with offset, names joined) for readable tables."""
    zone = ZoneInfo(rota.zone)
    return [
        (t.astimezone(zone).strftime("%Y-%m-%d %a %H:%M%z"), "+".join(names))
        for t, names in next_handoffs(rota, after, count)
    ]


# --------------------------------------------------------------------------- from_wall


@pytest.mark.parametrize(
    ("zone", "wall", "expected"),
    [
        (BERLIN, datetime(2026, 1, 5, 9), utc(2026, 1, 5, 8)),
        (BERLIN, datetime(2026, 7, 1, 9), utc(2026, 7, 1, 7)),
        # Spring forward: 02:30 does not exist; the first valid instant after is 03:00 CEST.
        (BERLIN, datetime(2026, 3, 29, 2, 30), utc(2026, 3, 29, 1)),
        (BERLIN, datetime(2026, 3, 29, 2, 0), utc(2026, 3, 29, 1)),
        (BERLIN, datetime(2026, 3, 29, 3, 0), utc(2026, 3, 29, 1)),
        (BERLIN, datetime(2026, 3, 29, 1, 59, 59), utc(2026, 3, 29, 0, 59, 59)),
        # Fall back: 02:30 happens twice; the first occurrence (CEST) is the one.
        (BERLIN, datetime(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)),
        (BERLIN, datetime(2026, 10, 25, 3, 0), utc(2026, 10, 25, 2)),
        (NEW_YORK, datetime(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7)),
        (NEW_YORK, datetime(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)),
        (BOGOTA, datetime(2026, 3, 29, 9), utc(2026, 3, 29, 14)),
        (KABUL, datetime(2026, 3, 29, 9), utc(2026, 3, 29, 4, 30)),
        # Lord Howe moves its clocks by 30 minutes: 02:00 -> 02:30 on 2026-10-04.
        (LORD_HOWE, datetime(2026, 10, 4, 2, 15), utc(2026, 10, 3, 15, 30)),
    ],
)
def test_from_wall(zone: str, wall: datetime, expected: datetime) -> None:
    """A wall time is reached at the first instant the local clock shows it or later."""
    assert from_wall(wall, zone) == expected
    assert from_wall(wall, zone).tzinfo is UTC
    assert from_wall(wall, ZoneInfo(zone)) == expected


def test_from_wall_ignores_fold_and_refuses_aware_or_unknown_zones() -> None:
    """fold=1 on input still gives the first occurrence; aware walls and bad zones fail."""
    assert from_wall(datetime(2026, 10, 25, 2, 30, fold=1), BERLIN) == utc(2026, 10, 25, 0, 30)
    with pytest.raises(ValueError, match="naive"):
        from_wall(utc(2026, 1, 1), BERLIN)
    with pytest.raises(ValueError, match="unknown time zone"):
        from_wall(datetime(2026, 1, 1), "Europe/Berln")


# --------------------------------------------------------------------------- daily


@pytest.mark.parametrize(
    ("zone", "first"),
    [
        (BERLIN, utc(2026, 1, 5, 8)),
        (BOGOTA, utc(2026, 1, 5, 14)),
        (KABUL, utc(2026, 1, 5, 4, 30)),
        (NEW_YORK, utc(2026, 1, 5, 14)),
    ],
)
def test_daily_hands_off_at_local_wall_time(zone: str, first: datetime) -> None:
    """Daily rotas hand off at 09:00 local, rotating through the members."""
    rota = make(zone=zone)
    changes = next_handoffs(rota, first - US, 4)
    assert changes == [
        (first, ("alice",)),
        (first + timedelta(days=1), ("bob",)),
        (first + timedelta(days=2), ("carol",)),
        (first + timedelta(days=3), ("alice",)),
    ]
    assert on_call(rota, first - US) == ("carol",)
    assert on_call(rota, first) == ("alice",)
    assert on_call(rota, first + timedelta(hours=23, minutes=59)) == ("alice",)


def test_daily_across_both_berlin_transitions_stays_at_nine_local() -> None:
    """09:00 local is 08:00 UTC in winter and 07:00 UTC in summer; the DST days have 23 and
    25 hour shifts, never a gap or a doubled hand-off."""
    rota = make(members=("alice", "bob"))
    assert walls(rota, utc(2026, 3, 28), 3) == [
        ("2026-03-28 Sat 09:00+0100", "alice"),
        ("2026-03-29 Sun 09:00+0200", "bob"),
        ("2026-03-30 Mon 09:00+0200", "alice"),
    ]
    spring = [t for t, _ in next_handoffs(rota, utc(2026, 3, 28), 3)]
    assert spring[1] - spring[0] == timedelta(hours=23)
    assert walls(rota, utc(2026, 10, 24), 3) == [
        ("2026-10-24 Sat 09:00+0200", "alice"),
        ("2026-10-25 Sun 09:00+0100", "bob"),
        ("2026-10-26 Mon 09:00+0100", "alice"),
    ]
    autumn = [t for t, _ in next_handoffs(rota, utc(2026, 10, 24), 3)]
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_handoff_at_0230_on_spring_forward_day_happens_at_0300() -> None:
    """02:30 does not exist on 2026-03-29 in Berlin: the hand-off is at 03:00 CEST."""
    rota = make(members=("alice", "bob"), handoff=time(2, 30))
    assert walls(rota, utc(2026, 3, 27, 12), 3) == [
        ("2026-03-28 Sat 02:30+0100", "alice"),
        ("2026-03-29 Sun 03:00+0200", "bob"),
        ("2026-03-30 Mon 02:30+0200", "alice"),
    ]
    assert on_call(rota, utc(2026, 3, 29, 0, 59, 59)) == ("alice",)
    assert on_call(rota, utc(2026, 3, 29, 1)) == ("bob",)


def test_handoff_at_0230_on_fall_back_day_happens_once() -> None:
    """02:30 happens twice on 2026-10-25 in Berlin: one hand-off, at the first; the second
    02:30 (CET) is in the middle of the same shift."""
    rota = make(members=("alice", "bob"), handoff=time(2, 30))
    changes = next_handoffs(rota, utc(2026, 10, 24, 12), 3)
    assert [t for t, _ in changes] == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]
    first, _ = changes[0]
    second_0230 = local(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second_0230.astimezone(UTC) == utc(2026, 10, 25, 1, 30)
    # (Arithmetic on a ZoneInfo datetime is wall-clock arithmetic and drops fold: go via UTC.)
    just_before = second_0230.astimezone(UTC) - US
    assert on_call(rota, second_0230) == on_call(rota, first) == on_call(rota, just_before)
    assert changes[1][0] - first == timedelta(hours=25)


def test_new_york_spring_forward_and_ambiguous_fall_back() -> None:
    """New York: 02:30 on 2026-03-08 is at 03:00 EDT; 01:30 on 2026-11-01 (which happens
    twice) hands off once, at the EDT one."""
    spring = make(members=("alice", "bob"), zone=NEW_YORK, handoff=time(2, 30))
    assert next_handoffs(spring, utc(2026, 3, 8), 1)[0][0] == utc(2026, 3, 8, 7)
    autumn = make(members=("alice", "bob"), zone=NEW_YORK, handoff=time(1, 30))
    times = [t for t, _ in next_handoffs(autumn, utc(2026, 10, 31, 12), 2)]
    assert times == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_weekday_limited_daily_rota() -> None:
    """days = {mon, thu}: hand-offs only on Monday and Thursday; shifts of 3 and 4 days."""
    rota = make(members=("alice", "bob"), days=frozenset({MON, THU}))
    assert walls(rota, utc(2026, 1, 5), 5) == [
        ("2026-01-05 Mon 09:00+0100", "alice"),
        ("2026-01-08 Thu 09:00+0100", "bob"),
        ("2026-01-12 Mon 09:00+0100", "alice"),
        ("2026-01-15 Thu 09:00+0100", "bob"),
        ("2026-01-19 Mon 09:00+0100", "alice"),
    ]
    assert on_call(rota, local(BERLIN, 2026, 1, 7, 23)) == ("alice",)
    assert on_call(rota, local(BERLIN, 2026, 1, 11, 12)) == ("bob",)
    # Across the spring-forward weekend the Thursday shift is 4 days minus an hour.
    assert walls(rota, utc(2026, 3, 26, 12), 1) == [("2026-03-30 Mon 09:00+0200", "alice")]


def test_start_outside_the_listed_days_gives_members0_the_shift_containing_it() -> None:
    """The shift containing `start` is members[0]'s, even when start is not a hand-off."""
    rota = Rota(
        name="r",
        members=("alice", "bob"),
        zone=BERLIN,
        handoff=time(9),
        days=frozenset({MON, THU}),
        start=local(BERLIN, 2026, 1, 6, 12),  # a Tuesday, inside the Monday shift
    )
    assert on_call(rota, local(BERLIN, 2026, 1, 5, 9)) == ("alice",)
    assert on_call(rota, local(BERLIN, 2026, 1, 5, 8, 59)) == ("bob",)
    assert shift_start(rota, local(BERLIN, 2026, 1, 7)) == utc(2026, 1, 5, 8)


def test_before_start_the_rotation_runs_backwards() -> None:
    """Instants before start are answered too (no gap): the order continues backwards."""
    rota = make()
    assert on_call(rota, local(BERLIN, 2026, 1, 4, 12)) == ("carol",)
    assert on_call(rota, local(BERLIN, 2026, 1, 3, 12)) == ("bob",)
    assert on_call(rota, local(BERLIN, 2026, 1, 2, 12)) == ("alice",)
    assert on_call(rota, local(BERLIN, 2025, 1, 5, 12)) == on_call(
        rota, local(BERLIN, 2025, 1, 5, 12) + timedelta(days=3)
    )


# --------------------------------------------------------------------------- weekly, durations


def test_weekly_rota_hands_off_on_the_first_listed_day() -> None:
    """Weekly: one hand-off per week, Monday 09:00 by default, on Wednesday with {wed}."""
    rota = make(members=("alice", "bob"), shift="weekly")
    assert walls(rota, utc(2026, 3, 20), 3) == [
        ("2026-03-23 Mon 09:00+0100", "bob"),
        ("2026-03-30 Mon 09:00+0200", "alice"),
        ("2026-04-06 Mon 09:00+0200", "bob"),
    ]
    assert on_call(rota, local(BERLIN, 2026, 1, 11, 23)) == ("alice",)
    assert on_call(rota, local(BERLIN, 2026, 1, 12, 9)) == ("bob",)
    wednesday = make(
        members=("alice", "bob"), shift="weekly", days=frozenset({WED}), start=date(2026, 1, 7)
    )
    assert walls(wednesday, utc(2026, 1, 7), 2) == [
        ("2026-01-07 Wed 09:00+0100", "alice"),
        ("2026-01-14 Wed 09:00+0100", "bob"),
    ]
    several = make(members=("alice", "bob"), shift="weekly", days=frozenset({FRI, TUE}))
    # Tuesday is the first of {tue, fri}; the 2026-01-05 start lies in the 12-30 shift.
    assert walls(several, utc(2026, 1, 10), 1) == [("2026-01-13 Tue 09:00+0100", "alice")]


def test_duration_shifts_follow_the_local_clock_across_dst() -> None:
    """12h shifts from 09:00 hand off at 09:00 and 21:00 local all year; the shift across
    the change is 11 (spring) or 13 (autumn) hours long."""
    rota = make(members=("alice", "bob"), shift=timedelta(hours=12))
    assert walls(rota, utc(2026, 3, 28, 12), 3) == [
        ("2026-03-28 Sat 21:00+0100", "bob"),
        ("2026-03-29 Sun 09:00+0200", "alice"),
        ("2026-03-29 Sun 21:00+0200", "bob"),
    ]
    times = [t for t, _ in next_handoffs(rota, utc(2026, 3, 28, 12), 2)]
    assert times[1] - times[0] == timedelta(hours=11)
    times = [t for t, _ in next_handoffs(rota, utc(2026, 10, 24, 12), 2)]
    assert times[1] - times[0] == timedelta(hours=13)
    three_day = make(members=("alice", "bob"), shift=timedelta(days=3))
    assert walls(three_day, utc(2026, 1, 5), 2) == [
        ("2026-01-05 Mon 09:00+0100", "alice"),
        ("2026-01-08 Thu 09:00+0100", "bob"),
    ]


def test_one_hour_shift_whose_start_the_clocks_skip_is_passed_over() -> None:
    """Hourly shifts on the hour: 02:00 does not exist on 2026-03-29, so its shift has zero
    length and the member after it takes over at 03:00 CEST; still exactly one on call."""
    rota = make(members=("a", "b", "c"), handoff=time(0), shift=timedelta(hours=1))
    before = on_call(rota, utc(2026, 3, 29, 0, 30))  # 01:30 CET
    after = on_call(rota, utc(2026, 3, 29, 1))  # 03:00 CEST
    order = ["a", "b", "c"]
    assert order.index(after[0]) == (order.index(before[0]) + 2) % 3
    assert len(after) == 1


def test_one_member_rota_never_changes() -> None:
    """A one-member rota has nobody to hand off to: no changes are listed."""
    rota = make(members=("alice",))
    assert next_handoffs(rota, utc(2026, 1, 1), 3) == []
    assert on_call(rota, utc(2030, 6, 1)) == ("alice",)
    assert next_handoffs(make(), utc(2026, 1, 1), 0) == []


def test_naive_instants_are_refused() -> None:
    """on_call, next_handoffs and shift_start refuse naive datetimes."""
    rota = make()
    for call in (
        lambda: on_call(rota, datetime(2026, 1, 1)),
        lambda: next_handoffs(rota, datetime(2026, 1, 1), 1),
        lambda: shift_start(rota, datetime(2026, 1, 1)),
    ):
        with pytest.raises(ValueError, match="aware"):
            call()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"zone": "Mars/Olympus"}, "unknown time zone"),
        ({"days": frozenset()}, "days"),
        ({"days": frozenset({7})}, "days"),
        ({"shift": timedelta(0)}, "positive"),
        ({"shift": "monthly"}, "daily"),
        ({"shift": timedelta(hours=12), "days": frozenset({MON})}, "days only applies"),
        ({"start": datetime(2026, 1, 5, 9)}, "aware"),
        ({"handoff": time(9, tzinfo=UTC)}, "handoff"),
        (
            {
                "overrides": (
                    Override(rota="x", responder="a", start=utc(2026, 1, 1), end=utc(2026, 1, 2)),
                )
            },
            "rota 'x'",
        ),
    ],
)
def test_rota_validation(changes: dict[str, object], message: str) -> None:
    """Rota refuses inconsistent fields at construction."""
    fields: dict[str, object] = {
        "name": "r",
        "members": ("a",),
        "zone": BERLIN,
        "handoff": time(9),
        "start": utc(2026, 1, 5, 8),
    }
    with pytest.raises(ValueError, match=message):
        Rota(**{**fields, **changes})  # type: ignore[arg-type]


def test_override_validation() -> None:
    """Overrides need aware times, end after start, and names."""
    with pytest.raises(ValueError, match="after"):
        cover("a", utc(2026, 1, 2), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="aware"):
        cover("a", datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="responder"):
        cover("", utc(2026, 1, 1), utc(2026, 1, 2))


# --------------------------------------------------------------------------- overrides


def test_override_replacing_mid_shift() -> None:
    """carol replaces alice from 12:00 to 18:00 inside alice's shift; listed as changes."""
    rota = make(
        members=("alice", "bob"),
        overrides=(
            cover("carol", local(BERLIN, 2026, 1, 5, 12), local(BERLIN, 2026, 1, 5, 18), "alice"),
        ),
    )
    assert walls(rota, utc(2026, 1, 5, 8), 3) == [
        ("2026-01-05 Mon 12:00+0100", "carol"),
        ("2026-01-05 Mon 18:00+0100", "alice"),
        ("2026-01-06 Tue 09:00+0100", "bob"),
    ]
    assert on_call(rota, local(BERLIN, 2026, 1, 5, 17, 59)) == ("carol",)


def test_override_spanning_a_handoff_only_replaces_the_named_member() -> None:
    """carol replaces alice for two days: she covers alice's shift, bob keeps his, and the
    override's start inside bob's shift changes nothing (so it is not listed)."""
    rota = make(
        members=("alice", "bob"),
        overrides=(
            cover("carol", local(BERLIN, 2026, 1, 6, 12), local(BERLIN, 2026, 1, 8, 12), "alice"),
        ),
    )
    assert walls(rota, local(BERLIN, 2026, 1, 6, 10), 4) == [
        ("2026-01-07 Wed 09:00+0100", "carol"),
        ("2026-01-08 Thu 09:00+0100", "bob"),
        ("2026-01-09 Fri 09:00+0100", "alice"),
        ("2026-01-10 Sat 09:00+0100", "bob"),
    ]


def test_override_adding_cover() -> None:
    """An override without replaces adds a person next to whoever is scheduled."""
    rota = make(
        members=("alice", "bob"),
        overrides=(cover("dave", local(BERLIN, 2026, 1, 5, 20), local(BERLIN, 2026, 1, 6, 10)),),
    )
    assert walls(rota, local(BERLIN, 2026, 1, 5, 10), 3) == [
        ("2026-01-05 Mon 20:00+0100", "alice+dave"),
        ("2026-01-06 Tue 09:00+0100", "bob+dave"),
        ("2026-01-06 Tue 10:00+0100", "bob"),
    ]


def test_two_overrides_replacing_each_other_swap_shifts() -> None:
    """'bob replaces alice' plus 'alice replaces bob' swaps them (not a chain back to alice)."""
    window = (local(BERLIN, 2026, 1, 5, 9), local(BERLIN, 2026, 1, 7, 9))
    rota = make(
        members=("alice", "bob"),
        overrides=(cover("bob", *window, "alice"), cover("alice", *window, "bob")),
    )
    assert on_call(rota, local(BERLIN, 2026, 1, 5, 12)) == ("bob",)
    assert on_call(rota, local(BERLIN, 2026, 1, 6, 12)) == ("alice",)
    assert on_call(rota, local(BERLIN, 2026, 1, 7, 12)) == ("alice",)


def test_overlapping_replacements_latest_start_wins() -> None:
    """Two overrides replacing the same member at once: the one that started last wins."""
    rota = make(
        members=("alice",),
        overrides=(
            cover("bob", utc(2026, 2, 1), utc(2026, 2, 10), "alice"),
            cover("carol", utc(2026, 2, 3), utc(2026, 2, 5), "alice"),
        ),
    )
    assert [names for _, names in next_handoffs(rota, utc(2026, 1, 1), 5)] == [
        ("bob",),
        ("carol",),
        ("bob",),
        ("alice",),
    ]


def test_override_across_fall_back_uses_wall_times() -> None:
    """An override given in local wall times around the fall-back ends at the right instant:
    from 2026-10-24 18:00 CEST to 2026-10-25 18:00 CET is 25 hours."""
    start = from_wall(datetime(2026, 10, 24, 18), BERLIN)
    end = from_wall(datetime(2026, 10, 25, 18), BERLIN)
    assert end - start == timedelta(hours=25)
    rota = make(members=("alice",), overrides=(cover("carol", start, end, "alice"),))
    assert walls(rota, utc(2026, 10, 24), 3) == [
        ("2026-10-24 Sat 18:00+0200", "carol"),
        ("2026-10-25 Sun 18:00+0100", "alice"),
    ]


def test_override_in_another_zone_and_case_insensitive_names() -> None:
    """Override instants can be in any zone; replaces matches names ignoring case."""
    rota = make(
        members=("Alice", "bob"),
        overrides=(
            cover("carol", local(BOGOTA, 2026, 1, 5, 6), local(BOGOTA, 2026, 1, 5, 7), "alice"),
        ),
    )
    assert on_call(rota, utc(2026, 1, 5, 11, 30)) == ("carol",)
    assert on_call(rota, utc(2026, 1, 5, 12)) == ("Alice",)


def test_empty_rota_with_added_cover() -> None:
    """A rota without members has nobody on call except added cover."""
    rota = make(members=(), overrides=(cover("dave", utc(2026, 1, 1), utc(2026, 1, 2)),))
    assert on_call(rota, utc(2025, 12, 31)) == ()
    assert on_call(rota, utc(2026, 1, 1, 12)) == ("dave",)
    assert next_handoffs(rota, utc(2025, 1, 1), 5) == [
        (utc(2026, 1, 1), ("dave",)),
        (utc(2026, 1, 2), ()),
    ]


def test_scheduled_person_also_added_is_listed_once() -> None:
    """Adding the scheduled person as cover does not list them twice."""
    rota = make(members=("alice",), overrides=(cover("ALICE", utc(2026, 1, 1), utc(2026, 1, 2)),))
    assert on_call(rota, utc(2026, 1, 1, 12)) == ("alice",)
    assert next_handoffs(rota, utc(2025, 1, 1), 3) == []


# --------------------------------------------------------------------------- properties


ZONES = [BERLIN, NEW_YORK, BOGOTA, KABUL, LORD_HOWE, "America/Santiago", "Asia/Tehran", "UTC"]
NAMES = ["alice", "bob", "carol", "dave", "erin"]


def oracle_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """from_wall by brute force: the earliest round-tripping reading, else scan a gap."""
    found = [
        candidate
        for fold in (0, 1)
        if (candidate := wall.replace(tzinfo=zone, fold=fold).astimezone(UTC))
        .astimezone(zone)
        .replace(tzinfo=None)
        == wall
    ]
    if found:
        return min(found)
    probe = wall.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while probe.astimezone(zone).replace(tzinfo=None) < wall:
        probe += timedelta(minutes=1)
    return probe


def oracle_boundaries(rota: Rota, low: datetime, high: datetime) -> list[datetime]:
    """Every hand-off instant from well before `low` to well after `high`, by brute force."""
    zone = ZoneInfo(rota.zone)
    if isinstance(rota.shift, timedelta):
        origin = rota.start.astimezone(zone).replace(tzinfo=None)
        k = (low.astimezone(zone).replace(tzinfo=None) - origin) // rota.shift - 3
        out = []
        while True:
            instant = oracle_instant(origin + k * rota.shift, zone)
            out.append(instant)
            if instant > high + 2 * rota.shift + timedelta(hours=3):
                return out
            k += 1
    days = rota.days if rota.shift == "daily" else {min(rota.days)}
    day = low.astimezone(zone).date() - timedelta(days=9)
    last = high.astimezone(zone).date() + timedelta(days=9)
    out = []
    while day <= last:
        if day.weekday() in days:
            out.append(oracle_instant(datetime.combine(day, rota.handoff), zone))
        day += timedelta(days=1)
    return out


def oracle_schedule(rota: Rota, low: datetime, high: datetime) -> Callable[[datetime], str]:
    """The scheduled member at instants between `low` and `high`, by counting brute-force
    hand-offs between start and the instant."""
    bounds = oracle_boundaries(rota, min(low, rota.start), max(high, rota.start))
    origin = bisect.bisect_right(bounds, rota.start)

    def member(at: datetime) -> str:
        return rota.members[(bisect.bisect_right(bounds, at) - origin) % len(rota.members)]

    return member


def oracle_scheduled(rota: Rota, at: datetime) -> str:
    """The scheduled member at `at`, by brute force."""
    return oracle_schedule(rota, at, at)(at)


@st.composite
def rotas(draw: st.DrawFn) -> Rota:
    """Rotas with 1-4 distinct members, any zone, daily/weekly/duration shifts."""
    zone = draw(st.sampled_from(ZONES))
    members = tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True)))
    handoff = time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 45])))
    shift: Shift = draw(
        st.one_of(
            st.sampled_from(["daily", "weekly"]),
            st.integers(1, 72).map(lambda hours: timedelta(hours=hours)),
        )
    )
    days = ALL_DAYS
    if not isinstance(shift, timedelta):
        days = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
    start = draw(st.datetimes(datetime(2025, 6, 1), datetime(2026, 12, 31), timezones=st.just(UTC)))
    return Rota(
        name="r",
        members=members,
        zone=zone,
        handoff=handoff,
        days=days,
        shift=shift,
        start=start,
    )


instants = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(rotas(), instants)
def test_exactly_one_scheduled_member_matching_the_oracle(rota: Rota, at: datetime) -> None:
    """At every instant exactly one member is on call: the one brute-force counting gives."""
    names = on_call(rota, at)
    assert len(names) == 1
    assert names[0] == oracle_scheduled(rota, at)


@PROPERTY
@given(rotas(), instants)
def test_handoffs_are_exactly_the_oracle_boundaries(rota: Rota, at: datetime) -> None:
    """With distinct members, next_handoffs lists every hand-off after `at` (at the wall
    time the rule gives) and nothing else; the on-call set changes exactly there."""
    changes = next_handoffs(rota, at, 3)
    if len(rota.members) == 1:
        assert changes == []
        return
    assert len(changes) == 3
    horizon = changes[-1][0]
    member = oracle_schedule(rota, at, horizon)
    # A shift that a clock jump swallows whole has zero length: its start is only a change
    # if the member after it differs from the one before.
    expected = [
        b
        for b in sorted(set(oracle_boundaries(rota, at, horizon)))
        if at < b and member(b) != member(b - US)
    ]
    assert [t for t, _ in changes] == expected[:3]
    for instant, names in changes:
        assert instant.tzinfo is UTC
        assert names == on_call(rota, instant) != on_call(rota, instant - US)


@PROPERTY
@given(rotas(), instants, st.floats(0, 1, exclude_max=True))
def test_on_call_is_constant_between_listed_changes(
    rota: Rota, at: datetime, fraction: float
) -> None:
    """Between `at` and the first listed change nobody else comes on call."""
    changes = next_handoffs(rota, at, 1)
    if not changes:
        return
    first = changes[0][0]
    between = min(at + (first - at) * fraction, first - US)
    assert on_call(rota, between) == on_call(rota, at)
    assert shift_start(rota, between) <= between


@st.composite
def rotas_with_overrides(draw: st.DrawFn) -> Rota:
    """Rotas plus 1-3 overrides (replacing a member or anyone, or adding cover)."""
    base = draw(rotas())
    overrides = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(
            st.datetimes(datetime(2025, 12, 1), datetime(2026, 2, 1), timezones=st.just(UTC))
        )
        length = timedelta(minutes=draw(st.integers(1, 7 * 24 * 60)))
        replaces = draw(st.one_of(st.none(), st.sampled_from(NAMES)))
        responder = draw(st.sampled_from(NAMES))
        overrides.append(
            Override(
                rota="r", responder=responder, replaces=replaces, start=start, end=start + length
            )
        )
    return Rota(
        name="r",
        members=base.members,
        zone=base.zone,
        handoff=base.handoff,
        days=base.days,
        shift=base.shift,
        start=base.start,
        overrides=tuple(overrides),
    )


override_instants = st.datetimes(
    datetime(2025, 11, 25), datetime(2026, 2, 15), timezones=st.just(UTC)
)


@PROPERTY
@given(rotas_with_overrides(), override_instants)
def test_overrides_follow_their_definition(rota: Rota, at: datetime) -> None:
    """The scheduled (or replacing) person first, then added cover; each listed once."""
    scheduled = oracle_scheduled(rota, at)
    active = [o for o in rota.overrides if o.start <= at < o.end]
    replacing = [o for o in active if o.replaces == scheduled]
    first = max(replacing, key=lambda o: (o.start, rota.overrides.index(o)), default=None)
    expected = [scheduled if first is None else first.responder]
    for o in sorted(active, key=lambda o: (o.start, rota.overrides.index(o))):
        if o.replaces is None and o.responder not in expected:
            expected.append(o.responder)
    assert on_call(rota, at) == tuple(expected)


@PROPERTY
@given(rotas_with_overrides(), override_instants)
def test_changes_with_overrides_are_complete(rota: Rota, at: datetime) -> None:
    """Every instant where the on-call set could change (hand-offs, override edges) up to the
    last listed change either is listed or changes nothing."""
    changes = next_handoffs(rota, at, 4)
    listed = {t for t, _ in changes}
    ends = [o.end for o in rota.overrides]
    horizon = changes[-1][0] if len(changes) == 4 else max([at, *ends]) + timedelta(days=30)
    edges = {e for o in rota.overrides for e in (o.start, o.end)}
    candidates = set(oracle_boundaries(rota, at, horizon)) | edges
    for instant in sorted(c for c in candidates if at < c <= horizon):
        before = {n for n in on_call(rota, instant - US)}
        after = {n for n in on_call(rota, instant)}
        assert (instant in listed) == (before != after), instant
    if len(changes) < 4:  # nothing changes any more: only possible with one member
        assert len(rota.members) == 1


# --------------------------------------------------------------------------- business hours


OFFICE = BusinessHours.parse("mon-fri 09:00-18:00 Europe/Berlin")


@pytest.mark.parametrize(
    ("at", "is_open", "next_open"),
    [
        (local(BERLIN, 2026, 3, 27, 9, 30), True, local(BERLIN, 2026, 3, 27, 9, 30)),
        (local(BERLIN, 2026, 3, 27, 8, 59), False, local(BERLIN, 2026, 3, 27, 9)),
        (local(BERLIN, 2026, 3, 27, 18), False, local(BERLIN, 2026, 3, 30, 9)),
        # The weekend of the spring-forward: Monday opens at 09:00 CEST (07:00 UTC).
        (local(BERLIN, 2026, 3, 29, 12), False, utc(2026, 3, 30, 7)),
        (utc(2026, 3, 30, 6, 59), False, utc(2026, 3, 30, 7)),
        (utc(2026, 3, 30, 15, 59), True, utc(2026, 3, 30, 15, 59)),
        (utc(2026, 3, 30, 16), False, utc(2026, 3, 31, 7)),
        # The fall-back weekend: Monday opens at 09:00 CET (08:00 UTC).
        (local(BERLIN, 2026, 10, 23, 18, 30), False, utc(2026, 10, 26, 8)),
        (utc(2026, 10, 26, 7, 30), False, utc(2026, 10, 26, 8)),
        (utc(2026, 10, 26, 16, 59), True, utc(2026, 10, 26, 16, 59)),
        (local(NEW_YORK, 2026, 3, 27, 11), True, local(NEW_YORK, 2026, 3, 27, 11)),
        (local(NEW_YORK, 2026, 3, 27, 13), False, local(BERLIN, 2026, 3, 30, 9)),
    ],
)
def test_business_hours(at: datetime, is_open: bool, next_open: datetime) -> None:
    """Office hours are 09:00-18:00 local on weekdays, summer and winter."""
    assert OFFICE.is_open(at) is is_open
    assert OFFICE.next_open(at) == next_open
    assert OFFICE.next_open(at).tzinfo is UTC


def test_business_hours_in_the_dst_night() -> None:
    """Opening at a skipped time opens when the gap ends; at an ambiguous time, at its first
    occurrence; and "Sunday 02:30-03:30" is 30 minutes in spring and 2 hours in autumn."""
    night = BusinessHours.parse("sun 02:30-03:30 Europe/Berlin")
    assert not night.is_open(utc(2026, 3, 29, 0, 59))
    assert night.next_open(utc(2026, 3, 29, 0)) == utc(2026, 3, 29, 1)
    assert night.is_open(utc(2026, 3, 29, 1, 29))
    assert not night.is_open(utc(2026, 3, 29, 1, 30))
    assert night.next_open(utc(2026, 10, 24)) == utc(2026, 10, 25, 0, 30)
    assert night.is_open(utc(2026, 10, 25, 2, 29))
    assert not night.is_open(utc(2026, 10, 25, 2, 30))
    bogota = BusinessHours.parse("sat,sun 10:00-12:00 America/Bogota")
    assert bogota.next_open(utc(2026, 3, 27)) == utc(2026, 3, 28, 15)


@pytest.mark.parametrize(
    ("text", "canonical", "days"),
    [
        ("mon-fri 09:00-18:00 Europe/Berlin", "mon-fri 09:00-18:00 Europe/Berlin", {0, 1, 2, 3, 4}),
        ("MON-wed,fri 8:00-12:30 UTC", "mon-wed,fri 08:00-12:30 UTC", {0, 1, 2, 4}),
        ("fri-mon 10:00-11:00 Asia/Kabul", "mon,fri-sun 10:00-11:00 Asia/Kabul", {0, 4, 5, 6}),
        ("  sun   00:00-23:59   UTC ", "sun 00:00-23:59 UTC", {6}),
    ],
)
def test_business_hours_parse_and_format(text: str, canonical: str, days: set[int]) -> None:
    """Day lists, ranges (also wrapping) and times parse; str() is canonical and re-parses."""
    hours = BusinessHours.parse(text)
    assert hours.days == days
    assert str(hours) == canonical
    assert BusinessHours.parse(str(hours)) == hours


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fri 09:00-18:00", "DAYS HH:MM-HH:MM ZONE"),
        ("mo-fr 09:00-18:00 UTC", 'unknown day "mo-fr"'),
        ("mon-fri 9-18 UTC", "opening and closing times"),
        ("mon-fri 18:00-09:00 UTC", "across midnight"),
        ("mon-fri 09:00-09:00 UTC", "after the opening"),
        ("mon-fri 09:00-18:00 Europe/Berln", 'did you mean "Europe/Berlin"'),
    ],
)
def test_business_hours_errors(text: str, message: str) -> None:
    """Bad hours are refused with a message saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        BusinessHours.parse(text)


def test_business_hours_refuse_naive_instants() -> None:
    """is_open and next_open need aware datetimes."""
    with pytest.raises(ValueError, match="aware"):
        OFFICE.is_open(datetime(2026, 1, 5, 10))
    with pytest.raises(ValueError, match="aware"):
        OFFICE.next_open(datetime(2026, 1, 5, 10))


hours_specs = st.builds(
    lambda days, opens, length, zone: BusinessHours(
        days=frozenset(days),
        opens=time(opens // 60, opens % 60),
        closes=time(min(opens + length, 1439) // 60, min(opens + length, 1439) % 60),
        zone=zone,
    ),
    st.sets(st.integers(0, 6), min_size=1),
    st.integers(0, 22 * 60).map(lambda m: m - m % 15),
    st.integers(30, 12 * 60),
    st.sampled_from(ZONES),
)


@PROPERTY
@given(hours_specs, instants, st.floats(0, 1, exclude_max=True))
def test_next_open_is_the_first_open_instant(
    hours: BusinessHours, at: datetime, fraction: float
) -> None:
    """next_open(at) is open, not before `at`, and it is closed everywhere in between."""
    opening = hours.next_open(at)
    assert opening >= at
    assert hours.is_open(opening)
    assert not hours.is_open(opening - US) or opening == at
    if opening > at:
        assert not hours.is_open(min(at + (opening - at) * fraction, opening - US))
    local_opening = opening.astimezone(ZoneInfo(hours.zone))
    assert local_opening.weekday() in hours.days or opening == at
