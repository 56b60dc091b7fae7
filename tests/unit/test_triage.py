"""Unit tests for bot.triage.rules: every shipped rule fires, rules only raise, bad rules are
refused."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation.loader import TIERS, FlowError, load_flows
from bot.conversation.model import SKIPPED, FlowSet, StepType
from bot.triage.rules import Rule, RuleSet, load_rules, most_urgent, tier_rank, triage

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
SETTINGS = settings(database=None, deadline=None)

# One answers dict per shipped rule that makes that rule fire.
TRIGGERS: dict[str, dict[str, str | None]] = {
    "liberty-or-life-now": {"what": "attack", "when": None},
    "detention-last-day": {"what": "detention", "when": "day"},
    "anything-now": {"what": "other", "when": "now"},
    "attack-last-day": {"what": "attack", "when": "day"},
    "threat-or-summons-recent": {"what": "judicial", "when": "day"},
    "digital-recent": {"what": "digital", "when": "now"},
    "medical-recent": {"what": "other", "when": "day", "needs": "medical"},
    "upcoming-hearing": {"what": "judicial", "when": "upcoming", "date": "1 May"},
    "relocation": {"what": "relocation", "when": "past"},
    "relocation-help": {"what": "other", "when": "past", "needs": "relocation"},
    "upcoming-anything": {"what": "other", "when": "upcoming"},
    "grave-event-any-time": {"what": "threat", "when": "past"},
}


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    """The real flows shipped in flows/."""
    return load_flows(FLOWS_DIR)


@pytest.fixture(scope="module")
def rules(flows: FlowSet) -> RuleSet:
    """The real triage rules shipped in flows/triage.toml."""
    return load_rules(FLOWS_DIR, flows)


def rule(rules: RuleSet, rule_id: str) -> Rule:
    """The rule with id ``rule_id``."""
    return next(r for r in rules.rules if r.id == rule_id)


def fires(r: Rule, answers: Mapping[str, str | None]) -> bool:
    """Independent oracle: every condition of ``r`` holds (missing or None reads skipped)."""
    for step_id, accepted in r.when.conditions.items():
        value = answers.get(step_id)
        if (SKIPPED if value is None else value) not in accepted:
            return False
    return True


# --- the shipped rules ---------------------------------------------------------------------


def test_shipped_rules_load(rules: RuleSet) -> None:
    """triage.toml loads with the default low and one rule per id in TRIGGERS."""
    assert rules.default == "low"
    assert len(rules.rules) == len({r.id for r in rules.rules})
    assert {r.id for r in rules.rules} == set(TRIGGERS)


@pytest.mark.parametrize("rule_id", sorted(TRIGGERS))
def test_every_rule_fires(rules: RuleSet, rule_id: str) -> None:
    """Each shipped rule fires on its trigger: its reason is given and its tier reached."""
    r = rule(rules, rule_id)
    result = triage(rules, TRIGGERS[rule_id])
    assert r.reason in result.reasons
    assert tier_rank(result.tier) <= tier_rank(r.tier)


def test_detention_now_is_critical(rules: RuleSet) -> None:
    """Detention happening now is critical, with the gravest reason first."""
    result = triage(rules, {"what": "detention", "when": "now"})
    assert result.tier == "critical"
    assert result.reasons[0] == rule(rules, "liberty-or-life-now").reason
    assert rule(rules, "anything-now").reason in result.reasons


@pytest.mark.parametrize("answers", [{"what": "detention", "when": None}, {"what": "detention"}])
def test_detention_when_skipped_is_critical(rules: RuleSet, answers: dict[str, str | None]) -> None:
    """Detention with 'when' skipped (or never asked) is treated as now: critical."""
    assert triage(rules, answers).tier == "critical"


def test_threat_last_day_at_least_high(rules: RuleSet) -> None:
    """A threat in the last 24 hours is at least high."""
    result = triage(rules, {"what": "threat", "when": "day"})
    assert tier_rank(result.tier) <= tier_rank("high")
    assert rule(rules, "threat-or-summons-recent").reason in result.reasons


def test_past_other_is_default_low(rules: RuleSet) -> None:
    """Something else in the past matches no rule and gets the default, low."""
    result = triage(rules, {"what": "other", "when": "past", "needs": "legal"})
    assert result == triage(RuleSet(default="low", rules=()), {})
    assert result.tier == "low"
    assert result.reasons == ()


def test_sos_floor_with_no_answers_is_critical(rules: RuleSet) -> None:
    """An SOS case (floor critical) with no answers is critical, with no rule reasons."""
    result = triage(rules, {}, floor="critical")
    assert result.tier == "critical"
    assert result.reasons == ()


def test_reasons_ordered_gravest_first(rules: RuleSet) -> None:
    """Reasons come in order of their rule's tier, most urgent first."""
    result = triage(rules, {"what": "attack", "when": "now", "needs": "relocation"})
    by_reason = {r.reason: r.tier for r in rules.rules}
    ranks = [tier_rank(by_reason[reason]) for reason in result.reasons]
    assert len(ranks) >= 3
    assert ranks == sorted(ranks)


