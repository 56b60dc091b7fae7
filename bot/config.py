"""Load and validate the operator's TOML configuration.

`load_config` reads one TOML file and returns a frozen `Config`, or raises a single
`ConfigError` that lists every problem found, each as ``<file>:<line>: <dotted.key>: <problem>``
so an operator can fix the whole file in one pass.

Only the standard library, pydantic and the pure, standard-library-only `bot.paging.rota`
(for the rota and business-hours time arithmetic) are used here; the rest of the project
imports this module, never the other way round.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import functools
import json
import os
import re
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from bot.conversation.languages import DEFAULT_SOS_WORDS
from bot.paging.rota import ALL_DAYS, Override, Rota, from_wall, on_call

__all__ = [
    "DEFAULT_ROTA_START",
    "EXAMPLE_SECRETS",
    "EXAMPLE_SIGNAL_NUMBERS",
    "EXAMPLE_TELEGRAM_IDS",
    "ROTA_ALL_PREFIX",
    "ROTA_PREFIX",
    "TIERS",
    "WEEKDAYS",
    "BusinessHours",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DeliveryConfig",
    "FlowsConfig",
    "KeysConfig",
    "LimitsConfig",
    "LoggingConfig",
    "Operator",
    "OverrideConfig",
    "PagingPolicy",
    "PagingStep",
    "Responder",
    "RotaConfig",
    "SignalConfig",
    "TelegramConfig",
    "Tier",
    "WatchdogConfig",
    "format_duration",
    "load_config",
    "parse_duration",
    "parse_target",
]

TIERS: tuple[str, ...] = ("critical", "high", "medium", "low")
"""Urgency tiers, most to least urgent."""

Tier = Literal["critical", "high", "medium", "low"]

# Placeholder values shipped in config.example.toml. `Config.example_values` flags them so that
# `intake run` refuses to page the example's made-up people or use its fake secrets.
# Keep these in sync with config.example.toml (a unit test checks that they appear there).
EXAMPLE_SIGNAL_NUMBERS: frozenset[str] = frozenset({"+491701234567", "+15550000000"})
EXAMPLE_TELEGRAM_IDS: frozenset[int] = frozenset({123456789})
EXAMPLE_SECRETS: frozenset[str] = frozenset(
    {"123456:EXAMPLE-TOKEN-replace-me", "EXAMPLE-secret-replace-me"}
)

TOKEN_ENV = "INTAKE_TELEGRAM_TOKEN"

_Loc = tuple[str | int, ...]
_Problem = tuple[_Loc, str]

_MAX_DURATION = timedelta(days=30)
_DURATION_RE = re.compile(r"(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?", re.ASCII)
_E164_RE = re.compile(r"\+[1-9]\d{6,14}", re.ASCII)
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)?")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_BARE_VALUE_RE = re.compile(r"[^,\]}\n#]+")
_DB_PREFIXES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
_SQLITE_PREFIX = "sqlite+aiosqlite:///"

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as written in the config, in `datetime.date.weekday` order (0 = Monday)."""

DEFAULT_ROTA_START = date(2026, 1, 5)
"""A rota without `start` begins on the first of its hand-off days on or after this Monday."""

ROTA_PREFIX = "rota:"
"""Policy target ``rota:NAME``: whoever is on call on rota NAME when the step fires."""

ROTA_ALL_PREFIX = "rota-all:"
"""Policy target ``rota-all:NAME``: every member of rota NAME (plus whoever covers now)."""

_SLUG_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}", re.ASCII)
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", re.ASCII)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_LOCAL_DATETIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?", re.ASCII)
_MIN_SHIFT = timedelta(hours=1)
_MAX_BUNDLE_WINDOW = timedelta(minutes=5)
# Keys zoneinfo lists that are not real places: "localtime" means whatever the host is set to.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules", "posix", "right"})


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """The configuration cannot be used; says exactly what to fix.

    Every problem is one line an operator can act on:
    ``<file>:<line>: <dotted.key>: <problem>`` (the line is omitted when unknown), or for a
    file that is not valid TOML ``<file>:<line>:<col>: invalid TOML: <message>``.

    Attributes:
        problems: All problems found, one message per entry, never empty.
    """

    def __init__(self, problems: str | Iterable[str]) -> None:
        """Create the error from one message or a list of messages.

        Args:
            problems: One problem message, or all of them.
        """
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if not self.problems:
            self.problems = ["invalid configuration"]
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        """Return all problems joined by newlines."""
        return "\n".join(self.problems)


# --------------------------------------------------------------------------- durations


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

    Units are ``d``, ``h``, ``m`` and ``s``, written largest first; surrounding spaces are
    ignored. The result is guaranteed to be positive, a whole number of seconds and at most
    30 days.

    Args:
        text: The duration as written in the config file.

    Returns:
        The duration.

    Raises:
        ValueError: If the text is not such a duration (``"0s"``, ``""``, ``"5"``, ``"-5m"``,
            ``"5 minutes"``...) or is longer than 30 days.
    """
    if not isinstance(text, str):
        raise ValueError(f'invalid duration {text!r}: use a string with a unit, e.g. "5m"')
    stripped = text.strip()
    match = _DURATION_RE.fullmatch(stripped)
    if not stripped or match is None:
        raise ValueError(
            f'invalid duration "{text}": use a number with a unit, e.g. "90s", "5m", "2h"'
        )
    days, hours, minutes, seconds = (int(group) if group else 0 for group in match.groups())
    result = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if result <= timedelta(0):
        raise ValueError(
            f'invalid duration "{text}": use a number with a unit, e.g. "90s", "5m", "2h"'
        )
    if result > _MAX_DURATION:
        raise ValueError(f'invalid duration "{text}": must be at most 30 days ("30d")')
    return result


def format_duration(td: timedelta) -> str:
    """Format a duration in the shortest canonical form `parse_duration` accepts.

    ``timedelta(seconds=90)`` gives ``"1m30s"``, ``timedelta(hours=1, minutes=30)`` gives
    ``"1h30m"``. For any duration `parse_duration` accepts,
    ``parse_duration(format_duration(td)) == td``.

    Args:
        td: A positive duration of whole seconds.

    Returns:
        The duration as units largest first, zero units left out.

    Raises:
        ValueError: If the duration is not positive or has a fraction of a second.
    """
    if td <= timedelta(0) or td.microseconds:
        raise ValueError(f"cannot format {td!r}: need a positive whole number of seconds")
    rest = int(td.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --------------------------------------------------------------------------- helpers


def _toml_repr(value: object) -> str:
    """Render a parsed TOML value the way the operator wrote it (short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date | time):
        return f"the date/time {value.isoformat()}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return repr(value)


def _dotted(loc: _Loc) -> str:
    """Render a location as ``paging.critical.steps[1].notify``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part)
        out += f".{name}" if out else name
    return out


def _problems_error(problems: Sequence[_Problem]) -> PydanticCustomError:
    """Wrap several located problems in one pydantic error; `load_config` unpacks them."""
    summary = "; ".join(f"{_dotted(loc)}: {message}" for loc, message in problems)
    return PydanticCustomError(
        "config_problems", "{summary}", {"summary": summary, "problems": list(problems)}
    )


def _base_dir(info: ValidationInfo) -> Path | None:
    """The config file's directory, if validation runs from `load_config`."""
    context = info.context
    if isinstance(context, Mapping):
        base = context.get("base_dir")
        if isinstance(base, Path):
            return base
    return None


def _resolve_path(path: Path, info: ValidationInfo) -> Path:
    """Make a relative path absolute against the config file's directory."""
    path = path.expanduser()
    base = _base_dir(info)
    if path.is_absolute() or base is None:
        return path
    return Path(os.path.normpath(base / path))


def _check_e164(value: str | None, example: str) -> str | None:
    """Check an international phone number like +491701234567."""
    if value is not None and not _E164_RE.fullmatch(value):
        raise ValueError(
            f"expected a phone number in international format like {example}, "
            f"got {_toml_repr(value)}; write + and the country code, no spaces"
        )
    return value


