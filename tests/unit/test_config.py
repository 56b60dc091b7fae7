"""Tests for bot.config: loading, validation messages, durations and the line locator."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.config import (
    EXAMPLE_SECRETS,
    EXAMPLE_SIGNAL_NUMBERS,
    EXAMPLE_TELEGRAM_IDS,
    TIERS,
    Config,
    ConfigError,
    _line_of,
    format_duration,
    load_config,
    parse_duration,
)
from bot.paging.rota import next_handoffs, on_call

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

BASE = """\
[[responders]]
name = "alice"
console = true

[[responders]]
name = "bob"
telegram = 42

[paging.critical]
steps = [
    { notify = ["alice"], wait = "2m" },
    { notify = ["bob"], wait = "3m" },
]
repeat = 1

[paging.high]
steps = [{ notify = ["alice"], wait = "10m" }]

[paging.medium]
steps = [{ notify = ["alice"], wait = "1h" }]

[paging.low]
steps = [{ notify = ["bob"], wait = "8h" }]
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    """Write a config file into tmp_path and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    """Load a config that must fail and return its problems."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env={} if env is None else env)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def line_no(text: str, needle: str, nth: int = 0) -> int:
    """1-based line number of the nth non-comment line containing needle."""
    hits = [
        number
        for number, line in enumerate(text.splitlines(), 1)
        if needle in line and not line.lstrip().startswith("#")
    ]
    return hits[nth]


def assert_problem(problems: list[str], prefix: str, *fragments: str) -> str:
    """Assert one problem starts with prefix and contains all fragments; return it."""
    for problem in problems:
        if problem.startswith(prefix) and all(fragment in problem for fragment in fragments):
            return problem
    raise AssertionError(f"no problem {prefix!r} with {fragments!r} in:\n" + "\n".join(problems))


# --------------------------------------------------------------------------- the example


def test_example_loads_with_absolute_paths_under_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped example loads from any working directory and resolves paths next to it."""
    monkeypatch.chdir(tmp_path)
    config = load_config(EXAMPLE, env={})
    base = EXAMPLE.parent
    assert config.source == EXAMPLE
    assert config.database.url == f"sqlite+aiosqlite:///{base}/intake-data/intake.db"
    assert config.keys.dir == base / "intake-data" / "keys"
    assert config.keys.dir.is_absolute()
    assert config.flows.dir is None
    assert config.flows.language == "en"
    assert config.limits.max_message_chars == 2000
    assert not config.telegram.enabled
    assert not config.signal.enabled
    assert [r.name for r in config.responders] == ["alice", "bob", "carol"]
    assert all(r.console for r in config.responders)
    assert tuple(config.paging) == TIERS
    critical = config.paging["critical"]
    assert [s.wait for s in critical.steps] == [timedelta(minutes=5)] * 4
    assert [s.notify for s in critical.steps] == [
        ("rota:primary",),
        ("rota:backup",),
        ("carol",),
        ("rota-all:primary", "rota-all:backup", "carol"),
    ]
    assert critical.repeat == 2
    assert critical.ack_timeout == timedelta(minutes=15)
    assert critical.hours is None and critical.raise_after is None
    assert [s.wait for s in config.paging["high"].steps] == [
        timedelta(minutes=30),
        timedelta(minutes=30),
        timedelta(hours=1),
    ]
    medium = config.paging["medium"]
    assert [s.notify for s in medium.steps][:2] == [("rota:primary",), ("rota:backup",)]
    assert [s.wait for s in medium.steps][:2] == [timedelta(hours=1), timedelta(minutes=30)]
    low = config.paging["low"]
    assert str(low.hours) == "mon-fri 09:00-18:00 Europe/Berlin"
    assert low.raise_after == timedelta(hours=24)
    assert low.repeat == 0
    assert [o.name for o in config.operators] == ["carol"]
    assert [r.name for r in config.rotas] == ["primary", "backup"]
    assert config.delivery.bundle_window == timedelta(seconds=30)
    assert config.watchdog.interval == timedelta(seconds=30)
    assert config.watchdog.stuck_after == timedelta(minutes=2)


def test_example_values_flags_every_placeholder_with_its_line() -> None:
    """example_values() names each placeholder of the example at the line it is written on."""
    text = EXAMPLE.read_text(encoding="utf-8")
    config = load_config(EXAMPLE, env={})
    flagged = config.example_values()
    expected = {
        "responders[0].signal": line_no(text, 'signal = "+491701234567"'),
        "responders[1].telegram": line_no(text, "telegram = 123456789"),
        "telegram.token": line_no(text, 'token = "123456:EXAMPLE'),
        "telegram.webhook_secret": line_no(text, 'webhook_secret = "EXAMPLE'),
        "signal.number": line_no(text, 'number = "+15550000000"'),
    }
    assert len(flagged) == len(expected)
    for key, line in expected.items():
        assert_problem(flagged, f"{EXAMPLE}:{line}: {key}: still the example value; ")


def test_example_constants_are_the_values_in_the_example() -> None:
    """Every EXAMPLE_* constant is written in config.example.toml, so they stay in sync."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for value in EXAMPLE_SIGNAL_NUMBERS | EXAMPLE_SECRETS:
        assert f'"{value}"' in text
    for telegram_id in EXAMPLE_TELEGRAM_IDS:
        assert f"telegram = {telegram_id}\n" in text


def test_real_values_are_not_flagged(tmp_path: Path) -> None:
    """A config with its own numbers, ids and secrets has no example values left."""
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("+491701234567", "+4915112345678")
    text = text.replace("+15550000000", "+4915187654321")
    text = text.replace("123456789", "987654321")
    text = text.replace("123456:EXAMPLE-TOKEN-replace-me", "7777:real-token")
    text = text.replace("EXAMPLE-secret-replace-me", "s3cr3t-Value_from-secrets")
    config = load_config(write(tmp_path, text), env={})
    assert config.example_values() == []


