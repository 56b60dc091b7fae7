"""Load and validate ``flows/*.toml`` into a :class:`FlowSet`.

Validation happens once, at load: every problem is reported with the file and the step, so
that the engine can trust what it is given (every step reachable, every path ends, every
flow entered from somewhere, every text present in English, every placeholder known, every
option of a triaging step mapped to flags).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.conversation.i18n import LOCALE_DIR, GettextTranslations
from bot.conversation.languages import DEFAULT_SOS_WORDS, LANGUAGE_NAMES, SOURCE_LANGUAGE
from bot.conversation.model import (
    FLOW_PREFIX,
    SKIPPED,
    SPEC_VERSION,
    Branch,
    Catalog,
    DateWindow,
    Flow,
    FlowKind,
    FlowSet,
    Outcome,
    Step,
    StepType,
)

CATALOG_FILE = "messages.toml"
QUESTIONS_FILE = "questions.toml"
NON_FLOW_FILES = {CATALOG_FILE, QUESTIONS_FILE, "triage.toml"}
TIERS = ("critical", "high", "medium", "low")
DEFAULT_MAX_LENGTH = 300
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_FLAG = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
WORD_KEYS = ("skip_words", "yes_words", "no_words", "done_words", "today_words", "tomorrow_words")
CATALOG_KEYS: dict[str, set[str]] = {
    "option.yes": set(),
    "option.no": set(),
    "option.skip": set(),
    "option.done": set(),
    "option.continue": set(),
    "option.restart": set(),
    "stale_button": set(),
    "telegram_warning": set(),
    "telegram_warning_signal": {"number"},
    "scrubbed": {"ref"},
    "team_message": {"ref"},
    "choice_hint": set(),
    "multi_hint": set(),
    "multi_selected": {"chosen"},
    "date_hint": set(),
    "date_invalid": set(),
    "skip_hint": set(),
    "text_skip_hint": set(),
    "out_of_range": {"max"},
    "empty": set(),
    "truncated": {"limit"},
    "unknown_command": {"command"},
    "help": set(),
    "cancelled": set(),
    "cancelled_sos": {"ref"},
    "cancelled_open": {"ref"},
    "nothing_to_cancel": set(),
    "status_none": set(),
    "status_header": set(),
    "status.open": {"ref"},
    "status.taken": {"ref"},
    "status.resolved": {"ref"},
    "added_to_case": {"ref"},
    "taken": {"ref"},
    "resolved": {"ref"},
    "language_offer": {"name"},
    "language_menu": set(),
    "language_set": {"name"},
    "language_unknown": {"code"},
    "resume_question": set(),
    "draft_expired": set(),
    # Safety plan, codes and check-ins (bot/safety).
    "plan_show": {"safe", "duress", "tz"},
    "plan.set": set(),
    "plan.not_set": set(),
    "tz_usage": {"tz"},
    "tz_unknown": {"tz"},
    "tz_set": {"tz"},
    "code_usage": set(),
    "code_same": set(),
    "code_set_safe": set(),
    "code_set_duress": set(),
    "code_removed_safe": set(),
    "code_removed_duress": set(),
    "code_needed": set(),
    "code_wrong": set(),
    "checkin_usage": set(),
    "checkin_needs_tz": set(),
    "checkin_set": {"deadline", "grace"},
    "checkin_nudge": set(),
    "safe_ok": set(),
    "safe_none": set(),
    "cancel_ok": set(),
    "cancel_nothing": set(),
    "plan.auto": set(),
    "plan.ask": set(),
    "plan_contacts": {"contacts"},
    "plan_referrer": {"referrer"},
    "contact_usage": set(),
    "contact_bad_address": set(),
    "contact_saved": {"name"},
    "contact_deleted": {"name"},
    "contact_full": set(),
    "referrer_usage": set(),
    "referrer_saved": set(),
    "referrer_deleted": set(),
    "contact_alert": set(),
    "drill_started": {"ref"},
    "drill_acked": {"ref"},
    "forget_explain": {"days"},
    "forget_done": set(),
    "forget_done_withdrawn": set(),
    "plan_walk.safe": set(),
    "plan_walk.duress": set(),
    "plan_walk.contact": set(),
    "plan_walk.referrer": set(),
    "plan_walk.tz": set(),
    "plan_walk.done": set(),
    # Shared texts of open and end steps; a flow may have its own under the same key.
    "alerting": {"ref"},
    "submitted": {"ref"},
    "not_stored": set(),
}
FLOW_EXTRA_KEYS: dict[FlowKind, dict[str, set[str]]] = {
    FlowKind.INTAKE: {"intro": set()},
    FlowKind.TOPIC: {},
    FlowKind.SOS: {"opened": {"ref"}, "repeated": {"ref"}},
}
# Placeholders the texts of each step type may use.
OPEN_PARAMS = {"ref"}
END_PARAMS: dict[Outcome, set[str]] = {
    Outcome.SUBMIT: {"ref"},
    Outcome.DISCARD: set(),
    Outcome.CLOSE: {"ref"},
}
_STEP_KEYS = {
    "id",
    "use",
    "type",
    "options",
    "next",
    "append",
    "outcome",
    "triage",
    "windows",
    "max_length",
}
_QUESTION_KEYS = {"id", "type", "options", "triage", "windows", "max_length"}


class FlowError(Exception):
    """A flow file is invalid; ``problems`` lists every problem, each naming file and step."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class LanguageSettings:
    """Which languages are offered and which words raise an alarm in each.

    Attributes:
        default: the language a new defender is greeted in.
        offered: the languages offered (code -> its own name), the default among them.
        sos_words: language -> alarm words ("SOS" works in every language).
    """

    default: str = SOURCE_LANGUAGE
    offered: Mapping[str, str] = field(default_factory=lambda: dict(LANGUAGE_NAMES))
    sos_words: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SOS_WORDS)
    )


