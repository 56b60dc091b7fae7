"""Unit tests for bot.triage.rules: the shipped rules give the tiers of research B4 for real
answers to the real flows, date windows set their flags on the right days, rules only raise,
every rule can fire on flags something sets, and bad rule files are refused."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation.loader import TIERS, FlowError, all_flags, load_flows
from bot.conversation.model import SKIPPED, FlowKind, FlowSet, StepType
from bot.triage.rules import (
    Rule,
    RuleSet,
    Triage,
    answer_flags,
    load_rules,
    most_urgent,
    tier_rank,
    triage,
)

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
SETTINGS = settings(database=None, deadline=None, max_examples=200)
TODAY = date(2026, 3, 10)
Answers = Mapping[str, str | None]

_LOADED: list[tuple[FlowSet, RuleSet]] = []


def shipped() -> tuple[FlowSet, RuleSet]:
    """The shipped flows and triage rules (loaded once)."""
    if not _LOADED:
        flows = load_flows(FLOWS_DIR)
        _LOADED.append((flows, load_rules(FLOWS_DIR, flows)))
    return _LOADED[0]


def raw_rules() -> list[dict[str, Any]]:
    """The rules of flows/triage.toml as written (not through load_rules)."""
    with (FLOWS_DIR / "triage.toml").open("rb") as handle:
        rules: list[dict[str, Any]] = tomllib.load(handle)["rules"]
    return rules


def reason(rule_id: str) -> str:
    """The reason of the shipped rule ``rule_id``."""
    return next(r.reason for r in shipped()[1].rules if r.id == rule_id)


def case(topic: str, answers: Answers, today: date = TODAY) -> Triage:
    """Triage a case as the conversation service does: the flags of the menu and the topic
    flow for ``answers`` (the menu answer added), floored by the topic flow's tier."""
    flows, rules = shipped()
    path = [flows.flows["intake"], flows.flows[topic]]
    flags = answer_flags(path, {"what": topic, **answers}, today)
    return triage(rules, flags, flows.flows[topic].tier)


def at_least(result: Triage, tier: str) -> bool:
    """``result`` is ``tier`` or more urgent."""
    return tier_rank(result.tier) <= tier_rank(tier)


def iso(days: int) -> str:
    """The ISO date ``days`` from TODAY (how the engine stores a date answer)."""
    return (TODAY + timedelta(days=days)).isoformat()


# --- research B4 on the shipped flows --------------------------------------------------------

# (topic flow, answers besides the menu, the least urgent tier allowed, a rule that must fire)
B4: list[tuple[str, Answers, str, str]] = [
    # critical: liberty or life, now; arrest in the last 24 hours
    ("danger_now", {}, "critical", "liberty-or-life-now"),
    ("danger_now", {"situation": "abduction"}, "critical", "liberty-or-life-now"),
    ("detention", {"when": "now"}, "critical", "liberty-or-life-now"),
    ("detention", {"when": "day"}, "critical", "detention-first-day"),
    ("detention", {"when": None}, "critical", "detention-timing-unknown"),
    ("attack", {"when": "now", "kind": "attack"}, "critical", "liberty-or-life-now"),
    ("attack", {"when": "now", "kind": "raid"}, "critical", "liberty-or-life-now"),
    (
        "someone_else",
        {"their_situation": "abduction", "when": "now"},
        "critical",
        "liberty-or-life-now",
    ),
    (
        "someone_else",
        {"their_situation": "detention", "when": "day"},
        "critical",
        "detention-first-day",
    ),
    # high: within 24 hours
    ("threat", {"threat_kind": "death", "when": "earlier"}, "high", "death-threat"),
    (
        "threat",
        {"threat_kind": "violence", "when": "week", "credible": "yes"},
        "high",
        "credible-threat-recent",
    ),
    ("threat", {"threat_kind": "family"}, "high", "family-threatened"),
    ("judicial", {"legal_kind": "summons"}, "high", "summons-or-warrant"),
    ("judicial", {"legal_kind": "warrant"}, "high", "summons-or-warrant"),
    ("judicial", {"legal_kind": "hearing", "hearing_date": iso(1)}, "high", "hearing-within-48h"),
    ("digital", {"incident": "device_seized"}, "high", "device-seized"),
    ("digital", {"incident": "account_takeover"}, "high", "account-takeover"),
    ("detention", {"when": "earlier", "devices": "taken"}, "high", "device-seized"),
    ("attack", {"when": "day", "kind": "attack"}, "high", "attack-last-day"),
    ("attack", {"when": None, "kind": "raid"}, "high", "attack-timing-unknown"),
    ("attack", {"when": "week", "health": "injured"}, "high", "injured"),
    ("relocation", {"urgency": "today"}, "high", "must-leave-today"),
    # medium: days
    ("relocation", {"urgency": "month"}, "medium", "relocation"),
    ("other", {"needs": "relocation"}, "medium", "relocation"),
    (
        "judicial",
        {"legal_kind": "hearing", "hearing_date": iso(10)},
        "medium",
        "hearing-within-two-weeks",
    ),
    ("judicial", {"legal_kind": "travel_ban"}, "medium", "judicial-harassment"),
    ("digital", {"incident": "suspicious", "when": "earlier"}, "medium", "digital-incident"),
    ("digital", {"incident": "other", "still_access": "no"}, "medium", "digital-incident"),
    ("detention", {"when": "week"}, "medium", "grave-event-earlier"),
    ("threat", {"threat_kind": "online", "when": "earlier"}, "medium", "grave-event-earlier"),
    ("other", {"needs": "legal,medical"}, "medium", "medical-or-psychosocial"),
]