def _check_http_url(value: str) -> str:
    """Check that a URL starts with http:// or https://."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"expected a URL starting with https:// or http://, got {_toml_repr(value)}"
        )
    return value


def parse_target(target: str) -> tuple[Literal["responder", "rota", "rota-all"], str]:
    """Split a policy ``notify`` target into its kind and name.

    ``"rota:primary"`` gives ``("rota", "primary")``, ``"rota-all:primary"`` gives
    ``("rota-all", "primary")`` (prefixes ignore case, spaces around the name are dropped),
    anything else ``("responder", target)``.

    Args:
        target: One entry of ``notify``.

    Returns:
        The kind and the responder or rota name.
    """
    lowered = target.lower()
    if lowered.startswith(ROTA_ALL_PREFIX):
        return "rota-all", target[len(ROTA_ALL_PREFIX) :].strip()
    if lowered.startswith(ROTA_PREFIX):
        return "rota", target[len(ROTA_PREFIX) :].strip()
    return "responder", target


@functools.cache
def _zone_names() -> frozenset[str]:
    """The IANA time zone names this system knows (from the OS or the tzdata package)."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def _check_zone(value: str) -> str:
    """Check an IANA time zone name, suggesting close matches for a wrong one."""
    names = _zone_names()
    if value in names:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            zoneinfo.ZoneInfo(value)
            return value
    if not names:
        raise ValueError(
            f"unknown time zone {_toml_repr(value)}: this system has no time zone data; "
            "install the tzdata package"
        )
    by_lower = {name.lower(): name for name in names}
    wanted = value.strip().lower().replace(" ", "_")
    close = [by_lower[wanted]] if wanted in by_lower else []
    if not close:
        city = wanted.rsplit("/", 1)[-1]
        close = sorted(name for name in names if name.lower().rsplit("/", 1)[-1] == city)[:3]
    if not close:
        # The closest names, leaving out ones clearly worse than the best match.
        scored = sorted(
            (difflib.SequenceMatcher(None, wanted, lower).ratio(), by_lower[lower])
            for lower in difflib.get_close_matches(wanted, list(by_lower), n=3)
        )
        close = [name for ratio, name in reversed(scored) if ratio >= scored[-1][0] - 0.05]
    message = f"unknown time zone {_toml_repr(value)}"
    if close:
        quoted = [json.dumps(name) for name in close]
        listing = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        raise ValueError(f"{message}; did you mean {listing}?")
    raise ValueError(f'{message}; use an IANA name like "Europe/Berlin", "America/Bogota" or "UTC"')


def _parse_duration_value(value: object, example: str) -> object:
    """Before-validator body for duration keys: strings are parsed, timedelta/None kept."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f'expected a duration string like "{example}", got {_toml_repr(value)}')


def _parse_clock(value: object, example: str = "09:00") -> time:
    """A wall-clock time written "HH:MM" (or "HH:MM:SS", or a TOML local time)."""
    if isinstance(value, time) and value.tzinfo is None and not value.microsecond:
        return value
    if isinstance(value, str):
        match = _CLOCK_RE.fullmatch(value.strip())
        if match is not None:
            hour, minute, second = (int(group or 0) for group in match.groups())
            if hour < 24 and minute < 60 and second < 60:
                return time(hour, minute, second)
    raise ValueError(f'expected a local time "HH:MM" like "{example}", got {_toml_repr(value)}')


def _format_clock(value: time) -> str:
    """ "09:00", or "09:00:30" when there are seconds."""
    text = f"{value.hour:02d}:{value.minute:02d}"
    return f"{text}:{value.second:02d}" if value.second else text


def _parse_date(value: object) -> date:
    """A calendar date written "YYYY-MM-DD" (or a TOML local date)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value.strip())
    raise ValueError(f'expected a date "YYYY-MM-DD" like "2026-01-05", got {_toml_repr(value)}')


def _parse_local_datetime(value: object) -> datetime:
    """A wall-clock date and time "YYYY-MM-DD HH:MM" (or a TOML local date-time)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(
                'write a local time without an offset, like "2026-12-24 18:00", and set '
                "zone if it is not the rota's zone"
            )
        return value
    if isinstance(value, str):
        match = _LOCAL_DATETIME_RE.fullmatch(value.strip())
        if match is not None:
            day, hour, minute, second = match.groups()
            with contextlib.suppress(ValueError):
                clock = time(int(hour), int(minute), int(second or 0))
                return datetime.combine(date.fromisoformat(day), clock)
    raise ValueError(
        'expected a local date and time "YYYY-MM-DD HH:MM" like "2026-12-24 18:00", '
        f"got {_toml_repr(value)}"
    )


def _format_local_datetime(value: datetime) -> str:
    """ "2026-12-24 18:00" (seconds only when there are some)."""
    return f"{value.date().isoformat()} {_format_clock(value.time())}"


def _days_text(days: Iterable[int]) -> str:
    """Weekday numbers as names: "mon, thu"."""
    return ", ".join(WEEKDAYS[day] for day in sorted(days))


def _instant(at: datetime, what: str) -> datetime:
    """`at` in UTC; a naive datetime is refused because its instant is unknown."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a time zone), got {at!r}")
    return at.astimezone(UTC)