def test_env_token_clears_the_example_token(tmp_path: Path) -> None:
    """INTAKE_TELEGRAM_TOKEN replaces the example token, which is then no longer flagged."""
    config = load_config(EXAMPLE, env={"INTAKE_TELEGRAM_TOKEN": "999:from-env"})
    assert config.telegram.token == "999:from-env"
    assert not any("telegram.token" in problem for problem in config.example_values())


def test_line_of_on_the_example() -> None:
    """The locator finds keys, [[responders]] entries, steps elements and missing keys."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert _line_of(text, ("database", "url")) == line_no(text, "url = ")
    assert _line_of(text, ("telegram",)) == line_no(text, "[telegram]")
    assert _line_of(text, ("responders", 1)) == line_no(text, "[[responders]]", 1)
    assert _line_of(text, ("responders", 2, "name")) == line_no(text, 'name = "carol"')
    assert _line_of(text, ("responders", 1, "telegram")) == line_no(text, "telegram = 1234")
    critical_step = ("paging", "critical", "steps", 1)
    step_line = line_no(text, '{ notify = ["rota:backup"], wait = "5m" }')
    assert _line_of(text, critical_step) == step_line
    assert _line_of(text, (*critical_step, "wait")) == step_line
    assert _line_of(text, ("rotas", 1, "zone")) == line_no(text, 'zone = "Europe/Berlin"', 1)
    assert _line_of(text, ("overrides", 0, "end")) == line_no(text, 'end = "2026-12-26 09:00"')
    assert _line_of(text, ("operators", 0)) == line_no(text, "[[operators]]")
    assert _line_of(text, ("paging", "high", "repeat")) == line_no(text, "repeat = ", 1)
    # A missing key points at its table's header; an unknown table at nothing.
    assert _line_of(text, ("limits", "nope")) == line_no(text, "[limits]")
    assert _line_of(text, ("responders", 2, "signal")) == line_no(text, "[[responders]]", 2)
    assert _line_of(text, ("paging",)) == line_no(text, "[paging.critical]")
    assert _line_of(text, ("nowhere", "at_all")) is None


def test_line_of_skips_strings_that_look_like_keys() -> None:
    """Multi-line strings, quoted keys and nested arrays of tables do not confuse the locator."""
    text = (
        'note = """\n'  # 1
        "[fake]\n"  # 2
        'name = "x"\n'  # 3
        '"""\n'  # 4
        "[[a]]\n"  # 5
        "[[a.b]]\n"  # 6
        "[[a]]\n"  # 7
        "[[a.b]]\n"  # 8
        "[[a.b]]\n"  # 9
        '"odd key".x = 1  # comment [x]\n'  # 10
    )
    assert _line_of(text, ("fake",)) is None
    assert _line_of(text, ("note",)) == 1
    assert _line_of(text, ("a", 1)) == 7
    assert _line_of(text, ("a", 1, "b", 1)) == 9
    assert _line_of(text, ("a", 0, "b", 0)) == 6
    assert _line_of(text, ("a", 1, "b", 1, "odd key", "x")) == 10


# --------------------------------------------------------------------------- loading


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    """A config with only responders and paging gets every default, paths made absolute."""
    config = load_config(write(tmp_path, BASE), env={})
    assert config.database.url == f"sqlite+aiosqlite:///{tmp_path}/intake-data/intake.db"
    assert config.keys.dir == tmp_path / "intake-data" / "keys"
    assert config.logging.level == "INFO"
    assert config.telegram.mode == "polling"
    assert config.telegram.token is None
    assert config.signal.disappearing == "1d"
    assert config.paging["critical"].steps[1].wait == timedelta(minutes=3)


def test_source_is_absolute_for_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading by a relative path still records the absolute source path."""
    write(tmp_path, BASE)
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("config.toml"), env={})
    assert config.source == tmp_path / "config.toml"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///data/x.db", "sqlite+aiosqlite:///{base}/data/x.db"),
        ("sqlite+aiosqlite:///../x.db?mode=ro", "sqlite+aiosqlite:///{parent}/x.db?mode=ro"),
        ("sqlite+aiosqlite:////srv/x.db", "sqlite+aiosqlite:////srv/x.db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_resolution(tmp_path: Path, url: str, expected: str) -> None:
    """Only relative SQLite file paths are resolved, against the config file's directory."""
    config = load_config(write(tmp_path, f'[database]\nurl = "{url}"\n' + BASE), env={})
    assert config.database.url == expected.format(base=tmp_path, parent=tmp_path.parent)


