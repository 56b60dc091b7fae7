"""Unit tests for bot.conversation.loader and bot.conversation.checks: the shipped flows load
and pass every check in every language; `intake flows check` fails on each broken fixture
under tests/fixtures/flows/ naming the file, the step and the language; broken flows are
refused with messages that name the file and the step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from bot.conversation.checks import check_lengths, check_translations, entries, extract
from bot.conversation.i18n import po_path, read_catalog
from bot.conversation.languages import LANGUAGE_NAMES, SOURCE_LANGUAGE
from bot.conversation.loader import FlowError, LanguageSettings, entered_flows, load_flows
from bot.conversation.model import FlowKind, FlowSet, Outcome, StepType
from bot.triage.rules import load_rules
from tests.harness import TEST_CONFIG, write_config

ROOT = Path(__file__).resolve().parents[2]
FLOWS_DIR = ROOT / "flows"
FIXTURES = ROOT / "tests" / "fixtures" / "flows"
VALID = FIXTURES / "valid"
INTAKE = [sys.executable, "-m", "bot"]
ALL_LANGUAGES = tuple(LANGUAGE_NAMES)
EN_ES = LanguageSettings(offered={"en": "English", "es": "Español"})
SHIPPED_FLOWS = {
    "attack",
    "danger_now",
    "detention",
    "digital",
    "intake",
    "judicial",
    "other",
    "relocation",
    "someone_else",
    "sos",
    "threat",
}


def es_po(directory: Path) -> Path:
    """The Spanish catalog of a flows directory."""
    return po_path(directory / "locale", "es")


def copy_flows(tmp_path: Path, source: Path = VALID) -> Path:
    """Copy a flows directory (the valid fixture unless told) into tmp_path."""
    target = tmp_path / "flows"
    shutil.copytree(source, target)
    return target


def edit(directory: Path, name: str, old: str, new: str) -> Path:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``directory/name``."""
    path = directory / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"fixture text {old!r} not found once in {name}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def drop_line(directory: Path, name: str, prefix: str) -> Path:
    """Remove the single line of ``directory/name`` that starts with ``prefix``."""
    path = directory / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(prefix)]
    assert len(kept) == len(lines) - 1, f"no single line starting with {prefix!r} in {name}"
    path.write_text("".join(kept), encoding="utf-8")
    return path


def set_translation(directory: Path, context: str, text: str) -> Path:
    """Set the Spanish translation of ``context`` in a (small, generated) fixture catalog."""
    path = es_po(directory)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = lines.index(f'msgctxt "{context}"\n')
    assert lines[at + 2].startswith("msgstr "), lines[at : at + 3]
    lines[at + 2] = f'msgstr "{text}"\n'
    path.write_text("".join(lines), encoding="utf-8")
    return path


def problems(directory: Path, settings: LanguageSettings = EN_ES) -> list[str]:
    """Load a directory that must be refused and return its problems."""
    with pytest.raises(FlowError) as info:
        load_flows(directory, settings)
    assert str(info.value) == "\n".join(info.value.problems)
    assert info.value.problems
    return info.value.problems


def message(directory: Path) -> str:
    """The whole error message of a directory that must be refused."""
    return "\n".join(problems(directory))