@pytest.mark.parametrize(("topic", "answers", "tier", "rule_id"), B4)
def test_research_b4_table(topic: str, answers: Answers, tier: str, rule_id: str) -> None:
    """Each situation reaches at least its tier, and for the expected reason."""
    result = case(topic, answers)
    assert at_least(result, tier), result
    assert reason(rule_id) in result.reasons


@pytest.mark.parametrize(
    ("topic", "answers"),
    [
        ("detention", {"when": "now"}),
        ("detention", {"when": "day"}),
        ("attack", {"when": "now"}),
        ("danger_now", {"situation": "raid"}),
    ],
)
def test_now_and_first_day_are_critical_without_a_floor(topic: str, answers: Answers) -> None:
    """The rules alone (no flow floor) make detention, abduction, attack or raid now, and an
    arrest in the last 24 hours, critical."""
    flows, rules = shipped()
    path = [flows.flows["intake"], flows.flows[topic]]
    flags = answer_flags(path, {"what": topic, **answers}, TODAY)
    assert triage(rules, flags).tier == "critical"


def test_danger_now_pages_critical_on_the_menu_answer_alone() -> None:
    """At the open step of danger_now only the menu was answered: the menu's flags make it
    critical even without the flow's floor, gravest reason first."""
    flows, rules = shipped()
    path = [flows.flows["intake"], flows.flows["danger_now"]]
    flags = answer_flags(path, {"what": "danger_now"}, TODAY)
    assert {"now", "liberty_or_life"} <= flags
    result = triage(rules, flags)
    assert result == Triage("critical", (reason("liberty-or-life-now"),))


@pytest.mark.parametrize(
    ("topic", "answers"),
    [
        ("other", {"describe": "advice on a project", "where": "Lyon"}),
        ("other", {"needs": "legal,funds,advocacy"}),
        ("other", {"needs": None, "consent_store": "yes"}),
    ],
)
def test_advice_is_low(topic: str, answers: Answers) -> None:
    """A request for advice with no grave need stays at the default, low, with no reason."""
    assert case(topic, answers) == Triage("low", ())


def test_the_sos_floor_is_critical_with_no_answers() -> None:
    """An SOS case with no answers is critical through its floor alone, with no reasons."""
    flows, rules = shipped()
    sos = flows.flows["sos"]
    assert triage(rules, answer_flags([sos], {}, TODAY), sos.tier) == Triage("critical", ())