def test_tier_rank_and_most_urgent() -> None:
    """critical ranks 0 and low 3; most_urgent picks the lowest rank."""
    assert [tier_rank(t) for t in ("critical", "high", "medium", "low")] == [0, 1, 2, 3]
    assert most_urgent("low", "medium", "high") == "high"
    assert most_urgent("low") == "low"


# --- properties ----------------------------------------------------------------------------


@st.composite
def answers_of(draw: st.DrawFn, flows: FlowSet) -> dict[str, str | None]:
    """Any answers the intake flow could collect (each step absent, skipped or answered)."""
    intake = flows.flows["intake"]
    answers: dict[str, str | None] = {}
    for s in intake.steps.values():
        if s.type is StepType.END or not draw(st.booleans()):
            continue
        if s.type is StepType.CHOICE:
            answers[s.id] = draw(st.sampled_from([None, *s.options]))
        elif s.type is StepType.YESNO:
            answers[s.id] = draw(st.sampled_from([None, "yes", "no"]))
        else:
            answers[s.id] = draw(st.none() | st.text(max_size=10))
    return answers


tiers = st.sampled_from(TIERS)


@SETTINGS
@given(data=st.data(), floor=st.none() | tiers)
def test_tier_is_most_urgent_of_default_floor_and_matches(
    flows: FlowSet, rules: RuleSet, data: st.DataObject, floor: str | None
) -> None:
    """The tier is exactly the most urgent of the default, the floor and every matching rule."""
    answers = data.draw(answers_of(flows))
    matching = [r for r in rules.rules if fires(r, answers)]
    candidates = [rules.default, *([floor] if floor else []), *(r.tier for r in matching)]
    expected = min(candidates, key=TIERS.index)
    result = triage(rules, answers, floor)
    assert result.tier == expected
    assert sorted(result.reasons) == sorted(r.reason for r in matching)


@SETTINGS
@given(data=st.data())
def test_fewer_rules_never_more_urgent(flows: FlowSet, rules: RuleSet, data: st.DataObject) -> None:
    """Triage with any subset of the rules is never more urgent than with all of them."""
    answers = data.draw(answers_of(flows))
    keep = data.draw(st.lists(st.booleans(), min_size=len(rules.rules), max_size=len(rules.rules)))
    subset = RuleSet(rules.default, tuple(r for r, k in zip(rules.rules, keep, strict=True) if k))
    assert tier_rank(triage(subset, answers).tier) >= tier_rank(triage(rules, answers).tier)


@SETTINGS
@given(data=st.data(), floor=tiers)
def test_floor_never_lowers(
    flows: FlowSet, rules: RuleSet, data: st.DataObject, floor: str
) -> None:
    """Adding a floor never makes the result less urgent, and the result is at least the floor."""
    answers = data.draw(answers_of(flows))
    with_floor = triage(rules, answers, floor)
    assert tier_rank(with_floor.tier) <= tier_rank(triage(rules, answers).tier)
    assert tier_rank(with_floor.tier) <= tier_rank(floor)


# --- invalid rules -------------------------------------------------------------------------

HEADER = 'spec_version = 1\nflow = "intake"\ndefault = "low"\n'


def write_rules(tmp_path: Path, body: str) -> Path:
    """Write a triage.toml with HEADER and ``body`` into tmp_path and return its path."""
    path = tmp_path / "triage.toml"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def refused(tmp_path: Path, flows: FlowSet) -> str:
    """Load tmp_path's triage.toml, which must be refused, and return the message."""
    with pytest.raises(FlowError) as info:
        load_rules(tmp_path, flows)
    return str(info.value)


