"""Golden transcripts: every flow in every language, typed into the real console channel
wired to the real app, must print exactly what is stored in ``tests/golden/``.

Each stored file interleaves what was typed (``> line``) with every line the console
printed. Case references are random by design, so the one the transcript opened is written
as ``<REF>``; nothing else is normalised (right-to-left texts keep their invisible
directional isolates). After changing a flow or a translation on purpose, regenerate with
``INTAKE_UPDATE_GOLDEN=1 pytest tests/e2e/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from bot.app import open_app
from bot.channels.console import ConsoleChannel
from bot.config import load_config
from bot.core.clock import FakeClock
from db.crypto import ensure_development_keyring
from tests.harness import TEST_CONFIG, write_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
LANGUAGES = ("en", "es", "fr", "ar", "ru", "fa", "pt", "tr")
ALL_LANGUAGES = '[languages]\noffered = ["en", "es", "fr", "ar", "ru", "fa", "pt", "tr"]\n'
# What a defender types in each flow after "/lang xx" and "/start"; answers are numbers and
# free text, so the same script serves every language.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "sos": ("SOS", "They took my colleague", "Minsk"),
    "danger_now": (
        "/start",
        "1",
        "1",
        "2",
        "Minsk",
        "Okrestina",
        "1",
        "1",
        "4",
        "Signal after 18:00",
        "1",
        "1",
    ),
    "detention": (
        "/start",
        "2",
        "1",
        "2",
        "Minsk",
        "Okrestina",
        "1",
        "Art. 342",
        "2",
        "1",
        "2",
        "4",
        "1 2",
        "Journalist, Viasna",
        "skip",
        "Signal",
        "skip",
        "1",
        "2",
        "2",
        "1",
    ),
    "attack": (
        "/start",
        "3",
        "4",
        "1",
        "1",
        "1",
        "Kabul",
        "6",
        "2",
        "1",
        "1 3",
        "Women's rights",
        "skip",
        "skip",
        "skip",
        "1",
        "1",
        "2",
        "2",
        "2",
    ),
    "threat": (
        "/start",
        "4",
        "1",
        "2",
        "1",
        "0",
        "Kharkiv",
        "0",
        "0",
        "skip",
        "skip",
        "skip",
        "skip",
        "1",
        "2",
        "2",
        "2",
        "2",
    ),
    "judicial": (
        "/start",
        "5",
        "1",
        "2027-03-15",
        "Art. 190.1",
        "1",
        "1",
        "Baku",
        "4",
        "1",
        "skip",
        "skip",
        "skip",
        "skip",
        "1",
        "1",
        "2",
        "2",
    ),
    "relocation": (
        "/start",
        "6",
        "2",
        "1 3",
        "1",
        "Tbilisi",
        "Minsk",
        "1",
        "4",
        "2",
        "skip",
        "skip",
        "skip",
        "skip",
        "1",
        "1",
        "2",
    ),
    "digital": (
        "/start",
        "7",
        "1",
        "2",
        "1 3",
        "email, WhatsApp",
        "2",
        "Almaty",
        "3",
        "5",
        "skip",
        "skip",
        "skip",
        "1",
        "1",
    ),
    "someone_else": (
        "/start",
        "8",
        "1",
        "1",
        "1",
        "3",
        "Minsk",
        "Okrestina",
        "1",
        "1",
        "1",
        "4",
        "1",
        "Lawyer",
        "skip",
        "Signal",
        "skip",
        "1",
        "1",
        "2",
    ),
    "other": ("/start", "9", "I need advice", "Yerevan", "5", "skip", "skip", "skip", "2"),
}


async def transcript(directory: Path, language: str, lines: tuple[str, ...]) -> str:
    """Type ``/lang LANGUAGE`` and then ``lines`` into a fresh console; return the transcript."""
    config = load_config(
        write_config(
            directory, TEST_CONFIG.replace('[languages]\noffered = ["en"]\n', ALL_LANGUAGES)
        )
    )
    keyring, _ = ensure_development_keyring(config.keys.dir, {})
    clock = FakeClock()
    out = io.StringIO()
    console = ConsoleChannel(io.StringIO(), out, ["alice", "bob", "carol"], clock.now)
    app = await open_app(config, keyring, clock, {"console": console})
    typed: list[str] = []
    try:
        for number, line in enumerate((f"/lang {language}", *lines), start=1):
            typed.append(f"> {line}")
            message = console.parse(line, number)
            assert message is not None
            await app.receive(message)
            await app.drain()
            typed.extend(out.getvalue().splitlines())
            out.seek(0)
            out.truncate()
    finally:
        await app.close()
    text = "\n".join(typed) + "\n"
    refs = set(re.findall(r"(?:CRITICAL|HIGH|MEDIUM|LOW) case ([A-Z0-9]{4})", text))
    assert len(refs) <= 1, f"one transcript opened several cases: {refs}"
    for ref in refs:
        text = re.sub(rf"(?<![A-Z0-9]){ref}(?![A-Z0-9])", "<REF>", text)
    return text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("flow", sorted(SCRIPTS))
async def test_golden_transcript(tmp_path: Path, flow: str, language: str) -> None:
    """The console reproduces the stored transcript of ``flow`` in ``language`` exactly."""
    got = await transcript(tmp_path, language, SCRIPTS[flow])
    path = GOLDEN / f"{flow}.{language}.txt"
    if os.environ.get("INTAKE_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert got == expected, f"{path.name} differs (regenerate only if the change is intended)"


def test_every_flow_has_a_script() -> None:
    """A new flow cannot ship without golden transcripts: every topic flow and the SOS flow
    has a script, and every stored transcript belongs to a script and language."""
    from bot.conversation.loader import load_flows
    from bot.conversation.model import FlowKind

    flows = load_flows(Path(__file__).resolve().parents[2] / "flows")
    expected = {f.id for f in flows.flows.values() if f.kind is not FlowKind.INTAKE}
    assert set(SCRIPTS) == expected
    stored = {p.name for p in GOLDEN.glob("*.txt")}
    assert stored == {f"{flow}.{lang}.txt" for flow in SCRIPTS for lang in LANGUAGES}