def load_flows(directory: Path, settings: LanguageSettings | None = None) -> FlowSet:
    """Load every flow in ``directory``, the question library, the shared catalog and the
    translations under ``directory/locale``.

    Guarantees: exactly one intake flow and one SOS flow; every topic flow is entered from
    another flow; each flow is valid as described in the module docstring. Raises
    :class:`FlowError` listing all problems otherwise. Missing translations are not an
    error here (the English source is shown); ``intake flows check`` reports them.
    """
    settings = settings or LanguageSettings()
    problems: list[str] = []
    if not directory.is_dir():
        raise FlowError([f"{directory}: flows directory not found"])
    catalog = _load_catalog(directory / CATALOG_FILE, settings, problems)
    questions, question_texts = _load_questions(directory / QUESTIONS_FILE, problems)
    flows: dict[str, Flow] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name in NON_FLOW_FILES:
            continue
        shared = catalog.texts if catalog is not None else {}
        flow = _load_flow(path, questions, {**shared, **question_texts}, problems)
        if flow is None:
            continue
        if flow.id in flows:
            problems.append(
                f"{path}: flow id {flow.id!r} is already used by {flows[flow.id].source}"
            )
        flows[flow.id] = flow
    for kind in (FlowKind.INTAKE, FlowKind.SOS):
        found = [f for f in flows.values() if f.kind is kind]
        if len(found) != 1:
            problems.append(
                f"{directory}: expected exactly one flow with kind = {kind.value!r}, found "
                f"{len(found)}" + (f" ({', '.join(f.source for f in found)})" if found else "")
            )
    _check_flow_links(flows, problems)
    translations = GettextTranslations.load(directory / LOCALE_DIR, settings.offered, problems)
    if problems or catalog is None:
        raise FlowError(problems or [f"{directory / CATALOG_FILE}: could not be loaded"])
    return FlowSet(
        flows=flows, catalog=catalog, question_texts=question_texts, translations=translations
    )


def read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """Parse a TOML file, appending a problem that names the file and line on failure."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: invalid TOML: {exc}")
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
    return None


def _check_spec_version(path: Path, data: Mapping[str, Any], problems: list[str]) -> bool:
    version = data.get("spec_version")
    if version != SPEC_VERSION:
        problems.append(
            f"{path}: spec_version is {version!r}; this version of defender-intake reads "
            f"spec_version = {SPEC_VERSION}"
        )
        return False
    return True


def placeholders(text: str) -> set[str] | None:
    """Return the placeholder names of ``text``, or None if it is malformed or uses anything
    but plain ``{name}`` (no format specs, conversions, indexing or attributes)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return None
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            return None
        names.add(name)
    return names


