"""``intake flows check`` and ``intake flows extract``: what must hold for every language
before a flow ships, and the translation template generated from the English sources.

Checked per language: every text translated (not empty, not fuzzy), translations made from
the current English (a changed source makes its translation out of date), the same
placeholders as the English, every question short enough for each platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from bot.conversation import engine
from bot.conversation.i18n import (
    LOCALE_DIR,
    Entry,
    po_path,
    read_catalog,
    template,
    write_catalog,
)
from bot.conversation.languages import SOURCE_LANGUAGE
from bot.conversation.loader import CATALOG_FILE, QUESTIONS_FILE, WORD_KEYS, placeholders
from bot.conversation.model import Flow, FlowSet, Step, StepType

# The longest message each platform shows whole: Telegram refuses more than 4096 characters;
# Signal clients fold anything past 2000 bytes into a "read more" attachment.
PLATFORM_LIMITS: Mapping[str, int] = {"telegram": 4096, "signal": 2000}
BUTTON_LIMIT = 64  # longer inline-button labels are cut off on phones


def entries(flows: FlowSet) -> list[Entry]:
    """Return every translatable text, in a stable order: the catalog, the word lists, the
    question library, then each flow."""
    found: list[Entry] = []
    for key, english in flows.catalog.texts.items():
        found.append(Entry(f"messages:{key}", english, f"{CATALOG_FILE}: {key}"))
    for key in WORD_KEYS:
        found.append(
            Entry(
                f"words:{key}",
                flows.catalog.words[key],
                f"{CATALOG_FILE}: {key}: words separated by commas, casefolded when compared",
            )
        )
    for key, english in flows.question_texts.items():
        found.append(Entry(f"questions:{key}", english, f"{QUESTIONS_FILE}: {key}"))
    for flow in flows.flows.values():
        for key, english in flow.texts.items():
            found.append(Entry(f"{flow.id}:{key}", english, f"{Path(flow.source).name}: {key}"))
    return found


def extract(flows: FlowSet, directory: Path) -> Path:
    """Write the template ``locale/intake.pot`` from the English sources; return its path."""
    path = directory / LOCALE_DIR / "intake.pot"
    write_catalog(path, template(entries(flows)))
    return path


def check_translations(flows: FlowSet, directory: Path, languages: Iterable[str]) -> list[str]:
    """Return every translation problem of ``languages``, each naming the .po file, the flow
    and step (or catalog key) and the language."""
    problems: list[str] = []
    wanted = entries(flows)
    for language in languages:
        if language == SOURCE_LANGUAGE:
            continue
        path = po_path(directory / LOCALE_DIR, language)
        if not path.is_file():
            problems.append(f"{path}: missing: no translations for {language!r}")
            continue
        try:
            catalog = read_catalog(path, language)
        except (ValueError, OSError) as exc:
            problems.append(f"{path}: cannot be read: {exc}")
            continue
        by_context = {str(m.context): m for m in catalog if m.id and m.context}
        for entry in wanted:
            where = f"{path}: {_describe(entry.context)} [{language}]"
            message = by_context.get(entry.context)
            if message is None or not message.string:
                problems.append(f"{where}: missing translation")
                continue
            if message.id != entry.english:
                problems.append(f"{where}: out of date (the English text changed)")
                continue
            if message.fuzzy:
                problems.append(f"{where}: marked fuzzy (needs review before it is used)")
                continue
            translated = str(message.string)
            if placeholders(translated) != placeholders(entry.english):
                problems.append(
                    f"{where}: placeholders differ from the English "
                    f"({sorted(placeholders(entry.english) or ())})"
                )
    return problems


def check_lengths(flows: FlowSet, languages: Iterable[str]) -> list[str]:
    """Return every question or button that is too long for a platform in some language."""
    problems: list[str] = []
    for language in languages:
        for flow in flows.flows.values():
            for current in _questions(flow):
                session = replace(engine.Session(language=language), flow=flow.id)
                _, reply = engine._ask(flows, flow, current, session)
                for platform, limit in PLATFORM_LIMITS.items():
                    size = _size(reply.text, platform)
                    if size > limit:
                        problems.append(
                            f"{flow.source}: step {current.id!r} [{language}]: the question is "
                            f"{size} {'bytes' if platform == 'signal' else 'UTF-16 units'}, "
                            f"more than {platform} shows ({limit})"
                        )
                for choice in reply.choices:
                    if len(_visible(choice.label)) > BUTTON_LIMIT:
                        problems.append(
                            f"{flow.source}: step {current.id!r} [{language}]: the button "
                            f"{choice.label[:30]!r}… is longer than {BUTTON_LIMIT} characters"
                        )
    return problems


def _size(text: str, platform: str) -> int:
    """How the platform measures a message: Signal in UTF-8 bytes, Telegram in UTF-16 code
    units (an emoji counts twice)."""
    if platform == "signal":
        return len(text.encode())
    return len(text.encode("utf-16-le")) // 2


def _visible(text: str) -> str:
    """The text without the invisible directional isolates added for right-to-left texts."""
    return text.translate({cp: None for cp in range(0x2066, 0x206A)})


def _questions(flow: Flow) -> Iterator[Step]:
    for current in flow.steps.values():
        if current.type not in (StepType.END, StepType.OPEN):
            yield current


def _describe(context: str) -> str:
    source, _, key = context.partition(":")
    if source in ("messages", "words", "questions"):
        return f"{source} {key}"
    step, _, option = key.partition(".")
    return f"flow {source}, step {step}" + (f", option {option}" if option else "")
