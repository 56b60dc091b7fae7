"""Unit tests for bot.conversation.loader: the real flows load, broken flows are refused with
messages that name the file and the step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.conversation.loader import FlowError, load_flows
from bot.conversation.model import FlowKind, Outcome, StepType

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
INTAKE = "intake.toml"
SOS = "sos.toml"
MESSAGES = "messages.toml"


def copy_flows(tmp_path: Path) -> Path:
    """Copy the real flows directory into tmp_path and return the copy."""
    target = tmp_path / "flows"
    shutil.copytree(FLOWS_DIR, target)
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


def problems(directory: Path) -> str:
    """Load a directory that must be refused and return the whole error message."""
    with pytest.raises(FlowError) as info:
        load_flows(directory)
    assert str(info.value) == "\n".join(info.value.problems)
    assert info.value.problems
    return str(info.value)


# --- the real flows ------------------------------------------------------------------------


def test_real_flows_load() -> None:
    """The shipped flows directory loads into exactly the intake and the SOS flow."""
    flows = load_flows(FLOWS_DIR)
    assert set(flows.flows) == {"intake", "sos"}
    assert flows.by_kind(FlowKind.INTAKE).id == "intake"
    assert flows.by_kind(FlowKind.SOS).id == "sos"
    assert flows.catalog.default_language == "en"


def test_real_intake_shape() -> None:
    """The intake flow starts at 'what' and ends in a submit and a discard step."""
    intake = load_flows(FLOWS_DIR).flows["intake"]
    assert intake.start == "what"
    assert intake.tier is None
    assert intake.source == str(FLOWS_DIR / INTAKE)
    ends = {s.id: s.outcome for s in intake.steps.values() if s.type is StepType.END}
    assert ends == {"submitted": Outcome.SUBMIT, "not_stored": Outcome.DISCARD}
    assert intake.steps["what"].options[0] == "detention"
    assert len(intake.steps["what"].options) == 7


def test_real_sos_shape() -> None:
    """The SOS flow is critical and every follow-up is appended to the case at once."""
    sos = load_flows(FLOWS_DIR).flows["sos"]
    assert sos.tier == "critical"
    follow_ups = [s for s in sos.steps.values() if s.type is not StepType.END]
    assert follow_ups
    assert all(s.append for s in follow_ups)


def test_catalog_words_are_casefolded() -> None:
    """Catalog words are stored casefolded, so 'SOS' is matched as 'sos'."""
    flows = load_flows(FLOWS_DIR)
    assert flows.words("en", "sos_words") == ("sos",)
    assert "0" in flows.words("en", "skip_words")


def test_words_fall_back_to_default_language() -> None:
    """An unknown language gets the default language's words."""
    flows = load_flows(FLOWS_DIR)
    assert flows.words("xx", "yes_words") == flows.words("en", "yes_words")


def test_copied_flows_load(tmp_path: Path) -> None:
    """The unmodified copy used by the invalid cases loads, so each case fails for its edit."""
    assert set(load_flows(copy_flows(tmp_path)).flows) == {"intake", "sos"}