def _english_table(where: str, texts: Any, problems: list[str]) -> dict[str, Any]:
    """Return the ``[text.en]`` table; other languages belong in the gettext catalogs."""
    if not isinstance(texts, dict):
        problems.append(f"{where}: 'text' must be a table like [text.{SOURCE_LANGUAGE}]")
        return {}
    for language in texts:
        if language != SOURCE_LANGUAGE:
            problems.append(
                f"{where}: [text.{language}]: translations belong in "
                f"flows/{LOCALE_DIR}/{language}/LC_MESSAGES/intake.po, not in flow files"
            )
    table = texts.get(SOURCE_LANGUAGE)
    if not isinstance(table, dict):
        problems.append(f"{where}: no [text.{SOURCE_LANGUAGE}] table (the source language)")
        return {}
    return table


def _check_texts(
    where: str,
    table: Mapping[str, Any],
    required: Mapping[str, set[str]],
    problems: list[str],
    optional: Mapping[str, set[str]] | None = None,
) -> dict[str, str]:
    """Validate an English text table: it has every required key, only known keys, and
    every text uses only the placeholders its key allows."""
    known = {**(optional or {}), **required}
    result: dict[str, str] = {}
    for key, value in table.items():
        if key in WORD_KEYS:
            continue
        if key not in known:
            problems.append(f"{where}: [text.en] {key!r} is not a known text key")
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: [text.en] {key!r} must be a non-empty string")
            continue
        used = placeholders(value)
        if used is None or not used <= known[key]:
            allowed = ", ".join("{" + p + "}" for p in sorted(known[key])) or "none"
            problems.append(
                f"{where}: [text.en] {key!r} uses unknown placeholders (allowed: {allowed})"
            )
            continue
        result[key] = value
    for key in sorted(set(required) - set(table)):
        problems.append(f"{where}: [text.en] is missing {key!r}")
    return result


def _load_catalog(path: Path, settings: LanguageSettings, problems: list[str]) -> Catalog | None:
    data = read_toml(path, problems)
    if data is None or not _check_spec_version(path, data, problems):
        return None
    table = _english_table(str(path), data.get("text", {}), problems)
    texts = _check_texts(str(path), table, CATALOG_KEYS, problems)
    words: dict[str, str] = {}
    for key in WORD_KEYS:
        value = table.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(w, str) and w.strip() and "," not in w for w in value)
        ):
            problems.append(f"{path}: [text.en] {key!r} must be a list of words (no commas)")
            continue
        words[key] = ", ".join(w.strip() for w in value)
    if settings.default not in settings.offered:
        problems.append(
            f"{path}: the default language {settings.default!r} is not among the languages "
            f"offered ({', '.join(settings.offered)})"
        )
    sos = {
        language: tuple(w.strip().casefold() for w in found if w.strip())
        for language, found in settings.sos_words.items()
    }
    return Catalog(
        texts=texts,
        words=words,
        sos_words=sos,
        languages=dict(settings.offered),
        default_language=settings.default,
    )


def _load_questions(path: Path, problems: list[str]) -> tuple[dict[str, Step], dict[str, str]]:
    """Load the shared question library: steps without a ``next``, with their texts."""
    if not path.is_file():
        return {}, {}
    data = read_toml(path, problems)
    if data is None or not _check_spec_version(path, data, problems):
        return {}, {}
    where = str(path)
    unknown = set(data) - {"spec_version", "questions", "text"}
    for key in sorted(unknown):
        problems.append(f"{where}: unknown key {key!r}")
    raw = data.get("questions")
    if not isinstance(raw, list):
        problems.append(f"{where}: the library needs [[questions]] tables")
        return {}, {}
    questions: dict[str, Step] = {}
    for index, item in enumerate(raw):
        name = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        label = f"{where}: question {name!r}"
        if isinstance(item, dict):
            for key in sorted(set(item) - _QUESTION_KEYS):
                problems.append(f"{label}: unknown key {key!r}")
        question = _load_step(label, item, None, problems, needs_next=False)
        if question is None:
            continue
        if question.type in (StepType.END, StepType.OPEN):
            problems.append(f"{label}: a library question must ask something")
            continue
        if question.id in questions:
            problems.append(f"{label}: the id is used twice")
        questions[question.id] = question
    required: dict[str, set[str]] = {}
    for question in questions.values():
        required.update(_text_keys(question))
    table = _english_table(where, data.get("text", {}), problems)
    return questions, _check_texts(where, table, required, problems)


