"""Errors an operator sees. Every message names what is wrong and what to do; none contains a
token, phone number, platform id or anything a defender wrote.

    IntakeError
    ├── ChannelStartError   a channel cannot start (platform unreachable, wrong mode, bad token)
    └── (configuration, flow and key errors live next to their loaders:
         bot.config.ConfigError, bot.conversation.loader.FlowError, db.crypto.CryptoError)
"""

from __future__ import annotations


class IntakeError(Exception):
    """Base of the errors that stop ``intake`` with a message instead of a traceback."""


class ChannelStartError(IntakeError):
    """A channel could not start; the message says why and how to fix it."""
