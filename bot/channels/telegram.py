"""The Telegram channel: python-telegram-bot as the transport, inside our own asyncio program.

PTB's ``Application`` is built without an Updater, handlers, persistence or JobQueue: we call
``initialize()``/``shutdown()`` ourselves and use ``application.bot`` for API calls, because
PTB's Updater confirms updates before they are processed. Here an update is confirmed to
Telegram only after ``handle`` returned, i.e. once it is stored in the encrypted inbox:

- polling: ``getUpdates(offset)`` in a background task; the offset moves past an update only
  after ``handle`` returned for it, and the next ``getUpdates`` (or the one ``stop`` sends)
  confirms it. If ``handle`` fails, the update is fetched again after a back-off; the inbox
  de-duplicates by ``update:<update_id>``.
- webhook: an aiohttp server answers Telegram 200 only after ``handle`` returned (500 makes
  Telegram retry).

Sending maps every platform failure to the outbox's three outcomes (retry, refused, unknown)
and throttles locally (1 message/s per chat, 30/s overall) by refusing with a ``retry_after``
rather than sleeping, so the durable outbox reschedules.

Logs carry event names and ids only: never the token, a chat or user id, a name or a text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder

from bot.config import TelegramConfig
from bot.core.clock import Clock, SystemClock
from bot.core.health import ReceiveHealth
from bot.core.messages import (
    Address,
    Delivered,
    DeliveryError,
    DeliveryRefused,
    DeliveryRetry,
    DeliveryUnknown,
    InboundMessage,
    OutboundMessage,
)
from bot.core.ports import Handler
from bot.errors import ChannelStartError

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query")
"""The update kinds we ask Telegram for (sticky on Telegram's side)."""
MAX_TEXT = 4096  # Bot API: 1-4096 characters (UTF-16 code units) after entity parsing
MAX_CALLBACK_DATA = 64  # Bot API: 1-64 bytes
DELETE_CHUNK = 100  # deleteMessages takes 1-100 ids
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
BACKOFF_START = 0.5
# Short on purpose: defenders must be heard within seconds of Telegram (or our database)
# coming back, and one getUpdates every 5 s against a server that is down costs nothing.
BACKOFF_MAX = 5.0
UNAUTHORIZED_PAUSE = 60.0  # a revoked token needs an operator, not a tight loop
_IDLE_PAUSE = 1.0  # after an empty long poll that returned suspiciously fast
# Service messages in a private chat that are nothing the person said to us.
_SERVICE_FIELDS = ("message_auto_delete_timer_changed", "pinned_message", "write_access_allowed")
_OTHER_KINDS = (
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
    "inline_query",
    "chosen_inline_result",
    "my_chat_member",
    "chat_member",
    "message_reaction",
)

_App = Application[Any, Any, Any, Any, Any, Any]


# ---------------------------------------------------------------------------- updates


@dataclass(frozen=True, slots=True)
class _Mapped:
    """One update, mapped: the message to hand over, or why there is none."""

    update_id: int | None
    message: InboundMessage | None = None
    callback_id: str | None = None
    ignored: str | None = None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _button_label(message: dict[str, Any] | None, data: str) -> str:
    """Return the text of the inline button carrying ``data`` in ``message``, or ""."""
    markup = _dict(message.get("reply_markup")) if message else None
    rows = markup.get("inline_keyboard") if markup else None
    if not isinstance(rows, list):
        return ""
    for row in rows:
        for button in row if isinstance(row, list) else ():
            if isinstance(button, dict) and button.get("callback_data") == data:
                label = button.get("text")
                return label if isinstance(label, str) else ""
    return ""


def _map_update(raw: object, now: datetime) -> _Mapped:
    """Turn one raw Bot API update (JSON object) into what to hand over.

    Works on the JSON itself rather than PTB's ``Update`` so that an update PTB cannot parse
    never stalls the queue or gets logged with its content by PTB.
    """
    update = _dict(raw)
    update_id = _int(update.get("update_id")) if update else None
    if update is None or update_id is None:
        return _Mapped(None, ignored="unreadable")
    key = f"update:{update_id}"
    if "message" in update:
        message = _dict(update["message"])
        chat = _dict(message.get("chat")) if message else None
        chat_id = _int(chat.get("id")) if chat else None
        if message is None or chat is None or chat_id is None:
            return _Mapped(update_id, ignored="unreadable")
        if chat.get("type") != "private":
            return _Mapped(update_id, ignored="not_private")
        if any(name in message for name in _SERVICE_FIELDS):
            return _Mapped(update_id, ignored="service")
        text = message.get("text")
        if not isinstance(text, str):
            text = message.get("caption")  # a photo or document with words: keep the words
        message_id = _int(message.get("message_id"))
        return _Mapped(
            update_id,
            InboundMessage(
                sender=Address("telegram", str(chat_id)),
                text=text if isinstance(text, str) else "",  # voice, sticker...: ""
                dedup_key=key,
                received_at=now,
                platform_message_id=None if message_id is None else str(message_id),
                language_hint=_language_code(_dict(message.get("from"))),
            ),
        )
    if "callback_query" in update:
        query = _dict(update["callback_query"])
        query_id = query.get("id") if query else None
        callback_id = query_id if isinstance(query_id, str) else None
        user = _dict(query.get("from")) if query else None
        user_id = _int(user.get("id")) if user else None
        if query is None or user_id is None:
            return _Mapped(update_id, callback_id=callback_id, ignored="unreadable")
        data = query.get("data")
        if not isinstance(data, str):
            return _Mapped(update_id, callback_id=callback_id, ignored="no_data")
        message = _dict(query.get("message"))
        chat = _dict(message.get("chat")) if message else None
        if chat is not None and chat.get("type") != "private":
            return _Mapped(update_id, callback_id=callback_id, ignored="not_private")
        message_id = _int(message.get("message_id")) if message else None
        return _Mapped(
            update_id,
            InboundMessage(
                sender=Address("telegram", str(user_id)),  # private chat id == user id
                text=_button_label(message, data),
                dedup_key=key,
                received_at=now,
                platform_message_id=None if message_id is None else str(message_id),
                button=data,
                language_hint=_language_code(user),
            ),
            callback_id=callback_id,
        )
    kind = next((name for name in _OTHER_KINDS if name in update), "other")
    return _Mapped(update_id, ignored=kind)


def _language_code(user: dict[str, Any] | None) -> str | None:
    """The IETF language tag of the user's Telegram app, if it looks like one."""
    code = user.get("language_code") if user else None
    if isinstance(code, str) and 2 <= len(code) <= 12 and code.replace("-", "").isalnum():
        return code
    return None


# ---------------------------------------------------------------------------- sending


def _prefix_length(text: str, limit: int) -> int:
    """Return how many characters of ``text`` fit in ``limit`` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units (Telegram's measure),
    preferring a line break, then a space, in the second half of each part. The break
    character itself is dropped; whitespace-only parts are dropped."""
    parts: list[str] = []
    rest = text
    while _prefix_length(rest, limit) < len(rest):
        cut = _prefix_length(rest, limit)
        window = rest[:cut]
        brk = window.rfind("\n")
        if brk < cut // 2:
            brk = window.rfind(" ")
        if brk < cut // 2:
            parts.append(window)
            rest = rest[cut:]
        else:
            parts.append(rest[:brk])
            rest = rest[brk + 1 :]
    parts.append(rest)
    return [part for part in parts if part.strip()]


class _RateLimiter:
    """At most one message per ``interval`` per chat and ``rate`` per second overall.

    ``reserve`` never waits: it either takes the slots or says how long until they are free.
    A multi-part message reserves all its parts at once (a short burst, which Telegram
    tolerates) so that it is never cut in the middle by the local limit.
    """

    def __init__(self, interval: float, rate: float) -> None:
        self._interval = interval
        self._rate = int(rate) if rate >= 1 else 0
        self._next: dict[int, float] = {}
        self._recent: deque[float] = deque()

    def wait(self, chat_id: int, count: int, now: float) -> float:
        """Seconds until ``count`` slots for ``chat_id`` are free (0: now); takes nothing."""
        wait = 0.0
        if self._interval > 0:
            wait = max(wait, self._next.get(chat_id, 0.0) - now)
        if self._rate:
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            need = min(count, self._rate)
            excess = len(self._recent) + need - self._rate
            if excess > 0:
                wait = max(wait, self._recent[excess - 1] + 1.0 - now)
        return wait

    def reserve(self, chat_id: int, count: int, now: float) -> float | None:
        """Take ``count`` slots for ``chat_id`` and return None, or return the seconds until
        they would be free (and take nothing)."""
        wait = self.wait(chat_id, count, now)
        if wait > 0:
            return wait
        if self._interval > 0:
            self._next[chat_id] = now + count * self._interval
            if len(self._next) > 10_000:
                self._next = {c: t for c, t in self._next.items() if t > now}
        if self._rate:
            self._recent.extend([now] * min(count, self._rate))
        return None


def _seconds(exc: RetryAfter) -> float:
    value: int | float | timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _network_outcome(exc: NetworkError) -> DeliveryError:
    """Classify a PTB network error by what httpx saw underneath it."""
    cause = exc.__cause__
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return DeliveryRetry("could not connect to the Telegram Bot API")
    if cause is None or isinstance(cause, TelegramError):
        # PTB raises a bare NetworkError for an HTTP error status it has no class for (5xx):
        # the server answered, so the message was not taken.
        return DeliveryRetry("the Telegram Bot API answered with a server error")
    return DeliveryUnknown("the connection to the Telegram Bot API broke after sending")


def _outcome(exc: Exception) -> DeliveryError:
    """Map whatever a Bot API call raised to the outbox's outcomes (no ids, no text)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, RetryAfter):
        return DeliveryRetry("telegram flood control (429)", retry_after=_seconds(exc))
    if isinstance(exc, Forbidden):
        return DeliveryRefused("telegram refused: the bot is blocked or may not write here")
    if isinstance(exc, BadRequest | ChatMigrated):
        return DeliveryRefused("telegram refused the request (400, e.g. chat not found)")
    if isinstance(exc, NetworkError):  # includes TimedOut
        return _network_outcome(exc)
    if isinstance(exc, InvalidToken | Conflict):
        return DeliveryRetry("telegram did not accept the bot token or the call (401/404/409)")
    return DeliveryUnknown("the Telegram Bot API gave an unreadable answer")


def _error_name(exc: BaseException) -> str:
    cause = exc.__cause__
    return type(exc).__name__ + (f"/{type(cause).__name__}" if cause is not None else "")


# ---------------------------------------------------------------------------- the channel


class TelegramChannel:
    """Receives Telegram updates (long polling or webhook) and sends messages.

    Args:
        token: the bot token from @BotFather (never logged, never in an error message).
        base_url: the Bot API root; the token is appended (PTB's rule).
        mode: ``"polling"`` or ``"webhook"``.
        webhook_url: the public https URL Telegram calls (webhook mode); its path is served.
        webhook_secret: the secret Telegram sends in ``X-Telegram-Bot-Api-Secret-Token``.
        listen: ``host:port`` for the webhook server (port 0 picks a free one).
        poll_timeout: the long-poll ``timeout`` of getUpdates, in seconds.
        request_timeout: the read/write timeout of every other API call, in seconds.
        per_chat_interval: minimum seconds between two messages to one chat (0: no limit).
        overall_rate: maximum messages per second overall (0: no limit).
        clock: stamps ``received_at`` (default: the system clock).
        stop_timeout: how long ``stop`` waits for the update in hand before abandoning it
            (it is then fetched again by the next poller).
    """

    name = "telegram"

    def __init__(
        self,
        token: str,
        *,
        base_url: str = "https://api.telegram.org/bot",
        mode: str = "polling",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        listen: str = "127.0.0.1:8443",
        poll_timeout: int = 25,
        request_timeout: float = 30.0,
        per_chat_interval: float = 1.0,
        overall_rate: float = 30.0,
        clock: Clock | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.health = ReceiveHealth("Telegram")
        if mode not in ("polling", "webhook"):
            raise ChannelStartError(f'telegram mode must be "polling" or "webhook", not {mode!r}')
        if mode == "webhook" and (not webhook_url or not webhook_secret):
            raise ChannelStartError(
                'telegram mode "webhook" needs webhook_url and webhook_secret in [telegram]'
            )
        if not token or any(char.isspace() for char in token):
            raise ChannelStartError("the telegram bot token is empty or contains spaces")
        host, _, port = listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:8443
        if not host or not port.isdigit() or int(port) > 65535:
            raise ChannelStartError(f'telegram listen must be "host:port", not {listen!r}')
        # PTB 22 warns (PTBDeprecationWarning) whenever RetryAfter.retry_after is read as an
        # int, even inside RetryAfter's own constructor; under "warnings as errors" that would
        # replace the 429 itself. Opting in to timedeltas (PTB 23's behaviour) avoids it.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        self._token = token
        self._base_url = base_url
        self._where = self._describe(base_url)
        self._mode = mode
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._host, self._port = host, int(port)
        self._poll_timeout = max(0, min(int(poll_timeout), 50))
        self._request_timeout = request_timeout
        self._limiter = _RateLimiter(per_chat_interval, overall_rate)
        self._clock: Clock = clock or SystemClock()
        self._stop_timeout = stop_timeout
        self._application: _App | None = None
        self._handle: Handler | None = None
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._handle_lock = asyncio.Lock()
        self._stopping = False
        self._in_hand = False
        self._offset: int | None = None
        self._confirmed: int | None = None

    @classmethod
    def from_config(cls, config: TelegramConfig) -> TelegramChannel:
        """Build the channel from the ``[telegram]`` section.

        Raises:
            ChannelStartError: if no token is configured.
        """
        if not config.token:
            raise ChannelStartError(
                "telegram is enabled but has no bot token: set [telegram] token or the "
                "INTAKE_TELEGRAM_TOKEN environment variable"
            )
        return cls(
            config.token,
            base_url=config.base_url,
            mode=config.mode,
            webhook_url=config.webhook_url,
            webhook_secret=config.webhook_secret,
            listen=config.listen,
        )

    @property
    def webhook_port(self) -> int | None:
        """The port the webhook server is bound to (None when it is not running)."""
        return self._bound_port

    # ------------------------------------------------------------------ lifecycle

    async def start(self, handle: Handler) -> None:
        """Check the bot (getMe) and start receiving in the background.

        Polling: deletes any webhook (keeping pending updates), then polls. Webhook: starts
        the receiver on ``listen``, then registers ``webhook_url`` with the secret. Every
        message is handed to ``handle``; an update is confirmed to Telegram only after
        ``handle`` returned for it.

        Raises:
            ChannelStartError: the token is refused, the API is unreachable or answers
                nonsense, or the webhook port cannot be bound. The message names the cause
                and never contains the token.
        """
        if self._application is not None:
            return
        self._handle = handle
        self._stopping = False
        self._offset = self._confirmed = None
        application = self._build()
        self._application = application
        try:
            await self._call_at_start(application.initialize(), "getMe")
            if self._mode == "polling":
                await self._call_at_start(application.bot.delete_webhook(), "deleteWebhook")
                self._task = asyncio.create_task(self._poll(handle), name="telegram-poll")
                self._task.add_done_callback(self._poll_ended)
            else:
                await self._serve_webhook()
                await self._call_at_start(
                    application.bot.set_webhook(
                        url=self._webhook_url or "",
                        secret_token=self._webhook_secret,
                        allowed_updates=list(ALLOWED_UPDATES),
                        max_connections=1,  # one at a time, in order, like polling
                    ),
                    "setWebhook",
                )
        except BaseException:
            await self._close()
            raise
        log.info("telegram.started mode=%s", self._mode)

    async def stop(self) -> None:
        """Stop receiving: finish the update in hand (up to ``stop_timeout``), confirm every
        handled update to Telegram, stop the webhook server and close PTB's clients.

        Safe to call twice, or without ``start``.
        """
        if self._application is None:
            return
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            if not self._in_hand:
                task.cancel()  # waiting on getUpdates or a back-off: nothing in hand
            _, pending = await asyncio.wait({task}, timeout=self._stop_timeout)
            if pending:
                log.warning("telegram.stop_abandoned_update offset=%s", self._offset)
                task.cancel()
                await asyncio.wait({task})
            await self._confirm_offset()
        await self._close()
        log.info("telegram.stopped mode=%s", self._mode)

    def _build(self) -> _App:
        base_file_url = (
            self._base_url[: -len("/bot")] + "/file/bot"
            if self._base_url.endswith("/bot")
            else self._base_url
        )
        timeout = self._request_timeout
        return (
            ApplicationBuilder()
            .token(self._token)
            .base_url(self._base_url)
            .base_file_url(base_file_url)
            .updater(None)
            .job_queue(None)
            .connect_timeout(min(timeout, 10.0))
            .read_timeout(timeout)
            .write_timeout(timeout)
            .pool_timeout(min(timeout, 5.0))
            .get_updates_connect_timeout(min(timeout, 10.0))
            .get_updates_write_timeout(timeout)
            .get_updates_pool_timeout(min(timeout, 5.0))
            .build()
        )

    @staticmethod
    def _describe(base_url: str) -> str:
        """Return scheme://host[:port] of ``base_url`` (never its path, which may hold the
        token through PTB's ``{token}`` placeholder)."""
        parts = urlsplit(base_url)
        return f"{parts.scheme}://{parts.hostname or '?'}" + (
            f":{parts.port}" if parts.port else ""
        )

    async def _call_at_start(self, call: Awaitable[Any], what: str) -> None:
        try:
            await call
        except InvalidToken:
            raise ChannelStartError(
                f"Telegram refused the bot token ({what} answered 401/404 Unauthorized): "
                "check [telegram] token or INTAKE_TELEGRAM_TOKEN; @BotFather shows the "
                "current token"
            ) from None
        except TelegramError as exc:
            if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
                reason = f"cannot reach the Telegram Bot API at {self._where}"
            else:
                reason = f"the Telegram Bot API at {self._where} refused {what}"
            raise ChannelStartError(
                f"{reason} ({_error_name(exc)}); check the network, any proxy and "
                "[telegram] base_url"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ChannelStartError(
                f"{self._where} did not answer {what} like the Telegram Bot API "
                f"({type(exc).__name__}); check [telegram] base_url"
            ) from None

    async def _close(self) -> None:
        application, self._application = self._application, None
        runner, self._runner = self._runner, None
        self._bound_port = None
        if runner is not None:
            await runner.cleanup()
        if application is not None:
            try:
                await application.shutdown()  # a no-op if initialize() did not complete...
                await application.bot.shutdown()  # ...so close the HTTP clients it opened
            except Exception as exc:
                log.warning("telegram.shutdown_failed error=%s", _error_name(exc))

    # ------------------------------------------------------------------ polling

    async def _poll(self, handle: Handler) -> None:
        """The polling loop: fetch, hand over in order, advance the offset after each."""
        failures = 0  # consecutive failed getUpdates calls
        refusals = 0  # consecutive failures of handle
        while not self._stopping:
            started = time.monotonic()
            try:
                updates = await self._get_updates(self._offset, self._poll_timeout)
            except Exception as exc:
                failures += 1
                self.health.failed()
                await asyncio.sleep(self._poll_delay(exc, failures))
                continue
            failures = 0
            self.health.succeeded()
            if not updates:
                if self._poll_timeout == 0 or time.monotonic() - started < 0.1:
                    await asyncio.sleep(_IDLE_PAUSE)  # never spin on a server ignoring timeout
                continue
            for raw in updates:
                if self._stopping:
                    return
                mapped = _map_update(raw, self._clock.now())
                if await self._hand_over(mapped, handle):
                    refusals = 0
                    continue
                refusals += 1
                await asyncio.sleep(min(BACKOFF_START * 2.0 ** (refusals - 1), BACKOFF_MAX))
                break  # fetch again from the same offset: the update comes back

    async def _hand_over(self, mapped: _Mapped, handle: Handler) -> bool:
        """Hand one update to ``handle``; on success move the offset past it."""
        self._in_hand = True
        try:
            if mapped.message is None:
                log.info(
                    "telegram.update_ignored update_id=%s reason=%s",
                    mapped.update_id,
                    mapped.ignored,
                )
            else:
                try:
                    await handle(mapped.message)
                except Exception as exc:
                    log.warning(
                        "telegram.handle_failed update_id=%s error=%s",
                        mapped.update_id,
                        type(exc).__name__,
                    )
                    return False
            if mapped.update_id is not None:
                self._offset = max(self._offset or 0, mapped.update_id + 1)
            if mapped.callback_id is not None:
                await self._answer(mapped)
            return True
        finally:
            self._in_hand = False

    async def _get_updates(self, offset: int | None, timeout: int, limit: int = 100) -> list[Any]:
        """Call getUpdates and return the raw updates (JSON objects).

        PTB's ``Bot.get_updates`` would parse them into ``Update`` objects and, if one does
        not parse, drop the whole batch and log its content; ``Bot._post`` (what
        ``get_updates`` uses, with the same request object and envelope handling) gives us
        the JSON instead.
        """
        application = self._application
        if application is None:
            raise RuntimeError("telegram channel not started")
        data: dict[str, Any] = {
            "offset": offset,
            "timeout": timeout,
            "limit": limit,
            "allowed_updates": list(ALLOWED_UPDATES),
        }
        result = await application.bot._post(
            "getUpdates", data, read_timeout=self._request_timeout + timeout
        )
        if not isinstance(result, list):
            raise TelegramError("getUpdates did not return a list")
        self._confirmed = offset
        return result

    def _poll_delay(self, exc: Exception, failures: int) -> float:
        """Log a failed getUpdates and return how long to wait before the next."""
        delay = min(BACKOFF_START * 2.0 ** (failures - 1), BACKOFF_MAX)
        if isinstance(exc, RetryAfter):
            delay = max(_seconds(exc), 0.1)
            log.warning("telegram.poll_rate_limited retry_after=%.1f", delay)
        elif isinstance(exc, Conflict):
            log.warning(
                "telegram.poll_conflict retry_in=%.1f hint=another process polls with this "
                "token, or a webhook is set",
                delay,
            )
        elif isinstance(exc, InvalidToken):
            delay = UNAUTHORIZED_PAUSE
            log.error("telegram.poll_unauthorized retry_in=%.1f", delay)
        else:
            log.warning("telegram.poll_failed error=%s retry_in=%.1f", _error_name(exc), delay)
        return delay

    async def _confirm_offset(self) -> None:
        """Confirm handled updates with one last getUpdates(offset, timeout=0), as PTB's
        Updater does on stop; if it fails they are fetched again later (the inbox dedups)."""
        if self._offset is None or self._offset == self._confirmed:
            return
        try:
            await self._get_updates(self._offset, 0, limit=1)
        except Exception as exc:
            log.warning(
                "telegram.confirm_failed error=%s note=updates may be fetched again",
                _error_name(exc),
            )

    def _poll_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("telegram.poll_crashed error=%s", type(exc).__name__)

    async def _answer(self, mapped: _Mapped) -> None:
        """Answer a callback query (stops the button's spinner); failures are only logged."""
        application = self._application
        if application is None or mapped.callback_id is None:
            return
        try:
            await application.bot.answer_callback_query(mapped.callback_id)
        except Exception as exc:
            log.warning(
                "telegram.callback_answer_failed update_id=%s error=%s",
                mapped.update_id,
                _error_name(exc),
            )

    # ------------------------------------------------------------------ webhook

    async def _serve_webhook(self) -> None:
        path = urlsplit(self._webhook_url or "").path or "/"
        app = web.Application()
        app.router.add_post(path, self._on_webhook)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._stop_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ChannelStartError(
                f"cannot listen on {self._host}:{self._port} for the Telegram webhook "
                f"({type(exc).__name__}: {exc.strerror or 'error'}); change [telegram] listen"
            ) from None
        self._runner = runner
        address = runner.addresses[0] if runner.addresses else None
        self._bound_port = int(address[1]) if isinstance(address, tuple) else self._port

    async def _on_webhook(self, request: web.Request) -> web.Response:
        """One update POSTed by Telegram: check the secret, hand it over, answer 200 only
        after ``handle`` returned (500 makes Telegram deliver it again)."""
        secret = request.headers.get(SECRET_HEADER)
        if secret is None:
            log.warning("telegram.webhook_refused reason=missing_secret")
            return web.Response(status=401)
        expected = (self._webhook_secret or "").encode()
        if not hmac.compare_digest(secret.encode(), expected):
            log.warning("telegram.webhook_refused reason=wrong_secret")
            return web.Response(status=403)
        handle = self._handle
        if self._stopping or handle is None:
            return web.Response(status=503)
        try:
            raw = json.loads(await request.read())
        except ValueError:
            log.warning("telegram.webhook_bad_request reason=not_json")
            return web.Response(status=400)
        mapped = _map_update(raw, self._clock.now())
        if mapped.update_id is None:
            log.warning("telegram.webhook_bad_request reason=not_an_update")
            return web.Response(status=400)
        async with self._handle_lock:
            if not await self._hand_over(mapped, handle):
                return web.Response(status=500)
        return web.Response(status=200)

    # ------------------------------------------------------------------ sending

    async def send(self, message: OutboundMessage) -> Delivered:
        """Deliver ``message`` and return the Telegram message ids it produced.

        ``scrub`` deletes ``delete_ids`` (in chunks of 100; ids already gone are fine), then
        sends ``text`` if not empty. Other kinds send ``text`` (split at 4096 characters,
        the keyboard under the last part) with one inline button per row per choice; the
        messages are protected from forwarding and saving.

        Raises:
            DeliveryRetry: certainly not delivered (local rate limit, 429, 5xx, no
                connection); ``retry_after`` says when to try again when known.
            DeliveryRefused: never deliverable (blocked, chat not found, bad recipient, a
                button's data longer than 64 bytes, no text).
            DeliveryUnknown: may have arrived (timeout or broken connection after sending,
                unreadable answer).
        """
        try:
            return await self._send(message)
        except Exception as exc:
            outcome = _outcome(exc)
            if outcome is not exc:
                log.warning(
                    "telegram.send_failed outbox_id=%s outcome=%s error=%s",
                    message.outbox_id,
                    type(outcome).__name__,
                    _error_name(exc),
                )
            raise outcome from None

    def wait_before(self, message: OutboundMessage) -> float:
        """Seconds until our own pacing of Telegram's limits (one message a second per chat,
        30 a second overall) lets ``message`` go; 0 when it may go now. Takes no slot: the
        outbox asks before it marks a row as being sent, so that a row only ever waits out
        the pacing while it is certainly not on its way."""
        try:
            chat_id = int(message.recipient.identity)
        except ValueError:
            return 0.0  # send() refuses it
        parts = _split_text(message.text) if message.text else []
        return self._limiter.wait(chat_id, len(parts), time.monotonic()) if parts else 0.0

    async def _send(self, message: OutboundMessage) -> Delivered:
        application = self._application
        if application is None:
            raise DeliveryRetry("the telegram channel is not running")
        if message.recipient.channel != self.name:
            raise DeliveryRefused("the recipient is not a telegram address")
        try:
            chat_id = int(message.recipient.identity)
        except ValueError:
            raise DeliveryRefused("the recipient is not a telegram chat id") from None
        bot = application.bot
        parts = _split_text(message.text) if message.text else []
        if message.kind != "scrub" and not parts:
            raise DeliveryRefused("nothing to send: the text is empty")
        markup = self._keyboard(message) if parts else None
        if parts:
            wait = self._limiter.reserve(chat_id, len(parts), time.monotonic())
            if wait is not None:
                raise DeliveryRetry("rate limit", retry_after=round(wait, 3))
        if message.kind == "scrub":
            await self._delete(chat_id, message)
        sent: list[Message] = []
        for index, part in enumerate(parts):
            sent.append(
                await bot.send_message(
                    chat_id=chat_id,
                    text=part,
                    reply_markup=markup if index == len(parts) - 1 else None,
                    protect_content=True,
                )
            )
        return Delivered(tuple(str(m.message_id) for m in sent))

    @staticmethod
    def _keyboard(message: OutboundMessage) -> InlineKeyboardMarkup | None:
        if not message.choices:
            return None
        for choice in message.choices:
            if not 1 <= len(choice.data.encode()) <= MAX_CALLBACK_DATA:
                raise DeliveryRefused(
                    "a button's data must be 1-64 bytes (a bug upstream of the channel)"
                )
            if not choice.label.strip():
                raise DeliveryRefused("a button has no label (a bug upstream of the channel)")
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(c.label, callback_data=c.data)] for c in message.choices]
        )

    async def _delete(self, chat_id: int, message: OutboundMessage) -> None:
        application = self._application
        assert application is not None
        ids: list[int] = []
        for raw in message.delete_ids:
            with contextlib.suppress(ValueError):
                ids.append(int(raw))
        if len(ids) != len(message.delete_ids):
            log.warning(
                "telegram.scrub_bad_ids outbox_id=%s count=%d",
                message.outbox_id,
                len(message.delete_ids) - len(ids),
            )
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk: Sequence[int] = ids[start : start + DELETE_CHUNK]
            try:
                await application.bot.delete_messages(chat_id, chunk)
            except BadRequest as exc:  # all gone, too old (48 h) or not deletable: go on
                log.warning(
                    "telegram.scrub_not_deleted outbox_id=%s count=%d error=%s",
                    message.outbox_id,
                    len(chunk),
                    _error_name(exc),
                )