def run_check(tmp_path: Path, flows_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run `intake flows check -c CONFIG` with a config offering en and es and pointing at
    ``flows_dir`` (as tests/e2e/test_cli.py runs the command line)."""
    assert TEST_CONFIG.count('offered = ["en"]') == 1
    body = TEST_CONFIG.replace('offered = ["en"]', 'offered = ["en", "es"]')
    body += f'\n[flows]\ndir = "{flows_dir}"\n'
    config = write_config(tmp_path, body)
    return subprocess.run(
        [*INTAKE, "flows", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


_SHIPPED: list[FlowSet] = []


def shipped() -> FlowSet:
    """The shipped flows with every language (loaded once)."""
    if not _SHIPPED:
        _SHIPPED.append(load_flows(FLOWS_DIR))
    return _SHIPPED[0]


# --- the shipped flows -----------------------------------------------------------------------


def test_shipped_flows_load() -> None:
    """flows/ loads into the menu, the SOS flow and nine topic flows."""
    flows = shipped()
    assert set(flows.flows) == SHIPPED_FLOWS
    assert flows.by_kind(FlowKind.INTAKE).id == "intake"
    assert flows.by_kind(FlowKind.SOS).id == "sos"
    kinds = {f.id: f.kind for f in flows.flows.values()}
    assert [k for k, v in kinds.items() if v is not FlowKind.TOPIC] == ["intake", "sos"]
    assert flows.catalog.default_language == "en"
    assert tuple(flows.catalog.languages) == ALL_LANGUAGES
    assert flows.flows["intake"].source == str(FLOWS_DIR / "intake.toml")


def test_menu_enters_one_topic_flow_per_option() -> None:
    """Each option of the menu enters the topic flow of the same name with @flow."""
    flows = shipped()
    menu = flows.flows["intake"].steps["what"]
    assert menu.type is StepType.CHOICE
    targets = {option: menu.next_step({"what": option}) for option in menu.options}
    assert targets == {option: f"@{option}" for option in menu.options}
    assert menu.next_step({"what": None}) == "@other"  # skipping the menu: advice
    for target in targets.values():
        assert flows.flows[target[1:]].kind is FlowKind.TOPIC


def test_every_topic_flow_is_entered_and_shares_no_step_with_the_menu() -> None:
    """The menu enters every topic flow, and their step ids differ from the menu's (the
    answers of both are kept in one draft)."""
    flows = shipped()
    intake = flows.flows["intake"]
    topics = {f.id for f in flows.flows.values() if f.kind is FlowKind.TOPIC}
    assert {target for _, target in entered_flows(intake)} == topics
    for topic in topics:
        assert not set(intake.steps) & set(flows.flows[topic].steps), topic
        assert not list(entered_flows(flows.flows[topic])), f"{topic} enters another flow"


def test_library_questions_are_reused_and_may_be_reworded() -> None:
    """`use = "when"` takes the library question (options and triage included); a flow's own
    [text.en] rewords the prompt for that flow only, the rest comes from the library."""
    flows = shipped()
    detention, attack = flows.flows["detention"], flows.flows["attack"]
    for flow in (detention, attack):
        when = flow.steps["when"]
        assert when.text_key == "when"
        assert when.options == ("now", "day", "week", "earlier")
        assert when.flags["skipped"] == ("immediacy_unknown",)
    assert flows.text("en", "when", detention) == "When was the person arrested or taken?"
    assert flows.text("en", "when", attack) == "When did it happen?"
    assert flows.text("en", "when.now", detention) == "It is happening now"
    assert flows.text("en", "when.day", detention) == "In the last 24 hours"
    assert flows.source("when", detention).context == "detention:when"
    assert flows.source("when.day", detention).context == "questions:when.day"
    assert flows.source("when", attack).context == "questions:when"


def test_shipped_sos_and_floors() -> None:
    """SOS and danger_now are critical floors; every SOS follow-up goes to the case at once
    and the SOS flow closes rather than submits."""
    flows = shipped()
    assert {f.id: f.tier for f in flows.flows.values() if f.tier} == {
        "sos": "critical",
        "danger_now": "critical",
    }
    sos = flows.flows["sos"]
    questions = [s for s in sos.steps.values() if s.type is not StepType.END]
    assert questions and all(s.append for s in questions)
    assert [s.outcome for s in sos.steps.values() if s.type is StepType.END] == [Outcome.CLOSE]


def test_shipped_flows_that_page_first_open_before_asking_more() -> None:
    """detention, attack and danger_now have an open step (they page before the rest)."""
    flows = shipped()
    opening = {
        f.id for f in flows.flows.values() if any(s.type is StepType.OPEN for s in f.steps.values())
    }
    assert opening == {"detention", "attack", "danger_now", "someone_else"}


def test_every_triaging_step_maps_every_answer() -> None:
    """Wherever a step triages, each of its answers has a mapping (the loader's guarantee)."""
    for flow in shipped().flows.values():
        for step in flow.steps.values():
            if not step.flags:
                continue
            answers = step.options if step.options else ("yes", "no")
            assert set(answers) <= set(step.flags), f"{flow.id}.{step.id}"


def test_shipped_words_and_alarm_words() -> None:
    """Words are casefolded, the language's own words first then the English ones; the alarm
    words come from the language settings."""
    flows = shipped()
    assert flows.words("en", "skip_words") == ("skip", "0", "-")
    assert flows.words("es", "yes_words")[0] == "sí"
    assert flows.words("es", "yes_words")[-3:] == ("1", "yes", "y")
    assert flows.words("xx", "yes_words") == flows.words("en", "yes_words")
    assert flows.catalog.sos_words["en"] == ("sos", "mayday")
    assert "socorro" in flows.catalog.sos_words["es"]


def test_shipped_translations_are_used() -> None:
    """Every language but English shows its own menu question; right-to-left languages get
    the reference isolated."""
    flows = shipped()
    intake = flows.flows["intake"]
    english = flows.text("en", "what", intake)
    for language in ALL_LANGUAGES:
        if language != SOURCE_LANGUAGE:
            assert flows.text(language, "what", intake) != english, language
    arabic = flows.text("ar", "alerting", flows.flows["detention"], ref="K7Q2")
    assert "\u2066K7Q2\u2069" in arabic


def test_shipped_flows_pass_every_check_in_all_eight_languages() -> None:
    """Every translation present, current, not fuzzy, with the English placeholders; every
    question and button short enough, in each of the eight languages."""
    flows = shipped()
    assert len(ALL_LANGUAGES) == 8
    assert check_translations(flows, FLOWS_DIR, ALL_LANGUAGES) == []
    assert check_lengths(flows, ALL_LANGUAGES) == []


def test_shipped_template_is_in_sync_with_the_sources(tmp_path: Path) -> None:
    """flows/locale/intake.pot is exactly what `intake flows extract` writes today."""
    written = extract(shipped(), tmp_path)
    assert written == tmp_path / "locale" / "intake.pot"
    expected = (FLOWS_DIR / "locale" / "intake.pot").read_text(encoding="utf-8")
    assert written.read_text(encoding="utf-8") == expected


def test_shipped_catalogs_hold_exactly_the_template_texts() -> None:
    """No catalog keeps a text the sources no longer have, and none misses one."""
    flows = shipped()
    wanted = [entry.context for entry in entries(flows)]
    assert len(wanted) == len(set(wanted))
    template = read_catalog(FLOWS_DIR / "locale" / "intake.pot")
    assert [str(m.context) for m in template if m.id] == wanted
    for language in ALL_LANGUAGES:
        if language == SOURCE_LANGUAGE:
            continue
        catalog = read_catalog(po_path(FLOWS_DIR / "locale", language), language)
        assert sorted(str(m.context) for m in catalog if m.id) == sorted(wanted), language
        assert not catalog.obsolete, language


def test_cli_check_passes_on_the_shipped_flows(tmp_path: Path) -> None:
    """`intake flows check -c CONFIG` with the shipped flows exits 0 and says ok."""
    result = run_check(tmp_path, FLOWS_DIR)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 11 flows (attack, danger_now, detention, ")
    assert result.stdout.rstrip().endswith("languages: en, es")


# --- the fixtures: valid, and one defect each ------------------------------------------------

# fixture -> (the file named, what follows "FILE: " in the problem line)
BROKEN: Mapping[str, tuple[str, str]] = {
    "missing_translation": (
        "locale/es/LC_MESSAGES/intake.po",
        "flow help, step consent [es]: missing translation",
    ),
    "outdated_translation": (
        "locale/es/LC_MESSAGES/intake.po",
        "flow help, step consent [es]: out of date (the English text changed)",
    ),
    "fuzzy_translation": (
        "locale/es/LC_MESSAGES/intake.po",
        "flow help, step consent [es]: marked fuzzy (needs review before it is used)",
    ),
    "placeholder_mismatch": (
        "locale/es/LC_MESSAGES/intake.po",
        "flow help, step alerting [es]: placeholders differ from the English (['ref'])",
    ),
    "long_button": (
        "intake.toml",
        "step 'what' [es]: the button 'Necesito consejo sobre mi segu'… is longer than 64 "
        "characters",
    ),
    "long_question": (
        "help.toml",
        "step 'consent' [es]: the question is 4375 UTF-16 units, more than telegram shows (4096)",
    ),
    "unreachable_step": ("help.toml", "step 'where_else' can never be reached from 'when'"),
    "dangling_next": ("help.toml", "step 'consent': next goes to unknown step 'not_stord'"),
    "duplicate_step_id": ("help.toml", "step 'where': the id is used twice"),
    "unmapped_option": (
        "intake.toml",
        "step 'what': option 'advice' has no triage mapping (write advice = [] if it sets no flag)",
    ),
    "unknown_flow": ("intake.toml", "step 'what': next goes to @advise, which is not a topic flow"),
    "orphan_topic": ("legal.toml", "no flow enters @legal"),
    "unknown_flag": (
        "triage.toml",
        "rule 'help': flag 'hearing_48h' is set by no flow, option or date window",
    ),
    "translation_in_flow": (
        "help.toml",
        "[text.es]: translations belong in flows/locale/es/LC_MESSAGES/intake.po, not in flow "
        "files",
    ),
}
TRANSLATION_CASES = (
    "missing_translation",
    "outdated_translation",
    "fuzzy_translation",
    "placeholder_mismatch",
)
LENGTH_CASES = ("long_button", "long_question")
LOAD_CASES = (
    "unreachable_step",
    "dangling_next",
    "duplicate_step_id",
    "unmapped_option",
    "unknown_flow",
    "orphan_topic",
    "translation_in_flow",
)


def expected_line(case: str) -> str:
    """The problem line a broken fixture must produce."""
    name, detail = BROKEN[case]
    return f"{FIXTURES / case / name}: {detail}"


def test_every_fixture_directory_is_covered() -> None:
    """Each directory under tests/fixtures/flows/ is the valid one or a known broken case,
    and the cases split into translation, length, load and rule defects."""
    found = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert found == {"valid", *BROKEN}
    split = {*TRANSLATION_CASES, *LENGTH_CASES, *LOAD_CASES, "unknown_flag"}
    assert split == set(BROKEN)


def test_valid_fixture_passes_every_check() -> None:
    """The valid fixture loads, its rules load, and en and es pass every check."""
    flows = load_flows(VALID, EN_ES)
    assert set(flows.flows) == {"intake", "help", "sos"}
    assert [r.id for r in load_rules(VALID, flows).rules] == ["arrest-now", "help"]
    assert check_translations(flows, VALID, ["en", "es"]) == []
    assert check_lengths(flows, ["en", "es"]) == []


def test_valid_fixture_template_is_in_sync(tmp_path: Path) -> None:
    """The fixture's intake.pot is what extract writes for it (its catalogs were made so)."""
    flows = load_flows(VALID, EN_ES)
    written = extract(flows, tmp_path)
    expected = (VALID / "locale" / "intake.pot").read_text(encoding="utf-8")
    assert written.read_text(encoding="utf-8") == expected


def test_cli_check_passes_on_the_valid_fixture(tmp_path: Path) -> None:
    """`intake flows check` on the valid fixture exits 0 naming its flows and languages."""
    result = run_check(tmp_path, VALID)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"ok: 3 flows (help, intake, sos) and 2 triage rules in {VALID}; languages: en, es\n"
    )


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_cli_check_fails_on_each_broken_fixture(tmp_path: Path, case: str) -> None:
    """`intake flows check` exits 1 on each broken fixture, printing the problem with the
    file and the step (and, for a translation or a length, the language); no traceback."""
    result = run_check(tmp_path, FIXTURES / case)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"problem(s) in {FIXTURES / case}:" in result.stderr
    assert expected_line(case) in result.stderr.splitlines()
    if case in (*TRANSLATION_CASES, *LENGTH_CASES):
        assert "[es]" in expected_line(case)


@pytest.mark.parametrize("case", TRANSLATION_CASES)
def test_translation_fixtures_have_exactly_one_problem(case: str) -> None:
    """Each translation fixture loads and passes the length check; check_translations finds
    exactly its one defect, in es only (English needs no catalog)."""
    directory = FIXTURES / case
    flows = load_flows(directory, EN_ES)
    load_rules(directory, flows)
    assert check_lengths(flows, ["en", "es"]) == []
    assert check_translations(flows, directory, ["en", "es"]) == [expected_line(case)]
    assert check_translations(flows, directory, ["en"]) == []


@pytest.mark.parametrize("case", LENGTH_CASES)
def test_length_fixtures_name_file_step_and_language(case: str) -> None:
    """Each length fixture is fully translated; check_lengths names file, step, language."""
    directory = FIXTURES / case
    flows = load_flows(directory, EN_ES)
    assert check_translations(flows, directory, ["en", "es"]) == []
    assert expected_line(case) in check_lengths(flows, ["en", "es"])


def test_long_button_is_too_long_in_spanish_only() -> None:
    """The long label is a Spanish translation: English passes, Spanish fails once."""
    flows = load_flows(FIXTURES / "long_button", EN_ES)
    assert check_lengths(flows, ["en"]) == []
    assert check_lengths(flows, ["es"]) == [expected_line("long_button")]


def test_long_question_is_too_long_for_both_platforms_in_both_languages() -> None:
    """A question over 4096 characters is reported for Telegram (characters) and Signal
    (bytes) in every language."""
    help_toml = FIXTURES / "long_question" / "help.toml"
    flows = load_flows(FIXTURES / "long_question", EN_ES)
    assert check_lengths(flows, ["en", "es"]) == [
        f"{help_toml}: step 'consent' [en]: the question is 4370 UTF-16 units, more than "
        "telegram shows (4096)",
        f"{help_toml}: step 'consent' [en]: the question is 4370 bytes, more than signal "
        "shows (2000)",
        f"{help_toml}: step 'consent' [es]: the question is 4375 UTF-16 units, more than "
        "telegram shows (4096)",
        f"{help_toml}: step 'consent' [es]: the question is 4377 bytes, more than signal "
        "shows (2000)",
    ]


@pytest.mark.parametrize("case", LOAD_CASES)
def test_load_fixtures_are_refused_naming_file_and_step(case: str) -> None:
    """Each flow defect is refused at load; the first problem is the defect itself and every
    problem names a file of the fixture."""
    found = problems(FIXTURES / case)
    assert found[0] == expected_line(case)
    assert all(p.startswith(str(FIXTURES / case)) for p in found)


def test_unknown_flag_fixture_is_refused_by_the_rules() -> None:
    """The flows of the unknown_flag fixture load; its rules are refused naming the rule and
    the flag."""
    directory = FIXTURES / "unknown_flag"
    flows = load_flows(directory, EN_ES)
    with pytest.raises(FlowError) as info:
        load_rules(directory, flows)
    assert info.value.problems == [expected_line("unknown_flag")]


def test_translations_are_used_and_fall_back_to_english() -> None:
    """A current translation is shown; an empty, fuzzy or out-of-date one is not (the English
    is shown instead), as gettext itself does."""
    english = "May we store your answers?"
    valid = load_flows(VALID, EN_ES)
    assert valid.text("es", "consent", valid.flows["help"]) == "¿Podemos guardar tus respuestas?"
    assert valid.text("en", "consent", valid.flows["help"]) == english
    for case in ("missing_translation", "fuzzy_translation"):
        flows = load_flows(FIXTURES / case, EN_ES)
        assert flows.text("es", "consent", flows.flows["help"]) == english, case
    outdated = load_flows(FIXTURES / "outdated_translation", EN_ES)
    changed = "May we store your answers, encrypted?"
    assert outdated.text("es", "consent", outdated.flows["help"]) == changed


def test_words_in_a_second_language() -> None:
    """A language's words come first, then the English ones, without repeats."""
    flows = load_flows(VALID, EN_ES)
    assert flows.words("es", "yes_words") == ("sí", "1", "yes")
    assert flows.words("en", "yes_words") == ("yes", "1")


# --- check_translations and check_lengths on edited copies ------------------------------------


def test_a_missing_catalog_is_reported(tmp_path: Path) -> None:
    """An offered language without a catalog is one problem naming where it should be."""
    d = copy_flows(tmp_path)
    flows = load_flows(d, LanguageSettings(offered={"en": "English", "fr": "Français"}))
    assert check_translations(flows, d, ["en", "fr"]) == [
        f"{po_path(d / 'locale', 'fr')}: missing: no translations for 'fr'"
    ]


def test_an_entry_missing_from_the_catalog_is_reported(tmp_path: Path) -> None:
    """A text with no entry at all (not only an empty one) is missing; so is a word list;
    each named by its catalog key."""
    d = copy_flows(tmp_path)
    po = es_po(d)
    text = po.read_text(encoding="utf-8")
    for block in (
        '#. messages.toml: help\nmsgctxt "messages:help"\nmsgid "Send SOS at any time."\n'
        'msgstr "Envía SOS en cualquier momento."\n\n',
        '#. questions.toml: when.now\nmsgctxt "questions:when.now"\nmsgid "Now"\n'
        'msgstr "Ahora"\n\n',
    ):
        assert text.count(block) == 1, block
        text = text.replace(block, "")
    po.write_text(text, encoding="utf-8")
    set_translation(d, "words:yes_words", "")
    set_translation(d, "intake:what.advice", "")
    flows = load_flows(d, EN_ES)
    assert check_translations(flows, d, ["es"]) == [
        f"{po}: messages help [es]: missing translation",
        f"{po}: words yes_words [es]: missing translation",
        f"{po}: questions when.now [es]: missing translation",
        f"{po}: flow intake, step what, option advice [es]: missing translation",
    ]


@pytest.mark.parametrize(
    ("translated", "reported"),
    [
        ("Se está alertando. Referencia {ref}.", False),
        ("Referencia {ref}, {ref}.", False),
        ("Se está alertando.", True),  # the reference is lost
        ("Se está alertando. Referencia {ref", True),  # malformed
        ("Referencia {ref} para {name}.", True),  # a placeholder the text never gets
        ("Referencia {ref!r}.", True),  # conversions are not plain placeholders
    ],
)
def test_placeholders_of_a_translation(tmp_path: Path, translated: str, reported: bool) -> None:
    """A translation must use exactly the English placeholders, each a plain {name}."""
    d = copy_flows(tmp_path)
    po = set_translation(d, "sos:opened", translated)
    found = check_translations(load_flows(d, EN_ES), d, ["es"])
    expected = f"{po}: flow sos, step opened [es]: placeholders differ from the English (['ref'])"
    assert found == ([expected] if reported else [])


@pytest.mark.parametrize(("size", "reported"), [(63, False), (64, False), (65, True)])
def test_button_limit_boundary(tmp_path: Path, size: int, reported: bool) -> None:
    """A button label of 64 characters passes; 65 is reported."""
    d = copy_flows(tmp_path)
    set_translation(d, "intake:what.advice", "n" * size)
    found = check_lengths(load_flows(d, EN_ES), ["es"])
    assert bool(found) is reported
    if reported:
        assert found == [
            f"{d / 'intake.toml'}: step 'what' [es]: the button {'n' * 30!r}… is longer than "
            "64 characters"
        ]


def test_yes_no_buttons_come_from_the_catalog(tmp_path: Path) -> None:
    """A too-long translation of the shared Yes label is reported on every yes/no step."""
    d = copy_flows(tmp_path)
    set_translation(d, "messages:option.yes", "s" * 70)
    assert check_lengths(load_flows(d, EN_ES), ["en", "es"]) == [
        f"{d / 'help.toml'}: step 'consent' [es]: the button {'s' * 30!r}… is longer than 64 "
        "characters"
    ]


def test_right_to_left_isolates_do_not_count_towards_a_button(tmp_path: Path) -> None:
    """In Arabic, the invisible isolates around a number are not part of the label's length."""
    d = copy_flows(tmp_path)
    arabic = po_path(d / "locale", "ar")
    arabic.parent.mkdir(parents=True)
    shutil.copy(es_po(d), arabic)
    label = "ن" * 60 + " 123"  # 64 visible characters
    lines = arabic.read_text(encoding="utf-8").replace("Language: es", "Language: ar")
    arabic.write_text(
        lines.replace('msgstr "Necesito consejo"', f'msgstr "{label}"'), encoding="utf-8"
    )
    flows = load_flows(d, LanguageSettings(offered={"en": "English", "ar": "العربية"}))
    shown = flows.text("ar", "what.advice", flows.flows["intake"])
    assert len(shown) > 64 and "\u2066123\u2069" in shown
    assert check_lengths(flows, ["ar"]) == []


def test_signal_counts_bytes_telegram_characters(tmp_path: Path) -> None:
    """A question of 1500 two-byte characters fits Telegram but is over Signal's 2000 bytes."""
    d = copy_flows(tmp_path)
    edit(d, "help.toml", 'consent = "May we store your answers?"', f'consent = "{"é" * 1500}?"')
    found = check_lengths(load_flows(d, EN_ES), ["en"])
    assert len(found) == 1
    assert found[0].startswith(f"{d / 'help.toml'}: step 'consent' [en]: the question is ")
    assert found[0].endswith(" bytes, more than signal shows (2000)")


def test_telegram_length_is_counted_in_utf16_units(tmp_path: Path) -> None:
    """A question of 2100 emoji (4200 UTF-16 units) is over what Telegram shows whole."""
    d = copy_flows(tmp_path)
    edit(d, "help.toml", 'consent = "May we store your answers?"', f'consent = "{"🚨" * 2100}"')
    found = check_lengths(load_flows(d, EN_ES), ["en"])
    assert any("more than telegram shows (4096)" in p for p in found), found


def test_a_catalog_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """An unreadable catalog is reported naming the file."""
    d = copy_flows(tmp_path)
    po = es_po(d)
    po.write_text(po.read_text(encoding="utf-8"), encoding="utf-16")
    assert any(str(po) in p for p in problems(d))


def test_a_non_utf8_catalog_in_the_cli(tmp_path: Path) -> None:
    """`intake flows check` on a UTF-16 catalog exits 1 naming the file, no traceback."""
    d = copy_flows(tmp_path)
    po = es_po(d)
    po.write_text(po.read_text(encoding="utf-8"), encoding="utf-16")
    result = run_check(tmp_path, d)
    assert result.returncode == 1
    assert f"{po}: cannot be read as a UTF-8 gettext catalog" in result.stderr
    assert "Traceback" not in result.stderr


# --- invalid flows ---------------------------------------------------------------------------


def test_copied_fixture_loads(tmp_path: Path) -> None:
    """The unmodified copy used by the invalid cases loads, so each case fails for its edit."""
    assert set(load_flows(copy_flows(tmp_path), EN_ES).flows) == {"intake", "help", "sos"}


def test_missing_directory(tmp_path: Path) -> None:
    """A missing flows directory is refused with its path."""
    assert problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: flows directory not found"]


def test_branches_and_skipped(tmp_path: Path) -> None:
    """Conditions read a skipped or unasked step as 'skipped'; the fallback comes last."""
    help_flow = load_flows(copy_flows(tmp_path), EN_ES).flows["help"]
    when = help_flow.steps["when"]
    assert when.next_step({"when": "now"}) == "alerting"
    assert when.next_step({"when": None}) == "alerting"
    assert when.next_step({}) == "alerting"
    assert when.next_step({"when": "earlier"}) == "where"


def test_cycle_without_end(tmp_path: Path) -> None:
    """Steps that loop forever without reaching an end step are refused, each named."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", 'next = "done"', 'next = "what"')
    found = problems(d)
    assert f"{path}: step 'what' can never reach an end step" in found
    assert f"{path}: step 'done' can never be reached from 'what'" in found


def test_missing_english_text_of_a_step(tmp_path: Path) -> None:
    """A step of the flow's own with no English text is refused naming the file and key."""
    d = copy_flows(tmp_path)
    path = drop_line(d, "help.toml", "consent = ")
    assert f"{path}: [text.en] is missing 'consent'" in problems(d)


def test_missing_option_text(tmp_path: Path) -> None:
    """An option with no label is refused naming the step.option key."""
    d = copy_flows(tmp_path)
    path = drop_line(d, "intake.toml", '"what.advice"')
    assert f"{path}: [text.en] is missing 'what.advice'" in problems(d)


def test_missing_library_text(tmp_path: Path) -> None:
    """A library question without its text is refused in the library and where it is used."""
    d = copy_flows(tmp_path)
    library = drop_line(d, "questions.toml", "where = ")
    found = problems(d)
    assert f"{library}: [text.en] is missing 'where'" in found
    assert f"{d / 'help.toml'}: step 'where': the library has no text 'where'" in found


def test_translation_table_instead_of_english(tmp_path: Path) -> None:
    """A flow with texts only in another language is refused twice: translations belong in
    the catalogs, and the English is missing."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", "[text.en]", "[text.fr]")
    found = problems(d)
    assert f"{path}: no [text.en] table (the source language)" in found
    assert (
        f"{path}: [text.fr]: translations belong in flows/locale/fr/LC_MESSAGES/intake.po, not "
        "in flow files"
    ) in found


def test_unknown_placeholder_in_step_text(tmp_path: Path) -> None:
    """A placeholder a question cannot get is refused naming the file and key."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", "store your answers?", "store your answers, {name}?")
    assert f"{path}: [text.en] 'consent' uses unknown placeholders (allowed: none)" in problems(d)