def test_relative_dirs_resolve_against_the_config_directory(tmp_path: Path) -> None:
    """keys.dir and flows.dir are resolved against the config file, absolute ones kept."""
    text = (
        '[keys]\ndir = "k"\n[flows]\ndir = "/opt/flows"\nlanguage = "pt-BR"\n'
        '[languages]\noffered = ["en", "pt-BR"]\n' + BASE
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.keys.dir == tmp_path / "k"
    assert config.flows.dir == Path("/opt/flows")
    assert config.flows.language == "pt-BR"


def test_responder_lookup_ignores_case(tmp_path: Path) -> None:
    """Config.responder finds names in any case and returns None for strangers."""
    config = load_config(write(tmp_path, BASE), env={})
    alice = config.responder("ALICE")
    assert alice is not None
    assert alice.name == "alice"
    assert config.responder("zed") is None


def test_config_is_frozen(tmp_path: Path) -> None:
    """The loaded config cannot be changed, not even its paging mapping."""
    config = load_config(write(tmp_path, BASE), env={})
    with pytest.raises(ValidationError):
        config.limits.max_message_chars = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.paging["low"] = config.paging["high"]  # type: ignore[index]


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    """model_dump_json writes durations as "5m" and validates back to an equal config."""
    config = load_config(write(tmp_path, BASE), env={})
    dumped = config.model_dump_json()
    assert '"wait":"3m"' in dumped
    assert Config.model_validate_json(dumped) == config


def test_webhook_mode_loads_when_complete(tmp_path: Path) -> None:
    """An enabled webhook-mode telegram section with url, secret and token is accepted."""
    text = (
        '[telegram]\nenabled = true\nmode = "webhook"\ntoken = "1:abc"\n'
        'webhook_url = "https://x.example/hook"\nwebhook_secret = "abc_DEF-123"\n' + BASE
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.telegram.webhook_secret == "abc_DEF-123"


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    """A missing file says so and tells the operator to copy the example."""
    path = tmp_path / "nope.toml"
    problems = problems_of(path)
    assert problems == [f"{path}: no such config file; copy config.example.toml and edit it"]


def test_invalid_toml_reports_line_and_column(tmp_path: Path) -> None:
    """Invalid TOML is reported as file:line:col with tomllib's message."""
    text = BASE.replace("repeat = 1", "repeat = = 1")
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_no(text, 'repeat = = 1')}:10: invalid TOML: ")
    assert "(at line" not in problem


def test_unknown_responder_in_policy(tmp_path: Path) -> None:
    """A policy notifying an unknown name names the step, the name and the known ones."""
    text = BASE.replace('notify = ["bob"], wait = "3m"', 'notify = ["zed"], wait = "3m"')
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, '"zed"')
    assert problem == (
        f"{path}:{line}: paging.critical.steps[1].notify: unknown responder 'zed'; "
        "known: alice, bob"
    )


def test_notify_names_ignore_case(tmp_path: Path) -> None:
    """Policies may refer to responders in any case."""
    text = BASE.replace('notify = ["bob"], wait = "3m"', 'notify = ["BOB"], wait = "3m"')
    assert load_config(write(tmp_path, text), env={}).paging["critical"].steps[1].notify == ("BOB",)


def test_duplicate_responder_name(tmp_path: Path) -> None:
    """Responder names must be unique ignoring case."""
    text = BASE + '\n[[responders]]\nname = "Alice"\nconsole = true\n'
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, 'name = "Alice"')
    assert problem == f"{path}:{line}: responders[2].name: 'Alice' is already used by responders[0]"


def test_responder_without_address(tmp_path: Path) -> None:
    """A responder with no console, signal or telegram is rejected at its table header."""
    text = BASE + '\n[[responders]]\nname = "carol"\n'
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, "[[responders]]", 2)
    assert problem == (
        f"{path}:{line}: responders[2]: give at least one address: console = true, "
        'signal = "+..." or telegram = 123456789'
    )


def test_bad_duration(tmp_path: Path) -> None:
    """An unparseable wait names the step's key and shows the syntax."""
    text = BASE.replace('wait = "3m"', 'wait = "5 minutes"')
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, "5 minutes")
    assert problem == (
        f'{path}:{line}: paging.critical.steps[1].wait: invalid duration "5 minutes": '
        'use a number with a unit, e.g. "90s", "5m", "2h"'
    )


def test_unknown_keys_get_suggestions(tmp_path: Path) -> None:
    """Unknown keys are errors that suggest the closest allowed key."""
    text = '[loging]\nlevel = "INFO"\n' + BASE.replace("console = true", "consle = true")
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert_problem(problems, f"{path}:1: loging: unknown key; did you mean 'logging'?")
    line = line_no(text, "consle")
    assert_problem(problems, f"{path}:{line}: responders[0].consle: unknown key; did you mean")
    assert len(problems) == 2


def test_unknown_tier_gets_a_suggestion(tmp_path: Path) -> None:
    """A misspelt tier is an unknown key under paging with the right tier suggested."""
    text = BASE + '\n[paging.hihg]\nsteps = [{ notify = ["bob"], wait = "1m" }]\n'
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, "[paging.hihg]")
    assert problem == f"{path}:{line}: paging.hihg: unknown key; did you mean 'high'?"


def test_source_key_is_not_accepted(tmp_path: Path) -> None:
    """The internal source field cannot be set from the file."""
    path = write(tmp_path, 'source = "/etc/passwd"\n' + BASE)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: source: unknown key")


def test_missing_tier(tmp_path: Path) -> None:
    """Every tier needs a policy; a missing one is named as paging.<tier>."""
    text = BASE.split("[paging.low]")[0]
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, "[paging.critical]")
    assert problem.startswith(f"{path}:{line}: paging.low: required key is missing")


def test_missing_sections_have_no_line(tmp_path: Path) -> None:
    """Keys missing from a file that has no such table are reported without a line number."""
    path = write(tmp_path, '[logging]\nlevel = "INFO"\n')
    problems = problems_of(path)
    assert_problem(problems, f"{path}: responders: required key is missing")
    assert_problem(problems, f"{path}: paging: required key is missing")
    assert len(problems) == 2


def test_telegram_id_as_string(tmp_path: Path) -> None:
    """A quoted Telegram id is an error that says to write it without quotes."""
    text = BASE.replace("telegram = 42", 'telegram = "42"')
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    line = line_no(text, 'telegram = "42"')
    assert problem.startswith(f"{path}:{line}: responders[1].telegram: ")
    assert "write it without quotes: telegram = 42" in problem


def test_wrong_type_is_explained(tmp_path: Path) -> None:
    """A value of the wrong TOML type says what was expected and what was given."""
    text = '[limits]\nmax_message_chars = "2000"\n' + BASE
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem == f'{path}:2: limits.max_message_chars: expected an integer, got "2000"'


def test_enabled_telegram_without_token(tmp_path: Path) -> None:
    """Enabling telegram without a token names telegram.token and the environment variable."""
    text = "[telegram]\nenabled = true\n" + BASE
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: telegram.token: required")
    assert "INTAKE_TELEGRAM_TOKEN" in problem


