"""Triage: a pure function from intake answers to an urgency tier and the reasons for it.

Rules are data (``flows/triage.toml``). Each rule names answers; when all of them match, the
case is raised to the rule's tier. Rules can only raise: the tier is the highest of the default
and every matching rule, so adding a rule can never make a case less urgent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.conversation.loader import TIERS, FlowError, read_toml
from bot.conversation.model import SKIPPED, SPEC_VERSION, Branch, FlowSet, StepType

TRIAGE_FILE = "triage.toml"
_RULE_ID = re.compile(r"^[a-z][a-z0-9-]{0,59}$")


def tier_rank(tier: str) -> int:
    """Return the urgency rank of ``tier``: 0 for critical, 3 for low."""
    return TIERS.index(tier)


def most_urgent(*tiers: str) -> str:
    """Return the most urgent of ``tiers``."""
    return min(tiers, key=tier_rank)


@dataclass(frozen=True, slots=True)
class Rule:
    """Raise to ``tier`` with ``reason`` when every condition of ``when`` holds."""

    id: str
    tier: str
    reason: str
    when: Branch  # a Branch's conditions; its goto is unused


@dataclass(frozen=True, slots=True)
class Triage:
    """The outcome: the tier and the reasons of every rule that matched, gravest first."""

    tier: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """All triage rules and the tier used when none matches."""

    default: str
    rules: tuple[Rule, ...]


def triage(rules: RuleSet, answers: Mapping[str, str | None], floor: str | None = None) -> Triage:
    """Return the tier for ``answers``: the most urgent of ``floor``, the default and every
    matching rule's tier, with the matching rules' reasons (most urgent first).

    Guarantees: the tier is never less urgent than ``floor`` or any matching rule.
    """
    matched = sorted(
        (rule for rule in rules.rules if rule.when.matches(answers)),
        key=lambda rule: tier_rank(rule.tier),
    )
    tier = most_urgent(rules.default, *(floor,) if floor else (), *(r.tier for r in matched))
    return Triage(tier=tier, reasons=tuple(rule.reason for rule in matched))


def load_rules(directory: Path, flows: FlowSet) -> RuleSet:
    """Load ``triage.toml`` from ``directory`` and check it against the flow it triages.

    Every condition must name a step of that flow and an answer the step can give (or
    ``skipped``). Raises :class:`FlowError` listing every problem, each with file and rule.
    """
    path = directory / TRIAGE_FILE
    problems: list[str] = []
    data = read_toml(path, problems)
    if data is None:
        raise FlowError(problems)
    if data.get("spec_version") != SPEC_VERSION:
        problems.append(f"{path}: spec_version must be {SPEC_VERSION}")
    flow = flows.flows.get(str(data.get("flow")))
    if flow is None:
        problems.append(f"{path}: 'flow' must name a loaded flow ({', '.join(flows.flows)})")
        raise FlowError(problems)
    default = data.get("default", "low")
    if default not in TIERS:
        problems.append(f"{path}: 'default' must be one of {', '.join(TIERS)}")
    rules: list[Rule] = []
    seen: set[str] = set()
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.append(f"{path}: 'rules' must be [[rules]] tables")
        raw_rules = []
    for index, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            problems.append(f"{path}: rule #{index + 1} must be a table")
            continue
        label = f"{path}: rule {raw.get('id', f'#{index + 1}')!r}"
        rule_id, tier, reason, when = (raw.get(k) for k in ("id", "tier", "reason", "when"))
        if set(raw) - {"id", "tier", "reason", "when"}:
            problems.append(f"{label}: only id, tier, reason and when are allowed")
        if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id) or rule_id in seen:
            problems.append(f"{label}: 'id' must be a unique lowercase slug")
            continue
        seen.add(rule_id)
        if tier not in TIERS:
            problems.append(f"{label}: 'tier' must be one of {', '.join(TIERS)}")
            continue
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{label}: 'reason' must be a short text")
            continue
        if not isinstance(when, dict) or not when:
            problems.append(f"{label}: 'when' must map step ids to lists of answers")
            continue
        conditions: dict[str, tuple[str, ...]] = {}
        for step_id, values in when.items():
            step = flow.steps.get(step_id)
            if step is None:
                problems.append(f"{label}: {flow.id} has no step {step_id!r}")
                continue
            possible = {SKIPPED}
            if step.type is StepType.CHOICE:
                possible |= set(step.options)
            elif step.type is StepType.YESNO:
                possible |= {"yes", "no"}
            if not isinstance(values, list) or not values:
                problems.append(f"{label}: when.{step_id} must be a non-empty list")
                continue
            for value in values:
                if value not in possible:
                    problems.append(
                        f"{label}: when.{step_id} = {value!r} is not an answer of step "
                        f"{step_id!r} (possible: {', '.join(sorted(possible))})"
                    )
            conditions[step_id] = tuple(values)
        rules.append(Rule(rule_id, tier, reason.strip(), Branch(goto="", conditions=conditions)))
    if problems:
        raise FlowError(problems)
    return RuleSet(default=default, rules=tuple(rules))