def test_reasons_of_a_grave_case_are_ordered_gravest_first() -> None:
    """An attack happening now with an injury and a relocation need lists the critical reason
    first, then the high ones, then the medium ones."""
    result = case("attack", {"when": "now", "health": "injured", "needs": "relocation"})
    assert result.tier == "critical"
    assert result.reasons == (
        reason("liberty-or-life-now"),
        reason("injured"),
        reason("relocation"),
        reason("grave-event-earlier"),
    )


# --- answer_flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hearing", "expected"),
    [
        (iso(-1), set()),  # passed
        (iso(0), {"hearing_48h", "hearing_2w"}),  # today
        (iso(1), {"hearing_48h", "hearing_2w"}),
        (iso(2), {"hearing_48h", "hearing_2w"}),
        (iso(3), {"hearing_2w"}),
        (iso(14), {"hearing_2w"}),
        (iso(15), set()),
        (iso(400), set()),
        (None, set()),  # skipped
        ("next week", set()),  # not a stored date: ignored
    ],
)
def test_hearing_date_windows(hearing: str | None, expected: set[str]) -> None:
    """Days 0-2 from today set hearing_48h and days 0-14 hearing_2w; past, far, skipped or
    unreadable dates set neither."""
    flows, _ = shipped()
    judicial = flows.flows["judicial"]
    flags = answer_flags([judicial], {"hearing_date": hearing}, TODAY)
    assert flags & {"hearing_48h", "hearing_2w"} == expected
    assert flags - {"hearing_48h", "hearing_2w"} == {"judicial"}


def test_hearing_windows_move_with_today() -> None:
    """The same stored date is within 48 hours only when today is close enough."""
    flows, _ = shipped()
    judicial = [flows.flows["judicial"]]
    answers = {"hearing_date": "2026-03-20"}
    assert "hearing_48h" in answer_flags(judicial, answers, date(2026, 3, 18))
    assert "hearing_48h" not in answer_flags(judicial, answers, date(2026, 3, 17))
    assert "hearing_2w" in answer_flags(judicial, answers, date(2026, 3, 6))
    assert "hearing_2w" not in answer_flags(judicial, answers, date(2026, 3, 5))
    assert not answer_flags(judicial, answers, date(2026, 3, 21)) & {"hearing_48h", "hearing_2w"}


def test_a_hearing_tomorrow_is_high_and_in_ten_days_medium() -> None:
    """The windows drive the tier: within 48 hours high, within two weeks medium only."""
    soon = case("judicial", {"legal_kind": "hearing", "hearing_date": iso(1)})
    later = case("judicial", {"legal_kind": "hearing", "hearing_date": iso(10)})
    assert soon.tier == "high"
    assert later.tier == "medium"
    assert reason("hearing-within-48h") not in later.reasons
    assert reason("hearing-within-two-weeks") in later.reasons


def test_answer_flags_options_skips_and_multi_selects() -> None:
    """An option sets its mapped flags; a skipped step sets its 'skipped' mapping; a step
    never asked sets nothing; a multi-select sets the flags of every option chosen; the
    flows' own flags are always set."""
    flows, _ = shipped()
    detention = [flows.flows["intake"], flows.flows["detention"]]
    assert answer_flags(detention, {"what": "detention"}, TODAY) == {"detention"}
    assert answer_flags(detention, {"when": "day"}, TODAY) == {"detention", "last_24h"}
    assert answer_flags(detention, {"when": None}, TODAY) == {"detention", "immediacy_unknown"}
    assert answer_flags(detention, {"needs": "legal,medical"}, TODAY) == {
        "detention",
        "needs_legal",
        "needs_medical",
    }
    assert answer_flags(detention, {"lawyer": "no"}, TODAY) == {"detention", "no_lawyer"}
    assert answer_flags(detention, {"where": "Kyiv", "charges": "x"}, TODAY) == {"detention"}
    assert answer_flags([flows.flows["other"]], {"legal_kind": "summons"}, TODAY) == {"advice"}
    assert answer_flags([], {"when": "now"}, TODAY) == frozenset()