def test_env_token_satisfies_enabled_telegram(tmp_path: Path) -> None:
    """INTAKE_TELEGRAM_TOKEN provides the token, and overrides one in the file."""
    path = write(tmp_path, '[telegram]\nenabled = true\ntoken = "1:file"\n' + BASE)
    config = load_config(path, env={"INTAKE_TELEGRAM_TOKEN": "2:env"})
    assert config.telegram.token == "2:env"
    bare = write(tmp_path, BASE, name="bare.toml")
    assert load_config(bare, env={"INTAKE_TELEGRAM_TOKEN": "3:env"}).telegram.token == "3:env"


def test_webhook_mode_requires_url_and_secret(tmp_path: Path) -> None:
    """Webhook mode needs webhook_url and webhook_secret; a bad secret is named too."""
    text = '[telegram]\nenabled = true\ntoken = "1:a"\nmode = "webhook"\n' + BASE
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert_problem(problems, f"{path}:1: telegram.webhook_url: required")
    assert_problem(problems, f"{path}:1: telegram.webhook_secret: required")
    bad_text = text.replace('mode = "webhook"', 'webhook_secret = "has space"')
    bad = write(tmp_path, bad_text, name="bad.toml")
    assert_problem(problems_of(bad), f"{bad}:4: telegram.webhook_secret: must be 1-256")


def test_enabled_signal_requires_e164_number(tmp_path: Path) -> None:
    """Enabled Signal needs its number, and numbers must be in international format."""
    path = write(tmp_path, "[signal]\nenabled = true\n" + BASE)
    assert_problem(problems_of(path), f"{path}:1: signal.number: required")
    text = BASE.replace("console = true", 'signal = "0170 1234567"')
    path = write(tmp_path, text, name="number.toml")
    line = line_no(text, "0170")
    assert_problem(problems_of(path), f"{path}:{line}: responders[0].signal: ", "international")