def _text_keys(step: Step) -> dict[str, set[str]]:
    """Return the text keys a step needs, with the placeholders each may use."""
    if step.type is StepType.END:
        return {step.key: END_PARAMS[step.outcome] if step.outcome else set()}
    if step.type is StepType.OPEN:
        return {step.key: set(OPEN_PARAMS)}
    keys: dict[str, set[str]] = {step.key: set()}
    for option in step.options:
        keys[f"{step.key}.{option}"] = set()
    return keys


def _load_flow(
    path: Path,
    questions: Mapping[str, Step],
    shared_texts: Mapping[str, str],
    problems: list[str],
) -> Flow | None:
    """Load one flow; ``shared_texts`` (library and catalog) may supply its texts."""
    data = read_toml(path, problems)
    if data is None or not _check_spec_version(path, data, problems):
        return None
    where = str(path)
    before = len(problems)
    flow_id = data.get("id")
    if not isinstance(flow_id, str) or not _SLUG.match(flow_id):
        problems.append(f"{where}: 'id' must be a lowercase slug")
        flow_id = path.stem
    try:
        kind = FlowKind(str(data.get("kind")))
    except ValueError:
        kinds = ", ".join(k.value for k in FlowKind)
        problems.append(f"{where}: 'kind' must be one of {kinds}")
        return None
    tier = data.get("tier")
    if tier is not None and tier not in TIERS:
        problems.append(f"{where}: 'tier' must be one of {', '.join(TIERS)}")
    flags = data.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) and _FLAG.match(f) for f in flags):
        problems.append(f"{where}: 'flags' must be a list of lowercase flag names")
        flags = []
    unknown = set(data) - {"spec_version", "id", "kind", "tier", "flags", "start", "steps", "text"}
    for key in sorted(unknown):
        problems.append(f"{where}: unknown key {key!r}")

    steps = _load_steps(where, data.get("steps"), questions, problems)
    start = data.get("start")
    if start not in steps:
        problems.append(f"{where}: 'start' names unknown step {start!r}")
    _check_graph(where, steps, str(start), problems)
    for step in steps.values():
        if kind is FlowKind.SOS and step.type is StepType.OPEN:
            problems.append(f"{where}: step {step.id!r}: the SOS flow opens its case at once")
        if kind is not FlowKind.SOS and step.append:
            problems.append(f"{where}: step {step.id!r}: 'append' is for SOS follow-ups")

    required: dict[str, set[str]] = dict(FLOW_EXTRA_KEYS[kind])
    optional: dict[str, set[str]] = {}
    for step in steps.values():
        keys = _text_keys(step)
        if step.text_key:  # a library question: its texts exist, the flow may override them
            optional.update(keys)
            for key in keys:
                if key not in shared_texts:
                    problems.append(f"{where}: step {step.id!r}: the library has no text {key!r}")
        else:
            for key, params in keys.items():
                if key in shared_texts and step.type in (StepType.OPEN, StepType.END):
                    optional[key] = params
                else:
                    required[key] = params
    table = _english_table(where, data.get("text", {}), problems)
    texts = _check_texts(where, table, required, problems, optional)
    if len(problems) > before:
        return None
    return Flow(
        id=flow_id,
        kind=kind,
        start=str(start),
        steps=steps,
        texts=texts,
        tier=tier,
        flags=tuple(flags),
        source=where,
    )