def test_unknown_placeholder_in_end_text(tmp_path: Path) -> None:
    """An end text using {case} instead of {ref} is refused, listing {ref} as allowed."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", 'done = "Added to {ref}."', 'done = "Added to {case}."')
    assert f"{path}: [text.en] 'done' uses unknown placeholders (allowed: {{ref}})" in problems(d)


@pytest.mark.parametrize("bad", ["Help is alerted {ref", "Reference {ref:{x}}.", "Ref {0}."])
def test_malformed_placeholders_refused(tmp_path: Path, bad: str) -> None:
    """Unbalanced braces, nested format specs and positional fields are refused at load."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", 'opened = "Help is alerted. Reference {ref}."', f'opened = "{bad}"')
    assert f"{path}: [text.en] 'opened' uses unknown placeholders (allowed: {{ref}})" in (
        problems(d)
    )


def test_escaped_brace_shown_once(tmp_path: Path) -> None:
    """A text that escapes a brace as {{ is shown with a single brace."""
    d = copy_flows(tmp_path)
    edit(d, "intake.toml", 'what = "What is happening?"', 'what = "What is happening? {{now}}"')
    flows = load_flows(d, EN_ES)
    assert flows.text("en", "what", flows.flows["intake"]) == "What is happening? {now}"


def test_unknown_text_key(tmp_path: Path) -> None:
    """A text for a step that does not exist is refused naming the key."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", "[text.en]\n", '[text.en]\nwhen = "When?"\n')
    assert f"{path}: [text.en] 'when' is not a known text key" in problems(d)


def test_wrong_spec_version(tmp_path: Path) -> None:
    """A flow written for another spec_version is refused naming the file and the version."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", "spec_version = 1", "spec_version = 2")
    assert (
        f"{path}: spec_version is 2; this version of defender-intake reads spec_version = 1"
    ) in problems(d)


