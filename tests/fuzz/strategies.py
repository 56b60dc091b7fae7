"""What the fuzz tests throw at the bot, and the bounded, reproducible budget they run with.

Budget: every fuzz test runs ``INTAKE_FUZZ_EXAMPLES`` examples (default below) times its own
scale; ``derandomize`` and no example database make each run — CI's included — try the same
inputs in the same order. Raise the variable for a longer local hunt, e.g.
``INTAKE_FUZZ_EXAMPLES=500 .venv/bin/pytest tests/fuzz``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bot.core.text import clean_input

EXAMPLES = int(os.environ.get("INTAKE_FUZZ_EXAMPLES", "12"))
MAX_CHARS = 2000  # [limits] max_message_chars in the test config (the default)


def fuzz(scale: int = 1) -> settings:
    """Settings for one fuzz test: ``EXAMPLES * scale`` examples, reproducible, no deadline
    (the machines are noisy), and one app per test shared by its examples."""
    return settings(
        max_examples=max(1, EXAMPLES * scale),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# ------------------------------------------------------------------------------- text

# Right-to-left scripts and the bidi controls that reorder what a screen shows.
RTL = "مرحبا أنا في خطر" + "سلام، کمک لازم دارم" + "שלום" + "\u200f\u200e\u061c"
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
CONTROLS = "".join(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))) + "\u2028\u2029"
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u034f\ufe0f"
ODD = "\ufffd\ufffe\uffff\U0010ffff\U000e0001\U0001f600\U0001f469\u200d\U0001f4bb" + "e\u0301\u0308"
LONE_SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800")
# Words the bot reacts to, so that fuzzing reaches the flows, not only "I did not understand".
WORDS = (
    "SOS",
    "s.o.s!",
    "S O S",
    "نجدة",
    "/start",
    "/help",
    "/cancel",
    "/status",
    "/lang",
    "/lang fa",
    "/plan",
    "/tz Europe/Kyiv",
    "/checkin 2h",
    "/code safe",
    "/contact",
    "/forget",
    "/drill",
    "skip",
    "0",
    "1",
    "2",
    "9",
    "99",
    "yes",
    "no",
    "ack",
    "resolve K7Q2",
    "reply",
)


def _pieces(surrogates: bool) -> st.SearchStrategy[str]:
    pieces = [
        st.text(st.characters(), max_size=12),
        st.text(st.sampled_from(RTL + BIDI_CONTROLS), max_size=12),
        st.text(st.sampled_from(CONTROLS + INVISIBLE + ODD), max_size=6),
        st.sampled_from(WORDS),
        st.sampled_from((" ", "  ", "\n", "\r\n", "\t", "\x00")),
    ]
    if surrogates:
        pieces.append(st.sampled_from(LONE_SURROGATES))
    return st.one_of(*pieces)


def long_text(surrogates: bool = True) -> st.SearchStrategy[str]:
    """Texts over the limit, up to 1 MB: one piece repeated (cheap to generate)."""
    unit = st.one_of(
        st.sampled_from(("x", "ش", "\U0001f600", "a\u0301", " \n")), _pieces(surrogates)
    )
    sizes = st.sampled_from((MAX_CHARS + 1, 5000, 65_536, 1_000_000))
    return st.builds(
        lambda piece, size: (piece or "y") * (size // max(1, len(piece or "y"))), unit, sizes
    )


def nasty_text(surrogates: bool = True, long: bool = True) -> st.SearchStrategy[str]:
    """Inbound text: any unicode (lone surrogates too, unless ``surrogates`` is False),
    right-to-left, control characters, NUL, invisible marks, command words, and now and then
    (unless ``long`` is False) a text of up to 1 MB."""
    composed = st.lists(_pieces(surrogates), max_size=6).map("".join)
    if not long:
        return composed
    return st.one_of(composed, composed, composed, composed, composed, long_text(surrogates))


def is_too_long(text: str) -> bool:
    """True when the bot must tell the defender it kept only the first part."""
    return clean_input(text, MAX_CHARS).truncated


TRUNCATED_NOTICE = f"kept only the first {MAX_CHARS} characters"

# ------------------------------------------------------------------------------- JSON


def json_values(keys: Sequence[str], surrogates: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON value: huge and negative integers, floats (NaN too), nasty strings, and
    objects whose keys are often ones the parser looks for."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=2**53, max_value=2**200),
        st.integers(min_value=-(2**70), max_value=-1),
        st.floats(),
        nasty_text(surrogates, long=False),
    )
    key = st.one_of(st.sampled_from(tuple(keys)), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=5),
        max_leaves=12,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _paths(inner, (*prefix, name))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


def _parent(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        value = value[step]
    return value


@st.composite
def mutated(
    draw: st.DrawFn,
    bases: Sequence[dict[str, Any]],
    keys: Sequence[str],
    text_fields: Iterable[str] = ("text",),
    surrogates: bool = True,
) -> Any:
    """A valid payload from ``bases`` with up to four mutations: a field deleted, replaced by
    any JSON value (wrong type, huge int...), a key added, or a text field set to nasty
    text. Whole payloads are sometimes replaced too."""
    value = copy.deepcopy(draw(st.sampled_from(tuple(bases))))
    values = json_values(keys, surrogates)
    fields = tuple(text_fields)
    for _ in range(draw(st.integers(0, 4))):
        paths = list(_paths(value))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(value, path)
        operation = draw(st.sampled_from(("delete", "replace", "add", "text", "text")))
        if operation == "delete":
            del parent[path[-1]]
        elif operation == "replace":
            parent[path[-1]] = draw(values)
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(tuple(keys)))] = draw(values)
        elif operation == "text":
            texts = [p for p in paths if p[-1] in fields]
            if texts:
                target = draw(st.sampled_from(texts))
                _parent(value, target)[target[-1]] = draw(nasty_text(surrogates))
    return value


def to_json(value: Any) -> bytes:
    """Serialise as a platform would: lone surrogates as ``\\udXXX`` escapes (valid JSON)."""
    return json.dumps(value).encode()


# ------------------------------------------------------------------------------- logs


def fragments(texts: Iterable[str]) -> list[str]:
    """Pieces of ``texts`` distinctive enough that seeing one in a log means it leaked: the
    start and end of each cleaned text, when they hold something no event name or id does
    (a non-ASCII character) or are long."""
    found = []
    for text in texts:
        cleaned = clean_input(text, 10**7).text
        for piece in (cleaned[:40].strip(), cleaned[-40:].strip()):
            if len(piece) >= 16 or (len(piece) >= 4 and not piece.isascii()):
                found.append(piece)
    return found


def assert_nothing_leaked(
    caplog: pytest.LogCaptureFixture, texts: Iterable[str], ids: Iterable[str]
) -> None:
    """No captured log record (message, arguments or exception text) carries a piece of
    ``texts`` or any of the platform ``ids``."""
    logged = caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    for secret in (*fragments(texts), *ids):
        assert secret not in logged, f"a log record carries {secret[:20]!r}"


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture everything at DEBUG, third-party loggers at WARNING as in production."""
    from bot.observability import QUIET_LOGGERS

    for name in QUIET_LOGGERS:
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)  # last: set_level also sets the capturing handler's level