def _load_steps(
    where: str, raw: Any, questions: Mapping[str, Step], problems: list[str]
) -> dict[str, Step]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: a flow needs at least one [[steps]] table")
        return {}
    steps: dict[str, Step] = {}
    for index, item in enumerate(raw):
        name = "#" + str(index + 1)
        if isinstance(item, dict):
            name = str(item.get("id", item.get("use", name)))
        label = f"{where}: step {name!r}"
        if isinstance(item, dict):
            for key in sorted(set(item) - _STEP_KEYS):
                problems.append(f"{label}: unknown key {key!r}")
        step = _load_step(label, item, questions, problems, needs_next=True)
        if step is None:
            continue
        if step.id in steps:
            problems.append(f"{label}: the id is used twice")
        steps[step.id] = step
    # Branches can only be checked once every step is known.
    for step in steps.values():
        if step.type is StepType.OPEN and any(
            b.goto.startswith(FLOW_PREFIX)
            or b.goto not in steps
            or steps[b.goto].type is StepType.OPEN
            for b in step.branches
        ):
            problems.append(
                f"{where}: step {step.id!r}: an open step must lead to a question or an end "
                "step of its own flow"
            )
        for branch in step.branches:
            if not branch.goto.startswith(FLOW_PREFIX) and branch.goto not in steps:
                problems.append(
                    f"{where}: step {step.id!r}: next goes to unknown step {branch.goto!r}"
                )
            for cond_step, values in branch.conditions.items():
                target = steps.get(cond_step)
                if target is None:
                    problems.append(
                        f"{where}: step {step.id!r}: condition on unknown step {cond_step!r}"
                    )
                    continue
                allowed = set(answer_values(target)) | {SKIPPED}
                for value in values:
                    if value not in allowed:
                        problems.append(
                            f"{where}: step {step.id!r}: condition {cond_step} = {value!r} can "
                            f"never hold (possible: {', '.join(sorted(allowed))})"
                        )
    return steps


def answer_values(step: Step) -> tuple[str, ...]:
    """Return the answers a step can give (besides ``skipped``) that conditions and
    triage mappings may name."""
    if step.type in (StepType.CHOICE, StepType.MULTI):
        return step.options
    if step.type is StepType.YESNO:
        return ("yes", "no")
    return ()


def _load_step(
    label: str,
    item: Any,
    questions: Mapping[str, Step] | None,
    problems: list[str],
    *,
    needs_next: bool,
) -> Step | None:
    if not isinstance(item, dict):
        problems.append(f"{label}: must be a table")
        return None
    base: Step | None = None
    use = item.get("use")
    if use is not None:
        base = (questions or {}).get(use) if isinstance(use, str) else None
        if base is None:
            problems.append(f"{label}: 'use' names no question of the library ({use!r})")
            return None
        for key in ("type", "options", "triage", "windows", "max_length"):
            if key in item:
                problems.append(f"{label}: {key!r} comes from the library question {use!r}")
    step_id = item.get("id", use)
    if not isinstance(step_id, str) or not _SLUG.match(step_id):
        problems.append(f"{label}: 'id' must be a lowercase slug (letters, digits, _)")
        return None
    own = _own_step(label, step_id, item, problems) if base is None else None
    step = replace(base, id=step_id, text_key=base.id) if base is not None else own
    if step is None:
        return None
    branches: tuple[Branch, ...] = ()
    outcome: Outcome | None = None
    if step.type is StepType.END:
        try:
            outcome = Outcome(str(item.get("outcome")))
        except ValueError:
            outcomes = ", ".join(o.value for o in Outcome)
            problems.append(f"{label}: an end step needs 'outcome', one of {outcomes}")
            return None
        if "next" in item:
            problems.append(f"{label}: an end step has no 'next'")
    else:
        if "outcome" in item:
            problems.append(f"{label}: only an end step has an 'outcome'")
        if needs_next:
            branches = _load_branches(label, item.get("next"), problems)
        elif "next" in item:
            problems.append(f"{label}: a library question has no 'next'; flows decide")
    append = item.get("append", False)
    if not isinstance(append, bool):
        problems.append(f"{label}: 'append' must be true or false")
        append = False
    return replace(step, branches=branches, append=append, outcome=outcome)


