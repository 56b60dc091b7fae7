"""Channel-neutral message vocabulary shared by channels, router and services.

Nothing here knows about a platform SDK or the database: a channel turns platform events
into :class:`InboundMessage` and :class:`OutboundMessage` into platform calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum


@dataclass(frozen=True, slots=True)
class Address:
    """Where a person can be reached: a channel name and that channel's identity for them.

    ``identity`` is a platform identifier (phone number, Telegram id, console speaker name) and
    therefore confidential: it is only ever stored encrypted or as a keyed pseudonym.
    """

    channel: str
    identity: str

    def __repr__(self) -> str:  # never print the identity by accident
        return f"Address(channel={self.channel!r}, identity=<redacted>)"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as a channel received it.

    Attributes:
        sender: who wrote it (Signal: the sender's ACI uuid, which is always present).
        text: what they wrote, untrimmed and unfiltered (the router cleans it). For a button
            press, the pressed button's label.
        dedup_key: the platform's unique key for this message (Telegram ``update_id``,
            Signal ``sourceUuid:timestamp``, console run id and line number); a message whose
            key was seen before is processed once only.
        received_at: when the channel received it.
        aliases: other addresses of the same sender (Signal: their phone number, when the
            platform shows it), so that a responder configured by number is recognised.
        platform_message_id: the platform's id of the message in its chat (Telegram
            ``message_id``), so the conversation can be deleted from the chat later.
        button: the data of the inline button pressed, if this is a button press.
        language_hint: the language the sender's app is set to (Telegram ``language_code``).
    """

    sender: Address
    text: str
    dedup_key: str
    received_at: datetime
    aliases: tuple[Address, ...] = ()
    platform_message_id: str | None = None
    button: str | None = None
    language_hint: str | None = None

    def __repr__(self) -> str:
        return f"InboundMessage(channel={self.sender.channel!r}, dedup_key=<redacted>)"


class Priority(IntEnum):
    """Outbox order: higher values are sent first."""

    NOTICE = 10
    PAGE = 50
    URGENT = 100  # critical pages and replies to defenders


@dataclass(frozen=True, slots=True)
class Choice:
    """A button offered with a question: its label and the data it sends back when pressed.

    Channels without buttons ignore choices: the question text always numbers the options.
    """

    label: str
    data: str


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One thing to deliver, as the outbox sender hands it to a channel.

    Attributes:
        recipient: where to deliver it.
        text: the final text (already rendered in the recipient's language).
        outbox_id: the outbox row it comes from, for logs and idempotency.
        repeat: True when an earlier attempt's outcome is unknown and this is the one resend.
        kind: ``page``, ``reply`` (to a defender or responder), ``relay``, ``notice``, or
            ``scrub`` (delete ``delete_ids`` from the chat, then send ``text`` if not empty).
        priority: the outbox priority (see :class:`Priority`); channels that must queue or
            throttle serve higher values first.
        choices: buttons to offer with the text.
        delete_ids: for ``scrub``, the platform message ids to delete.
        to_defender: True when the recipient is a defender (Signal sets the disappearing
            timer on defender conversations).
    """

    recipient: Address
    text: str
    outbox_id: str
    repeat: bool = False
    kind: str = "reply"
    priority: int = 100
    choices: tuple[Choice, ...] = ()
    delete_ids: tuple[str, ...] = ()
    to_defender: bool = False

    def __repr__(self) -> str:
        return f"OutboundMessage(outbox_id={self.outbox_id!r}, repeat={self.repeat})"


class DeliveryError(Exception):
    """Base of the errors a channel raises from ``send``; the outbox sender classifies them."""


class DeliveryRetry(DeliveryError):
    """The message certainly did not arrive (refused connection, 429, 5xx): try again later.

    Attributes:
        retry_after: seconds the platform asked us to wait, if it said.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class DeliveryRefused(DeliveryError):
    """The platform refused the message for good (400, 403, unknown recipient)."""


class DeliveryUnknown(DeliveryError):
    """The request may or may not have arrived (timeout after sending, dropped connection)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a channel reports after delivering: the platform's message ids (Telegram
    ``message_id``, Signal ``timestamp``), kept so the conversation can be deleted later."""

    message_ids: tuple[str, ...] = ()