def test_the_menu_answer_sets_flags_only_for_danger_now() -> None:
    """Of the menu's options only 'danger_now' sets flags itself; the others leave it to the
    topic flow's own flags."""
    flows, _ = shipped()
    menu = flows.flows["intake"]
    by_option = {o: answer_flags([menu], {"what": o}, TODAY) for o in menu.steps["what"].options}
    assert by_option.pop("danger_now") == {"now", "liberty_or_life"}
    assert set(by_option.values()) == {frozenset()}


# --- the shipped rules -----------------------------------------------------------------------


def test_shipped_rules_load_as_written() -> None:
    """triage.toml loads with default low and every rule as written, in file order."""
    _, rules = shipped()
    written = raw_rules()
    assert rules.default == "low"
    assert [r.id for r in rules.rules] == [w["id"] for w in written]
    for rule, raw in zip(rules.rules, written, strict=True):
        assert rule.tier == raw["tier"]
        assert rule.all_of == frozenset(raw.get("all", []))
        assert rule.any_of == frozenset(raw.get("any", []))
    assert {r.tier for r in rules.rules} == {"critical", "high", "medium"}


def independent_flags(flows: FlowSet) -> set[str]:
    """Every flag set somewhere, gathered step by step here rather than by all_flags."""
    found: set[str] = set()
    for flow in flows.flows.values():
        found |= set(flow.flags)
        for step in flow.steps.values():
            for mapped in step.flags.values():
                found |= set(mapped)
            found |= {window.flag for window in step.windows}
    return found


def test_every_flag_a_rule_names_is_set_somewhere() -> None:
    """Every flag of every shipped rule is set by some flow, option or date window."""
    flows, _ = shipped()
    settable = independent_flags(flows)
    assert all_flags(flows) == settable
    for raw in raw_rules():
        named = {*raw.get("all", []), *raw.get("any", [])}
        assert named <= settable, f"{raw['id']}: {named - settable}"


@pytest.mark.parametrize("rule_id", [str(r["id"]) for r in raw_rules()])
def test_every_shipped_rule_can_fire(rule_id: str) -> None:
    """A rule's own flags (its 'all' plus any one of its 'any') make it fire: its reason is
    given and its tier (or a more urgent one) reached. Without one of its 'all' flags, or
    without every 'any' flag, it does not fire."""
    _, rules = shipped()
    rule = next(r for r in rules.rules if r.id == rule_id)
    extras: list[str | None] = [*sorted(rule.any_of)] or [None]
    for extra in extras:
        flags = rule.all_of | ({extra} if extra else set())
        result = triage(rules, flags)
        assert rule.reason in result.reasons, extra
        assert tier_rank(result.tier) <= tier_rank(rule.tier)
    for missing in rule.all_of:
        assert not rule.matches(rule.all_of - {missing} | rule.any_of)
    if rule.any_of:
        assert not rule.matches(rule.all_of)


def test_every_shipped_rule_fires_on_real_answers() -> None:
    """Every rule fires for at least one case of the B4 table (reachable by real answers)."""
    fired = {rule_id for _, _, _, rule_id in B4}
    assert fired == {str(r["id"]) for r in raw_rules()}


def test_tier_rank_and_most_urgent() -> None:
    """critical ranks 0 and low 3; most_urgent picks the lowest rank."""
    assert [tier_rank(t) for t in ("critical", "high", "medium", "low")] == [0, 1, 2, 3]
    assert most_urgent("low", "medium", "high") == "high"
    assert most_urgent("low") == "low"


# --- properties ------------------------------------------------------------------------------

tiers = st.sampled_from(TIERS)


def flag_sets() -> st.SearchStrategy[frozenset[str]]:
    """Any set of flags the shipped flows can set, plus one nothing sets."""
    return st.frozensets(st.sampled_from(sorted(all_flags(shipped()[0]) | {"unheard_of"})))


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    """Arbitrary rules over a few flags (not only the shipped ones)."""
    names = st.sampled_from(["a", "b", "c", "d", "e"])
    rules = []
    for index in range(draw(st.integers(0, 6))):
        all_of = draw(st.frozensets(names, max_size=2))
        any_of = draw(st.frozensets(names, min_size=0 if all_of else 1, max_size=3))
        rules.append(Rule(f"r{index}", draw(tiers), f"reason {index}", all_of, any_of))
    return RuleSet(draw(tiers), tuple(rules))


