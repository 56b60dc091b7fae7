"""Flows as data: the frozen types a flow file is loaded into.

A flow is a list of steps (choice with numbered options, free text, yes/no, end) with
conditional next steps, plus a table of texts per language. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

SPEC_VERSION = 1
SKIPPED = "skipped"  # how a skipped answer is named in conditions and triage rules


class StepType(StrEnum):
    """What kind of answer a step waits for."""

    CHOICE = "choice"
    TEXT = "text"
    YESNO = "yesno"
    END = "end"


class Outcome(StrEnum):
    """What reaching an end step means."""

    SUBMIT = "submit"  # open a case from the answers
    DISCARD = "discard"  # forget the answers
    CLOSE = "close"  # nothing more to do (SOS follow-ups)


class FlowKind(StrEnum):
    """How the conversation service treats a flow."""

    INTAKE = "intake"
    SOS = "sos"


@dataclass(frozen=True, slots=True)
class Branch:
    """Go to ``goto`` when every condition holds: answer of step ``k`` is one of ``v``."""

    goto: str
    conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def matches(self, answers: Mapping[str, str | None]) -> bool:
        """Return True when every condition holds for ``answers`` (skipped reads as SKIPPED)."""
        for step_id, accepted in self.conditions.items():
            value = answers.get(step_id)
            if (value if value is not None else SKIPPED) not in accepted:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a flow.

    Attributes:
        id: stable slug, also the text key of the step's prompt.
        type: the answer it waits for.
        options: option ids of a choice step, in display order.
        branches: next steps, tried in order; the last has no conditions. Empty for END.
        append: for SOS follow-ups, add the answer to the open case at once.
        outcome: for END steps, what reaching it means.
    """

    id: str
    type: StepType
    options: tuple[str, ...] = ()
    branches: tuple[Branch, ...] = ()
    append: bool = False
    outcome: Outcome | None = None

    def next_step(self, answers: Mapping[str, str | None]) -> str:
        """Return the id of the step that follows, given the answers so far."""
        for branch in self.branches:
            if branch.matches(answers):
                return branch.goto
        raise LookupError(f"step {self.id!r} has no branch for these answers")  # loader forbids


@dataclass(frozen=True, slots=True)
class Flow:
    """A validated flow definition.

    Attributes:
        id: the flow's id (the file's stem).
        kind: how the service treats it.
        start: the first step id.
        steps: steps by id.
        texts: language code -> text key -> text.
        tier: the lowest tier a case opened by this flow can have (SOS: critical).
        source: the file it was loaded from, for messages.
    """

    id: str
    kind: FlowKind
    start: str
    steps: Mapping[str, Step]
    texts: Mapping[str, Mapping[str, str]]
    tier: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Catalog:
    """Texts and words that belong to no single flow, per language.

    Attributes:
        texts: language -> key -> text.
        words: language -> key (``sos_words``, ``skip_words``, ``yes_words``, ``no_words``) ->
            the words, casefolded.
        default_language: the language every text must exist in, used when a text is missing.
    """

    texts: Mapping[str, Mapping[str, str]]
    words: Mapping[str, Mapping[str, tuple[str, ...]]]
    default_language: str


class _Params(dict[str, object]):
    """Format parameters that leave an unknown ``{name}`` as it is instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Everything the conversation engine needs: the flows and the shared catalog."""

    flows: Mapping[str, Flow]
    catalog: Catalog

    def by_kind(self, kind: FlowKind) -> Flow:
        """Return the flow of the given kind (the loader guarantees there is exactly one)."""
        for flow in self.flows.values():
            if flow.kind is kind:
                return flow
        raise LookupError(f"no {kind.value} flow loaded")

    def text(self, language: str, key: str, flow: Flow | None = None, **params: object) -> str:
        """Return the text ``key`` in ``language`` (falling back to the default language),
        looked up in ``flow`` first and then in the shared catalog, with ``params`` filled in.
        """
        default = self.catalog.default_language
        tables: list[Mapping[str, str]] = []
        if flow is not None:
            tables += [flow.texts.get(language, {}), flow.texts.get(default, {})]
        tables += [self.catalog.texts.get(language, {}), self.catalog.texts.get(default, {})]
        for table in tables:
            if key in table:
                return table[key].format_map(_Params(params))
        raise KeyError(f"no text {key!r}")  # the loader checks every key the engine uses

    def words(self, language: str, key: str) -> tuple[str, ...]:
        """Return the casefolded words for ``key`` in ``language`` plus the default language's."""
        own = self.catalog.words.get(language, {}).get(key, ())
        default = self.catalog.words.get(self.catalog.default_language, {}).get(key, ())
        return own + tuple(w for w in default if w not in own)