def test_missing_spec_version_in_catalog(tmp_path: Path) -> None:
    """A messages.toml without spec_version is refused naming the file."""
    d = copy_flows(tmp_path)
    path = drop_line(d, "messages.toml", "spec_version")
    assert any(p.startswith(f"{path}: spec_version is None") for p in problems(d))


@pytest.mark.parametrize(
    "options", ['["arrest"]', "[" + ", ".join(f'"o{n}"' for n in range(13)) + "]", '["A", "b"]']
)
def test_choice_needs_two_to_twelve_slugs(tmp_path: Path, options: str) -> None:
    """A choice with one option, with thirteen, or with a non-slug option is refused."""
    d = copy_flows(tmp_path)
    path = edit(d, "intake.toml", 'options = ["arrest", "advice"]', f"options = {options}")
    assert f"{path}: step 'what': a choice needs 'options', a list of 2 to 12 slugs" in (
        problems(d)
    )


def test_duplicate_option(tmp_path: Path) -> None:
    """A choice listing an option twice is refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(d, "questions.toml", '["now", "earlier"]', '["now", "earlier", "now"]')
    assert f"{path}: question 'when': an option is listed twice" in problems(d)


def test_condition_on_unknown_answer_value(tmp_path: Path) -> None:
    """A condition on an answer the step cannot give is refused, listing the possible ones."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'when = ["now", "skipped"]', 'when = ["tomorrow"]')
    assert (
        f"{path}: step 'when': condition when = 'tomorrow' can never hold "
        "(possible: earlier, now, skipped)"
    ) in problems(d)


