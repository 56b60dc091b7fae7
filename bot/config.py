"""Load and validate the operator's TOML configuration.

`load_config` reads one TOML file and returns a frozen `Config`, or raises a single
`ConfigError` that lists every problem found, each as ``<file>:<line>: <dotted.key>: <problem>``
so an operator can fix the whole file in one pass.

Only the standard library and pydantic are used here; the rest of the project imports this
module, never the other way round.
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
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
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

__all__ = [
    "EXAMPLE_SECRETS",
    "EXAMPLE_SIGNAL_NUMBERS",
    "EXAMPLE_TELEGRAM_IDS",
    "TIERS",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "FlowsConfig",
    "KeysConfig",
    "LimitsConfig",
    "LoggingConfig",
    "PagingPolicy",
    "PagingStep",
    "Responder",
    "SignalConfig",
    "TelegramConfig",
    "Tier",
    "format_duration",
    "load_config",
    "parse_duration",
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


class PagingPolicy(_Model):
    """How one urgency tier is paged: a non-empty ladder of `steps`, run 1 + `repeat` times.

    Guarantees 0 <= `repeat` <= 10.
    """

    steps: tuple[PagingStep, ...] = Field(min_length=1)
    repeat: StrictInt = Field(default=0, ge=0, le=10)


_SECTIONS = ("database", "keys", "flows", "limits", "logging", "telegram", "signal")


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
                if name.lower() not in known:
                    problems.append(
                        (
                            ("paging", tier, "steps", index, "notify"),
                            f"unknown responder '{name}'; known: {listing}",
                        )
                    )
    return problems


class Config(_Model):
    """The whole validated configuration.

    Guarantees at least one responder, responder names unique ignoring case, a paging policy
    for every tier in `TIERS`, and that every name a policy notifies is a configured
    responder. `source` is the absolute path of the file it was loaded from; `paging` is a
    read-only mapping in `TIERS` order.
    """

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    flows: FlowsConfig = Field(default_factory=FlowsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    signal: SignalConfig = Field(default_factory=SignalConfig)
    responders: tuple[Responder, ...] = Field(min_length=1)
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
    def _check_references(self) -> Config:
        problems = _reference_problems(
            [(index, responder.name) for index, responder in enumerate(self.responders)],
            {
                tier: [(index, step.notify) for index, step in enumerate(policy.steps)]
                for tier, policy in self.paging.items()
            },
        )
        if problems:
            raise _problems_error(problems)
        return self

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

        `intake run` refuses to start while this is non-empty. Flags responder Signal numbers
        and Telegram ids used in the example, the example's bot Signal number, and the
        example's Telegram token and webhook secret.

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
    return _reference_problems(names, tiers)


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