def test_bad_database_url(tmp_path: Path) -> None:
    """A database URL with another driver is an error naming database.url."""
    path = write(tmp_path, '[database]\nurl = "mysql://x/y"\n' + BASE)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: database.url: must start with sqlite+aiosqlite://")


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    """All problems come in one ConfigError, sorted by line."""
    text = (
        '[logging]\nlevel = "LOUD"\n'
        + BASE.replace("telegram = 42", 'telegram = "42"')
        .replace('["bob"], wait = "3m"', '["zed"], wait = "3x"')
        .split("[paging.low]")[0]
        + '\n[[responders]]\nname = "BOB"\nconsole = true\n'
    )
    path = write(tmp_path, text)
    problems = problems_of(path)
    keys = [re.sub(r"^[^:]*:\d+: ([^:]*):.*$", r"\1", problem) for problem in problems]
    assert sorted(keys) == sorted(
        [
            "logging.level",
            "responders[1].telegram",
            "responders[2].name",
            "paging.critical.steps[1].wait",
            "paging.critical.steps[1].notify",
            "paging.low",
        ]
    )
    lines = [int(problem.split(":")[1]) for problem in problems]
    assert lines == sorted(lines)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30s", timedelta(seconds=90)),
        ("  2m ", timedelta(minutes=2)),
        ("30d", timedelta(days=30)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    """Numbers with s/m/h/d units, combined largest first, parse to the right duration."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["0s", "", "  ", "5", "-5m", "5 minutes", "5M", "1m1h", "1.5h", "31d", "721h", "٥m", "h"],
)
def test_parse_duration_rejects(text: str) -> None:
    """Zero, unitless, negative, misordered, spelled-out and over-30-day durations fail."""
    with pytest.raises(ValueError, match=r'^invalid duration "'):
        parse_duration(text)


def test_parse_duration_message() -> None:
    """The error message shows the syntax to use."""
    with pytest.raises(ValueError) as info:
        parse_duration("5")
    expected = 'invalid duration "5": use a number with a unit, e.g. "90s", "5m", "2h"'
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (5400, "1h30m"), (3600, "1h"), (86400 + 1, "1d1s"), (59, "59s")],
)
def test_format_duration_is_canonical(seconds: int, text: str) -> None:
    """format_duration writes the shortest form, largest unit first."""
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    "td", [timedelta(0), timedelta(seconds=-5), timedelta(seconds=1, milliseconds=500)]
)
def test_format_duration_rejects_non_positive_and_fractions(td: timedelta) -> None:
    """Only positive whole-second durations can be formatted."""
    with pytest.raises(ValueError):
        format_duration(td)


@given(st.integers(min_value=1, max_value=30 * 86400))
def test_format_then_parse_round_trips(seconds: int) -> None:
    """Parsing a formatted duration gives back the same duration."""
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


@given(
    st.tuples(*(st.integers(min_value=0, max_value=99) for _ in range(4))).filter(any),
    st.sampled_from(["", " ", "\t"]),
)
def test_parse_then_format_is_canonical(parts: tuple[int, int, int, int], pad: str) -> None:
    """Any accepted spelling formats to a canonical form that parses to the same duration."""
    text = "".join(f"{n}{unit}" for n, unit in zip(parts, "dhms", strict=True) if n)
    td = timedelta(days=parts[0], hours=parts[1], minutes=parts[2], seconds=parts[3])
    if td > timedelta(days=30):
        with pytest.raises(ValueError):
            parse_duration(pad + text + pad)
        return
    assert parse_duration(pad + text + pad) == td
    canonical = format_duration(td)
    assert parse_duration(canonical) == td
    assert format_duration(parse_duration(canonical)) == canonical


# --------------------------------------------------------------------------- rotas, overrides


ROTA = """
[[rotas]]
name = "primary"
members = ["alice", "bob"]
zone = "Europe/Berlin"
handoff = "09:00"
"""

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    """An aware Berlin wall time (first occurrence)."""
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def load_text(tmp_path: Path, text: str) -> Config:
    """Load a config that must be valid."""
    return load_config(write(tmp_path, text), env={})


def only_problem(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Load a config that must fail with exactly one problem; return its path and problem."""
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return path, problems[0]


def test_example_rotas_resolve_with_their_override() -> None:
    """The example's rotas alternate alice and bob at 09:00 Berlin; carol covers alice over
    Christmas; policy targets resolve to the people on call at that moment."""
    config = load_config(EXAMPLE, env={})
    primary = config.rota("primary")
    backup = config.rota("BACKUP")
    assert primary is not None and backup is not None
    assert config.rota("nope") is None
    assert primary.zone == "Europe/Berlin" and primary.shift == "daily"
    assert on_call(primary, berlin(2026, 1, 5, 9)) == ("alice",)
    assert on_call(primary, berlin(2026, 1, 6, 8, 59)) == ("alice",)
    assert on_call(primary, berlin(2026, 1, 6, 9)) == ("bob",)
    assert on_call(backup, berlin(2026, 1, 5, 9)) == ("bob",)
    # 2026-12-25 is alice's day on primary; carol replaces her 12-24 18:00 to 12-26 09:00.
    assert [
        (t.astimezone(BERLIN), names)
        for t, names in next_handoffs(primary, berlin(2026, 12, 24, 12), 2)
    ] == [
        (berlin(2026, 12, 25, 9), ("carol",)),
        (berlin(2026, 12, 26, 9), ("bob",)),
    ]
    christmas = berlin(2026, 12, 25, 12)
    steps = config.paging["critical"].steps
    assert config.resolve_targets(steps[0].notify, christmas) == ("carol",)
    assert config.resolve_targets(steps[1].notify, christmas) == ("bob",)
    assert config.resolve_targets(steps[3].notify, christmas) == ("alice", "bob", "carol")
    assert config.resolve_targets(steps[0].notify, berlin(2026, 1, 5, 10)) == ("alice",)


def test_example_round_trips_through_json() -> None:
    """Every new key (rotas, overrides, operators, hours, durations) survives JSON."""
    config = load_config(EXAMPLE, env={})
    dumped = config.model_dump_json()
    assert '"hours":"mon-fri 09:00-18:00 Europe/Berlin"' in dumped
    assert '"handoff":"09:00"' in dumped and '"start":"2026-12-24 18:00"' in dumped
    assert Config.model_validate_json(dumped) == config


def test_rota_defaults_and_shapes(tmp_path: Path) -> None:
    """Defaults: daily, every day, starting 2026-01-05; weekly defaults to start's weekday;
    limited days start on the first listed day on or after 2026-01-05."""
    text = (
        BASE
        + ROTA
        + (
            '\n[[rotas]]\nname = "weekly"\nmembers = ["alice", "bob"]\nzone = "America/Bogota"\n'
            'handoff = "08:30"\nshift = "weekly"\nstart = 2026-01-07\n'
            '\n[[rotas]]\nname = "thursdays"\nmembers = ["bob", "alice"]\nzone = "Asia/Kabul"\n'
            'handoff = "18:00"\ndays = ["THU", "mon"]\n'
            '\n[[rotas]]\nname = "halves"\nmembers = ["alice", "bob"]\nzone = "UTC"\n'
            'handoff = "06:00"\nshift = "12h"\n'
        )
    )
    config = load_text(tmp_path, text)
    primary, weekly, thursdays, halves = config.rotas
    assert primary.shift == "daily" and primary.days is None and primary.start is None
    assert primary.first_day == date(2026, 1, 5)
    assert weekly.weekdays == {2} and weekly.first_day == date(2026, 1, 7)
    assert thursdays.days == ("mon", "thu") and thursdays.first_day == date(2026, 1, 5)
    assert halves.shift == timedelta(hours=12)
    built = config.rota("weekly")
    assert built is not None and built.days == {2}
    assert built.start == datetime(2026, 1, 7, 13, 30, tzinfo=UTC)
    kabul = config.rota("thursdays")
    assert kabul is not None
    assert kabul.start == datetime(2026, 1, 5, 13, 30, tzinfo=UTC)
    twelve = config.rota("halves")
    assert twelve is not None
    assert on_call(twelve, datetime(2026, 1, 5, 18, tzinfo=UTC)) == ("bob",)


def test_rota_names_are_case_insensitive_and_use_configured_spellings(tmp_path: Path) -> None:
    """Members and targets may use any case; built rotas use the responders' spellings."""
    text = BASE.replace('notify = ["alice"], wait = "2m"', 'notify = ["ROTA:Primary"], wait = "2m"')
    text += ROTA.replace('["alice", "bob"]', '["ALICE", "Bob"]')
    config = load_text(tmp_path, text)
    rota = config.rota("primary")
    assert rota is not None and rota.members == ("alice", "bob")
    at = berlin(2026, 1, 5, 10)
    assert config.resolve_targets(["ROTA:Primary", "Alice", "stranger"], at) == (
        "alice",
        "stranger",
    )
    with pytest.raises(ValueError, match="aware"):
        config.resolve_targets(["alice"], datetime(2026, 1, 5, 10))


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            'zone = "Europe/Berlin"',
            'zone = "Europe/Berln"',
            "rotas[0].zone",
            'unknown time zone "Europe/Berln"; did you mean "Europe/Berlin"?',
        ),
        (
            'zone = "Europe/Berlin"',
            'zone = "berlin"',
            "rotas[0].zone",
            'unknown time zone "berlin"; did you mean "Europe/Berlin"?',
        ),
        (
            'zone = "Europe/Berlin"',
            'zone = "localtime"',
            "rotas[0].zone",
            'unknown time zone "localtime"',
        ),
        (
            'zone = "Europe/Berlin"',
            'zone = "Nowhere/Atall"',
            "rotas[0].zone",
            'unknown time zone "Nowhere/Atall"; use an IANA name like "Europe/Berlin"',
        ),
        (
            '["alice", "bob"]',
            '["alice", "zed"]',
            "rotas[0].members",
            "unknown responder 'zed'; known: alice, bob",
        ),
        ('["alice", "bob"]', "[]", "rotas[0].members", "must not be empty"),
        (
            'name = "primary"',
            'name = "Primary Team"',
            "rotas[0].name",
            'must be a short lowercase name like "primary"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "9am"',
            "rotas[0].handoff",
            'expected a local time "HH:MM" like "09:00", got "9am"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "24:00"',
            "rotas[0].handoff",
            'expected a local time "HH:MM" like "09:00", got "24:00"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\ndays = ["mon", "tues"]',
            "rotas[0].days[1]",
            'expected a weekday, one of "mon", "tue", "wed", "thu", "fri", "sat", "sun"; '
            'got "tues"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\ndays = ["mon", "Mon"]',
            "rotas[0].days[1]",
            '"mon" is already listed at days[0]',
        ),
        ('handoff = "09:00"', 'handoff = "09:00"\ndays = []', "rotas[0].days", "must not be empty"),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nshift = "dialy"',
            "rotas[0].shift",
            'expected "daily", "weekly" or a duration like "12h", got "dialy"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nshift = "30m"',
            "rotas[0].shift",
            'must be at least "1h", got "30m"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nshift = "weekly"\ndays = ["mon", "thu"]',
            "rotas[0].days",
            'a weekly rota hands off once a week: give the one hand-off day, e.g. days = ["mon"]',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nshift = "12h"\ndays = ["mon"]',
            "rotas[0].days",
            'only daily and weekly rotas hand off on chosen days; with shift = "12h"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\ndays = ["mon", "thu"]\nstart = "2026-01-06"',
            "rotas[0].start",
            "2026-01-06 is a tue, but this rota hands off only on mon, thu; start on one of "
            "those days",
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nshift = "weekly"\ndays = ["fri"]\nstart = "2026-01-05"',
            "rotas[0].start",
            "2026-01-05 is a mon, but this rota hands off only on fri",
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nstart = "2026-02-30"',
            "rotas[0].start",
            'expected a date "YYYY-MM-DD" like "2026-01-05", got "2026-02-30"',
        ),
        (
            'handoff = "09:00"',
            'handoff = "09:00"\nmember = "x"',
            "rotas[0].member",
            "unknown key; did you mean 'members'?",
        ),
    ],
)
def test_rota_errors(tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
    """Each rota mistake is one problem naming the file, the line and the key."""
    text = BASE + ROTA.replace(old, new, 1)
    path, problem = only_problem(tmp_path, text)
    line = line_no(text, new.splitlines()[-1])
    assert problem.startswith(f"{path}:{line}: {key}: {message}"), problem


def test_missing_rota_keys_point_at_the_table(tmp_path: Path) -> None:
    """A rota without zone or handoff is reported at its [[rotas]] header."""
    text = BASE + '\n[[rotas]]\nname = "primary"\nmembers = ["alice"]\n'
    path = write(tmp_path, text)
    problems = problems_of(path)
    line = line_no(text, "[[rotas]]")
    assert_problem(problems, f"{path}:{line}: rotas[0].zone: required key is missing")
    assert_problem(problems, f"{path}:{line}: rotas[0].handoff: required key is missing")
    assert len(problems) == 2


def test_duplicate_rota_name(tmp_path: Path) -> None:
    """Rota names are unique."""
    text = BASE + ROTA + ROTA.replace('["alice", "bob"]', '["bob"]')
    path, problem = only_problem(tmp_path, text)
    line = line_no(text, 'name = "primary"', 1)
    assert problem == f"{path}:{line}: rotas[1].name: 'primary' is already used by rotas[0]"


OVERRIDE = """
[[overrides]]
rota = "primary"
responder = "bob"
replaces = "alice"
start = "2026-12-24 18:00"
end = "2026-12-26 09:00"
"""


def test_override_in_its_own_zone(tmp_path: Path) -> None:
    """An override's zone, when given, is the zone of its start and end."""
    text = BASE + ROTA + OVERRIDE.replace('end = "2026-12-26 09:00"', 'end = "2026-12-26 03:00"')
    text += 'zone = "America/Bogota"\n'
    rota = load_text(tmp_path, text).rota("primary")
    assert rota is not None
    [override] = rota.overrides
    assert override.start == datetime(2026, 12, 24, 23, tzinfo=UTC)
    assert override.end == datetime(2026, 12, 26, 8, tzinfo=UTC)
    assert (override.responder, override.replaces) == ("bob", "alice")


def test_override_with_toml_datetimes_and_added_cover(tmp_path: Path) -> None:
    """TOML local date-times work too; without replaces the responder is added."""
    text = BASE + ROTA + OVERRIDE.replace('replaces = "alice"\n', "")
    text = text.replace('"2026-12-24 18:00"', "2026-12-24T18:00:00")
    rota = load_text(tmp_path, text).rota("primary")
    assert rota is not None
    assert rota.overrides[0].replaces is None
    assert on_call(rota, berlin(2026, 12, 25, 12)) == ("alice", "bob")


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            'rota = "primary"',
            'rota = "primry"',
            "overrides[0].rota",
            "unknown rota 'primry'; known: primary",
        ),
        (
            'responder = "bob"',
            'responder = "zed"',
            "overrides[0].responder",
            "unknown responder 'zed'; known: alice, bob",
        ),
        (
            'replaces = "alice"',
            'replaces = "zed"',
            "overrides[0].replaces",
            "unknown responder 'zed'; known: alice, bob",
        ),
        (
            'replaces = "alice"',
            'replaces = "bob"',
            "overrides[0].replaces",
            "'bob' cannot replace themself",
        ),
        (
            'end = "2026-12-26 09:00"',
            'end = "2026-12-24 17:00"',
            "overrides[0].end",
            "must be after start (2026-12-24 18:00 Europe/Berlin), got 2026-12-24 17:00",
        ),
        (
            'start = "2026-12-24 18:00"',
            'start = "24.12.2026 18:00"',
            "overrides[0].start",
            'expected a local date and time "YYYY-MM-DD HH:MM" like "2026-12-24 18:00", '
            'got "24.12.2026 18:00"',
        ),
        (
            'start = "2026-12-24 18:00"',
            "start = 2026-12-24T18:00:00+01:00",
            "overrides[0].start",
            'write a local time without an offset, like "2026-12-24 18:00", and set zone if '
            "it is not the rota's zone",
        ),
        (
            'end = "2026-12-26 09:00"',
            'end = "2026-12-26 09:00"\nzone = "Europe/Paaris"',
            "overrides[0].zone",
            'unknown time zone "Europe/Paaris"; did you mean "Europe/Paris"?',
        ),
    ],
)
def test_override_errors(tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
    """Each override mistake is one problem naming the file, the line and the key."""
    text = BASE + ROTA + OVERRIDE.replace(old, new)
    path, problem = only_problem(tmp_path, text)
    line = line_no(text, new.splitlines()[-1])
    assert problem == f"{path}:{line}: {key}: {message}"


def test_override_replacing_a_non_member(tmp_path: Path) -> None:
    """Replacing someone who is not in the rota would never apply: an error."""
    text = BASE + ROTA.replace('["alice", "bob"]', '["alice"]') + OVERRIDE
    text = text.replace(
        'responder = "bob"\nreplaces = "alice"', 'responder = "alice"\nreplaces = "bob"'
    )
    path, problem = only_problem(tmp_path, text)
    line = line_no(text, 'replaces = "bob"')
    assert problem == (
        f"{path}:{line}: overrides[0].replaces: 'bob' is not a member of rota 'primary' "
        "(members: alice), so this override would never apply"
    )


def test_overlapping_replacements_are_refused(tmp_path: Path) -> None:
    """Two overrides replacing the same member at once are ambiguous; back to back is fine."""
    second = OVERRIDE.replace('"2026-12-24 18:00"', '"2026-12-26 08:00"').replace(
        '"2026-12-26 09:00"', '"2026-12-27 09:00"'
    )
    text = BASE + ROTA + OVERRIDE + second
    path, problem = only_problem(tmp_path, text)
    line = line_no(text, "[[overrides]]", 1)
    assert problem == (
        f"{path}:{line}: overrides[1]: overlaps overrides[0], which also replaces 'alice' on "
        "rota 'primary'; make them follow each other"
    )
    touching = second.replace('"2026-12-26 08:00"', '"2026-12-26 09:00"')
    assert len(load_text(tmp_path, BASE + ROTA + OVERRIDE + touching).overrides) == 2


# --------------------------------------------------------------------------- targets, tiers


def test_unknown_rota_target(tmp_path: Path) -> None:
    """A rota target naming an unknown rota is an error listing the known rotas."""
    text = BASE.replace('notify = ["alice"], wait = "2m"', 'notify = ["rota:x"], wait = "2m"')
    path, problem = only_problem(tmp_path, text + ROTA)
    line = line_no(text, '"rota:x"')
    assert problem == (
        f"{path}:{line}: paging.critical.steps[0].notify: unknown rota 'x'; known: primary"
    )
    text = BASE.replace('notify = ["bob"], wait = "3m"', 'notify = ["rota-all:y"], wait = "3m"')
    path, problem = only_problem(tmp_path, text)
    line = line_no(text, '"rota-all:y"')
    assert problem == (
        f"{path}:{line}: paging.critical.steps[1].notify: unknown rota 'y'; "
        "no [[rotas]] are configured"
    )


def test_unknown_target_kind(tmp_path: Path) -> None:
    """A target with another prefix says which forms exist."""
    text = BASE.replace('notify = ["alice"], wait = "2m"', 'notify = ["team:x"], wait = "2m"')
    path, problem = only_problem(tmp_path, text)
    assert problem == (
        f"{path}:{line_no(text, 'team:x')}: paging.critical.steps[0].notify: unknown target "
        """'team:x'; write a responder name, "rota:NAME" or "rota-all:NAME\""""
    )


def test_policy_options(tmp_path: Path) -> None:
    """ack_timeout, hours and raise_after parse; defaults are None."""
    text = BASE.replace("repeat = 1", 'repeat = 1\nack_timeout = "15m"').replace(
        'steps = [{ notify = ["bob"], wait = "8h" }]',
        'steps = [{ notify = ["bob"], wait = "8h" }]\n'
        'hours = "mon-fri 09:00-18:00 America/New_York"\nraise_after = "1d"',
    )
    config = load_text(tmp_path, text)
    assert config.paging["critical"].ack_timeout == timedelta(minutes=15)
    low = config.paging["low"]
    assert low.raise_after == timedelta(days=1)
    assert low.hours is not None and low.hours.zone == "America/New_York"
    assert low.hours.is_open(datetime(2026, 3, 9, 13, 30, tzinfo=UTC))  # 09:30 EDT
    assert config.paging["high"].ack_timeout is None and config.paging["high"].hours is None
    assert Config.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    ("tier_line", "addition", "key", "message"),
    [
        (
            "repeat = 1",
            'hours = "mon-fri 09:00-18:00 Europe/Berlin"',
            "paging.critical.hours",
            "critical pages go out at any hour; business hours may only be set on medium and low",
        ),
        (
            "repeat = 1",
            'raise_after = "1h"',
            "paging.critical.raise_after",
            "critical is the most urgent tier already",
        ),
        (
            "repeat = 1",
            'ack_timeout = "15 minutes"',
            "paging.critical.ack_timeout",
            'invalid duration "15 minutes"',
        ),
        (
            'steps = [{ notify = ["bob"], wait = "8h" }]',
            'hours = "weekdays 09:00-18:00 Europe/Berlin"',
            "paging.low.hours",
            'unknown day "weekdays"',
        ),
        (
            'steps = [{ notify = ["bob"], wait = "8h" }]',
            'hours = "mon-fri 09:00-18:00 CET+1"',
            "paging.low.hours",
            'unknown time zone "CET+1"',
        ),
        (
            'steps = [{ notify = ["alice"], wait = "10m" }]',
            'hours = "mon-fri 09:00-18:00 UTC"',
            "paging.high.hours",
            "high pages go out at any hour",
        ),
    ],
)
def test_policy_option_errors(
    tmp_path: Path, tier_line: str, addition: str, key: str, message: str
) -> None:
    """Tier options are checked, and urgent tiers cannot be held back by business hours."""
    text = BASE.replace(tier_line, f"{tier_line}\n{addition}", 1)
    path, problem = only_problem(tmp_path, text)
    assert problem.startswith(f"{path}:{line_no(text, addition)}: {key}: {message}"), problem


