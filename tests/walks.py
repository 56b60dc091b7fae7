"""Answer sequences that walk the shipped flows to a known outcome, for tests that need a
case of a given kind without caring about each question (each flow's own questions are
checked by the golden transcripts in tests/golden/)."""

from __future__ import annotations

# "Something else or advice" (menu 9): describe, where, needs, work, referrer, contact,
# consent to store → a LOW case.
LOW_ADVICE = (
    "/start",
    "9",
    "I need advice on phone security",
    "skip",
    "0",
    "skip",
    "skip",
    "skip",
    "yes",
)

# "Threats" (menu 4): a death threat received today → HIGH. Kind, when, credible,
# perpetrator, where, dependants, needs, work, referrer, contact, others, consents.
HIGH_THREAT = (
    "/start",
    "4",
    "1",
    "2",
    "yes",
    "0",
    "Kharkiv",
    "0",
    "0",
    "skip",
    "skip",
    "skip",
    "skip",
    "yes",
    "no",
    "no",
    "no",
    "no",
)

# "Someone is in danger RIGHT NOW" (menu 1): the case opens with the first answer.
DANGER_NOW_FIRST = ("/start", "1")