def oracle(rules: RuleSet, flags: frozenset[str], floor: str | None) -> tuple[str, list[Rule]]:
    """What triage must say, computed independently: the matching rules and the tier."""
    matching = [
        r
        for r in rules.rules
        if all(f in flags for f in r.all_of) and (not r.any_of or any(f in flags for f in r.any_of))
    ]
    candidates = [rules.default, *([floor] if floor else []), *(r.tier for r in matching)]
    return min(candidates, key=TIERS.index), matching


@SETTINGS
@given(flags=flag_sets(), more=flag_sets(), floor=st.none() | tiers)
def test_adding_flags_never_lowers_the_tier(
    flags: frozenset[str], more: frozenset[str], floor: str | None
) -> None:
    """More flags are never less urgent, and never drop a reason already given."""
    rules = shipped()[1]
    before, after = triage(rules, flags, floor), triage(rules, flags | more, floor)
    assert tier_rank(after.tier) <= tier_rank(before.tier)
    assert set(before.reasons) <= set(after.reasons)


@SETTINGS
@given(rules=rule_sets(), flags=st.frozensets(st.sampled_from("abcdef")), more=st.text("abc"))
def test_adding_flags_never_lowers_any_rule_set(
    rules: RuleSet, flags: frozenset[str], more: str
) -> None:
    """Rules only raise, whatever the rules: adding flags never lowers the tier."""
    assert tier_rank(triage(rules, flags | set(more)).tier) <= tier_rank(triage(rules, flags).tier)


@SETTINGS
@given(flags=flag_sets(), floor=tiers)
def test_never_less_urgent_than_the_floor(flags: frozenset[str], floor: str) -> None:
    """The tier is never less urgent than the floor, nor than without it."""
    rules = shipped()[1]
    with_floor = triage(rules, flags, floor)
    assert tier_rank(with_floor.tier) <= tier_rank(floor)
    assert tier_rank(with_floor.tier) <= tier_rank(triage(rules, flags).tier)
    assert with_floor.reasons == triage(rules, flags).reasons


@SETTINGS
@given(flags=flag_sets(), floor=st.none() | tiers)
def test_tier_is_the_most_urgent_matching_rule(flags: frozenset[str], floor: str | None) -> None:
    """The tier is exactly the most urgent of the default, the floor and every matching rule,
    and the reasons are those of the matching rules."""
    rules = shipped()[1]
    tier, matching = oracle(rules, flags, floor)
    result = triage(rules, flags, floor)
    assert result.tier == tier
    assert sorted(result.reasons) == sorted(r.reason for r in matching)
    if matching and floor is None:
        assert result.tier == min((r.tier for r in matching), key=TIERS.index)


@SETTINGS
@given(rules=rule_sets(), flags=st.frozensets(st.sampled_from("abcdef")), floor=st.none() | tiers)
def test_tier_matches_the_oracle_for_any_rule_set(
    rules: RuleSet, flags: frozenset[str], floor: str | None
) -> None:
    """The same holds for arbitrary rule sets and defaults."""
    tier, matching = oracle(rules, flags, floor)
    result = triage(rules, flags, floor)
    assert result.tier == tier
    assert sorted(result.reasons) == sorted(r.reason for r in matching)


@SETTINGS
@given(rules=rule_sets(), flags=st.frozensets(st.sampled_from("abcdef")))
def test_reasons_are_ordered_gravest_first(rules: RuleSet, flags: frozenset[str]) -> None:
    """Reasons come in order of their rule's tier, most urgent first (file order within a
    tier)."""
    result = triage(rules, flags)
    _, matching = oracle(rules, flags, None)
    expected = sorted(matching, key=lambda r: TIERS.index(r.tier))  # stable: file order
    assert result.reasons == tuple(r.reason for r in expected)


@SETTINGS
@given(flags=flag_sets())
def test_shipped_reasons_are_ordered_gravest_first(flags: frozenset[str]) -> None:
    """With the shipped rules, the ranks of the reasons never decrease."""
    rules = shipped()[1]
    tier_of = {r.reason: r.tier for r in rules.rules}
    ranks = [tier_rank(tier_of[r]) for r in triage(rules, flags).reasons]
    assert ranks == sorted(ranks)