def test_delivery_and_watchdog(tmp_path: Path) -> None:
    """[delivery] and [watchdog] have defaults and check their durations."""
    config = load_text(tmp_path, BASE)
    assert config.delivery.bundle_window == timedelta(seconds=30)
    assert (config.watchdog.interval, config.watchdog.stuck_after) == (
        timedelta(seconds=30),
        timedelta(minutes=2),
    )
    text = '[delivery]\nbundle_window = "10m"\n[watchdog]\ninterval = "5m"\n' + BASE
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert_problem(problems, f'{path}:2: delivery.bundle_window: must be at most "5m"')
    assert_problem(
        problems, f'{path}:4: watchdog.interval: must be at most stuck_after ("2m"), got "5m"'
    )
    assert len(problems) == 2


# --------------------------------------------------------------------------- operators


def test_operators_are_optional_but_run_needs_a_reachable_one(tmp_path: Path) -> None:
    """No operators loads; operator_problems names the file and the missing table."""
    config = load_text(tmp_path, BASE)
    assert config.operators == ()
    [problem] = config.operator_problems()
    assert problem.startswith(f"{config.source}: no [[operators]] table: add at least one")


def test_operator_problems_need_an_address_on_an_enabled_channel(tmp_path: Path) -> None:
    """A console-only operator cannot be paged by `intake run`; a Signal one with Signal
    enabled can. An operator may share a responder's name."""
    text = BASE + '\n[[operators]]\nname = "alice"\nconsole = true\n'
    config = load_text(tmp_path, text)
    [problem] = config.operator_problems()
    line = line_no(text, "[[operators]]")
    assert problem.startswith(
        f"{config.source}:{line}: operators: no operator can be paged by `intake run`"
    )
    text = '[signal]\nenabled = true\nnumber = "+4915112345678"\n' + BASE
    text += '\n[[operators]]\nname = "alice"\nsignal = "+4915187654321"\n'
    assert load_text(tmp_path, text).operator_problems() == []