def test_valid_custom_rule_loads(tmp_path: Path, flows: FlowSet) -> None:
    """A well-formed rule file loads, with conditions on skipped accepted."""
    write_rules(
        tmp_path,
        '[[rules]]\nid = "ok-rule"\ntier = "high"\nreason = " r "\n'
        'when = { when = ["skipped"], where = ["skipped"] }\n',
    )
    loaded = load_rules(tmp_path, flows)
    assert [(r.id, r.tier, r.reason) for r in loaded.rules] == [("ok-rule", "high", "r")]
    assert triage(loaded, {}).tier == "high"


def test_rule_on_unknown_step(tmp_path: Path, flows: FlowSet) -> None:
    """A rule on a step the flow lacks is refused naming the file, the rule and the step."""
    path = write_rules(
        tmp_path,
        '[[rules]]\nid = "bad-rule"\ntier = "high"\nreason = "r"\nwhen = { mood = ["x"] }\n',
    )
    assert f"{path}: rule 'bad-rule': intake has no step 'mood'" in refused(tmp_path, flows)


def test_rule_with_impossible_value(tmp_path: Path, flows: FlowSet) -> None:
    """A rule on an answer the step cannot give is refused naming the rule and the value."""
    path = write_rules(
        tmp_path,
        '[[rules]]\nid = "bad-rule"\ntier = "high"\nreason = "r"\nwhen = { what = ["kidnap"] }\n',
    )
    assert f"{path}: rule 'bad-rule': when.what = 'kidnap' is not an answer of step 'what'" in (
        refused(tmp_path, flows)
    )


def test_rule_on_free_text_value(tmp_path: Path, flows: FlowSet) -> None:
    """A rule on a particular free-text answer is refused: only skipped is possible."""
    path = write_rules(
        tmp_path,
        '[[rules]]\nid = "bad-rule"\ntier = "high"\nreason = "r"\nwhen = { where = ["Kyiv"] }\n',
    )
    message = refused(tmp_path, flows)
    assert f"{path}: rule 'bad-rule': when.where = 'Kyiv'" in message
    assert "(possible: skipped)" in message


def test_rule_with_unknown_tier(tmp_path: Path, flows: FlowSet) -> None:
    """A rule with a tier that does not exist is refused naming the rule."""
    path = write_rules(
        tmp_path,
        '[[rules]]\nid = "bad-rule"\ntier = "urgent"\nreason = "r"\nwhen = { what = ["threat"] }\n',
    )
    assert f"{path}: rule 'bad-rule': 'tier' must be one of" in refused(tmp_path, flows)


def test_duplicate_rule_id(tmp_path: Path, flows: FlowSet) -> None:
    """Two rules with one id are refused naming the rule."""
    one = '[[rules]]\nid = "twice"\ntier = "high"\nreason = "r"\nwhen = { what = ["threat"] }\n'
    path = write_rules(tmp_path, one + one)
    assert f"{path}: rule 'twice': 'id' must be a unique lowercase slug" in refused(tmp_path, flows)


def test_unknown_default(tmp_path: Path, flows: FlowSet) -> None:
    """An unknown default tier is refused naming the file."""
    path = tmp_path / "triage.toml"
    path.write_text('spec_version = 1\nflow = "intake"\ndefault = "meh"\n', encoding="utf-8")
    assert f"{path}: 'default' must be one of" in refused(tmp_path, flows)


def test_unknown_flow(tmp_path: Path, flows: FlowSet) -> None:
    """A rule file for a flow that is not loaded is refused."""
    path = tmp_path / "triage.toml"
    path.write_text('spec_version = 1\nflow = "nope"\n', encoding="utf-8")
    assert f"{path}: 'flow' must name a loaded flow" in refused(tmp_path, flows)


def test_missing_rules_file(tmp_path: Path, flows: FlowSet) -> None:
    """A missing triage.toml is refused naming the file."""
    assert f"{tmp_path / 'triage.toml'}: file not found" in refused(tmp_path, flows)


def test_real_file_copy_loads(tmp_path: Path, flows: FlowSet) -> None:
    """A copy of the shipped triage.toml loads from another directory unchanged."""
    shutil.copy(FLOWS_DIR / "triage.toml", tmp_path / "triage.toml")
    assert load_rules(tmp_path, flows) == load_rules(FLOWS_DIR, flows)


def test_rule_not_a_table(tmp_path: Path, flows: FlowSet) -> None:
    """A rules list of plain strings is refused with a FlowError naming the file."""
    path = write_rules(tmp_path, 'rules = ["oops"]\n')
    assert str(path) in refused(tmp_path, flows)
