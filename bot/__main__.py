"""``python -m bot`` is the ``intake`` command."""

from bot.cli import main

main()
