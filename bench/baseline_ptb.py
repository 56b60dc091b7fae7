"""The baseline, written the way most people would: a python-telegram-bot 22 bot with a
``ConversationHandler`` of five choice steps and ``PicklePersistence`` (defaults: the pickle
is written every 60 s and at shutdown), polling the same fake Bot API as bench_intake.py.

    .venv/bin/python bench/baseline_ptb.py [--users 20] [--steps 5] [--concurrency 4]

Same driver and timing as bench/bench_intake.py (answer queued at the fake → reply stored by
the fake). Note what it does not do that ours does: no database, no encryption, no inbox
de-duplication, no outbox (a reply lost on a crash is lost), no case or paging.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    filters,
)

from bench.bench_intake import ReplyWatch, converse
from tests.fakes.telegram_api import TOKEN

QUESTIONS = [
    ("What is happening?", ["Danger now", "Detention", "Attack", "Threat", "Other"]),
    ("Where are you?", ["Home", "Work", "Street", "Detention centre", "Other"]),
    ("Since when?", ["Less than an hour", "Today", "This week", "Longer", "Don't know"]),
    ("Who is involved?", ["Police", "Security service", "Unknown people", "Other"]),
    ("Can we call you?", ["Yes", "No", "Only by message"]),
]
DONE = "Thank you. A responder will contact you."


def ask(index: int) -> str:
    """The text of question ``index`` with its numbered options."""
    question, options = QUESTIONS[index]
    lines = [question] + [f"{n}. {option}" for n, option in enumerate(options, 1)]
    return "\n".join(lines)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    """First contact: greet and ask question 0."""
    assert update.message is not None and context.user_data is not None
    context.user_data["answers"] = []
    await update.message.reply_text(ask(0))
    return 0


def step(index: int) -> Any:
    """The handler of question ``index``: validate the choice, store it, ask the next."""

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None and update.message.text is not None
        assert context.user_data is not None
        options = QUESTIONS[index][1]
        text = update.message.text.strip()
        if not text.isdigit() or not 1 <= int(text) <= len(options):
            await update.message.reply_text(f"Please answer 1 to {len(options)}.\n{ask(index)}")
            return index
        context.user_data.setdefault("answers", []).append(options[int(text) - 1])
        if index + 1 == len(QUESTIONS):
            await update.message.reply_text(DONE)
            return ConversationHandler.END
        await update.message.reply_text(ask(index + 1))
        return index + 1

    return answer


def build(base_url: str, pickle: Path) -> Application[Any, Any, Any, Any, Any, Any]:
    """The bot: one ConversationHandler, PicklePersistence, pointed at ``base_url``."""
    text = filters.TEXT & ~filters.COMMAND
    conversation = ConversationHandler(
        entry_points=[CommandHandler("start", start), MessageHandler(text, start)],
        states={i: [MessageHandler(text, step(i))] for i in range(len(QUESTIONS))},
        fallbacks=[],
        name="intake",
        persistent=True,
    )
    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(base_url)
        .persistence(PicklePersistence(filepath=pickle))
        .build()
    )
    application.add_handler(conversation)
    return application


async def baseline(users: int, steps: int, concurrency: int) -> dict[str, float]:
    """Run the PTB bot against a fresh fake and drive it like ours; return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        async with ReplyWatch() as fake:
            application = build(fake.base_url, Path(tmp) / "bot.pickle")
            await application.initialize()
            assert application.updater is not None
            await application.updater.start_polling(poll_interval=0.0, timeout=10)
            await application.start()
            try:
                # "1" is valid at every step: a first message, then `steps` answers
                figures = await converse(fake, users, steps, concurrency, answer="1")
            finally:
                await application.updater.stop()
                await application.stop()
                await application.shutdown()
    return figures


async def main(users: int, steps: int, concurrency: int) -> dict[str, float]:
    """Run the baseline alone and print its line."""
    logging.basicConfig(level=logging.WARNING)
    figures = await baseline(users, steps, concurrency)
    print(
        f"intake via telegram, ptb   n={figures['steps']:<5.0f} "
        f"{figures['steps_per_s']:7.0f} steps/s  p50={figures['step_p50_ms']:7.2f}ms "
        f"p99={figures['step_p99_ms']:7.2f}ms"
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.users, arguments.steps, arguments.concurrency))