def _own_step(
    label: str, step_id: str, item: Mapping[str, Any], problems: list[str]
) -> Step | None:
    """Build a step from its own keys (not from the library)."""
    try:
        step_type = StepType(str(item.get("type")))
    except ValueError:
        types = ", ".join(t.value for t in StepType)
        problems.append(f"{label}: 'type' must be one of {types}")
        return None
    options: tuple[str, ...] = ()
    if step_type in (StepType.CHOICE, StepType.MULTI):
        raw_options = item.get("options")
        if (
            not isinstance(raw_options, list)
            or len(raw_options) < 2
            or len(raw_options) > 12
            or not all(isinstance(o, str) and _SLUG.match(o) for o in raw_options)
        ):
            problems.append(
                f"{label}: a {step_type.value} needs 'options', a list of 2 to 12 slugs"
            )
            return None
        if len(set(raw_options)) != len(raw_options):
            problems.append(f"{label}: an option is listed twice")
        if SKIPPED in raw_options:
            problems.append(f"{label}: {SKIPPED!r} cannot be an option id")
        options = tuple(raw_options)
    elif "options" in item:
        problems.append(f"{label}: only a choice or multi step has 'options'")
    step = Step(id=step_id, type=step_type, options=options)
    answers = answer_values(step)
    flags: dict[str, tuple[str, ...]] = {}
    if "triage" in item:
        raw = item["triage"]
        if not answers or not isinstance(raw, dict):
            problems.append(
                f"{label}: 'triage' maps each answer of a choice, multi or yes/no step to "
                'flags, e.g. { now = ["now"], past = [] }'
            )
        else:
            for answer in answers:
                if answer not in raw:
                    problems.append(
                        f"{label}: option {answer!r} has no triage mapping (write "
                        f"{answer} = [] if it sets no flag)"
                    )
            for answer, value in raw.items():
                if answer not in answers and answer != SKIPPED:
                    problems.append(f"{label}: triage maps unknown option {answer!r}")
                elif not isinstance(value, list) or not all(
                    isinstance(f, str) and _FLAG.match(f) for f in value
                ):
                    problems.append(f"{label}: triage.{answer} must be a list of flag names")
                else:
                    flags[answer] = tuple(value)
    windows: list[DateWindow] = []
    if "windows" in item:
        raw_windows = item["windows"]
        if step_type is not StepType.DATE or not isinstance(raw_windows, list):
            problems.append(
                f"{label}: 'windows' is for date steps: [{{ days = 2, flag = \"soon\" }}]"
            )
        else:
            for entry in raw_windows:
                days = entry.get("days") if isinstance(entry, dict) else None
                flag = entry.get("flag") if isinstance(entry, dict) else None
                if (
                    not isinstance(days, int)
                    or not 0 <= days <= 366
                    or not (isinstance(flag, str) and _FLAG.match(flag))
                ):
                    problems.append(f"{label}: each window needs days (0-366) and a flag name")
                    continue
                windows.append(DateWindow(days, flag))
    max_length: int | None = None
    if step_type is StepType.TEXT:
        max_length = item.get("max_length", DEFAULT_MAX_LENGTH)
        if not isinstance(max_length, int) or not 10 <= max_length <= 2000:
            problems.append(f"{label}: 'max_length' must be a number from 10 to 2000")
            max_length = DEFAULT_MAX_LENGTH
    elif "max_length" in item:
        problems.append(f"{label}: only a text step has 'max_length'")
    return replace(step, flags=flags, windows=tuple(windows), max_length=max_length)


def _load_branches(label: str, raw: Any, problems: list[str]) -> tuple[Branch, ...]:
    if isinstance(raw, str):
        return (Branch(goto=raw),)
    if not isinstance(raw, list) or not raw:
        problems.append(
            f"{label}: 'next' must be a step id or a list of {{ if = ..., goto = ... }}"
        )
        return ()
    branches: list[Branch] = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("goto"), str):
            problems.append(f"{label}: next[{position}] needs 'goto' = a step id")
            continue
        if set(entry) - {"if", "goto"}:
            problems.append(f"{label}: next[{position}] may only have 'if' and 'goto'")
        raw_if = entry.get("if", {})
        if not isinstance(raw_if, dict) or not all(
            isinstance(v, list) and v and all(isinstance(x, str) for x in v)
            for v in raw_if.values()
        ):
            problems.append(
                f"{label}: next[{position}].if must map step ids to lists of answers, "
                'e.g. { when = ["now"] }'
            )
            continue
        branches.append(
            Branch(goto=entry["goto"], conditions={k: tuple(v) for k, v in raw_if.items()})
        )
    if branches and branches[-1].conditions:
        problems.append(f"{label}: the last entry of 'next' must have no 'if' (the fallback)")
    return tuple(branches)


