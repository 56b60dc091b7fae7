"""Languages end to end: the defender's own language from the first message, /lang at any
time, alarm words of every language, right-to-left texts with isolated references, and the
responders' side staying in the team's language with the defender's words untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import TEST_CONFIG, Harness

ALL = '[languages]\noffered = ["en", "es", "fr", "ar", "ru", "fa", "pt", "tr"]\n'
CONFIG = TEST_CONFIG.replace('[languages]\noffered = ["en"]\n', ALL)
LRI, PDI = "\u2066", "\u2069"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness offering all eight shipped languages."""
    harness = await Harness.create(tmp_path, CONFIG)
    try:
        yield harness
        harness.expect_nothing()
    finally:
        await harness.stop()


async def test_telegram_language_code_greets_in_spanish_and_offers_the_others(
    h: Harness,
) -> None:
    """A first message from an app set to Spanish (pt-BR, es-419 ... are matched by their
    base language) is answered in Spanish, with the language named and /lang offered."""
    await h.say("hola", language_hint="es-419")
    h.expect("defender", r"^Idioma: Español\. .*/lang")
    h.expect("defender", "línea de emergencia")
    h.expect("defender", r"^¿Qué está pasando\?\n1\. ")


async def test_lang_switches_mid_form_and_asks_the_question_again(h: Harness) -> None:
    """/lang fa in the middle of a form: confirmed in Farsi, the current question asked again
    in Farsi with its option numbers wrapped in directional isolates; /lang with a language's
    own name works too, and an unknown one lists the choices."""
    await h.say("/start")
    h.inbox["defender"].clear()
    await h.say("4")  # threats
    h.expect("defender", "What kind of threat")
    await h.say("/lang fa")
    h.expect("defender", "فارسی")
    question = h.expect("defender", r"\n\u20661\u2069\. ").string
    assert f"{LRI}1{PDI}. " in question and "What kind" not in question
    await h.say("/lang Русский")
    h.expect("defender", "Русский")
    h.expect("defender", r"^Какая угроза|угроз")
    await h.say("/lang klingon")
    h.expect("defender", "klingon")
    h.expect("defender", r"/lang en — English\n/lang es — Español")


async def test_yes_no_and_skip_words_of_the_defenders_language(h: Harness) -> None:
    """Russian 'да' answers yes, Spanish 'saltar' skips; numbers work in every language."""
    await h.say("/lang ru")
    h.inbox["defender"].clear()
    await h.say("/start")
    h.inbox["defender"].clear()
    for answer in ("4", "1", "2"):
        await h.say(answer)
        h.inbox["defender"].clear()
    await h.say("да")  # credible: yes
    h.expect("defender", r"^Кто за этим стоит")  # "yes" was understood: the next question
    await h.say("/lang es")
    h.inbox["defender"].clear()
    await h.say("saltar")
    h.expect("defender", r"¿Dónde")


async def test_alarm_word_of_any_language_pages_and_rtl_reference_is_isolated(
    h: Harness,
) -> None:
    """'النجدة' from an Arabic-speaking defender pages at once; the defender's confirmation
    wraps the case reference in isolates; the page and the details stay in English and the
    defender's own words reach the responder exactly as typed (never machine-translated)."""
    await h.say("/lang ar")
    h.inbox["defender"].clear()
    await h.say("النجدة")
    ref = h.expect_page("alice")
    confirmation = h.expect("defender", ref).string
    assert f"{LRI}{ref}{PDI}" in confirmation
    h.inbox["defender"].clear()
    await h.say("أخذوا زميلي من المكتب")
    h.expect("alice", r"\n" + "أخذوا زميلي من المكتب" + "$")
    h.inbox["defender"].clear()
    await h.say(f"ack {ref}", who="alice")
    details = h.inbox["alice"].pop(0)
    assert details.startswith(f"You have case {ref} (CRITICAL")
    h.inbox["defender"].clear()


async def test_a_signal_first_contact_has_no_hint_and_gets_the_default(h: Harness) -> None:
    """Without a language hint the default language is used and the others offered."""
    await h.say("hello")
    h.expect("defender", r"^Language: English\. To change it")
    h.expect("defender", "emergency line")
    h.expect("defender", "What is happening")


def test_every_translation_has_a_review_status() -> None:
    """Each shipped catalog is listed in flows/locale/STATUS.toml with a review flag (and
    none is claimed to be reviewed without a reviewer's name)."""
    import tomllib

    locale = Path(__file__).resolve().parents[2] / "flows" / "locale"
    status = tomllib.loads((locale / "STATUS.toml").read_text(encoding="utf-8"))
    shipped = {p.parent.parent.name for p in locale.glob("*/LC_MESSAGES/intake.po")}
    assert shipped == set(status) == {"es", "fr", "ar", "ru", "fa", "pt", "tr"}
    for language, entry in status.items():
        assert isinstance(entry["reviewed"], bool), language
        assert not entry["reviewed"] or entry.get("reviewed_by"), language