@st.composite
def conversations(draw: st.DrawFn) -> tuple[str, dict[str, str | None]]:
    """A topic flow and any answers to some of its questions (and the menu's)."""
    flows = shipped()[0]
    topic = draw(
        st.sampled_from(sorted(f.id for f in flows.flows.values() if f.kind is FlowKind.TOPIC))
    )
    answers: dict[str, str | None] = {"what": topic}
    for step in flows.flows[topic].steps.values():
        if step.type in (StepType.END, StepType.OPEN) or not draw(st.booleans()):
            continue
        if step.type is StepType.CHOICE:
            answers[step.id] = draw(st.sampled_from([None, *step.options]))
        elif step.type is StepType.MULTI:
            chosen = draw(st.lists(st.sampled_from(step.options), unique=True, max_size=3))
            answers[step.id] = ",".join(chosen) or None
        elif step.type is StepType.YESNO:
            answers[step.id] = draw(st.sampled_from([None, "yes", "no"]))
        elif step.type is StepType.DATE:
            answers[step.id] = draw(st.none() | st.integers(-5, 30).map(iso))
        else:
            answers[step.id] = draw(st.none() | st.text(max_size=10))
    return topic, answers


@SETTINGS
@given(conversation=conversations(), data=st.data())
def test_answering_more_never_lowers_a_real_case(
    conversation: tuple[str, dict[str, str | None]], data: st.DataObject
) -> None:
    """Over the real flows, the answers given so far never triage more urgently than all of
    them: answering more questions can only raise a case. Every flag set is a known flag."""
    topic, answers = conversation
    keys = list(answers)
    kept = data.draw(st.lists(st.sampled_from(keys), unique=True)) if keys else []
    partial = {k: answers[k] for k in kept}
    full, part = case(topic, answers), case(topic, partial)
    assert tier_rank(full.tier) <= tier_rank(part.tier)
    flows = shipped()[0]
    path = [flows.flows["intake"], flows.flows[topic]]
    assert answer_flags(path, answers, TODAY) <= all_flags(flows)


@SETTINGS
@given(conversation=conversations())
def test_skipping_is_never_ignored_where_a_skip_is_mapped(
    conversation: tuple[str, dict[str, str | None]],
) -> None:
    """Wherever a question maps 'skipped' to flags, a skipped answer sets them."""
    flows = shipped()[0]
    topic, answers = conversation
    path = [flows.flows["intake"], flows.flows[topic]]
    flags = answer_flags(path, answers, TODAY)
    for step_id, value in answers.items():
        step = flows.flows[topic].steps.get(step_id)
        if step is not None and value is None and SKIPPED in step.flags:
            assert set(step.flags[SKIPPED]) <= flags


# --- invalid rules ---------------------------------------------------------------------------

HEADER = 'spec_version = 1\ndefault = "low"\n'
NOW_RULE = '[[rules]]\nid = "r"\ntier = "high"\nreason = "r"\nall = ["now"]\n'