def test_condition_on_free_text_value(tmp_path: Path) -> None:
    """A condition on a particular free-text answer is refused: only skipped can hold."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'consent = ["yes"]', 'where = ["Paris"]')
    assert (
        f"{path}: step 'consent': condition where = 'Paris' can never hold (possible: skipped)"
    ) in problems(d)


def test_condition_on_unknown_step(tmp_path: Path) -> None:
    """A condition naming no step is refused naming the file and step."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'consent = ["yes"]', 'agree = ["yes"]')
    assert f"{path}: step 'consent': condition on unknown step 'agree'" in problems(d)


def test_last_branch_conditional(tmp_path: Path) -> None:
    """A next list whose last entry has an 'if' (no fallback) is refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(
        d,
        "help.toml",
        '{ goto = "not_stored" }',
        '{ if = { consent = ["no"] }, goto = "not_stored" }',
    )
    assert (
        f"{path}: step 'consent': the last entry of 'next' must have no 'if' (the fallback)"
    ) in problems(d)


def test_end_step_with_next(tmp_path: Path) -> None:
    """An end step that also has a next is refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", 'outcome = "close"', 'outcome = "close"\nnext = "what"')
    assert f"{path}: step 'done': an end step has no 'next'" in problems(d)


def test_unknown_step_key(tmp_path: Path) -> None:
    """A misspelt key in a step is refused naming the key (the old per-step 'text')."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'type = "yesno"', 'type = "yesno"\nnxt = "x"')
    assert f"{path}: step 'consent': unknown key 'nxt'" in problems(d)


def test_use_of_an_unknown_library_question(tmp_path: Path) -> None:
    """`use` naming no library question is refused naming it."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'use = "where"', 'use = "wherever"')
    assert f"{path}: step 'wherever': 'use' names no question of the library ('wherever')" in (
        problems(d)
    )