def _check_graph(where: str, steps: Mapping[str, Step], start: str, problems: list[str]) -> None:
    """Every step is reachable from ``start`` and every step can reach an end step or
    another flow."""
    if start not in steps:
        return
    seen = {start}
    queue = [start]
    while queue:
        for branch in steps[queue.pop()].branches:
            if branch.goto in steps and branch.goto not in seen:
                seen.add(branch.goto)
                queue.append(branch.goto)
    for step_id in steps:
        if step_id not in seen:
            problems.append(f"{where}: step {step_id!r} can never be reached from {start!r}")
    finishing = {s.id for s in steps.values() if s.type is StepType.END}
    changed = True
    while changed:
        changed = False
        for step in steps.values():
            if step.id not in finishing and any(
                b.goto in finishing or b.goto.startswith(FLOW_PREFIX) for b in step.branches
            ):
                finishing.add(step.id)
                changed = True
    for step_id in steps:
        if step_id not in finishing:
            problems.append(f"{where}: step {step_id!r} can never reach an end step")


def entered_flows(flow: Flow) -> Iterable[tuple[Step, str]]:
    """Yield (step, flow id) for every ``@flow`` a step of ``flow`` can enter."""
    for step in flow.steps.values():
        for branch in step.branches:
            if branch.goto.startswith(FLOW_PREFIX):
                yield step, branch.goto[len(FLOW_PREFIX) :]


def _check_flow_links(flows: Mapping[str, Flow], problems: list[str]) -> None:
    """Every ``@flow`` names a topic flow, every topic flow is entered from somewhere, and a
    topic flow's step ids differ from those of the flows that enter it (answers are kept
    together)."""
    entered: set[str] = set()
    parents: dict[str, set[str]] = {}
    for flow in flows.values():
        for step, target_id in entered_flows(flow):
            target = flows.get(target_id)
            if target is None or target.kind is not FlowKind.TOPIC:
                problems.append(
                    f"{flow.source}: step {step.id!r}: next goes to {FLOW_PREFIX}{target_id}, "
                    "which is not a topic flow"
                )
                continue
            entered.add(target_id)
            parents.setdefault(target_id, set()).add(flow.id)
    for target_id in sorted(entered):
        target = flows[target_id]
        for ancestor_id in sorted(_ancestors(target_id, parents)):
            ancestor = flows[ancestor_id]
            for shared in sorted(set(ancestor.steps) & set(target.steps)):
                problems.append(
                    f"{target.source}: step {shared!r}: the id is also used by "
                    f"{ancestor.source}, whose answers this flow keeps"
                )
    for flow in flows.values():
        if flow.kind is FlowKind.TOPIC and flow.id not in entered:
            problems.append(f"{flow.source}: no flow enters {FLOW_PREFIX}{flow.id}")


def _ancestors(flow_id: str, parents: Mapping[str, set[str]]) -> set[str]:
    """Every flow a conversation can pass through before entering ``flow_id``."""
    found: set[str] = set()
    queue = list(parents.get(flow_id, ()))
    while queue:
        current = queue.pop()
        if current not in found and current != flow_id:
            found.add(current)
            queue.extend(parents.get(current, ()))
    return found


def all_flags(flows: FlowSet) -> set[str]:
    """Return every triage flag some flow, option or date window can set."""
    found: set[str] = set()
    for flow in flows.flows.values():
        found.update(flow.flags)
        for step in flow.steps.values():
            for values in step.flags.values():
                found.update(values)
            found.update(window.flag for window in step.windows)
    return found
