"""Triage: a pure function from the flags a conversation set to an urgency tier and the
reasons for it.

Flows are data and so are the rules (``flows/triage.toml``). Options, flows and date windows
set flags ("detention", "now", "hearing_48h"); a rule names flags that must all be set
(``all``) and flags of which one must be set (``any``), and raises the case to its tier when
it matches. Rules can only raise: the tier is the most urgent of the floor, the default and
every matching rule, so adding a rule or a flag can never make a case less urgent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bot.conversation.dates import days_until
from bot.conversation.loader import TIERS, FlowError, all_flags, read_toml
from bot.conversation.model import SKIPPED, SPEC_VERSION, Flow, FlowSet, StepType, selected

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
    """Raise to ``tier`` with ``reason`` when every flag of ``all_of`` is set and, if
    ``any_of`` is not empty, at least one of its flags."""

    id: str
    tier: str
    reason: str
    all_of: frozenset[str] = frozenset()
    any_of: frozenset[str] = frozenset()

    def matches(self, flags: frozenset[str]) -> bool:
        """Return True when the rule fires for ``flags``."""
        return self.all_of <= flags and (not self.any_of or bool(self.any_of & flags))


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


def answer_flags(
    flows: Iterable[Flow], answers: Mapping[str, str | None], today: date
) -> frozenset[str]:
    """Return the flags set by ``flows`` themselves and by the ``answers`` given in them:
    each option's mapped flags (several for a multi-select; the ``skipped`` mapping for a
    skipped step), and each date window the answered date falls in (0 = today)."""
    flags: set[str] = set()
    for flow in flows:
        flags.update(flow.flags)
        for step_id, value in answers.items():
            step = flow.steps.get(step_id)
            if step is None:
                continue
            if step.flags:
                for option in selected(value) or (SKIPPED,):
                    flags.update(step.flags.get(option, ()))
            if step.type is StepType.DATE and step.windows and value:
                try:
                    when = date.fromisoformat(value)
                except ValueError:
                    continue
                ahead = days_until(when, today)
                flags.update(w.flag for w in step.windows if 0 <= ahead <= w.days)
    return frozenset(flags)


def triage(rules: RuleSet, flags: Iterable[str], floor: str | None = None) -> Triage:
    """Return the tier for ``flags``: the most urgent of ``floor``, the default and every
    matching rule's tier, with the matching rules' reasons (most urgent first).

    Guarantees: the tier is never less urgent than ``floor`` or any matching rule, and
    setting more flags never makes it less urgent.
    """
    found = frozenset(flags)
    matched = sorted(
        (rule for rule in rules.rules if rule.matches(found)), key=lambda r: tier_rank(r.tier)
    )
    tier = most_urgent(rules.default, *(floor,) if floor else (), *(r.tier for r in matched))
    return Triage(tier=tier, reasons=tuple(rule.reason for rule in matched))


def load_rules(directory: Path, flows: FlowSet) -> RuleSet:
    """Load ``triage.toml`` from ``directory`` and check it against the flows.

    Every flag a rule names must be set by some flow, option or date window; every rule has
    an id, a tier, a reason and at least one flag. Raises :class:`FlowError` listing every
    problem, each with file and rule.
    """
    path = directory / TRIAGE_FILE
    problems: list[str] = []
    data = read_toml(path, problems)
    if data is None:
        raise FlowError(problems)
    if data.get("spec_version") != SPEC_VERSION:
        problems.append(f"{path}: spec_version must be {SPEC_VERSION}")
    for key in sorted(set(data) - {"spec_version", "default", "rules"}):
        problems.append(f"{path}: unknown key {key!r}")
    default = data.get("default", "low")
    if default not in TIERS:
        problems.append(f"{path}: 'default' must be one of {', '.join(TIERS)}")
    known = all_flags(flows)
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
        rule_id, tier, reason = (raw.get(k) for k in ("id", "tier", "reason"))
        if set(raw) - {"id", "tier", "reason", "all", "any"}:
            problems.append(f"{label}: only id, tier, reason, all and any are allowed")
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
        groups: dict[str, frozenset[str]] = {}
        for key in ("all", "any"):
            value = raw.get(key, [])
            if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
                problems.append(f"{label}: {key!r} must be a list of flag names")
                value = []
            for flag in value:
                if flag not in known:
                    problems.append(
                        f"{label}: flag {flag!r} is set by no flow, option or date window"
                    )
            groups[key] = frozenset(value)
        if not groups["all"] and not groups["any"]:
            problems.append(f"{label}: a rule needs flags in 'all' or 'any'")
            continue
        rules.append(Rule(rule_id, tier, reason.strip(), groups["all"], groups["any"]))
    if problems:
        raise FlowError(problems)
    return RuleSet(default=default, rules=tuple(rules))