def test_a_used_question_keeps_its_definition(tmp_path: Path) -> None:
    """A step that uses a library question may not redefine its type."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'use = "where"', 'use = "where"\ntype = "date"')
    assert f"{path}: step 'where': 'type' comes from the library question 'where'" in problems(d)


def test_library_question_with_next(tmp_path: Path) -> None:
    """A library question decides nothing about order: a 'next' there is refused."""
    d = copy_flows(tmp_path)
    path = edit(d, "questions.toml", "max_length = 100", 'max_length = 100\nnext = "x"')
    found = problems(d)
    assert f"{path}: question 'where': unknown key 'next'" in found
    assert f"{path}: question 'where': a library question has no 'next'; flows decide" in found


def test_triage_of_an_unknown_option(tmp_path: Path) -> None:
    """A triage mapping for an option the step does not have is refused naming it."""
    d = copy_flows(tmp_path)
    path = edit(d, "intake.toml", "advice = [] }", "advice = [], maybe = [] }")
    assert f"{path}: step 'what': triage maps unknown option 'maybe'" in problems(d)


def test_triage_on_a_text_step(tmp_path: Path) -> None:
    """Only choices, multi-selects and yes/no steps triage."""
    d = copy_flows(tmp_path)
    path = edit(d, "sos.toml", "append = true", 'append = true\ntriage = { x = ["y"] }')
    assert any(
        p.startswith(f"{path}: step 'what': 'triage' maps each answer of a choice")
        for p in problems(d)
    )


def test_bad_flag_name(tmp_path: Path) -> None:
    """A flag must be a lowercase slug."""
    d = copy_flows(tmp_path)
    path = edit(d, "intake.toml", 'arrest = ["arrest"]', 'arrest = ["Arrest!"]')
    assert f"{path}: step 'what': triage.arrest must be a list of flag names" in problems(d)


def test_windows_only_on_date_steps(tmp_path: Path) -> None:
    """Date windows on a non-date step are refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(
        d, "sos.toml", "append = true", 'append = true\nwindows = [{ days = 2, flag = "s" }]'
    )
    assert any(
        p.startswith(f"{path}: step 'what': 'windows' is for date steps") for p in problems(d)
    )


