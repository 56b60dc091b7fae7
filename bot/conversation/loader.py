"""Load and validate ``flows/*.toml`` into a :class:`FlowSet`.

Validation happens once, at load: every problem is reported with the file and the step, so
that the engine can trust what it is given (every step reachable, every path ends, every text
present in the default language, every placeholder known).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bot.conversation.model import (
    SKIPPED,
    SPEC_VERSION,
    Branch,
    Catalog,
    Flow,
    FlowKind,
    FlowSet,
    Outcome,
    Step,
    StepType,
)

CATALOG_FILE = "messages.toml"
NON_FLOW_FILES = {CATALOG_FILE, "triage.toml"}
TIERS = ("critical", "high", "medium", "low")
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")
WORD_KEYS = ("sos_words", "skip_words", "yes_words", "no_words")
CATALOG_KEYS = {
    "option.yes": set(),
    "option.no": set(),
    "option.skip": set(),
    "stale_button": set(),
    "telegram_warning": set(),
    "telegram_warning_signal": {"number"},
    "scrubbed": {"ref"},
    "team_message": {"ref"},
    "choice_hint": set(),
    "skip_hint": set(),
    "text_skip_hint": set(),
    "out_of_range": {"max"},
    "empty": set(),
    "truncated": {"limit"},
    "unknown_command": {"command"},
    "help": set(),
    "cancelled": set(),
    "cancelled_sos": {"ref"},
    "nothing_to_cancel": set(),
    "status_none": set(),
    "status_header": set(),
    "status.open": {"ref"},
    "status.taken": {"ref"},
    "status.resolved": {"ref"},
    "added_to_case": {"ref"},
    "taken": {"ref"},
    "resolved": {"ref"},
}
FLOW_EXTRA_KEYS: dict[FlowKind, dict[str, set[str]]] = {
    FlowKind.INTAKE: {"intro": set()},
    FlowKind.SOS: {"opened": {"ref"}, "repeated": {"ref"}},
}
# Placeholders each end outcome may use.
END_PARAMS: dict[Outcome, set[str]] = {
    Outcome.SUBMIT: {"ref"},
    Outcome.DISCARD: set(),
    Outcome.CLOSE: {"ref"},
}


class FlowError(Exception):
    """A flow file is invalid; ``problems`` lists every problem, each naming file and step."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_flows(directory: Path, default_language: str = "en") -> FlowSet:
    """Load every flow in ``directory`` and the shared catalog.

    Guarantees: exactly one intake flow and one SOS flow; each flow is valid as described in
    the module docstring. Raises :class:`FlowError` listing all problems otherwise.
    """
    problems: list[str] = []
    if not directory.is_dir():
        raise FlowError([f"{directory}: flows directory not found"])
    catalog = _load_catalog(directory / CATALOG_FILE, default_language, problems)
    flows: dict[str, Flow] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name in NON_FLOW_FILES:
            continue
        flow = _load_flow(path, default_language, problems)
        if flow is None:
            continue
        if flow.id in flows:
            problems.append(
                f"{path}: flow id {flow.id!r} is already used by {flows[flow.id].source}"
            )
        flows[flow.id] = flow
    for kind in FlowKind:
        found = [f for f in flows.values() if f.kind is kind]
        if len(found) != 1:
            problems.append(
                f"{directory}: expected exactly one flow with kind = {kind.value!r}, found "
                f"{len(found)}" + (f" ({', '.join(f.source for f in found)})" if found else "")
            )
    if problems or catalog is None:
        raise FlowError(problems or [f"{directory / CATALOG_FILE}: could not be loaded"])
    return FlowSet(flows=flows, catalog=catalog)


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


def _placeholders(text: str) -> set[str] | None:
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


def _check_texts(
    where: str,
    texts: Mapping[str, Any],
    default_language: str,
    required: Mapping[str, set[str]],
    problems: list[str],
) -> dict[str, dict[str, str]]:
    """Validate ``[text.<lang>]`` tables: the default language has every required key, other
    languages only known keys, and every text uses only the placeholders its key allows."""
    result: dict[str, dict[str, str]] = {}
    if not isinstance(texts, dict):
        problems.append(f"{where}: 'text' must be tables like [text.{default_language}]")
        return result
    if default_language not in texts:
        problems.append(f"{where}: no [text.{default_language}] table (the default language)")
    for language, table in texts.items():
        if not _LANGUAGE.match(language) or not isinstance(table, dict):
            problems.append(f"{where}: [text.{language}] is not a language table")
            continue
        result[language] = {}
        for key, value in table.items():
            if key in WORD_KEYS:
                continue
            if key not in required:
                problems.append(f"{where}: [text.{language}] {key!r} is not a known text key")
                continue
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where}: [text.{language}] {key!r} must be a non-empty string")
                continue
            used = _placeholders(value)
            if used is None or not used <= required[key]:
                allowed = ", ".join("{" + p + "}" for p in sorted(required[key])) or "none"
                problems.append(
                    f"{where}: [text.{language}] {key!r} uses unknown placeholders "
                    f"(allowed: {allowed})"
                )
                continue
            result[language][key] = value
        if language == default_language:
            for key in sorted(set(required) - set(table)):
                problems.append(f"{where}: [text.{language}] is missing {key!r}")
    return result


