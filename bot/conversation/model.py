"""Flows as data: the frozen types flow files are loaded into.

A flow is a list of steps (single choice, multi-select, free text, date, yes/no, open-a-case,
end) with conditional next steps; a next step may also enter another flow (``@flow``). Steps
can reuse a question from the shared library (``questions.toml``). Options carry triage
flags; the triage rules map flag combinations to tiers. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bot.core.bidi import localise

SPEC_VERSION = 1
SKIPPED = "skipped"  # how a skipped answer is named in conditions and triage mappings
FLOW_PREFIX = "@"  # a next step "@detention" enters the flow "detention"
MULTI_SEPARATOR = ","  # a multi-select answer is stored as "legal,medical"


class StepType(StrEnum):
    """What kind of answer a step waits for (OPEN and END wait for nothing)."""

    CHOICE = "choice"
    MULTI = "multi"
    TEXT = "text"
    DATE = "date"
    YESNO = "yesno"
    OPEN = "open"
    END = "end"


class Outcome(StrEnum):
    """What reaching an end step means."""

    SUBMIT = "submit"  # open a case from the answers (or finish the case opened earlier)
    DISCARD = "discard"  # forget the answers
    CLOSE = "close"  # nothing more to do (SOS follow-ups)


class FlowKind(StrEnum):
    """How the conversation service treats a flow."""

    INTAKE = "intake"  # the entry menu: exactly one
    TOPIC = "topic"  # a situation's questions, entered from the menu
    SOS = "sos"  # the one-word alarm: exactly one


def selected(value: str | None) -> tuple[str, ...]:
    """Return the option ids of an answer: one for a choice, several for a multi-select,
    none when skipped."""
    if value is None:
        return ()
    return tuple(part for part in value.split(MULTI_SEPARATOR) if part)


@dataclass(frozen=True, slots=True)
class Branch:
    """Go to ``goto`` when every condition holds: an answer of step ``k`` is one of ``v``.

    ``goto`` is a step id of the same flow, or ``@flow`` to enter another flow.
    """

    goto: str
    conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def matches(self, answers: Mapping[str, str | None]) -> bool:
        """Return True when every condition holds for ``answers``: a skipped or unasked step
        reads as SKIPPED; a multi-select matches when any option it holds is accepted."""
        for step_id, accepted in self.conditions.items():
            values = selected(answers.get(step_id)) or (SKIPPED,)
            if not any(value in accepted for value in values):
                return False
        return True


@dataclass(frozen=True, slots=True)
class DateWindow:
    """A date answer within ``days`` days from today (0 = today) sets ``flag``."""

    days: int
    flag: str


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a flow.

    Attributes:
        id: stable slug, unique across the entry flow and the flow it enters.
        type: the answer it waits for.
        options: option ids of a choice or multi-select, in display order.
        branches: next steps, tried in order; the last has no conditions. Empty for END.
        append: for SOS follow-ups, add the answer to the open case at once.
        outcome: for END steps, what reaching it means.
        text_key: the key of its prompt (its id, or the library question it uses).
        flags: triage flags per option id (and ``skipped``); empty when it does not triage.
        windows: for DATE steps, triage flags set by how soon the date is.
        max_length: for TEXT steps, the longest answer kept.
    """

    id: str
    type: StepType
    options: tuple[str, ...] = ()
    branches: tuple[Branch, ...] = ()
    append: bool = False
    outcome: Outcome | None = None
    text_key: str = ""
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    windows: tuple[DateWindow, ...] = ()
    max_length: int | None = None

    @property
    def key(self) -> str:
        """The text key of the step's prompt and (with ``.option``) its options."""
        return self.text_key or self.id

    def next_step(self, answers: Mapping[str, str | None]) -> str:
        """Return the id (or ``@flow``) of what follows, given the answers so far."""
        for branch in self.branches:
            if branch.matches(answers):
                return branch.goto
        raise LookupError(f"step {self.id!r} has no branch for these answers")  # loader forbids