@pytest.mark.parametrize("window", ['{ days = 367, flag = "s" }', '{ days = 2, flag = "S" }'])
def test_bad_date_window(tmp_path: Path, window: str) -> None:
    """A window needs 0-366 days and a flag slug."""
    d = copy_flows(tmp_path)
    path = edit(
        d,
        "help.toml",
        'use = "where"\nnext = "consent"',
        f'use = "where"\nnext = "day"\n\n[[steps]]\nid = "day"\ntype = "date"\n'
        f'windows = [{window}]\nnext = "consent"',
    )
    assert f"{path}: step 'day': each window needs days (0-366) and a flag name" in problems(d)


@pytest.mark.parametrize("length", [9, 2001])
def test_max_length_range(tmp_path: Path, length: int) -> None:
    """A text step keeps 10 to 2000 characters."""
    d = copy_flows(tmp_path)
    path = edit(d, "questions.toml", "max_length = 100", f"max_length = {length}")
    assert f"{path}: question 'where': 'max_length' must be a number from 10 to 2000" in (
        problems(d)
    )


def test_append_outside_sos(tmp_path: Path) -> None:
    """Only SOS follow-ups are appended to the case at once."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'type = "yesno"', 'type = "yesno"\nappend = true')
    assert f"{path}: step 'consent': 'append' is for SOS follow-ups" in problems(d)


def test_sos_flow_cannot_open(tmp_path: Path) -> None:
    """The SOS flow opens its case before any step, so an open step there is refused."""
    d = copy_flows(tmp_path)
    path = edit(
        d,
        "sos.toml",
        'start = "what"',
        'start = "open"\n\n[[steps]]\nid = "open"\ntype = "open"\nnext = "what"',
    )
    found = problems(d)
    assert f"{path}: step 'open': the SOS flow opens its case at once" in found


def test_entering_a_flow_that_is_not_a_topic(tmp_path: Path) -> None:
    """@flow must name a topic flow (here the SOS flow)."""
    d = copy_flows(tmp_path)
    path = edit(d, "intake.toml", 'next = "@help"', 'next = "@sos"')
    found = problems(d)
    assert f"{path}: step 'what': next goes to @sos, which is not a topic flow" in found
    assert f"{d / 'help.toml'}: no flow enters @help" in found


def test_a_topic_flow_reusing_a_menu_step_id(tmp_path: Path) -> None:
    """A topic flow may not use a step id of the flow that enters it (one draft holds both)."""
    d = copy_flows(tmp_path)
    path = d / "help.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("consent", "what"), encoding="utf-8")
    expected = f"{path}: step 'what': the id is also used by {d / 'intake.toml'}, whose answers"
    assert f"{expected} this flow keeps" in problems(d)


def test_step_ids_unique_along_a_chain_of_flows(tmp_path: Path) -> None:
    """A flow two steps down a chain may not reuse a step id of the menu either."""
    d = copy_flows(tmp_path)
    edit(
        d,
        "help.toml",
        'use = "where"\nnext = "consent"',
        'use = "where"\nnext = [\n  { if = { where = ["skipped"] }, goto = "@legal" },\n'
        '  { goto = "consent" },\n]',
    )
    (d / "legal.toml").write_text(
        'spec_version = 1\nid = "legal"\nkind = "topic"\nstart = "what"\n\n'
        '[[steps]]\nid = "what"\ntype = "choice"\noptions = ["summons", "other"]\n'
        'next = "filed"\n\n[[steps]]\nid = "filed"\ntype = "end"\noutcome = "submit"\n\n'
        '[text.en]\nwhat = "What legal problem?"\n"what.summons" = "A summons"\n'
        '"what.other" = "Other"\nfiled = "Filed as {ref}."\n',
        encoding="utf-8",
    )
    found = problems(d)
    assert any(p.startswith(f"{d / 'legal.toml'}: step 'what'") for p in found), found


def test_two_intake_flows(tmp_path: Path) -> None:
    """Two flows of kind intake are refused, naming both files."""
    d = copy_flows(tmp_path)
    second = d / "intake2.toml"
    second.write_text(
        (d / "intake.toml").read_text(encoding="utf-8").replace('id = "intake"', 'id = "menu"'),
        encoding="utf-8",
    )
    assert (
        f"{d}: expected exactly one flow with kind = 'intake', found 2 "
        f"({d / 'intake.toml'}, {second})"
    ) in problems(d)


def test_two_flows_with_one_id(tmp_path: Path) -> None:
    """Two files declaring the same flow id are refused, naming both files."""
    d = copy_flows(tmp_path)
    second = d / "zz_copy.toml"
    shutil.copy(d / "help.toml", second)
    assert f"{second}: flow id 'help' is already used by {d / 'help.toml'}" in problems(d)


def test_no_sos_flow(tmp_path: Path) -> None:
    """A directory without an SOS flow is refused."""
    d = copy_flows(tmp_path)
    (d / "sos.toml").unlink()
    assert f"{d}: expected exactly one flow with kind = 'sos', found 0" in problems(d)


def test_unknown_flow_kind(tmp_path: Path) -> None:
    """A flow kind that does not exist is refused, listing the kinds."""
    d = copy_flows(tmp_path)
    path = edit(d, "help.toml", 'kind = "topic"', 'kind = "menu"')
    assert f"{path}: 'kind' must be one of intake, topic, sos" in problems(d)


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    """Invalid TOML is refused naming the file and the line of the error."""
    d = copy_flows(tmp_path)
    path = edit(d, "intake.toml", 'start = "what"\n', 'start = "what\n')
    line = next(
        n
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if text.startswith("start =")
    )
    found = message(d)
    assert f"{path}: invalid TOML" in found
    assert f"line {line}," in found


def test_missing_catalog_key(tmp_path: Path) -> None:
    """A messages.toml missing a text the engine uses is refused naming the file and key."""
    d = copy_flows(tmp_path)
    path = drop_line(d, "messages.toml", "help = ")
    assert f"{path}: [text.en] is missing 'help'" in problems(d)


@pytest.mark.parametrize("words", ['skip_words = ["skip, 0"]', "skip_words = []", "skip_words = 0"])
def test_catalog_words_are_a_list_of_words(tmp_path: Path, words: str) -> None:
    """A word list must list words without commas."""
    d = copy_flows(tmp_path)
    path = edit(d, "messages.toml", 'skip_words = ["skip", "0"]', words)
    assert f"{path}: [text.en] 'skip_words' must be a list of words (no commas)" in problems(d)


def test_missing_catalog_file(tmp_path: Path) -> None:
    """A flows directory without messages.toml is refused naming the missing file."""
    d = copy_flows(tmp_path)
    (d / "messages.toml").unlink()
    assert f"{d / 'messages.toml'}: file not found" in problems(d)


def test_default_language_must_be_offered(tmp_path: Path) -> None:
    """The greeting language must be one of the languages offered."""
    d = copy_flows(tmp_path)
    settings = LanguageSettings(default="fr", offered={"en": "English", "es": "Español"})
    assert (
        f"{d / 'messages.toml'}: the default language 'fr' is not among the languages offered "
        "(en, es)"
    ) in problems(d, settings)


def test_every_problem_reported(tmp_path: Path) -> None:
    """Problems in several files are all reported in one error."""
    d = copy_flows(tmp_path)
    intake = edit(d, "intake.toml", "advice = [] }", "advice = [], maybe = [] }")
    messages = drop_line(d, "messages.toml", "help = ")
    found = problems(d)
    assert f"{intake}: step 'what': triage maps unknown option 'maybe'" in found
    assert f"{messages}: [text.en] is missing 'help'" in found


def test_steps_not_tables(tmp_path: Path) -> None:
    """A steps list of plain strings is refused with a FlowError naming the file."""
    d = copy_flows(tmp_path)
    (d / "sos.toml").write_text(
        'spec_version = 1\nid = "sos"\nkind = "sos"\nstart = "what"\nsteps = ["what"]\n'
        '[text.en]\nopened = "{ref}"\nrepeated = "{ref}"\n',
        encoding="utf-8",
    )
    assert f"{d / 'sos.toml'}: step '#1': must be a table" in problems(d)


def test_text_not_a_table(tmp_path: Path) -> None:
    """A flow whose 'text' is a string is refused with a FlowError naming the file."""
    d = copy_flows(tmp_path)
    (d / "sos.toml").write_text(
        'spec_version = 1\nid = "sos"\nkind = "sos"\nstart = "done"\ntext = "x"\n'
        '[[steps]]\nid = "done"\ntype = "end"\noutcome = "close"\n',
        encoding="utf-8",
    )
    assert f"{d / 'sos.toml'}: 'text' must be a table like [text.en]" in problems(d)