def _load_catalog(path: Path, default_language: str, problems: list[str]) -> Catalog | None:
    data = read_toml(path, problems)
    if data is None or not _check_spec_version(path, data, problems):
        return None
    raw_texts = data.get("text", {})
    if not isinstance(raw_texts, dict):
        problems.append(f"{path}: 'text' must be tables like [text.{default_language}]")
        return None
    texts = _check_texts(str(path), raw_texts, default_language, CATALOG_KEYS, problems)
    words: dict[str, dict[str, tuple[str, ...]]] = {}
    for language, table in raw_texts.items():
        if not isinstance(table, dict):
            continue
        words[language] = {}
        for key in WORD_KEYS:
            value = table.get(key)
            if value is None:
                if language == default_language:
                    problems.append(f"{path}: [text.{language}] is missing {key!r}")
                continue
            if not isinstance(value, list) or not all(isinstance(w, str) and w for w in value):
                problems.append(f"{path}: [text.{language}] {key!r} must be a list of words")
                continue
            words[language][key] = tuple(w.strip().casefold() for w in value)
    return Catalog(texts=texts, words=words, default_language=default_language)


def _load_flow(path: Path, default_language: str, problems: list[str]) -> Flow | None:
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
    unknown = set(data) - {"spec_version", "id", "kind", "tier", "start", "steps", "text"}
    for key in sorted(unknown):
        problems.append(f"{where}: unknown key {key!r}")

    steps = _load_steps(where, data.get("steps"), problems)
    start = data.get("start")
    if start not in steps:
        problems.append(f"{where}: 'start' names unknown step {start!r}")
    _check_graph(where, steps, str(start), problems)

    required: dict[str, set[str]] = dict(FLOW_EXTRA_KEYS[kind])
    for step in steps.values():
        if step.type is StepType.END:
            required[step.id] = END_PARAMS[step.outcome] if step.outcome else set()
        else:
            required[step.id] = set()
        for option in step.options:
            required[f"{step.id}.{option}"] = set()
    texts = _check_texts(where, data.get("text", {}), default_language, required, problems)
    if len(problems) > before:
        return None
    return Flow(
        id=flow_id,
        kind=kind,
        start=str(start),
        steps=steps,
        texts=texts,
        tier=tier,
        source=where,
    )


def _load_steps(where: str, raw: Any, problems: list[str]) -> dict[str, Step]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: a flow needs at least one [[steps]] table")
        return {}
    steps: dict[str, Step] = {}
    for index, item in enumerate(raw):
        name = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        label = f"{where}: step {name!r}"
        step = _load_step(label, item, problems)
        if step is None:
            continue
        if step.id in steps:
            problems.append(f"{label}: the id is used twice")
        steps[step.id] = step
    # Conditions can only be checked once every step is known.
    for step in steps.values():
        for branch in step.branches:
            if branch.goto not in steps:
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
                allowed = set(_answer_values(target)) | {SKIPPED}
                for value in values:
                    if value not in allowed:
                        problems.append(
                            f"{where}: step {step.id!r}: condition {cond_step} = {value!r} can "
                            f"never hold (possible: {', '.join(sorted(allowed))})"
                        )
    return steps


def _answer_values(step: Step) -> Iterable[str]:
    if step.type is StepType.CHOICE:
        return step.options
    if step.type is StepType.YESNO:
        return ("yes", "no")
    return ()


def _load_step(label: str, item: Any, problems: list[str]) -> Step | None:
    if not isinstance(item, dict):
        problems.append(f"{label}: must be a table")
        return None
    step_id = item.get("id")
    if not isinstance(step_id, str) or not _SLUG.match(step_id):
        problems.append(f"{label}: 'id' must be a lowercase slug (letters, digits, _)")
        return None
    unknown = set(item) - {"id", "type", "options", "next", "append", "outcome"}
    for key in sorted(unknown):
        problems.append(f"{label}: unknown key {key!r}")
    try:
        step_type = StepType(str(item.get("type")))
    except ValueError:
        types = ", ".join(t.value for t in StepType)
        problems.append(f"{label}: 'type' must be one of {types}")
        return None
    options: tuple[str, ...] = ()
    if step_type is StepType.CHOICE:
        raw_options = item.get("options")
        if (
            not isinstance(raw_options, list)
            or len(raw_options) < 2
            or not all(isinstance(o, str) and _SLUG.match(o) for o in raw_options)
        ):
            problems.append(f"{label}: a choice needs 'options', a list of at least two slugs")
            return None
        if len(set(raw_options)) != len(raw_options):
            problems.append(f"{label}: an option is listed twice")
        options = tuple(raw_options)
    elif "options" in item:
        problems.append(f"{label}: only a choice step has 'options'")

    outcome: Outcome | None = None
    branches: tuple[Branch, ...] = ()
    if step_type is StepType.END:
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
        branches = _load_branches(label, item.get("next"), problems)
    append = item.get("append", False)
    if not isinstance(append, bool):
        problems.append(f"{label}: 'append' must be true or false")
        append = False
    return Step(
        id=step_id,
        type=step_type,
        options=options,
        branches=branches,
        append=append,
        outcome=outcome,
    )


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
    """Every step is reachable from ``start`` and every step can reach an end step."""
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
    ends = {s.id for s in steps.values() if s.type is StepType.END}
    finishing = set(ends)
    changed = True
    while changed:
        changed = False
        for step in steps.values():
            if step.id not in finishing and any(b.goto in finishing for b in step.branches):
                finishing.add(step.id)
                changed = True
    for step_id in steps:
        if step_id not in finishing:
            problems.append(f"{where}: step {step_id!r} can never reach an end step")
