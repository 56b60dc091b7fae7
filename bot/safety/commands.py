"""Safety commands as pure decisions: parsing ``/checkin``, ``/code``, ``/tz``, normalising
codes, and deciding what a typed code means. No I/O and no clock reads.

The decisions are deliberately symmetric: the safe code and the duress code lead to the same
visible answer; only what happens behind it differs.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from enum import StrEnum

MAX_CODE_LENGTH = 40
MAX_NOTE_LENGTH = 300
MAX_CHECKIN = timedelta(days=7)
WRONG_CODES_BEFORE_DURESS = 3
_DURATION = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,3})h)?(?:(\d{1,4})m(?:in)?)?$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3])[:.h]([0-5]\d)$")
_OFFSET = re.compile(r"^(?:utc|gmt)?([+-])(\d{1,2})(?::?(\d{2}))?$")


class CodeMatch(StrEnum):
    """What a typed code turned out to be."""

    SAFE = "safe"
    DURESS = "duress"
    WRONG = "wrong"
    NONE_SET = "none_set"  # the defender has set no codes: nothing to compare with
    MISSING = "missing"  # codes are set but none was typed


def normalise_code(text: str) -> str:
    """Return a code as compared: NFC, casefolded, inner spaces collapsed, ends trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def match_code(typed: str | None, typed_digest: str | None, plan: dict[str, object]) -> CodeMatch:
    """Decide what ``typed`` is, given its keyed digest and the digests in ``plan``
    (``safe_code``/``duress_code``). Guarantees the result depends only on digests, never
    on which codes exist beyond what the caller shows (the caller answers SAFE and DURESS
    alike)."""
    safe, duress = plan.get("safe_code"), plan.get("duress_code")
    if not safe and not duress:
        return CodeMatch.NONE_SET
    if not typed:
        return CodeMatch.MISSING
    if duress and typed_digest == duress:
        return CodeMatch.DURESS
    if safe and typed_digest == safe:
        return CodeMatch.SAFE
    return CodeMatch.WRONG


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a check-in is due, and how to tell the defender (local wall clock)."""

    due_at: datetime
    shown: str


def parse_duration(text: str) -> timedelta | None:
    """Parse ``30m``, ``2h``, ``1h30m``, ``1d`` or a bare number of minutes; None if not a
    duration, zero, or longer than a week."""
    folded = text.strip().casefold().replace(" ", "")
    if folded.isdecimal() and len(folded) <= 5:
        found = timedelta(minutes=int(folded))
    else:
        match = _DURATION.fullmatch(folded)
        if match is None or not any(match.groups()):
            return None
        days, hours, minutes = (int(g) if g else 0 for g in match.groups())
        found = timedelta(days=days, hours=hours, minutes=minutes)
    return found if timedelta(0) < found <= MAX_CHECKIN else None


def parse_zone(text: str) -> str | None:
    """Return a canonical time zone name (``Europe/Istanbul``) or a fixed offset written as
    ``UTC+03:00``; None if neither."""
    raw = text.strip()
    offset = _OFFSET.fullmatch(raw.casefold().replace(" ", ""))
    if offset:
        sign, hours, minutes = offset.group(1), int(offset.group(2)), int(offset.group(3) or 0)
        if hours > 14 or minutes >= 60:
            return None
        return f"UTC{sign}{hours:02d}:{minutes:02d}"
    if "/" not in raw and raw.upper() != "UTC":
        return None
    lowered = {name.casefold(): name for name in zoneinfo.available_timezones()}
    return lowered.get(raw.casefold())


def zone_info(zone: str) -> tzinfo | None:
    """Return the tzinfo of a name stored by :func:`parse_zone` (offsets become fixed)."""
    match = re.fullmatch(r"UTC([+-])(\d{2}):(\d{2})", zone)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return timezone(sign * delta, zone)
    try:
        return zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def parse_deadline(text: str, now: datetime, zone: str | None) -> Deadline | str:
    """Parse the time part of ``/checkin``: a duration from now, or a clock time (the next
    time it comes round in the defender's ``zone``). Returns the deadline, or the text key
    of what went wrong: ``checkin_usage`` or ``checkin_needs_tz``."""
    duration = parse_duration(text)
    if duration is not None:
        due = now + duration
        tz = zone_info(zone) if zone else None
        local = due.astimezone(tz) if tz else due
        suffix = f" ({zone})" if zone else " UTC"
        return Deadline(due, local.strftime("%Y-%m-%d %H:%M") + suffix)
    clock = _CLOCK.fullmatch(text.strip().casefold())
    if clock is None:
        return "checkin_usage"
    tz = zone_info(zone) if zone else None
    if tz is None:
        return "checkin_needs_tz"
    local_now = now.astimezone(tz)
    wanted = time(int(clock.group(1)), int(clock.group(2)))
    day: date = local_now.date()
    candidate = datetime.combine(day, wanted, tz)
    if candidate <= local_now:
        candidate = datetime.combine(day + timedelta(days=1), wanted, tz)
    return Deadline(candidate, candidate.strftime("%Y-%m-%d %H:%M") + f" ({zone})")


@dataclass(frozen=True, slots=True)
class Command:
    """A safety command: its name and the rest of the line."""

    name: str
    argument: str


SAFETY_COMMANDS = (
    "/plan",
    "/code",
    "/tz",
    "/checkin",
    "/safe",
    "/contact",
    "/referrer",
    "/drill",
    "/forget",
)
MAX_CONTACTS = 3
_SIGNAL_NUMBER = re.compile(r"^\+[1-9]\d{6,14}$")
# A bare number is a Telegram user id only if it cannot be a phone number written without
# "+" (those start with 0 or are longer); "telegram:123..." is always an id.
_TELEGRAM_ID = re.compile(r"^(?:telegram:(\d{5,15})|([1-9]\d{4,9}))$")


@dataclass(frozen=True, slots=True)
class Contact:
    """A trusted contact: who, where (Signal number or Telegram id), whether they may be
    alerted without a responder deciding, and the message they get (no case details)."""

    name: str
    channel: str
    identity: str
    auto: bool
    message: str

    def to_dict(self) -> dict[str, object]:
        """Return the contact as stored in the (encrypted) safety plan."""
        return {
            "name": self.name,
            "channel": self.channel,
            "identity": self.identity,
            "auto": self.auto,
            "message": self.message,
        }


def parse_contact(argument: str) -> Contact | str:
    """Parse ``NAME, ADDRESS, auto|ask, MESSAGE`` (a Signal number with +country code, or a
    Telegram user id; the Arabic comma separates as well). Returns the contact, or the text
    key of what is wrong."""
    parts = [part.strip() for part in argument.replace("،", ",").split(",", 3)]  # Arabic comma
    if len(parts) != 4 or not parts[0] or not parts[3]:
        return "contact_usage"
    name, address, mode, message = parts
    if mode.casefold() not in ("auto", "ask") or len(name) > 40 or len(message) > 300:
        return "contact_usage"
    compact = address.replace(" ", "").replace("-", "")
    if _SIGNAL_NUMBER.fullmatch(compact):
        channel, identity = "signal", compact
    elif match := _TELEGRAM_ID.fullmatch(compact.casefold()):
        channel, identity = "telegram", match.group(1) or match.group(2)
    else:
        return "contact_bad_address"
    return Contact(name, channel, identity, mode.casefold() == "auto", message)


def safety_command(text: str) -> Command | None:
    """Return the safety command in ``text``, or None. ``/cancel`` is a safety command only
    with a code after it (a bare ``/cancel`` stops a form, as before)."""
    head, _, rest = text.strip().partition(" ")
    name = head.split("@", 1)[0].casefold()
    if name in SAFETY_COMMANDS or (name == "/cancel" and rest.strip()):
        return Command(name, rest.strip())
    return None