def write_rules(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    """Write a triage.toml with ``header`` and ``body`` into tmp_path and return its path."""
    path = tmp_path / "triage.toml"
    path.write_text(header + body, encoding="utf-8")
    return path


def refused(tmp_path: Path) -> list[str]:
    """Load tmp_path's triage.toml, which must be refused, and return its problems."""
    with pytest.raises(FlowError) as info:
        load_rules(tmp_path, shipped()[0])
    return info.value.problems


def test_a_valid_custom_rule_loads(tmp_path: Path) -> None:
    """A well-formed rule file loads; reasons are trimmed; 'any' alone is enough."""
    write_rules(
        tmp_path,
        '[[rules]]\nid = "ok-rule"\ntier = "high"\nreason = " r "\nany = ["now", "summons"]\n',
    )
    loaded = load_rules(tmp_path, shipped()[0])
    assert loaded == RuleSet(
        "low", (Rule("ok-rule", "high", "r", frozenset(), frozenset({"now", "summons"})),)
    )
    assert triage(loaded, {"summons"}).tier == "high"
    assert triage(loaded, {"warrant"}).tier == "low"


def test_a_flag_nothing_sets_is_refused(tmp_path: Path) -> None:
    """A rule naming a flag no flow, option or date window sets is refused, naming the rule
    and the flag (in 'all' and in 'any')."""
    path = write_rules(
        tmp_path,
        '[[rules]]\nid = "typo"\ntier = "high"\nreason = "r"\nall = ["now"]\n'
        'any = ["detention", "detained"]\n',
    )
    assert refused(tmp_path) == [
        f"{path}: rule 'typo': flag 'detained' is set by no flow, option or date window"
    ]


def test_the_old_format_is_refused(tmp_path: Path) -> None:
    """The old triage file (`flow = "intake"`, `when = {step = [answers]}`) is refused with
    the keys named."""
    path = write_rules(
        tmp_path,
        '[[rules]]\nid = "old"\ntier = "high"\nreason = "r"\nwhen = { when = ["now"] }\n',
        header='spec_version = 1\nflow = "intake"\ndefault = "low"\n',
    )
    assert refused(tmp_path) == [
        f"{path}: unknown key 'flow'",
        f"{path}: rule 'old': only id, tier, reason, all and any are allowed",
        f"{path}: rule 'old': a rule needs flags in 'all' or 'any'",
    ]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            NOW_RULE.replace('"high"', '"urgent"'),
            "'tier' must be one of critical, high, medium, low",
        ),
        (NOW_RULE.replace('reason = "r"', 'reason = " "'), "'reason' must be a short text"),
        (NOW_RULE.replace('id = "r"', 'id = "Bad Id"'), "'id' must be a unique lowercase slug"),
        (NOW_RULE.replace('["now"]', '"now"'), "'all' must be a list of flag names"),
        (NOW_RULE.replace('all = ["now"]', "any = []"), "a rule needs flags in 'all' or 'any'"),
    ],
)
def test_bad_rule_is_refused_naming_it(tmp_path: Path, rule: str, problem: str) -> None:
    """Each malformed rule is refused naming the file and the rule."""
    path = write_rules(tmp_path, rule)
    name = "Bad Id" if "Bad Id" in rule else "r"
    assert f"{path}: rule {name!r}: {problem}" in refused(tmp_path)


def test_duplicate_rule_id(tmp_path: Path) -> None:
    """Two rules with one id are refused naming the rule."""
    path = write_rules(tmp_path, NOW_RULE + NOW_RULE)
    assert refused(tmp_path) == [f"{path}: rule 'r': 'id' must be a unique lowercase slug"]


def test_unknown_default(tmp_path: Path) -> None:
    """An unknown default tier is refused naming the file."""
    path = write_rules(tmp_path, NOW_RULE, header='spec_version = 1\ndefault = "meh"\n')
    assert refused(tmp_path) == [f"{path}: 'default' must be one of critical, high, medium, low"]


def test_wrong_spec_version(tmp_path: Path) -> None:
    """A rule file for another spec_version is refused."""
    path = write_rules(tmp_path, NOW_RULE, header="spec_version = 2\n")
    assert refused(tmp_path) == [f"{path}: spec_version must be 1"]


def test_missing_rules_file(tmp_path: Path) -> None:
    """A missing triage.toml is refused naming the file."""
    assert refused(tmp_path) == [f"{tmp_path / 'triage.toml'}: file not found"]


def test_rule_not_a_table(tmp_path: Path) -> None:
    """A rules list of plain strings is refused naming the file."""
    path = write_rules(tmp_path, 'rules = ["oops"]\n')
    assert refused(tmp_path) == [f"{path}: rule #1 must be a table"]


def test_shipped_file_copy_loads(tmp_path: Path) -> None:
    """A copy of the shipped triage.toml loads from another directory unchanged."""
    write_rules(tmp_path, (FLOWS_DIR / "triage.toml").read_text(encoding="utf-8"), header="")
    assert load_rules(tmp_path, shipped()[0]) == shipped()[1]