class _Model(BaseModel):
    """Base of all config models: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- sections


class DatabaseConfig(_Model):
    """Where cases are stored.

    Guarantees `url` starts with ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``. When
    loaded from a file, a relative SQLite file path is made absolute against the config file's
    directory (``sqlite+aiosqlite:////abs/dir/intake-data/intake.db``); other URLs are kept as
    written.
    """

    url: StrictStr = Field(
        default="sqlite+aiosqlite:///intake-data/intake.db", validate_default=True
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(_DB_PREFIXES):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
                f"got {_toml_repr(value)}"
            )
        if not value.startswith(_SQLITE_PREFIX):
            return value
        rest = value[len(_SQLITE_PREFIX) :]
        file_part, sep, query = rest.partition("?")
        if not file_part or file_part == ":memory:" or file_part.startswith(("/", "file:")):
            return value
        resolved = _resolve_path(Path(file_part), info)
        if not resolved.is_absolute():
            return value
        return f"{_SQLITE_PREFIX}{resolved.as_posix()}{sep}{query}"


class KeysConfig(_Model):
    """Where encryption keys live.

    Guarantees `dir` is absolute when loaded from a file (relative paths are resolved against
    the config file's directory).
    """

    dir: Path = Field(default=Path("intake-data/keys"), validate_default=True)

    @field_validator("dir")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve_path(value, info)


class FlowsConfig(_Model):
    """Conversation flows and their default language.

    `dir` is None for the project's own ``flows/`` directory (the application resolves it);
    otherwise it is absolute when loaded from a file. `language` is a code like ``en``,
    ``fa`` or ``pt-BR``.
    """

    dir: Path | None = None
    language: StrictStr = "en"

    @field_validator("dir")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve_path(value, info)

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        if not _LANGUAGE_RE.fullmatch(value):
            raise ValueError(
                f'expected a language code like "en", "fa" or "pt-BR", got {_toml_repr(value)}'
            )
        return value


class LanguagesConfig(_Model):
    """Which languages are offered and which words raise an alarm in each.

    Guarantees: `offered` is non-empty, has no duplicates, and contains the `[flows]`
    language (checked by `Config`); every `sos_words` list is non-empty; `SOS` itself works in
    every language whatever is listed.
    """

    offered: tuple[StrictStr, ...] = ("en", "es", "fr", "ar", "ru", "fa", "pt", "tr")
    sos_words: dict[StrictStr, tuple[StrictStr, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_SOS_WORDS.items()}
    )
    resume_after: timedelta = timedelta(minutes=30)
    draft_expiry: timedelta = timedelta(hours=24)

    @field_validator("offered")
    @classmethod
    def _check_offered(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('list at least one language, e.g. offered = ["en"]')
        for code in value:
            if not _LANGUAGE_RE.fullmatch(code):
                raise ValueError(f'expected language codes like "en", got {_toml_repr(code)}')
        if len(set(value)) != len(value):
            raise ValueError("a language is listed twice")
        return value

    @field_validator("sos_words")
    @classmethod
    def _check_sos_words(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for code, words in value.items():
            if not words or not all(w.strip() for w in words):
                raise ValueError(f"sos_words.{code} must list at least one non-empty word")
        return value

    @field_validator("resume_after", "draft_expiry", mode="before")
    @classmethod
    def _parse_durations(cls, value: object) -> object:
        return _parse_duration_value(value, "30m")

    @field_serializer("resume_after", "draft_expiry", when_used="json")
    def _serialize_durations(self, value: timedelta) -> str:
        return format_duration(value)


class SafetyConfig(_Model):
    """Defender safety features. Guarantees `checkin_grace` is between 1 minute and 2 hours:
    the time between the reminder at a missed check-in and the critical case.
    `auto_alert_after`: how long a critical case may stay untaken before the trusted
    contacts a defender allowed to be alerted automatically get their message.
    `closed_case_days` (1 to 3650): how many days what a defender wrote in a case is kept
    after the case is resolved; then it is crypto-shredded (GlobaLeaks' default is 90)."""

    checkin_grace: timedelta = timedelta(minutes=10)
    auto_alert_after: timedelta = timedelta(minutes=30)
    closed_case_days: StrictInt = Field(default=90, ge=1, le=3650)

    @field_validator("checkin_grace", "auto_alert_after", mode="before")
    @classmethod
    def _parse_grace(cls, value: object) -> object:
        return _parse_duration_value(value, "10m")

    @field_validator("checkin_grace")
    @classmethod
    def _check_grace(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(hours=2):
            raise ValueError(f"must be from 1m to 2h, got {format_duration(value)}")
        return value

    @field_serializer("checkin_grace", "auto_alert_after", when_used="json")
    def _serialize_grace(self, value: timedelta) -> str:
        return format_duration(value)


class LimitsConfig(_Model):
    """Size limits; guarantees 200 <= `max_message_chars` <= 20000."""

    max_message_chars: StrictInt = Field(default=2000, ge=200, le=20000)


class LoggingConfig(_Model):
    """Logging settings; `level` is one of DEBUG, INFO, WARNING, ERROR."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class TelegramConfig(_Model):
    """The Telegram channel.

    When `enabled`, guarantees a `token` (from the file or the INTAKE_TELEGRAM_TOKEN
    environment variable, which wins) and, in webhook mode, a `webhook_url` and a
    `webhook_secret`. A given `webhook_secret` is always 1-256 characters of A-Za-z0-9_-.
    """

    enabled: StrictBool = False
    token: StrictStr | None = None
    base_url: StrictStr = "https://api.telegram.org/bot"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: StrictStr | None = None
    webhook_secret: StrictStr | None = None
    listen: StrictStr = "127.0.0.1:8443"
    delete_after_intake: StrictBool = True
    delete_delay: timedelta = timedelta(seconds=20)

    @field_validator("delete_delay", mode="before")
    @classmethod
    def _parse_delete_delay(cls, value: object) -> object:
        if isinstance(value, timedelta):
            return value
        if isinstance(value, str):
            return parse_duration(value)
        raise ValueError(f'expected a duration string like "20s", got {_toml_repr(value)}')

    @field_serializer("delete_delay", when_used="json")
    def _serialize_delete_delay(self, value: timedelta) -> str:
        return format_duration(value)

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(ch.isspace() for ch in value)):
            raise ValueError("expected the bot token from @BotFather, without spaces")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError(f"Telegram only calls https:// webhooks, got {_toml_repr(value)}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_RE.fullmatch(value):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if (
            not sep
            or not host
            or not (port.isascii() and port.isdigit())
            or not 0 < int(port) < 65536
        ):
            raise ValueError(f'expected host:port like "127.0.0.1:8443", got {_toml_repr(value)}')
        return value

    @model_validator(mode="after")
    def _check_enabled(self) -> TelegramConfig:
        if not self.enabled:
            return self
        problems: list[_Problem] = []
        if self.token is None:
            problems.append(
                (
                    ("token",),
                    "required when telegram is enabled; set token here or the "
                    f"{TOKEN_ENV} environment variable",
                )
            )
        if self.mode == "webhook":
            if self.webhook_url is None:
                problems.append((("webhook_url",), 'required when mode = "webhook"'))
            if self.webhook_secret is None:
                problems.append((("webhook_secret",), 'required when mode = "webhook"'))
        if problems:
            raise _problems_error(problems)
        return self


class SignalConfig(_Model):
    """The Signal channel (through signal-cli-rest-api).

    When `enabled`, guarantees a `number` in E.164 form. `disappearing` is always a valid
    duration (see `parse_duration`) or ``"off"``.
    """

    enabled: StrictBool = False
    api_url: StrictStr = "http://127.0.0.1:8080"
    number: StrictStr | None = None
    receive: Literal["poll", "websocket"] = "poll"
    disappearing: StrictStr = "1d"

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("number")
    @classmethod
    def _check_number(cls, value: str | None) -> str | None:
        return _check_e164(value, '"+15550000000"')

    @field_validator("disappearing")
    @classmethod
    def _check_disappearing(cls, value: str) -> str:
        value = value.strip()
        if value != "off":
            try:
                parse_duration(value)
            except ValueError as exc:
                raise ValueError(f'{exc}; or "off"') from None
        return value

    @model_validator(mode="after")
    def _check_enabled(self) -> SignalConfig:
        if self.enabled and self.number is None:
            raise _problems_error(
                [(("number",), "required when signal is enabled: the bot's own Signal number")]
            )
        return self


class Responder(_Model):
    """A person who can be paged.

    Guarantees a `name` matching ``^[A-Za-z][A-Za-z0-9_-]{0,31}$`` and at least one address:
    `console`, a `signal` number in E.164 form, or a positive `telegram` user id.
    """

    name: StrictStr
    console: StrictBool = False
    signal: StrictStr | None = None
    telegram: StrictInt | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise ValueError(
                "must start with a letter and use only letters, digits, _ and - "
                f"(at most 32 characters), got {_toml_repr(value)}"
            )
        return value

    @field_validator("signal")
    @classmethod
    def _check_signal(cls, value: str | None) -> str | None:
        return _check_e164(value, '"+491701234567"')

    @field_validator("telegram", mode="before")
    @classmethod
    def _check_telegram(cls, value: object) -> object:
        if isinstance(value, str):
            digits = value.strip()
            if digits.isascii() and digits.isdigit():
                raise ValueError(
                    f"expected an integer, got {_toml_repr(value)}; "
                    f"write it without quotes: telegram = {int(digits)}"
                )
            raise ValueError(
                f"expected the numeric Telegram user id (an integer), got {_toml_repr(value)}"
            )
        return value

    @model_validator(mode="after")
    def _check_address(self) -> Responder:
        if not self.console and self.signal is None and self.telegram is None:
            raise ValueError(
                'give at least one address: console = true, signal = "+..." or telegram = 123456789'
            )
        return self


class PagingStep(_Model):
    """One step of a paging ladder: page `notify`, then wait `wait` for an ack.

    Guarantees a non-empty `notify` and a positive `wait` of at most 30 days (written in TOML
    as a duration string like ``"5m"``).
    """

    notify: tuple[StrictStr, ...] = Field(min_length=1)
    wait: timedelta

    @field_validator("wait", mode="before")
    @classmethod
    def _parse_wait(cls, value: object) -> object:
        if isinstance(value, timedelta):
            return value
        if isinstance(value, str):
            return parse_duration(value)
        raise ValueError(f'expected a duration string like "5m", got {_toml_repr(value)}')

    @field_serializer("wait", when_used="json")
    def _serialize_wait(self, value: timedelta) -> str:
        return format_duration(value)


class BusinessHours(_Model):
    """Opening hours, written ``"mon-fri 09:00-18:00 Europe/Berlin"``.

    The first word lists the days: names (``mon`` ... ``sun``), ranges (``mon-fri``; a range
    may wrap, ``fri-mon``) and comma-separated lists of both (``mon-wed,fri``). Then the
    opening and closing wall times, then the IANA zone they are in.

    On each listed day (a date in `zone`) it is open from `opens` (inclusive) to `closes`
    (exclusive), both reached by the wall-time rule of `bot.paging.rota.from_wall`: a time
    skipped by a spring-forward gap is reached when the gap ends, a time that occurs twice on a
    fall-back day at its first occurrence. So "09:00-18:00" means 09:00 to 18:00 local on both
    sides of DST.

    Guarantees non-empty `days` (0 = Monday ... 6 = Sunday), `opens` before `closes` on the
    same day (hours across midnight are not supported) and a known `zone`. `str()` gives the
    canonical text, which `parse` reads back to an equal value.
    """

    days: frozenset[int]
    opens: time
    closes: time
    zone: StrictStr

    @model_validator(mode="after")
    def _check(self) -> BusinessHours:
        if not self.days or not self.days <= ALL_DAYS:
            raise ValueError(f"days must be a non-empty set of 0..6, got {sorted(self.days)}")
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opening and closing times are wall times without a zone")
        if self.closes <= self.opens:
            raise ValueError(
                "the closing time must be after the opening time "
                "(hours across midnight are not supported)"
            )
        _check_zone(self.zone)
        return self

    @classmethod
    def parse(cls, text: str) -> BusinessHours:
        """Read hours written like ``"mon-fri 09:00-18:00 Europe/Berlin"``.

        Args:
            text: Days, opening-closing time, zone, separated by spaces.

        Returns:
            The hours.

        Raises:
            ValueError: Naming what is wrong (unknown day, bad time, closing not after opening,
                unknown zone with suggestions).
        """
        usage = '"DAYS HH:MM-HH:MM ZONE" like "mon-fri 09:00-18:00 Europe/Berlin"'
        parts = text.split()
        if len(parts) != 3:
            raise ValueError(f"expected {usage}, got {_toml_repr(text)}")
        day_spec, span, zone = parts
        days: set[int] = set()
        for piece in day_spec.lower().split(","):
            first, dash, last = piece.partition("-")
            if first not in WEEKDAYS or (dash and last not in WEEKDAYS):
                raise ValueError(
                    f"unknown day {json.dumps(piece)} in {_toml_repr(text)}; use "
                    f"{', '.join(WEEKDAYS)}, a range like mon-fri or a list like mon,wed,fri"
                )
            day = WEEKDAYS.index(first)
            end = WEEKDAYS.index(last) if dash else day
            days.add(day)
            while day != end:
                day = (day + 1) % 7
                days.add(day)
        opens_text, dash, closes_text = span.partition("-")
        try:
            if not dash:
                raise ValueError
            opens, closes = _parse_clock(opens_text), _parse_clock(closes_text)
        except ValueError:
            raise ValueError(
                f"expected opening and closing times like 09:00-18:00 in {_toml_repr(text)}"
            ) from None
        if closes <= opens:
            raise ValueError(
                f"the closing time must be after the opening time in {_toml_repr(text)} "
                "(hours across midnight are not supported)"
            )
        return cls(days=frozenset(days), opens=opens, closes=closes, zone=_check_zone(zone))

    def __str__(self) -> str:
        """The canonical text, e.g. ``"mon-fri 09:00-18:00 Europe/Berlin"``."""
        runs: list[list[int]] = []
        for day in sorted(self.days):
            if runs and runs[-1][-1] == day - 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        spec = ",".join(
            WEEKDAYS[run[0]] if len(run) == 1 else f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}"
            for run in runs
        )
        return f"{spec} {_format_clock(self.opens)}-{_format_clock(self.closes)} {self.zone}"

    def _interval(self, day: date) -> tuple[datetime, datetime]:
        """The instants (UTC) `day` opens and closes; empty if both fall into one gap."""
        return (
            from_wall(datetime.combine(day, self.opens), self.zone),
            from_wall(datetime.combine(day, self.closes), self.zone),
        )

    def _nearby_days(self, at: datetime, after: int) -> Iterable[date]:
        """Listed days from the local day before `at` to `after` days after it, in order."""
        local = at.astimezone(zoneinfo.ZoneInfo(self.zone)).date()
        for offset in range(-1, after + 1):
            day = local + timedelta(days=offset)
            if day.weekday() in self.days:
                yield day

    def is_open(self, at: datetime) -> bool:
        """Return whether it is open at the instant `at` (aware, any zone).

        Raises:
            ValueError: If `at` is naive.
        """
        instant = _instant(at, "at")
        return any(
            opens <= instant < closes
            for opens, closes in map(self._interval, self._nearby_days(instant, 1))
        )

    def next_open(self, at: datetime) -> datetime:
        """Return the first instant at or after `at` at which it is open, in UTC.

        That is `at` itself (in UTC) when `is_open(at)`, otherwise the next opening.

        Raises:
            ValueError: If `at` is naive.
        """
        instant = _instant(at, "at")
        if self.is_open(instant):
            return instant
        for opens, closes in map(self._interval, self._nearby_days(instant, 8)):
            if opens < closes and opens >= instant:
                return opens
        raise AssertionError("unreachable: some listed day opens within eight days")


class PagingPolicy(_Model):
    """How one urgency tier is paged: a non-empty ladder of `steps`, run 1 + `repeat` times.

    Guarantees 0 <= `repeat` <= 10. Optional, each None unless configured:

    * `ack_timeout`: when the responder who took a case shows no activity on it for this
      long, the case is paged again (a responder at risk can take a case and then go dark).
    * `hours`: business hours; outside them this tier's pages wait for `hours.next_open`.
      Never set on ``critical`` or ``high`` (`Config` refuses it).
    * `raise_after`: a case of this tier nobody has touched for this long is raised to the
      next more urgent tier. Never set on ``critical`` (`Config` refuses it).

    Durations are positive, whole seconds and at most 30 days.
    """

    steps: tuple[PagingStep, ...] = Field(min_length=1)
    repeat: StrictInt = Field(default=0, ge=0, le=10)
    ack_timeout: timedelta | None = None
    hours: BusinessHours | None = None
    raise_after: timedelta | None = None

    @field_validator("ack_timeout", "raise_after", mode="before")
    @classmethod
    def _parse_durations(cls, value: object) -> object:
        return _parse_duration_value(value, "15m")

    @field_validator("hours", mode="before")
    @classmethod
    def _parse_hours(cls, value: object) -> object:
        if value is None or isinstance(value, BusinessHours):
            return value
        if isinstance(value, str):
            return BusinessHours.parse(value)
        raise ValueError(
            f'expected a string like "mon-fri 09:00-18:00 Europe/Berlin", got {_toml_repr(value)}'
        )

    @field_serializer("ack_timeout", "raise_after", when_used="json")
    def _serialize_durations(self, value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)

    @field_serializer("hours", when_used="json")
    def _serialize_hours(self, value: BusinessHours | None) -> str | None:
        return None if value is None else str(value)


class DeliveryConfig(_Model):
    """How pages are delivered.

    `bundle_window`: pages to one responder that fall within this window go out as one message
    (critical pages are never bundled). Guaranteed positive and at most 5 minutes, so bundling
    can never hold a page back long.
    """

    bundle_window: timedelta = timedelta(seconds=30)

    @field_validator("bundle_window", mode="before")
    @classmethod
    def _parse_window(cls, value: object) -> object:
        return _parse_duration_value(value, "30s")

    @field_validator("bundle_window")
    @classmethod
    def _check_window(cls, value: timedelta) -> timedelta:
        if value > _MAX_BUNDLE_WINDOW:
            raise ValueError(
                f'must be at most "{format_duration(_MAX_BUNDLE_WINDOW)}": a longer window '
                f'would hold pages back, got "{format_duration(value)}"'
            )
        return value

    @field_serializer("bundle_window", when_used="json")
    def _serialize_window(self, value: timedelta) -> str:
        return format_duration(value)


class WatchdogConfig(_Model):
    """The watchdog that pages the operators when the bot itself is unhealthy.

    Every `interval` it checks for an escalation or a page that has made no progress for
    `stuck_after`. Guarantees positive durations with `interval` <= `stuck_after`.
    """

    interval: timedelta = timedelta(seconds=30)
    stuck_after: timedelta = timedelta(minutes=2)

    @field_validator("interval", "stuck_after", mode="before")
    @classmethod
    def _parse_durations(cls, value: object) -> object:
        return _parse_duration_value(value, "30s")

    @field_serializer("interval", "stuck_after", when_used="json")
    def _serialize_durations(self, value: timedelta) -> str:
        return format_duration(value)

    @model_validator(mode="after")
    def _check_order(self) -> WatchdogConfig:
        if self.interval > self.stuck_after:
            raise _problems_error(
                [
                    (
                        ("interval",),
                        f'must be at most stuck_after ("{format_duration(self.stuck_after)}"), '
                        f'got "{format_duration(self.interval)}"',
                    )
                ]
            )
        return self


class Operator(Responder):
    """A person paged when the bot itself is unhealthy (a rota nobody on call can be paged on,
    a stuck outbox), not about cases.

    Same keys and guarantees as `Responder`; the same person may be both, under the same name.
    """


class RotaConfig(_Model):
    """One ``[[rotas]]`` table: an on-call rotation (built into a `bot.paging.rota.Rota`).

    Guarantees:

    * `name` is a lowercase slug (a-z, 0-9, _ and -, starting with a letter, at most 32);
    * `members` is non-empty (that they are configured responders is checked by `Config`);
    * `zone` is a known IANA zone; `handoff` a wall time;
    * `days` is None (the default, see `weekdays`) or distinct weekday names in week order;
      a weekly rota has at most one day, a rota with a duration `shift` has none;
    * a duration `shift` is at least one hour (and at most 30 days);
    * an explicit `start` is a hand-off day (its weekday is in `weekdays`).
    """

    name: StrictStr
    members: tuple[StrictStr, ...] = Field(min_length=1)
    zone: StrictStr
    handoff: time
    days: tuple[StrictStr, ...] | None = Field(default=None, min_length=1)
    shift: Literal["daily", "weekly"] | timedelta = "daily"
    start: date | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _SLUG_RE.fullmatch(value):
            raise ValueError(
                'must be a short lowercase name like "primary": a-z, 0-9, _ and -, starting '
                f"with a letter, at most 32 characters; got {_toml_repr(value)}"
            )
        return value

    @field_validator("zone")
    @classmethod
    def _validate_zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("handoff", mode="before")
    @classmethod
    def _parse_handoff(cls, value: object) -> object:
        return _parse_clock(value)

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        problems: list[_Problem] = []
        seen: dict[str, int] = {}
        for index, text in enumerate(value):
            day = text.strip().lower()
            if day not in WEEKDAYS:
                problems.append(
                    (
                        (index,),
                        f"expected a weekday, one of {', '.join(json.dumps(d) for d in WEEKDAYS)}"
                        f"; got {_toml_repr(text)}",
                    )
                )
            elif day in seen:
                problems.append(((index,), f'"{day}" is already listed at days[{seen[day]}]'))
            else:
                seen[day] = index
        if problems:
            raise _problems_error(problems)
        return tuple(sorted(seen, key=WEEKDAYS.index))

    @field_validator("shift", mode="before")
    @classmethod
    def _parse_shift(cls, value: object) -> object:
        if isinstance(value, timedelta):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("daily", "weekly"):
                return word
            try:
                return parse_duration(value)
            except ValueError:
                raise ValueError(
                    f'expected "daily", "weekly" or a duration like "12h", got {_toml_repr(value)}'
                ) from None
        raise ValueError(
            f'expected "daily", "weekly" or a duration like "12h", got {_toml_repr(value)}'
        )

    @field_validator("start", mode="before")
    @classmethod
    def _parse_start(cls, value: object) -> object:
        return None if value is None else _parse_date(value)

    @field_serializer("handoff", when_used="json")
    def _serialize_handoff(self, value: time) -> str:
        return _format_clock(value)

    @field_serializer("shift", when_used="json")
    def _serialize_shift(self, value: str | timedelta) -> str:
        return format_duration(value) if isinstance(value, timedelta) else value

    @model_validator(mode="after")
    def _check_combination(self) -> RotaConfig:
        problems: list[_Problem] = []
        if isinstance(self.shift, timedelta):
            if self.shift < _MIN_SHIFT:
                problems.append(
                    (("shift",), f'must be at least "1h", got "{format_duration(self.shift)}"')
                )
            if self.days is not None:
                problems.append(
                    (
                        ("days",),
                        'only daily and weekly rotas hand off on chosen days; with shift = "'
                        f'{format_duration(self.shift)}" every shift is that long, so leave '
                        "days out",
                    )
                )
        elif self.shift == "weekly" and self.days is not None and len(self.days) > 1:
            problems.append(
                (
                    ("days",),
                    "a weekly rota hands off once a week: give the one hand-off day, "
                    f'e.g. days = ["{self.days[0]}"]',
                )
            )
        if self.start is not None and not problems:
            weekdays = self.weekdays
            if self.start.weekday() not in weekdays:
                problems.append(
                    (
                        ("start",),
                        f"{self.start.isoformat()} is a {WEEKDAYS[self.start.weekday()]}, but "
                        f"this rota hands off only on {_days_text(weekdays)}; start on one of "
                        "those days",
                    )
                )
        if problems:
            raise _problems_error(problems)
        return self

    @property
    def weekdays(self) -> frozenset[int]:
        """The weekdays with hand-offs (0 = Monday): `days`, or by default every day for
        ``"daily"``, the weekday of `start` (Monday without a start) for ``"weekly"``, and
        every day (unused) for a duration shift."""
        if self.days is not None:
            return frozenset(WEEKDAYS.index(day) for day in self.days)
        if self.shift == "weekly":
            return frozenset({(self.start or DEFAULT_ROTA_START).weekday()})
        return ALL_DAYS

    @property
    def first_day(self) -> date:
        """The date (in `zone`) whose hand-off begins ``members[0]``'s first shift: `start`,
        or the first hand-off day on or after `DEFAULT_ROTA_START`."""
        if self.start is not None:
            return self.start
        day = DEFAULT_ROTA_START
        while day.weekday() not in self.weekdays:
            day += timedelta(days=1)
        return day

    def build(self, members: Sequence[str], overrides: Sequence[Override] = ()) -> Rota:
        """Make the `Rota`, with `members` (canonical spellings) and its `overrides`.

        Raises:
            ValueError: From `Rota` (cannot happen for a validated config).
        """
        return Rota(
            name=self.name,
            members=tuple(members),
            zone=self.zone,
            handoff=self.handoff,
            days=ALL_DAYS if isinstance(self.shift, timedelta) else self.weekdays,
            shift=self.shift,
            start=from_wall(datetime.combine(self.first_day, self.handoff), self.zone),
            overrides=tuple(overrides),
        )


class OverrideConfig(_Model):
    """One ``[[overrides]]`` table: `responder` covers a rota from `start` to `end`.

    `replaces` names the member they cover for (None: extra cover for everyone); see
    `bot.paging.rota.Override`. `start` and `end` are wall times (naive) in `zone`, or in the
    rota's zone when `zone` is None, reached by the wall-time rule of `from_wall`. `Config`
    checks that the names exist, that `replaces` is a member of the rota, that `end` is after
    `start`, and that two overrides never replace the same member of a rota at once.
    """

    rota: StrictStr
    responder: StrictStr
    replaces: StrictStr | None = None
    start: datetime
    end: datetime
    zone: StrictStr | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parse_times(cls, value: object) -> object:
        return _parse_local_datetime(value)

    @field_validator("zone")
    @classmethod
    def _validate_zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_zone(value)

    @field_serializer("start", "end", when_used="json")
    def _serialize_times(self, value: datetime) -> str:
        return _format_local_datetime(value)

    def instants(self, zone: str) -> tuple[datetime, datetime]:
        """`start` and `end` as instants (UTC), read as wall times in `zone`."""
        return from_wall(self.start, zone), from_wall(self.end, zone)


_SECTIONS = (
    "database",
    "keys",
    "flows",
    "languages",
    "safety",
    "limits",
    "logging",
    "telegram",
    "signal",
    "delivery",
    "watchdog",
)


def _reference_problems(
    names: Sequence[tuple[int, str]] | None,
    tiers: Mapping[str, Sequence[tuple[int, Sequence[str]]]] | None,
) -> list[_Problem]:
    """Cross-checks: unique responder names, every tier present, notify names known."""
    problems: list[_Problem] = []
    if names is not None:
        seen: dict[str, int] = {}
        for index, name in names:
            first = seen.setdefault(name.lower(), index)
            if first != index:
                problems.append(
                    (
                        ("responders", index, "name"),
                        f"'{name}' is already used by responders[{first}]",
                    )
                )
    if tiers is None:
        return problems
    for tier in TIERS:
        if tier not in tiers:
            problems.append(
                (("paging", tier), f"required key is missing; add a [paging.{tier}] table")
            )
    if names is None:
        return problems
    known = {name.lower() for _, name in names}
    first_spelling: dict[str, str] = {}
    for _, name in names:
        first_spelling.setdefault(name.lower(), name)
    listing = ", ".join(first_spelling.values()) or "(none)"
    for tier, steps in tiers.items():
        for index, notify in steps:
            for name in notify:
                if parse_target(name)[0] != "responder":
                    continue  # rota targets: `_rota_reference_problems`
                if ":" in name:
                    problems.append(
                        (
                            ("paging", tier, "steps", index, "notify"),
                            f"unknown target '{name}'; write a responder name, "
                            '"rota:NAME" or "rota-all:NAME"',
                        )
                    )
                elif name.lower() not in known:
                    problems.append(
                        (
                            ("paging", tier, "steps", index, "notify"),
                            f"unknown responder '{name}'; known: {listing}",
                        )
                    )
    return problems


def _tables(data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    """The tables of the array `key` in `data` (raw TOML or a model dump), with indices."""
    value = data.get(key)
    if not isinstance(value, list | tuple):
        return []
    return [(index, entry) for index, entry in enumerate(value) if isinstance(entry, Mapping)]


def _strings(value: object) -> list[str]:
    """The strings in an array value (anything else gives none)."""
    return (
        [item for item in value if isinstance(item, str)] if isinstance(value, list | tuple) else []
    )


def _rota_reference_problems(data: Mapping[str, Any]) -> list[_Problem]:
    """Cross-checks of operators, rotas, overrides and rota targets, on raw TOML or a dump.

    Unique operator and rota names (ignoring case); rota members, override responders and
    replaced members are configured responders; a replaced person is a member of the rota;
    overrides and ``rota:``/``rota-all:`` targets name configured rotas; business hours and
    raising are not set on tiers where they would hold back or misdirect urgent pages.
    """
    problems: list[_Problem] = []
    responders: dict[str, str] = {}
    for _, entry in _tables(data, "responders"):
        if isinstance(entry.get("name"), str):
            responders.setdefault(entry["name"].lower(), entry["name"])
    known = ", ".join(responders.values()) or "(none)"

    operators: dict[str, int] = {}
    for index, entry in _tables(data, "operators"):
        name = entry.get("name")
        if isinstance(name, str):
            first = operators.setdefault(name.lower(), index)
            if first != index:
                problems.append(
                    (
                        ("operators", index, "name"),
                        f"'{name}' is already used by operators[{first}]",
                    )
                )

    rotas: dict[str, tuple[int, str, list[str]]] = {}
    for index, entry in _tables(data, "rotas"):
        members = _strings(entry.get("members"))
        for member in members:
            if member.lower() not in responders:
                problems.append(
                    (("rotas", index, "members"), f"unknown responder '{member}'; known: {known}")
                )
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        if name.lower() in rotas:
            problems.append(
                (
                    ("rotas", index, "name"),
                    f"'{name}' is already used by rotas[{rotas[name.lower()][0]}]",
                )
            )
        else:
            rotas[name.lower()] = (index, name, members)

    def unknown_rota(name: str) -> str:
        if not rotas:
            return f"unknown rota '{name}'; no [[rotas]] are configured"
        return f"unknown rota '{name}'; known: {', '.join(r[1] for r in rotas.values())}"

    for index, entry in _tables(data, "overrides"):
        rota_name, responder, replaces = (entry.get(k) for k in ("rota", "responder", "replaces"))
        rota = rotas.get(rota_name.lower()) if isinstance(rota_name, str) else None
        if isinstance(rota_name, str) and rota is None:
            problems.append((("overrides", index, "rota"), unknown_rota(rota_name)))
        for key, name in (("responder", responder), ("replaces", replaces)):
            if isinstance(name, str) and name.lower() not in responders:
                problems.append(
                    (("overrides", index, key), f"unknown responder '{name}'; known: {known}")
                )
        if not isinstance(replaces, str) or replaces.lower() not in responders:
            continue
        if isinstance(responder, str) and responder.lower() == replaces.lower():
            problems.append(
                (("overrides", index, "replaces"), f"'{replaces}' cannot replace themself")
            )
        elif rota is not None and replaces.lower() not in {m.lower() for m in rota[2]}:
            problems.append(
                (
                    ("overrides", index, "replaces"),
                    f"'{replaces}' is not a member of rota '{rota[1]}' (members: "
                    f"{', '.join(rota[2])}), so this override would never apply",
                )
            )

    paging = data.get("paging")
    for tier, policy in paging.items() if isinstance(paging, Mapping) else ():
        if not isinstance(policy, Mapping):
            continue
        for index, step in _tables(policy, "steps"):
            for target in _strings(step.get("notify")):
                kind, name = parse_target(target)
                if kind != "responder" and name.lower() not in rotas:
                    problems.append(
                        (("paging", tier, "steps", index, "notify"), unknown_rota(name))
                    )
        if tier in ("critical", "high") and policy.get("hours") is not None:
            problems.append(
                (
                    ("paging", tier, "hours"),
                    f"{tier} pages go out at any hour; business hours may only be set on "
                    "medium and low",
                )
            )
        if tier == "critical" and policy.get("raise_after") is not None:
            problems.append(
                (("paging", tier, "raise_after"), "critical is the most urgent tier already")
            )
    return problems


class Config(_Model):
    """The whole validated configuration.

    Guarantees at least one responder, responder names unique ignoring case, a paging policy
    for every tier in `TIERS`, and that every target a policy notifies exists: a configured
    responder, or ``rota:NAME`` / ``rota-all:NAME`` with NAME a configured rota. Also:

    * operator names are unique ignoring case (operators are optional here; see
      `operator_problems`);
    * rota names are unique ignoring case and every rota member is a configured responder;
    * every override names a configured rota and responder, replaces (if anyone) a member of
      that rota other than the responder, ends after it starts, and no two overrides replace
      the same member of the same rota at the same instant;
    * ``critical`` and ``high`` have no business `hours`; ``critical`` has no `raise_after`.

    `source` is the absolute path of the file it was loaded from; `paging` is a read-only
    mapping in `TIERS` order.
    """

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    flows: FlowsConfig = Field(default_factory=FlowsConfig)
    languages: LanguagesConfig = Field(default_factory=LanguagesConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    signal: SignalConfig = Field(default_factory=SignalConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    responders: tuple[Responder, ...] = Field(min_length=1)
    operators: tuple[Operator, ...] = ()
    rotas: tuple[RotaConfig, ...] = ()
    overrides: tuple[OverrideConfig, ...] = ()
    paging: Mapping[Tier, PagingPolicy]
    source: Path

    @model_validator(mode="before")
    @classmethod
    def _fill_sections(cls, data: Any) -> Any:
        # Validate absent sections from {} so defaults see the validation context (and
        # relative default paths get resolved against the config file's directory).
        if isinstance(data, Mapping):
            return {**{section: {} for section in _SECTIONS}, **data}
        return data

    @field_validator("paging")
    @classmethod
    def _freeze_paging(cls, value: Mapping[Tier, PagingPolicy]) -> Mapping[Tier, PagingPolicy]:
        ordered = {tier: value[tier] for tier in typing.get_args(Tier) if tier in value}
        return types.MappingProxyType(ordered)

    @field_serializer("paging", mode="wrap")
    def _serialize_paging(
        self, value: Mapping[Tier, PagingPolicy], handler: SerializerFunctionWrapHandler
    ) -> Any:
        return handler(dict(value))

    @model_validator(mode="after")
    def _check_default_language(self) -> Config:
        if self.flows.language not in self.languages.offered:
            raise ValueError(
                f"flows.language {_toml_repr(self.flows.language)} must be one of "
                f"languages.offered ({', '.join(self.languages.offered)})"
            )
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        problems = _reference_problems(
            [(index, responder.name) for index, responder in enumerate(self.responders)],
            {
                tier: [(index, step.notify) for index, step in enumerate(policy.steps)]
                for tier, policy in self.paging.items()
            },
        )
        problems += _rota_reference_problems(self.model_dump())
        if not problems:
            problems += self._override_time_problems()
        if problems:
            raise _problems_error(problems)
        return self

    def _override_time_problems(self) -> list[_Problem]:
        """Each override ends after it starts; no two replace one member of a rota at once."""
        problems: list[_Problem] = []
        spans: dict[tuple[str, str], list[tuple[int, datetime, datetime]]] = {}
        for index, override in enumerate(self.overrides):
            rota = self._rota_config(override.rota)
            if rota is None:
                continue
            zone = override.zone or rota.zone
            start, end = override.instants(zone)
            if end <= start:
                problems.append(
                    (
                        ("overrides", index, "end"),
                        f"must be after start ({_format_local_datetime(override.start)} "
                        f"{zone}), got {_format_local_datetime(override.end)}",
                    )
                )
                continue
            if override.replaces is None:
                continue
            key = (rota.name, override.replaces.lower())
            for other, other_start, other_end in spans.get(key, []):
                if start < other_end and other_start < end:
                    problems.append(
                        (
                            ("overrides", index),
                            f"overlaps overrides[{other}], which also replaces "
                            f"'{override.replaces}' on rota '{rota.name}'; make them follow "
                            "each other",
                        )
                    )
                    break
            spans.setdefault(key, []).append((index, start, end))
        return problems

    def _rota_config(self, name: str) -> RotaConfig | None:
        wanted = name.lower()
        return next((rota for rota in self.rotas if rota.name.lower() == wanted), None)

    def rota(self, name: str) -> Rota | None:
        """Build the rota called `name` (ignoring case), with its overrides.

        Member, override and replaced names are the configured responders' spellings; override
        times are resolved in the override's zone (by default the rota's). See
        `bot.paging.rota.on_call` and `next_handoffs` for who is on call when.

        Args:
            name: The rota's name, in any case.

        Returns:
            The rota, or None if no rota has that name.
        """
        config = self._rota_config(name)
        if config is None:
            return None

        def spelled(person: str) -> str:
            responder = self.responder(person)
            return person if responder is None else responder.name

        overrides: list[Override] = []
        for override in self.overrides:
            if override.rota.lower() != config.name:
                continue
            start, end = override.instants(override.zone or config.zone)
            overrides.append(
                Override(
                    rota=config.name,
                    responder=spelled(override.responder),
                    replaces=None if override.replaces is None else spelled(override.replaces),
                    start=start,
                    end=end,
                )
            )
        return config.build([spelled(member) for member in config.members], overrides)

    def resolve_targets(self, notify: Iterable[str], at: datetime) -> tuple[str, ...]:
        """Turn a step's ``notify`` targets into responder names at the instant `at`.

        A responder name gives that responder; ``rota:NAME`` whoever is on call on rota NAME at
        `at` (`bot.paging.rota.on_call`, overrides applied); ``rota-all:NAME`` every member of
        rota NAME followed by whoever else is on call on it at `at` (people covering). Names are
        the configured spellings, each once (ignoring case), in the order first met. Evaluate
        it when the step fires, so that a hand-off between steps is respected.

        Args:
            notify: Targets as in `PagingStep.notify`.
            at: The instant the step fires (aware).

        Returns:
            The responder names to page; names the config does not know are kept as written.

        Raises:
            ValueError: If `at` is naive.
        """
        instant = _instant(at, "at")
        names: list[str] = []
        for target in notify:
            kind, name = parse_target(target)
            rota = None if kind == "responder" else self.rota(name)
            if rota is None:
                responder = self.responder(name)
                names.append(target if responder is None else responder.name)
                continue
            if kind == "rota-all":
                names.extend(rota.members)
            names.extend(on_call(rota, instant))
        unique: dict[str, str] = {}
        for name in names:
            unique.setdefault(name.lower(), name)
        return tuple(unique.values())

    def operator_problems(self) -> list[str]:
        """List why the operators cannot be paged by `intake run`; empty when they can.

        `intake run` refuses to start while this is non-empty: without a reachable operator,
        nobody hears that the bot itself is unhealthy (a rota nobody on call can be paged on, a
        stuck outbox). Flags a config without ``[[operators]]``, and one where no operator has
        an address on a channel `intake run` uses: a ``signal`` number with ``[signal]``
        enabled or a ``telegram`` id with ``[telegram]`` enabled (``console`` only works in
        `intake shell`).

        Returns:
            ``<file>: ...`` / ``<file>:<line>: operators: ...`` messages, or an empty list.
        """
        file = str(self.source)
        if not self.operators:
            return [
                f"{file}: no [[operators]] table: add at least one operator, the person paged "
                "when the bot itself is unhealthy (a rota nobody can be paged on, a stuck "
                'outbox), e.g. [[operators]] name = "carol" signal = "+491701234567"'
            ]
        if any(
            (self.signal.enabled and operator.signal is not None)
            or (self.telegram.enabled and operator.telegram is not None)
            for operator in self.operators
        ):
            return []
        try:
            line = _line_of(self.source.read_text(encoding="utf-8"), ("operators", 0))
        except (OSError, UnicodeDecodeError):
            line = None
        return [
            _format_problem(
                file,
                line,
                ("operators",),
                "no operator can be paged by `intake run`: give one a signal number with "
                "[signal] enabled or a telegram id with [telegram] enabled (console only "
                "works in `intake shell`)",
            )
        ]

    def responder(self, name: str) -> Responder | None:
        """Find a responder by name, ignoring case.

        Args:
            name: The responder's name, in any case.

        Returns:
            The responder, or None if no responder has that name.
        """
        wanted = name.lower()
        for responder in self.responders:
            if responder.name.lower() == wanted:
                return responder
        return None

    def example_values(self) -> list[str]:
        """List the placeholder values from config.example.toml still in this config.

        `intake run` refuses to start while this is non-empty. Flags responder and operator
        Signal numbers and Telegram ids used in the example, the example's bot Signal number,
        and the example's Telegram token and webhook secret.

        Returns:
            One message per placeholder: ``<file>:<line>: <key>: still the example value;
            <what to do>``; empty when none are left.
        """
        text: str | None
        try:
            text = self.source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None  # messages without line numbers
        found: list[_Problem] = []
        for index, responder in enumerate(self.responders):
            if responder.signal in EXAMPLE_SIGNAL_NUMBERS:
                found.append(
                    (
                        ("responders", index, "signal"),
                        f"replace it with {responder.name}'s real Signal number",
                    )
                )
            if responder.telegram in EXAMPLE_TELEGRAM_IDS:
                found.append(
                    (
                        ("responders", index, "telegram"),
                        f"replace it with {responder.name}'s real numeric Telegram user id",
                    )
                )
        for index, operator in enumerate(self.operators):
            if operator.signal in EXAMPLE_SIGNAL_NUMBERS:
                found.append(
                    (
                        ("operators", index, "signal"),
                        f"replace it with {operator.name}'s real Signal number",
                    )
                )
            if operator.telegram in EXAMPLE_TELEGRAM_IDS:
                found.append(
                    (
                        ("operators", index, "telegram"),
                        f"replace it with {operator.name}'s real numeric Telegram user id",
                    )
                )
        if self.telegram.token in EXAMPLE_SECRETS:
            found.append(
                (
                    ("telegram", "token"),
                    f"put your bot's token from @BotFather here or in {TOKEN_ENV}, "
                    "or delete the line",
                )
            )
        if self.telegram.webhook_secret in EXAMPLE_SECRETS:
            found.append(
                (
                    ("telegram", "webhook_secret"),
                    "replace it with a long random string (e.g. the output of "
                    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
                    "or delete the line",
                )
            )
        if self.signal.number in EXAMPLE_SIGNAL_NUMBERS:
            found.append(
                (
                    ("signal", "number"),
                    "replace it with the bot's own Signal number, or delete the line",
                )
            )
        return [
            _format_problem(
                str(self.source),
                None if text is None else _line_of(text, loc),
                loc,
                f"still the example value; {advice}",
            )
            for loc, advice in found
        ]


# --------------------------------------------------------------------------- line locator


class _Bail(Exception):
    """The locator met something it does not understand; keep what it found so far."""


class _Locator:
    """Maps TOML key paths to the line they are written on (a lenient position parser)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.lines: dict[_Loc, int] = {}
        self.array_counts: dict[_Loc, int] = {}

    def run(self) -> dict[_Loc, int]:
        with contextlib.suppress(_Bail, IndexError, ValueError):
            self._document()
        return self.lines

    def _line(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def _record(self, path: _Loc, pos: int) -> None:
        line = self._line(pos)
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def _peek(self, size: int = 1) -> str:
        return self.text[self.pos : self.pos + size]

    def _skip(self, *, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        current: _Loc = ()
        while True:
            self._skip(newlines=True)
            if self.pos >= len(self.text):
                return
            start = self.pos
            if self._peek() == "[":
                is_array = self._peek(2) == "[["
                self.pos += 2 if is_array else 1
                keys = self._key()
                self._skip(newlines=False)
                closing = "]]" if is_array else "]"
                if self._peek(len(closing)) != closing:
                    raise _Bail
                self.pos += len(closing)
                if is_array:
                    path = (*self._resolve(keys[:-1]), keys[-1])
                    index = self.array_counts.get(path, 0)
                    self.array_counts[path] = index + 1
                    current = (*path, index)
                else:
                    current = self._resolve(keys)
                self._record(current, start)
            else:
                keys = self._key()
                self._skip(newlines=False)
                if self._peek() != "=":
                    raise _Bail
                self.pos += 1
                self._record(current + keys, start)
                self._value(current + keys)

    def _resolve(self, keys: tuple[str, ...]) -> _Loc:
        out: list[str | int] = []
        for key in keys:
            out.append(key)
            count = self.array_counts.get(tuple(out))
            if count:
                out.append(count - 1)
        return tuple(out)

    def _key(self) -> tuple[str, ...]:
        keys: list[str] = []
        while True:
            self._skip(newlines=False)
            char = self._peek()
            if char == '"':
                start = self.pos
                self._basic_string()
                raw = self.text[start : self.pos]
                try:
                    keys.append(str(json.loads(raw)))
                except ValueError:
                    keys.append(raw[1:-1])
            elif char == "'":
                end = self.text.index("'", self.pos + 1)
                keys.append(self.text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                match = _BARE_KEY_RE.match(self.text, self.pos)
                if match is None:
                    raise _Bail
                keys.append(match.group())
                self.pos = match.end()
            self._skip(newlines=False)
            if self._peek() != ".":
                return tuple(keys)
            self.pos += 1

    def _basic_string(self) -> None:
        self.pos += 1
        while True:
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return
            elif char == "\n":
                raise _Bail
            else:
                self.pos += 1

    def _multiline_string(self, quote: str) -> None:
        delimiter = quote * 3
        self.pos += 3
        while True:
            if quote == '"' and self.text[self.pos] == "\\":
                self.pos += 2
            elif self.text.startswith(delimiter, self.pos):
                self.pos += 3
                extra = 0
                while extra < 2 and self._peek() == quote:
                    self.pos += 1
                    extra += 1
                return
            else:
                self.pos += 1

    def _value(self, path: _Loc) -> None:
        self._skip(newlines=False)
        char = self._peek()
        if char == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if self._peek() == "]":
                    self.pos += 1
                    return
                self._record((*path, index), self.pos)
                self._value((*path, index))
                self._skip(newlines=True)
                if self._peek() == ",":
                    self.pos += 1
                    index += 1
                elif self._peek() == "]":
                    self.pos += 1
                    return
                else:
                    raise _Bail
        elif char == "{":
            self.pos += 1
            while True:
                self._skip(newlines=True)
                if self._peek() == "}":
                    self.pos += 1
                    return
                start = self.pos
                keys = self._key()
                self._skip(newlines=False)
                if self._peek() != "=":
                    raise _Bail
                self.pos += 1
                self._record(path + keys, start)
                self._value(path + keys)
                self._skip(newlines=True)
                if self._peek() == ",":
                    self.pos += 1
        elif self._peek(3) in ('"""', "'''"):
            self._multiline_string(char)
        elif char == '"':
            self._basic_string()
        elif char == "'":
            self.pos = self.text.index("'", self.pos + 1) + 1
        else:
            match = _BARE_VALUE_RE.match(self.text, self.pos)
            if match is None:
                raise _Bail
            self.pos = match.end()


@functools.lru_cache(maxsize=8)
def _locate(text: str) -> dict[_Loc, int]:
    """All key paths written in `text`, mapped to their 1-based line numbers."""
    return _Locator(text).run()


def _line_of(text: str, path: tuple[str | int, ...]) -> int | None:
    """Find the line of `path` in TOML source `text`, or of its deepest located parent.

    Array elements (``steps[1]``) map to the line their element starts on, keys of
    ``[[responders]]`` tables to the right table, and a missing key to its table's header.

    Args:
        text: The TOML source (valid TOML).
        path: Keys and array indices, e.g. ``("paging", "critical", "steps", 1, "wait")``.

    Returns:
        The 1-based line number, or None if not even the first key is written in `text`.
    """
    lines = _locate(text)
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


# --------------------------------------------------------------------------- translation


def _child_type(tp: Any, part: str | int) -> Any:
    """The type found at `part` inside type `tp` (model field, tuple item, mapping value)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _child_type(arg, part)
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return None if field is None else field.annotation
    args = typing.get_args(tp)
    if origin is tuple and args:
        return args[0]
    if origin in (Mapping, dict) and len(args) == 2:
        return args[1]
    return None


def _allowed_keys(loc: _Loc) -> list[str]:
    """The keys the operator may write in the table at `loc`."""
    tp: Any = Config
    for part in loc:
        tp = _child_type(tp, part)
        if tp is None:
            return []
    while typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(arg for arg in typing.get_args(tp) if arg is not type(None))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [key for key in tp.model_fields if not (tp is Config and key == "source")]
    if typing.get_origin(tp) in (Mapping, dict):
        return list(TIERS)
    return []


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    """Message for an unknown key, with a suggestion when one is close."""
    by_lower = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{by_lower[close[0]]}'?"
    if allowed:
        return f"unknown key; allowed keys: {', '.join(allowed)}"
    return "unknown key"


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "mapping_type": "a table",
    "tuple_type": "an array",
    "list_type": "an array",
    "path_type": "a path string",
    "timedelta_type": 'a duration string like "5m"',
}


_MISSING_HINTS: dict[_Loc, str] = {
    ("responders",): "; add a [[responders]] table for each person who can be paged",
    ("paging",): "; add [paging.critical], [paging.high], [paging.medium] and [paging.low]",
}


def _translate(error: ErrorDetails) -> list[_Problem]:
    """Turn one pydantic error into located, plain-English problems."""
    loc: _Loc = tuple(error["loc"])
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "config_problems":
        return [((*loc, *sub), message) for sub, message in ctx["problems"]]
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
        return [(loc, _unknown_key(str(value), _allowed_keys(loc[:-1])))]
    if kind == "missing":
        return [(loc, "required key is missing" + _MISSING_HINTS.get(loc, ""))]
    if kind == "extra_forbidden":
        return [(loc, _unknown_key(str(loc[-1]), _allowed_keys(loc[:-1])))]
    if kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, got {_toml_repr(value)}"
        if loc == ("responders",) and isinstance(value, Mapping):
            message += "; write each responder as its own [[responders]] table"
        return [(loc, message)]
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"expected one of {', '.join(json.dumps(c) for c in choices)}, got "
        message += _toml_repr(value)
        close = {c.lower(): c for c in choices}.get(str(value).strip().lower())
        if close is not None:
            message += f'; did you mean "{close}"?'
        return [(loc, message)]
    if kind == "value_error":
        return [(loc, str(ctx.get("error", error["msg"])))]
    if kind == "greater_than_equal":
        return [(loc, f"must be at least {ctx['ge']}, got {_toml_repr(value)}")]
    if kind == "less_than_equal":
        return [(loc, f"must be at most {ctx['le']}, got {_toml_repr(value)}")]
    if kind == "greater_than":
        return [(loc, f"must be greater than {ctx['gt']}, got {_toml_repr(value)}")]
    if kind == "too_short":
        if isinstance(value, list | tuple) and value:
            return []  # pydantic's echo of item errors, which are reported themselves
        return [(loc, "must not be empty")]
    if kind == "too_long":
        return [(loc, f"too many entries (at most {ctx.get('max_length')})")]
    return [(loc, error["msg"])]


def _format_problem(file: str, line: int | None, loc: _Loc, message: str) -> str:
    """``<file>:<line>: <dotted.key>: <message>``, leaving out what is unknown."""
    where = file if line is None else f"{file}:{line}"
    return f"{where}: {_dotted(loc)}: {message}" if loc else f"{where}: {message}"


def _raw_reference_problems(raw: Mapping[str, Any]) -> list[_Problem]:
    """The `Config` cross-checks, run on the raw TOML when other errors stopped pydantic."""
    names: list[tuple[int, str]] | None = None
    responders = raw.get("responders")
    if isinstance(responders, list):
        names = [
            (index, entry["name"])
            for index, entry in enumerate(responders)
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)
        ]
    tiers: dict[str, list[tuple[int, list[str]]]] | None = None
    paging = raw.get("paging")
    if isinstance(paging, dict):
        tiers = {}
        for tier, policy in paging.items():
            steps = policy.get("steps") if isinstance(policy, dict) else None
            entries: list[tuple[int, list[str]]] = []
            if isinstance(steps, list):
                for index, step in enumerate(steps):
                    notify = step.get("notify") if isinstance(step, dict) else None
                    if isinstance(notify, list):
                        entries.append((index, [n for n in notify if isinstance(n, str)]))
            tiers[tier] = entries
    return _reference_problems(names, tiers) + _rota_reference_problems(raw)


_TOML_POSITION_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END_RE = re.compile(r"\s*\(at end of document\)$")


def _toml_error(display: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    """Describe invalid TOML as ``<file>:<line>:<col>: invalid TOML: <message>``."""
    message = str(exc)
    position = _TOML_POSITION_RE.search(message)
    if position is not None:
        detail = message[: position.start()]
        return ConfigError(
            f"{display}:{position.group(1)}:{position.group(2)}: invalid TOML: {detail}"
        )
    end = _TOML_END_RE.search(message)
    if end is not None:
        lines = text.split("\n")
        detail = message[: end.start()]
        return ConfigError(f"{display}:{len(lines)}:{len(lines[-1]) + 1}: invalid TOML: {detail}")
    return ConfigError(f"{display}: invalid TOML: {message}")


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Load, check and freeze the configuration in `path`.

    Relative paths in the file are resolved against the file's directory, so the result does
    not depend on the working directory. A non-empty INTAKE_TELEGRAM_TOKEN in `env` replaces
    ``telegram.token``.

    Args:
        path: The TOML config file.
        env: Environment variables; defaults to `os.environ`.

    Returns:
        The validated configuration, with `Config.source` the file's absolute path.

    Raises:
        ConfigError: Listing every problem found, each naming file, line and key.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    display = str(path)
    source = Path(os.path.abspath(path.expanduser()))
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{display}: no such config file; copy config.example.toml and edit it"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{display}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read config file: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(display, text, exc) from None

    problems: list[_Problem] = []
    data: dict[str, Any] = dict(raw)
    if "source" in data:
        del data["source"]
        problems.append((("source",), _unknown_key("source", _allowed_keys(()))))
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        telegram = data.get("telegram", {})
        if isinstance(telegram, dict):
            data["telegram"] = {**telegram, "token": token}
    data["source"] = source

    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": source.parent})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for error in errors:
            problems.extend(_translate(error))
        if not any(e["type"] == "config_problems" and not e["loc"] for e in errors):
            problems.extend(_raw_reference_problems(raw))

    if problems or config is None:
        located = [(_line_of(text, loc), loc, message) for loc, message in problems]
        located.sort(key=lambda item: item[0] or 0)
        messages = [_format_problem(display, line, loc, msg) for line, loc, msg in located]
        raise ConfigError(list(dict.fromkeys(messages)))
    return config