@dataclass(frozen=True, slots=True)
class Flow:
    """A validated flow definition.

    Attributes:
        id: the flow's id.
        kind: how the service treats it.
        start: the first step id.
        steps: steps by id.
        texts: key -> English source text (translations live in the message catalogs).
        tier: the lowest tier a case opened by this flow can have (SOS: critical).
        flags: triage flags every case of this flow carries.
        source: the file it was loaded from, for messages.
    """

    id: str
    kind: FlowKind
    start: str
    steps: Mapping[str, Step]
    texts: Mapping[str, str]
    tier: str | None = None
    flags: tuple[str, ...] = ()
    source: str = ""


class Translations:
    """Looks up the translation of an English source text; the default has none."""

    def translate(self, language: str, context: str, source: str) -> str | None:
        """Return the translation of ``source`` (known by ``context``) in ``language``, or
        None when there is none."""
        return None

    def languages(self) -> tuple[str, ...]:
        """Return the languages translations exist for."""
        return ()


@dataclass(frozen=True, slots=True)
class Catalog:
    """Texts and words that belong to no single flow, as English sources.

    Attributes:
        texts: key -> English text (system messages, the question library's prompts).
        words: key (``skip_words``, ``yes_words``, ``no_words``, ``today_words``,
            ``tomorrow_words``) -> English words, comma separated.
        sos_words: language -> the words that raise an alarm, casefolded.
        languages: the languages offered, the default first, each with its own name.
        default_language: the language every text exists in.
    """

    texts: Mapping[str, str]
    words: Mapping[str, str]
    sos_words: Mapping[str, tuple[str, ...]]
    languages: Mapping[str, str]
    default_language: str = "en"


class _Params(dict[str, object]):
    """Format parameters that leave an unknown ``{name}`` as it is instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class TextSource:
    """Where a text comes from: the catalog context it is translated under, and its
    English source."""

    context: str
    english: str


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Everything the conversation engine needs: the flows, the question library, the
    shared catalog and the translations."""

    flows: Mapping[str, Flow]
    catalog: Catalog
    question_texts: Mapping[str, str] = field(default_factory=dict)
    translations: Translations = field(default_factory=Translations)

    def by_kind(self, kind: FlowKind) -> Flow:
        """Return the first flow of the given kind (the loader guarantees one intake and
        one SOS flow)."""
        for flow in self.flows.values():
            if flow.kind is kind:
                return flow
        raise LookupError(f"no {kind.value} flow loaded")

    def source(self, key: str, flow: Flow | None = None) -> TextSource:
        """Return where text ``key`` comes from: the flow's own texts first, then the
        question library, then the shared catalog. Raises KeyError for an unknown key."""
        if flow is not None and key in flow.texts:
            return TextSource(f"{flow.id}:{key}", flow.texts[key])
        if key in self.question_texts:
            return TextSource(f"questions:{key}", self.question_texts[key])
        if key in self.catalog.texts:
            return TextSource(f"messages:{key}", self.catalog.texts[key])
        raise KeyError(f"no text {key!r}")  # the loader checks every key the engine uses

    def text(self, language: str, key: str, flow: Flow | None = None, **params: object) -> str:
        """Return text ``key`` in ``language`` (the English source when it has no
        translation) with ``params`` filled in. Right-to-left languages get their embedded
        left-to-right tokens (references, numbers, URLs) wrapped in directional isolates."""
        found = self.source(key, flow)
        translated = self.translations.translate(language, found.context, found.english)
        text = (translated or found.english).format_map(_Params(params))
        return localise(text, language)

    def words(self, language: str, key: str) -> tuple[str, ...]:
        """Return the casefolded words for ``key`` in ``language`` plus the English ones."""
        english = self.catalog.words.get(key, "")
        own = self.translations.translate(language, f"words:{key}", english) or ""
        found: list[str] = []
        for word in (*own.split(","), *english.split(",")):
            folded = word.strip().casefold()
            if folded and folded not in found:
                found.append(folded)
        return tuple(found)