# --- invalid flows -------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    """A missing flows directory is refused with its path."""
    message = problems(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message


def test_unknown_next_step(tmp_path: Path) -> None:
    """A next that names no step is refused naming the file, the step and the target."""
    d = copy_flows(tmp_path)
    date = 'id = "date"\ntype = "text"\n'
    path = edit(d, INTAKE, date + 'next = "where"', date + 'next = "wher"')
    assert f"{path}: step 'date': next goes to unknown step 'wher'" in problems(d)


def test_unreachable_step(tmp_path: Path) -> None:
    """A step no path leads to is refused naming the file and the step."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, '  { if = { when = ["upcoming"] }, goto = "date" },\n', "")
    assert f"{path}: step 'date' can never be reached from 'what'" in problems(d)


def test_cycle_without_end(tmp_path: Path) -> None:
    """Steps that loop forever without reaching an end step are refused, each named."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, 'next = "done"', 'next = "what"')
    message = problems(d)
    assert f"{path}: step 'what' can never reach an end step" in message
    assert f"{path}: step 'where' can never reach an end step" in message


def test_flow_without_any_end(tmp_path: Path) -> None:
    """A flow whose only step loops to itself is refused for never ending."""
    d = copy_flows(tmp_path)
    path = d / SOS
    path.write_text(
        'spec_version = 1\nid = "sos"\nkind = "sos"\ntier = "critical"\nstart = "what"\n'
        '[[steps]]\nid = "what"\ntype = "text"\nnext = "what"\n'
        '[text.en]\nopened = "{ref}"\nrepeated = "{ref}"\nwhat = "What?"\n',
        encoding="utf-8",
    )
    assert f"{path}: step 'what' can never reach an end step" in problems(d)


def test_missing_default_language_text(tmp_path: Path) -> None:
    """A step with no text in the default language is refused naming the file and step."""
    d = copy_flows(tmp_path)
    path = drop_line(d, INTAKE, "where = ")
    assert f"{path}: [text.en] is missing 'where'" in problems(d)


def test_missing_option_text(tmp_path: Path) -> None:
    """An option with no label is refused naming the step.option key."""
    d = copy_flows(tmp_path)
    path = drop_line(d, INTAKE, '"needs.medical"')
    assert f"{path}: [text.en] is missing 'needs.medical'" in problems(d)


def test_missing_default_language_table(tmp_path: Path) -> None:
    """A flow with texts only in another language is refused for lacking [text.en]."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, "[text.en]", "[text.fr]")
    assert f"{path}: no [text.en] table (the default language)" in problems(d)


def test_unknown_placeholder_in_step_text(tmp_path: Path) -> None:
    """A placeholder a step's text cannot get is refused naming the file and step."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, 'what = "What is happening?"', 'what = "What is happening, {name}?"')
    assert f"{path}: [text.en] 'what' uses unknown placeholders (allowed: none)" in problems(d)


def test_unknown_placeholder_in_end_text(tmp_path: Path) -> None:
    """An end text using {case} instead of {ref} is refused, listing {ref} as allowed."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, "added to your case {ref}", "added to your case {case}")
    assert f"{path}: [text.en] 'done' uses unknown placeholders (allowed: {{ref}})" in problems(d)


def test_malformed_placeholder(tmp_path: Path) -> None:
    """A text with an unbalanced brace is refused rather than failing when shown."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, 'when = "When is it happening?"', 'when = "When {is it happening?"')
    assert f"{path}: [text.en] 'when' uses unknown placeholders" in problems(d)


def test_unknown_text_key(tmp_path: Path) -> None:
    """A text for a step that does not exist is refused naming the key."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, "[text.en]\n", '[text.en]\nwhen = "When?"\n')
    assert f"{path}: [text.en] 'when' is not a known text key" in problems(d)


def test_wrong_spec_version(tmp_path: Path) -> None:
    """A flow written for another spec_version is refused naming the file and the version."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, "spec_version = 1", "spec_version = 2")
    assert f"{path}: spec_version is 2" in problems(d)


def test_missing_spec_version_in_catalog(tmp_path: Path) -> None:
    """A messages.toml without spec_version is refused naming the file."""
    d = copy_flows(tmp_path)
    path = drop_line(d, MESSAGES, "spec_version")
    assert f"{path}: spec_version is None" in problems(d)


def test_choice_with_one_option(tmp_path: Path) -> None:
    """A choice with a single option is refused naming the file and step."""
    d = copy_flows(tmp_path)
    path = edit(
        d,
        INTAKE,
        'options = ["legal", "relocation", "medical", "digital", "other"]',
        'options = ["legal"]',
    )
    message = problems(d)
    assert f"{path}: step 'needs': a choice needs 'options', a list of at least two slugs" in (
        message
    )


def test_duplicate_option(tmp_path: Path) -> None:
    """A choice listing an option twice is refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, '"upcoming", "past"]', '"upcoming", "past", "now"]')
    assert f"{path}: step 'when': an option is listed twice" in problems(d)


def test_condition_on_unknown_answer_value(tmp_path: Path) -> None:
    """A condition on an answer the step cannot give is refused naming the file and step."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, 'when = ["upcoming"]', 'when = ["tomorrow"]')
    assert f"{path}: step 'when': condition when = 'tomorrow' can never hold" in problems(d)


def test_condition_on_free_text_value(tmp_path: Path) -> None:
    """A condition on a particular free-text answer is refused: only skipped can hold."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, 'consent = ["yes"]', 'where = ["Paris"]')
    message = problems(d)
    assert f"{path}: step 'consent': condition where = 'Paris' can never hold" in message
    assert "(possible: skipped)" in message


def test_condition_on_unknown_step(tmp_path: Path) -> None:
    """A condition naming no step is refused naming the file and step."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, 'consent = ["yes"]', 'agree = ["yes"]')
    assert f"{path}: step 'consent': condition on unknown step 'agree'" in problems(d)


def test_skipped_is_a_valid_condition(tmp_path: Path) -> None:
    """A condition on 'skipped' is accepted for any step."""
    d = copy_flows(tmp_path)
    edit(d, INTAKE, 'when = ["upcoming"]', 'when = ["upcoming", "skipped"]')
    assert "intake" in load_flows(d).flows


def test_last_branch_conditional(tmp_path: Path) -> None:
    """A next list whose last entry has an 'if' (no fallback) is refused naming the step."""
    d = copy_flows(tmp_path)
    fallback = '{ goto = "not_stored" }'
    path = edit(d, INTAKE, fallback, '{ if = { consent = ["no"] }, goto = "not_stored" }')
    assert f"{path}: step 'consent': the last entry of 'next' must have no 'if'" in problems(d)


def test_end_step_with_next(tmp_path: Path) -> None:
    """An end step that also has a next is refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, 'outcome = "close"', 'outcome = "close"\nnext = "what"')
    assert f"{path}: step 'done': an end step has no 'next'" in problems(d)


def test_duplicate_step_id(tmp_path: Path) -> None:
    """Two steps with the same id are refused naming the step."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, 'id = "where"', 'id = "what"')
    assert f"{path}: step 'what': the id is used twice" in problems(d)


def test_two_intake_flows(tmp_path: Path) -> None:
    """Two flows of kind intake are refused, naming both files."""
    d = copy_flows(tmp_path)
    second = d / "intake2.toml"
    second.write_text(
        (d / INTAKE).read_text(encoding="utf-8").replace('id = "intake"', 'id = "intake2"', 1),
        encoding="utf-8",
    )
    message = problems(d)
    assert f"{d}: expected exactly one flow with kind = 'intake', found 2" in message
    assert str(d / INTAKE) in message
    assert str(second) in message


def test_two_flows_with_one_id(tmp_path: Path) -> None:
    """Two files declaring the same flow id are refused, naming both files."""
    d = copy_flows(tmp_path)
    second = d / "zz_copy.toml"
    shutil.copy(d / INTAKE, second)
    assert f"{second}: flow id 'intake' is already used by {d / INTAKE}" in problems(d)


def test_no_sos_flow(tmp_path: Path) -> None:
    """A directory without an SOS flow is refused."""
    d = copy_flows(tmp_path)
    (d / SOS).unlink()
    assert "expected exactly one flow with kind = 'sos', found 0" in problems(d)


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    """Invalid TOML is refused naming the file and the line of the error."""
    d = copy_flows(tmp_path)
    path = edit(d, INTAKE, 'start = "what"\n', 'start = "what\n')
    line = next(
        n
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if text.startswith("start =")
    )
    message = problems(d)
    assert f"{path}: invalid TOML" in message
    assert f"line {line}," in message


def test_missing_catalog_key(tmp_path: Path) -> None:
    """A messages.toml missing a text the engine uses is refused naming the file and key."""
    d = copy_flows(tmp_path)
    path = drop_line(d, MESSAGES, "help = ")
    assert f"{path}: [text.en] is missing 'help'" in problems(d)


def test_missing_catalog_words(tmp_path: Path) -> None:
    """A messages.toml without sos_words is refused naming the file and key."""
    d = copy_flows(tmp_path)
    path = drop_line(d, MESSAGES, "sos_words")
    assert f"{path}: [text.en] is missing 'sos_words'" in problems(d)


def test_missing_catalog_file(tmp_path: Path) -> None:
    """A flows directory without messages.toml is refused naming the missing file."""
    d = copy_flows(tmp_path)
    (d / MESSAGES).unlink()
    assert f"{d / MESSAGES}: file not found" in problems(d)


def test_every_problem_reported(tmp_path: Path) -> None:
    """Problems in several files are all reported in one error."""
    d = copy_flows(tmp_path)
    intake = edit(d, INTAKE, 'when = ["upcoming"]', 'when = ["tomorrow"]')
    messages = drop_line(d, MESSAGES, "help = ")
    message = problems(d)
    assert str(intake) in message
    assert f"{messages}: [text.en] is missing 'help'" in message


# --- known bugs ----------------------------------------------------------------------------


def test_steps_not_tables(tmp_path: Path) -> None:
    """A steps list of plain strings is refused with a FlowError naming the file."""
    d = copy_flows(tmp_path)
    (d / SOS).write_text(
        'spec_version = 1\nid = "sos"\nkind = "sos"\nstart = "what"\nsteps = ["what"]\n'
        '[text.en]\nopened = "{ref}"\nrepeated = "{ref}"\n',
        encoding="utf-8",
    )
    assert str(d / SOS) in problems(d)


def test_text_not_a_table(tmp_path: Path) -> None:
    """A flow whose 'text' is a string is refused with a FlowError naming the file."""
    d = copy_flows(tmp_path)
    (d / SOS).write_text(
        'spec_version = 1\nid = "sos"\nkind = "sos"\nstart = "done"\ntext = "x"\n'
        '[[steps]]\nid = "done"\ntype = "end"\noutcome = "close"\n',
        encoding="utf-8",
    )
    assert str(d / SOS) in problems(d)


def test_nested_placeholder_refused(tmp_path: Path) -> None:
    """A placeholder hidden in a format spec is refused at load like any unknown placeholder."""
    d = copy_flows(tmp_path)
    path = edit(d, SOS, "Your case reference is {ref}.", "Your case reference is {ref:{x}}.")
    assert f"{path}: [text.en] 'opened' uses unknown placeholders" in problems(d)


def test_escaped_brace_shown_once(tmp_path: Path) -> None:
    """A text without placeholders that escapes a brace as {{ is shown with a single brace."""
    d = copy_flows(tmp_path)
    edit(d, INTAKE, 'what = "What is happening?"', 'what = "What is happening? {{urgent}}"')
    flows = load_flows(d)
    assert flows.text("en", "what", flows.flows["intake"]) == "What is happening? {urgent}"


def test_a_second_language_is_used_and_falls_back_per_text(tmp_path: Path) -> None:
    """A partial [text.fr] table is used for the texts it has; the others fall back to the
    default language; its SOS words are recognised whatever the session's language."""
    from datetime import UTC, datetime

    from bot.conversation.engine import Session, StepInput, step

    d = copy_flows(tmp_path)
    with (d / "intake.toml").open("a") as handle:
        handle.write('\n[text.fr]\nwhat = "Que se passe-t-il ?"\n"what.detention" = "Détention"\n')
    with (d / "messages.toml").open("a") as handle:
        handle.write('\n[text.fr]\nsos_words = ["SOS", "au secours"]\n')
    flows = load_flows(d)
    result = step(flows, Session(language="fr"), StepInput("/start"), datetime.now(UTC))
    question = result.effects[-1].text  # type: ignore[union-attr]
    assert question.startswith("Que se passe-t-il ?\n1. Détention\n2. Physical attack")
    english = step(flows, Session(language="en"), StepInput("Au secours !"), datetime.now(UTC))
    assert type(english.effects[0]).__name__ == "OpenCase"


def test_an_unknown_key_in_a_second_language_is_refused(tmp_path: Path) -> None:
    """A translation key that matches no step (a typo) is refused, naming file and key."""
    d = copy_flows(tmp_path)
    with (d / "intake.toml").open("a") as handle:
        handle.write('\n[text.fr]\nwaht = "Que se passe-t-il ?"\n')
    assert "[text.fr] 'waht' is not a known text key" in problems(d)