def test_operator_errors(tmp_path: Path) -> None:
    """Operators are checked like responders: an address, unique names."""
    text = BASE + '\n[[operators]]\nname = "ops"\n\n[[operators]]\nname = "OPS"\nconsole = true\n'
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert_problem(
        problems, f"{path}:{line_no(text, '[[operators]]')}: operators[0]: give at least one"
    )
    line = line_no(text, 'name = "OPS"')
    assert_problem(
        problems, f"{path}:{line}: operators[1].name: 'OPS' is already used by operators[0]"
    )


def test_example_values_flag_operator_placeholders(tmp_path: Path) -> None:
    """An operator still carrying the example's Signal number is flagged."""
    text = BASE + '\n[[operators]]\nname = "carol"\nsignal = "+491701234567"\n'
    config = load_text(tmp_path, text)
    [flagged] = config.example_values()
    line = line_no(text, 'signal = "+491701234567"')
    assert flagged.startswith(f"{config.source}:{line}: operators[0].signal: still the example")


def test_rota_problems_are_reported_with_other_errors(tmp_path: Path) -> None:
    """When other keys are invalid too, rota references are still all reported at once."""
    text = (
        '[limits]\nmax_message_chars = "x"\n'
        + BASE.replace('notify = ["alice"], wait = "2m"', 'notify = ["rota:nope"], wait = "2m"')
        + ROTA.replace('["alice", "bob"]', '["alice", "zed"]')
        + OVERRIDE.replace('rota = "primary"', 'rota = "other"')
    )
    path = write(tmp_path, text)
    problems = problems_of(path)
    keys = sorted(re.sub(r"^[^:]*:\d+: ([^:]*):.*$", r"\1", problem) for problem in problems)
    assert keys == sorted(
        [
            "limits.max_message_chars",
            "paging.critical.steps[0].notify",
            "rotas[0].members",
            "overrides[0].rota",
        ]
    )


def test_example_lists_every_default_alarm_word_and_language() -> None:
    """config.example.toml lists exactly the built-in alarm words and languages, so what an
    operator reads is what runs when the section is left out."""
    from bot.conversation.languages import DEFAULT_SOS_WORDS, LANGUAGE_NAMES

    config = load_config(EXAMPLE, env={})
    assert config.languages.sos_words == {k: tuple(v) for k, v in DEFAULT_SOS_WORDS.items()}
    assert config.languages.offered == tuple(LANGUAGE_NAMES)
    assert config.languages.resume_after == timedelta(minutes=30)
    assert config.languages.draft_expiry == timedelta(hours=24)


def test_default_language_must_be_offered(tmp_path: Path) -> None:
    """A [flows] language the [languages] section does not offer is refused, naming both."""
    text = '[flows]\nlanguage = "fa"\n[languages]\noffered = ["en", "es"]\n' + BASE
    with pytest.raises(ConfigError, match=r"flows.language \"fa\" must be one of"):
        load_config(write(tmp_path, text), env={})
