"""The Signal channel: our own async client for signal-cli-rest-api (bbernhard).

Receiving comes in two shapes, chosen by ``[signal] receive``:

- ``"poll"`` (server ``MODE=normal`` or ``native``): a single poller calls the destructive
  ``GET /v1/receive/{number}``. Whatever a GET returned is gone from every store, so each
  message is kept in memory until ``handle`` (which stores it in the database inbox) has
  succeeded, and no further GET is made while one is waiting.
- ``"websocket"`` (server ``MODE=json-rpc``): the server pushes each item on a websocket and
  drops every item that arrives while no socket is attached. The reader therefore never
  stops reading while connected, queues what it reads in memory, reconnects quickly (capped
  exponential back-off with jitter) and pings so that a half-open connection is noticed.

Sending is ``POST /v2/send`` with exactly one recipient per request, plain text mode and no
sync copy to our own devices. Outcomes map onto the core's delivery errors: certainly not
sent → :class:`DeliveryRetry`, refused for good → :class:`DeliveryRefused`, maybe sent →
:class:`DeliveryUnknown`.

Nothing here logs a phone number, a uuid, a message text or the account number: log lines are
event names with ids, counts, HTTP statuses and exception type names only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import httpx

from bot.config import SignalConfig, parse_duration
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

CHANNEL = "signal"
POLL_MODES = frozenset({"normal", "native"})
WEBSOCKET_MODES = frozenset({"json-rpc", "json-rpc-native"})

# GET /v1/receive parameters (research §4.1, §7.3): a short server-side wait so that sends are
# not queued behind a poll on the account lock, a bounded batch, no attachment/sticker/avatar
# downloads (we do not ingest attachments, and downloaded ones would sit in plaintext on the
# signal-cli volume), and never read receipts (they would tell a defender "read" before we
# have stored the message).
RECEIVE_WAIT_SECONDS = 1
RECEIVE_MAX_MESSAGES = 10
RECEIVE_READ_MARGIN = 150.0  # HTTP read timeout = wait + margin: above the server's 120 s kill
CONNECT_TIMEOUT = 5.0
HANDLE_ALERT_AFTER = 5  # failed handle attempts before the operator is alerted

AlertCallback = Callable[[str], Awaitable[None]]


def _now_utc() -> datetime:
    """Return the wall-clock time in UTC."""
    return datetime.now(UTC)


def _display_url(url: str) -> str:
    """Return ``url`` without any user:password part (safe to show an operator)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _safe_token(value: object, limit: int = 40) -> str:
    """Return ``value`` reduced to a short ``[A-Za-z0-9._-]`` token, for log lines."""
    return re.sub(r"[^A-Za-z0-9._-]", "", str(value))[:limit] or "-"


def _retry_after(response: httpx.Response) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for, if it has a usable one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - _now_utc()).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(0.0, seconds)


def _error_text(response: httpx.Response) -> str:
    """Return the ``error`` string of an error body, or the raw body text (never logged)."""
    text = response.content.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else text


# --------------------------------------------------------------------------------------------
# Parsing received items (research §5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """What one received item means for us.

    Attributes:
        message: the message to hand to the core, or None if there is nothing to hand over.
        event: the log event describing the item (no content in it).
        untrusted: True if signal-cli reported an untrusted identity for the sender.
    """

    message: InboundMessage | None
    event: str
    untrusted: bool = False


_IGNORED_ENVELOPE_PARTS = (
    ("syncMessage", "signal.sync_ignored"),
    ("receiptMessage", "signal.receipt_ignored"),
    ("typingMessage", "signal.typing_ignored"),
    ("storyMessage", "signal.story_ignored"),
)
_WARNING_EVENTS = frozenset(
    {
        "signal.unparseable_item",
        "signal.receive_exception",
        "signal.receive_error_frame",
        "signal.message_without_sender",
    }
)
_CONTENT_WITHOUT_TEXT = ("sticker", "contacts")
_IGNORED_DATA_PARTS = (
    ("reaction", "signal.reaction_ignored"),
    ("remoteDelete", "signal.remote_delete_ignored"),
    ("groupInfo", "signal.group_update_ignored"),
)


def _is_int(value: object) -> bool:
    """True for a real integer (JSON booleans are not timestamps)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _unwrap(item: Any) -> Any:
    """Return the receive item inside a JSON-RPC/webhook wrapper, or ``item`` itself."""
    if isinstance(item, dict) and "envelope" not in item and "exception" not in item:
        for key in ("params", "result"):
            inner = item.get(key)
            if isinstance(inner, dict):
                return _unwrap(inner)
    return item


def parse_item(item: Any, received_at: datetime) -> ParsedItem:
    """Interpret one received item (one element of a GET array, or one websocket frame).

    Guarantees: never raises for any JSON value; returns a message only for a 1:1 or group
    data message (or edit) from a sender with a ``sourceUuid``, keyed
    ``"{sourceUuid}:{envelope.timestamp}"``. A data message with an attachment, sticker or
    shared contact but no text becomes a message with text ``""``, and so does an incoming
    call offer, so that the core can answer the defender; receipts, typing, sync transcripts,
    stories, reactions, remote deletes and expiration updates give no message.

    Args:
        item: the decoded JSON item.
        received_at: the receive time to stamp on the message.

    Returns:
        The message (if any), a content-free log event, and whether the item reported an
        untrusted identity (the content of such an item is delivered if it is present).
    """
    item = _unwrap(item)
    if not isinstance(item, dict):
        return ParsedItem(None, "signal.unparseable_item")
    untrusted = False
    exception = item.get("exception")
    if isinstance(exception, dict):
        exc_type = str(exception.get("type") or "")
        exc_text = str(exception.get("message") or "")
        untrusted = "UntrustedIdentity" in exc_type or "untrusted identity" in exc_text.lower()
    envelope = item.get("envelope")
    if not isinstance(envelope, dict):
        if untrusted:
            return ParsedItem(None, "signal.untrusted_identity", untrusted=True)
        if exception is not None:
            return ParsedItem(None, "signal.receive_exception")
        if "error" in item:
            return ParsedItem(None, "signal.receive_error_frame")
        return ParsedItem(None, "signal.unparseable_item")

    for key, event in _IGNORED_ENVELOPE_PARTS:
        if envelope.get(key) is not None:
            return ParsedItem(None, event, untrusted)

    data: Any = envelope.get("dataMessage")
    kind = "data"
    edit = envelope.get("editMessage")
    if data is None and isinstance(edit, dict):
        data, kind = edit.get("dataMessage"), "edit"
    call = envelope.get("callMessage")
    if data is None and isinstance(call, dict):
        if call.get("offerMessage") is None:
            return ParsedItem(None, "signal.call_update_ignored", untrusted)
        data, kind = {"message": None}, "call"
    if data is None:
        if untrusted:
            return ParsedItem(None, "signal.untrusted_identity", untrusted=True)
        return ParsedItem(None, "signal.no_content", untrusted)
    if not isinstance(data, dict):
        return ParsedItem(None, "signal.unparseable_item", untrusted)

    text = data.get("message")
    if text is not None and not isinstance(text, str):
        return ParsedItem(None, "signal.unparseable_item", untrusted)
    if not text:
        attachments = data.get("attachments")
        if kind == "call":
            event = "signal.call_without_text"
        elif isinstance(attachments, list) and attachments:
            event = "signal.attachment_without_text"
        elif any(data.get(part) for part in _CONTENT_WITHOUT_TEXT):
            event = "signal.content_without_text"
        else:
            for key, ignored in _IGNORED_DATA_PARTS:
                if data.get(key) is not None:
                    return ParsedItem(None, ignored, untrusted)
            if data.get("isExpirationUpdate") is True:
                return ParsedItem(None, "signal.expiration_update_ignored", untrusted)
            return ParsedItem(None, "signal.empty_message_ignored", untrusted)
        text = ""
    else:
        event = "signal.edit_received" if kind == "edit" else "signal.message_received"

    uuid = envelope.get("sourceUuid")
    timestamp = envelope.get("timestamp")
    if not isinstance(uuid, str) or not uuid or not _is_int(timestamp):
        return ParsedItem(None, "signal.message_without_sender", untrusted)
    number = envelope.get("sourceNumber")
    aliases = (Address(CHANNEL, number),) if isinstance(number, str) and number else ()
    message = InboundMessage(
        sender=Address(CHANNEL, uuid),
        text=text,
        dedup_key=f"{uuid}:{timestamp}",
        received_at=received_at,
        aliases=aliases,
        platform_message_id=str(timestamp),
    )
    return ParsedItem(message, event, untrusted)


def split_batch(body: str) -> tuple[list[Any], bool]:
    """Decode the body of ``GET /v1/receive`` into its items.

    The server builds the body by joining signal-cli's output lines, so a stray log line or
    Java stack trace can make it invalid JSON although the messages in it were consumed
    (research §4.1, #680). Then every JSON object that looks like a receive item is salvaged.

    Args:
        body: the response text.

    Returns:
        The items, and True if the body was not valid JSON (some content may be lost).
    """
    try:
        data = json.loads(body)
    except ValueError:
        pass
    else:
        if isinstance(data, list):
            return data, False
        return [data], not isinstance(data, dict)
    decoder = json.JSONDecoder()
    items: list[Any] = []
    at = body.find("{")
    while at >= 0:
        try:
            value, end = decoder.raw_decode(body, at)
        except ValueError:
            at = body.find("{", at + 1)
            continue
        if isinstance(value, dict) and ("envelope" in value or "account" in value):
            items.append(value)
            at = body.find("{", end)
        else:
            at = body.find("{", at + 1)
    return items, True


# --------------------------------------------------------------------------------------------
# The channel
# --------------------------------------------------------------------------------------------


class SignalChannel:
    """Receives from and sends through one signal-cli-rest-api account.

    Args:
        api_url: base URL of signal-cli-rest-api (``http://127.0.0.1:8080``); credentials in
            the URL are used for HTTP Basic auth (for a reverse proxy) and never shown.
        number: the bot's own account, in E.164 form, exactly as signal-cli knows it.
        receive: ``"poll"`` (server mode normal/native) or ``"websocket"`` (json-rpc).
        disappearing: the disappearing-message timer to set on defender conversations, or
            None to leave conversations alone.
        poll_interval: seconds between polls that returned nothing.
        timeout: HTTP timeout (seconds) for sends and checks; a send returns within about
            ``1.5 * timeout``.
        transport: an httpx transport to use instead of the network (tests).
        on_operator_alert: awaited (in the background, with a timeout) with a content-free
            alert name such as ``"signal.untrusted_identity"``.
        retry_base: first back-off delay (seconds) after an error; doubles per error.
        retry_cap: longest back-off delay (seconds); short, so that defenders are heard
            within seconds of the server (or our database) coming back.
        heartbeat: websocket ping interval (seconds); the connection is dropped and re-made
            if a pong does not come within half of it.
        stop_grace: how long :meth:`stop` waits for the message in hand before giving up.
        receive_read_timeout: HTTP read timeout of a poll; default the server-side wait plus
            150 s, above the server's own 120 s limit, so that a poll is never abandoned
            while the server may still answer it (which would lose its messages).
        now: clock stamping received messages (timezone-aware UTC).
    """

    name = CHANNEL

    def __init__(
        self,
        api_url: str,
        number: str,
        receive: str,
        disappearing: timedelta | None,
        *,
        poll_interval: float = 1.0,
        timeout: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_operator_alert: AlertCallback | None = None,
        retry_base: float = 0.5,
        retry_cap: float = 5.0,
        heartbeat: float = 20.0,
        stop_grace: float = 30.0,
        receive_read_timeout: float | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.health = ReceiveHealth("Signal")
        if receive not in ("poll", "websocket"):
            raise ValueError('receive must be "poll" or "websocket"')
        if disappearing is not None and disappearing.total_seconds() < 1:
            raise ValueError("disappearing must be at least one second, or None")
        self._api_url = api_url.rstrip("/")
        self._number = number
        self._receive = receive
        self._expire_seconds = None if disappearing is None else int(disappearing.total_seconds())
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._transport = transport
        self._on_alert = on_operator_alert
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._heartbeat = heartbeat
        self._stop_grace = stop_grace
        self._receive_read_timeout = (
            RECEIVE_WAIT_SECONDS + RECEIVE_READ_MARGIN
            if receive_read_timeout is None
            else receive_read_timeout
        )
        self._now = now or _now_utc
        self._path_number = quote(number, safe="+")  # a literal '+' (research §2)

        self._http: httpx.AsyncClient | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stop_started = False
        self._main_task: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._alert_tasks: set[asyncio.Task[None]] = set()
        self._backlog: collections.deque[InboundMessage] = collections.deque()
        self._queue: asyncio.Queue[InboundMessage | None] = asyncio.Queue()
        self._in_hand = False
        self._fetching = False
        self._sentinel_queued = False
        self._mode_alerted = False
        self._salt = secrets.token_bytes(16)
        self._expiry_set: set[bytes] = set()
        self._expiry_locks: dict[bytes, asyncio.Lock] = {}
        self.api_version: str | None = None

    @classmethod
    def from_config(
        cls,
        config: SignalConfig,
        on_operator_alert: Callable[[str], Awaitable[None]] | None = None,
    ) -> SignalChannel:
        """Build the channel from the ``[signal]`` config table.

        Guarantees: ``disappearing = "off"`` gives no timer; any other value is the parsed
        duration. Other settings take their defaults.

        Raises:
            ChannelStartError: if ``[signal] number`` is not set.
        """
        if config.number is None:
            raise ChannelStartError(
                "[signal] number is not set: write the bot's own Signal number in the config"
            )
        disappearing = None if config.disappearing == "off" else parse_duration(config.disappearing)
        return cls(
            config.api_url,
            config.number,
            config.receive,
            disappearing,
            on_operator_alert=on_operator_alert,
        )

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self, handle: Handler) -> None:
        """Check the API, then start receiving in the background.

        Guarantees: on return the API answered ``/v1/about`` in the mode matching
        ``receive``, our number is among its accounts (when it could list them), and exactly
        one background receiver is running that hands every message to ``handle`` one at a
        time, in order, retrying ``handle`` until it succeeds.

        Raises:
            ChannelStartError: the API is unreachable, is not signal-cli-rest-api, runs in
                the other mode, or does not have our number; the message says what to fix.
        """
        if self._main_task is not None and not self._main_task.done():
            raise ChannelStartError("the Signal channel is already running")
        where = _display_url(self._api_url)
        about = await self._get_json("/v1/about", where)
        if not isinstance(about, dict) or not isinstance(about.get("mode"), str):
            raise ChannelStartError(
                f"{where}/v1/about did not answer like signal-cli-rest-api; check [signal] "
                "api_url points at the signal-cli-rest-api container"
            )
        mode = about["mode"]
        self.api_version = _safe_token(about.get("version"))
        if self._receive == "poll" and mode not in POLL_MODES:
            raise ChannelStartError(
                f'signal-cli-rest-api at {where} runs in mode "{_safe_token(mode)}", which '
                'only pushes messages over a websocket, but [signal] receive = "poll": set '
                'receive = "websocket" in the config, or run the container with MODE=native '
                "(or normal)"
            )
        if self._receive == "websocket" and mode not in WEBSOCKET_MODES:
            raise ChannelStartError(
                f'signal-cli-rest-api at {where} runs in mode "{_safe_token(mode)}", which '
                "has no websocket (connecting would consume messages), but [signal] receive = "
                '"websocket": set receive = "poll" in the config, or run the container with '
                "MODE=json-rpc"
            )
        log.info(
            "signal.api_ok version=%s mode=%s build=%s",
            self.api_version,
            _safe_token(mode),
            _safe_token(about.get("build")),
        )
        await self._check_account(where)

        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stop_started = False
        self._mode_alerted = False
        self._sentinel_queued = False
        if self._receive == "poll":
            self._main_task = asyncio.create_task(self._poll_loop(handle), name="signal-poll")
        else:
            self._queue = asyncio.Queue()
            self._reader_task = asyncio.create_task(self._ws_loop(), name="signal-ws-reader")
            self._main_task = asyncio.create_task(self._consume(handle), name="signal-consumer")

    async def stop(self) -> None:
        """Stop receiving and close the clients.

        Guarantees: no new receive request is made once this is called; a poll in flight is
        awaited and every message already received is handed to ``handle`` (retried) for up
        to ``stop_grace`` seconds; after that, messages still in memory are reported (count
        only) in an ERROR log and an operator alert. Idempotent and safe to call concurrently.
        """
        if self._stop_started:
            await self._stopped.wait()
            return
        self._stop_started = True
        self._stopping.set()
        try:
            if self._reader_task is not None:
                self._reader_task.cancel()
                await asyncio.gather(self._reader_task, return_exceptions=True)
                self._reader_task = None
                self._queue.put_nowait(None)
                self._sentinel_queued = True
            if self._main_task is not None:
                done, _ = await asyncio.wait({self._main_task}, timeout=self._stop_grace)
                if not done:
                    fetching = self._fetching
                    self._main_task.cancel()
                    await asyncio.gather(self._main_task, return_exceptions=True)
                    lost = self._pending_count()
                    if lost:
                        log.error("signal.stop_abandoned_messages count=%s", lost)
                        await self._run_alert("signal.messages_abandoned_on_stop")
                    elif fetching:
                        # Whatever that GET had already consumed is lost (research §7.3).
                        log.error("signal.stop_abandoned_poll_in_flight")
                        await self._run_alert("signal.receive_messages_may_be_lost")
                elif not self._main_task.cancelled() and self._main_task.exception() is not None:
                    log.error("signal.receiver_crashed")
                self._main_task = None
            if self._alert_tasks:
                await asyncio.wait(set(self._alert_tasks), timeout=self._timeout)
                for task in list(self._alert_tasks):
                    task.cancel()
        finally:
            if self._http is not None:
                await self._http.aclose()
                self._http = None
            self._stopped.set()
            log.info("signal.stopped")

    def _pending_count(self) -> int:
        """Messages received but not yet handled (kept in memory only)."""
        queued = self._queue.qsize() - (1 if self._sentinel_queued else 0)
        return len(self._backlog) + max(0, queued) + (1 if self._in_hand else 0)

    # ------------------------------------------------------------------------------ helpers

    def _client(self) -> httpx.AsyncClient:
        """Return the open HTTP client, creating it on first use (or after stop)."""
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                base_url=self._api_url,
                transport=self._transport,
                timeout=httpx.Timeout(self._timeout, connect=min(CONNECT_TIMEOUT, self._timeout)),
                follow_redirects=False,
            )
        return self._http

    async def _get_json(self, path: str, where: str) -> Any:
        """GET ``path`` for :meth:`start`, turning every failure into ChannelStartError."""
        try:
            response = await self._client().get(path)
        except httpx.HTTPError as exc:
            raise ChannelStartError(
                f"cannot reach signal-cli-rest-api at {where} ({type(exc).__name__}): check "
                "that the container is running, that [signal] api_url is right and that this "
                "host may connect to it"
            ) from None
        if response.status_code != 200:
            raise ChannelStartError(
                f"{where}{path} answered HTTP {response.status_code}: check [signal] api_url "
                "points at signal-cli-rest-api (not at a proxy or another service)"
            )
        try:
            return json.loads(response.content)
        except ValueError:
            raise ChannelStartError(
                f"{where}{path} did not answer JSON: check [signal] api_url points at "
                "signal-cli-rest-api"
            ) from None

    async def _check_account(self, where: str) -> None:
        """Fail start if ``GET /v1/accounts`` lists accounts but not ours; tolerate errors."""
        try:
            response = await self._client().get("/v1/accounts")
            accounts = json.loads(response.content) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("signal.accounts_check_skipped error=%s", type(exc).__name__)
            return
        if not isinstance(accounts, list):
            log.warning("signal.accounts_check_skipped status=%s", response.status_code)
            return
        if self._number not in accounts:
            raise ChannelStartError(
                f"signal-cli-rest-api at {where} has no account for [signal] number (it has "
                f"{len(accounts)}): register or link the bot's number in that container "
                "first, and write it exactly as it was registered (E.164, with '+')"
            )

    def _backoff(self, attempt: int) -> float:
        """Delay before retry ``attempt`` (1-based): capped exponential with jitter."""
        delay = min(self._retry_cap, self._retry_base * 2.0 ** min(attempt - 1, 30))
        return delay * (0.5 + random.random() / 2)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`stop` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _alert(self, name: str) -> None:
        """Tell the operator ``name`` in the background (never blocks receiving)."""
        if self._on_alert is None:
            return
        task = asyncio.create_task(self._run_alert(name))
        self._alert_tasks.add(task)
        task.add_done_callback(self._alert_tasks.discard)

    async def _run_alert(self, name: str) -> None:
        """Await the alert callback with a timeout; log (never raise) its failure."""
        if self._on_alert is None:
            return
        try:
            await asyncio.wait_for(self._on_alert(name), self._timeout)
        except Exception as exc:
            log.warning("signal.alert_failed alert=%s error=%s", name, type(exc).__name__)

    def _accept(self, item: Any) -> InboundMessage | None:
        """Parse one item, log its event and raise the alerts it calls for."""
        parsed = parse_item(item, self._now())
        if parsed.untrusted:
            log.warning("signal.untrusted_identity delivered=%s", parsed.message is not None)
            self._alert("signal.untrusted_identity")
        if parsed.message is None:
            level = logging.WARNING if parsed.event in _WARNING_EVENTS else logging.DEBUG
            log.log(level, "%s", parsed.event)
        elif parsed.event == "signal.message_received":
            log.debug("%s", parsed.event)
        else:
            log.info("%s", parsed.event)
        return parsed.message

    async def _handle_one(self, handle: Handler, message: InboundMessage) -> None:
        """Call ``handle`` until it succeeds, with back-off; never gives the message up."""
        attempt = 0
        while True:
            try:
                await handle(message)
                if attempt:
                    log.info("signal.handle_recovered attempts=%s", attempt + 1)
                return
            except Exception as exc:
                attempt += 1
                log.warning("signal.handle_failed attempt=%s error=%s", attempt, type(exc).__name__)
                if attempt == HANDLE_ALERT_AFTER:
                    self._alert("signal.inbox_failing")
                await asyncio.sleep(self._backoff(attempt))

    # --------------------------------------------------------------------------- poll mode

    async def _poll_loop(self, handle: Handler) -> None:
        """Hand over what is held, then poll; back off on errors; never fetch while holding."""
        errors = 0
        params = {
            "timeout": str(RECEIVE_WAIT_SECONDS),
            "max_messages": str(RECEIVE_MAX_MESSAGES),
            "ignore_attachments": "true",
            "ignore_stories": "true",
            "ignore_avatars": "true",
            "ignore_stickers": "true",
            "send_read_receipts": "false",
        }
        read_timeout = httpx.Timeout(
            self._receive_read_timeout, connect=min(CONNECT_TIMEOUT, self._timeout)
        )
        path = f"/v1/receive/{self._path_number}"
        while True:
            try:
                while self._backlog:
                    await self._handle_one(handle, self._backlog[0])
                    self._backlog.popleft()
                if self._stopping.is_set():
                    return
                self._fetching = True
                try:
                    items = await self._poll_once(path, params, read_timeout, errors + 1)
                finally:
                    self._fetching = False
                if items is None:
                    errors += 1
                    self.health.failed()
                    await self._pause(self._backoff(errors))
                    continue
                errors = 0
                self.health.succeeded()
                for item in items:
                    message = self._accept(item)
                    if message is not None:
                        self._backlog.append(message)
                if not items:
                    await self._pause(self._poll_interval)
            except Exception as exc:  # a bug of ours must not end receiving
                errors += 1
                log.error("signal.receiver_error error=%s", type(exc).__name__)
                await self._pause(self._backoff(errors))

    async def _poll_once(
        self, path: str, params: dict[str, str], timeout: httpx.Timeout, attempt: int
    ) -> list[Any] | None:
        """One ``GET /v1/receive``; the items, or None after logging why it failed."""
        try:
            response = await self._client().get(path, params=params, timeout=timeout)
        except httpx.HTTPError as exc:
            log.warning("signal.receive_failed attempt=%s error=%s", attempt, type(exc).__name__)
            return None
        if response.status_code != 200:
            text = _error_text(response).lower()
            log.warning("signal.receive_failed attempt=%s status=%s", attempt, response.status_code)
            if "websocket" in text and not self._mode_alerted:
                self._mode_alerted = True
                log.error("signal.receive_mode_mismatch expected=poll")
                self._alert("signal.receive_mode_mismatch")
            elif "process killed" in text:
                log.error("signal.receive_killed_messages_may_be_lost")
                self._alert("signal.receive_messages_may_be_lost")
            return None
        self._mode_alerted = False
        items, garbled = split_batch(response.content.decode("utf-8", errors="replace"))
        if garbled:
            log.error("signal.receive_garbled salvaged=%s", len(items))
            self._alert("signal.receive_messages_may_be_lost")
        return items

    # ---------------------------------------------------------------------- websocket mode

    def _ws_url(self) -> str:
        """The websocket URL of our receive endpoint (``ws``/``wss`` after ``http``/``https``)."""
        parts = urlsplit(self._api_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = f"{parts.path.rstrip('/')}/v1/receive/{self._path_number}"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    async def _ws_loop(self) -> None:
        """Stay connected: read every frame into the queue, reconnect with back-off."""
        loop = asyncio.get_running_loop()
        failures = 0
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout, sock_connect=min(CONNECT_TIMEOUT, self._timeout)
        )
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping.is_set():
                opened: float | None = None
                try:
                    async with session.ws_connect(
                        self._ws_url(),
                        heartbeat=self._heartbeat,
                        autoping=True,
                        timeout=aiohttp.ClientWSTimeout(ws_close=min(2.0, self._timeout)),
                    ) as ws:
                        opened = loop.time()
                        self._mode_alerted = False
                        log.info("signal.ws_connected after_failures=%s", failures)
                        self.health.succeeded()
                        async for frame in ws:
                            if frame.type == aiohttp.WSMsgType.TEXT:
                                self._accept_frame(frame.data)
                            elif frame.type == aiohttp.WSMsgType.BINARY:
                                self._accept_frame(frame.data.decode("utf-8", errors="replace"))
                            else:
                                break
                        log.warning("signal.ws_closed code=%s", ws.close_code)
                except aiohttp.WSServerHandshakeError as exc:
                    log.warning("signal.ws_refused status=%s", exc.status)
                    if exc.status == 200 and not self._mode_alerted:
                        # The server is in normal/native mode now: every attempt is a
                        # destructive GET whose messages we cannot read. Tell the operator.
                        self._mode_alerted = True
                        log.error("signal.receive_mode_mismatch expected=websocket")
                        self._alert("signal.receive_mode_mismatch")
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("signal.ws_failed error=%s", type(exc).__name__)
                except Exception as exc:  # a bug of ours must not end receiving
                    log.error("signal.receiver_error error=%s", type(exc).__name__)
                if opened is not None and loop.time() - opened >= self._retry_cap:
                    failures = 0  # it was healthy for a while: reconnect fast
                failures += 1
                self.health.failed()
                await self._pause(self._backoff(failures))

    def _accept_frame(self, text: str) -> None:
        """Decode one websocket frame and queue its message, if any."""
        try:
            item = json.loads(text)
        except ValueError:
            log.warning("signal.unparseable_item")
            return
        message = self._accept(item)
        if message is not None:
            self._queue.put_nowait(message)
            log.debug("signal.queued backlog=%s", self._queue.qsize())

    async def _consume(self, handle: Handler) -> None:
        """Hand queued messages to ``handle`` in order until the stop sentinel."""
        while True:
            message = await self._queue.get()
            if message is None:
                return
            self._in_hand = True
            await self._handle_one(handle, message)
            self._in_hand = False

    # -------------------------------------------------------------------------------- send

    async def send(self, message: OutboundMessage) -> Delivered:
        """Deliver ``message`` to its one recipient.

        Guarantees: exactly one ``POST /v2/send`` with one recipient, ``text_mode`` normal
        and ``notify_self`` false (none for a ``scrub`` with empty text: Signal cannot delete
        a defender's messages, so ``delete_ids`` are ignored; ``choices`` are ignored too).
        Before the first message of this process to a defender, the disappearing timer is set
        on that conversation (failures are logged and do not block the message).

        Returns:
            The Signal timestamp of the sent message as its id.

        Raises:
            DeliveryRetry: certainly not sent (connect failure, 429, 5xx, rate limit).
            DeliveryRefused: refused for good (unregistered or invalid recipient, untrusted
                recipient key, 404).
            DeliveryUnknown: maybe sent (read timeout, dropped connection, unreadable 2xx,
                unrecognised 400, signal-cli killed by its timeout).
        """
        if message.kind == "scrub" and not message.text:
            return Delivered(())
        identity = message.recipient.identity
        if message.to_defender and self._expire_seconds is not None:
            await self._ensure_expiry(identity, message.outbox_id)
        body = {
            "number": self._number,
            "recipients": [identity],
            "message": message.text,
            "text_mode": "normal",
            "notify_self": False,
        }
        try:
            response = await self._client().post("/v2/send", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._logged(
                message, DeliveryRetry(f"signal: cannot connect ({_kind(exc)})")
            ) from None
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The request body was not fully written, so the server cannot have acted on it.
            raise self._logged(
                message, DeliveryRetry(f"signal: request not sent ({_kind(exc)})")
            ) from None
        except httpx.HTTPError as exc:
            # Read timeout, reset or close after the request went out: the server keeps
            # going without us (research §3.4, §7.3), so the message may well be sent.
            raise self._logged(
                message, DeliveryUnknown(f"signal: no answer after sending ({_kind(exc)})")
            ) from None
        try:
            delivered = self._outcome(response)
        except DeliveryError as exc:
            raise self._logged(message, exc) from None
        log.info("signal.sent outbox_id=%s", _safe_token(message.outbox_id, 64))
        return delivered

    def _logged(self, message: OutboundMessage, error: DeliveryError) -> DeliveryError:
        """Log a failed send (outbox id, error class and reason; no identity) and return it."""
        log.warning(
            "signal.send_failed outbox_id=%s outcome=%s reason=%s",
            _safe_token(message.outbox_id, 64),
            type(error).__name__,
            str(error).replace(" ", "_")[:80],
        )
        return error

    def _outcome(self, response: httpx.Response) -> Delivered:
        """Map a ``/v2/send`` response onto Delivered or a DeliveryError."""
        status = response.status_code
        if status in (200, 201):
            return self._delivered(response)
        if status == 429:
            self._alert("signal.rate_limited")
            raise DeliveryRetry("signal: HTTP 429 rate limited", _retry_after(response))
        if status >= 500:
            raise DeliveryRetry(f"signal: HTTP {status} server error", _retry_after(response))
        if status in (401, 403, 407):
            self._alert("signal.api_auth_failed")
            raise DeliveryRetry(f"signal: HTTP {status} not authorised by the API proxy")
        if status in (408, 425):
            raise DeliveryRetry(f"signal: HTTP {status} try again", _retry_after(response))
        if status == 400:
            raise self._classify_400(_error_text(response))
        if status == 404:
            raise DeliveryRefused("signal: HTTP 404 no such endpoint; check [signal] api_url")
        raise DeliveryRefused(f"signal: HTTP {status} refused")

    def _classify_400(self, text: str) -> DeliveryError:
        """Classify a 400 by its error text (free text: substrings only, research §3.3)."""
        lower = text.lower()
        if "process killed" in lower or "strconv.parseint" in lower or "in use by another" in lower:
            return DeliveryUnknown("signal: HTTP 400 signal-cli timed out or was noisy")
        if "rate limit" in lower or "captcha" in lower or "proof required" in lower:
            self._alert("signal.rate_limited")
            return DeliveryRetry("signal: HTTP 400 rate limited (operator action needed)")
        if "untrusted" in lower:
            self._alert("signal.untrusted_recipient")
            return DeliveryRefused("signal: HTTP 400 recipient's safety number is not trusted")
        if self._number in text and "not registered" in lower:
            self._alert("signal.account_not_registered")
            return DeliveryRetry("signal: HTTP 400 the bot's own account is not registered")
        if "not registered" in lower or "unregistered" in lower:
            return DeliveryRefused("signal: HTTP 400 recipient is not registered on Signal")
        if (
            "invalid identifier" in lower
            or lower.startswith("couldn't process request")
            or "cannot be specified together" in lower
            or "more than one group" in lower
        ):
            return DeliveryRefused("signal: HTTP 400 request rejected as invalid")
        return DeliveryUnknown("signal: HTTP 400 unrecognised error")

    def _delivered(self, response: httpx.Response) -> Delivered:
        """Read the timestamp of a 2xx send answer (object, or HEAD's one-element array)."""
        status = response.status_code
        try:
            data = json.loads(response.content)
        except ValueError:
            raise DeliveryUnknown(f"signal: HTTP {status} answer is not JSON") from None
        entry = data[0] if isinstance(data, list) and data else data
        if not isinstance(entry, dict):
            raise DeliveryUnknown(f"signal: HTTP {status} answer has no timestamp")
        try:
            value = int(str(entry.get("timestamp")))
        except ValueError:
            raise DeliveryUnknown(f"signal: HTTP {status} answer has no timestamp") from None
        if value <= 0:
            raise DeliveryUnknown(f"signal: HTTP {status} answer has no timestamp")
        errors = entry.get("errors")
        reasons: list[str] = []
        if isinstance(errors, dict) and isinstance(errors.get("recipients"), list):
            reasons = [
                str(r.get("reason", "")) for r in errors["recipients"] if isinstance(r, dict)
            ]
        if reasons:
            # One recipient per request: a failure listed here is the whole outcome.
            if "RATE_LIMIT_FAILURE" in reasons:
                self._alert("signal.rate_limited")
                raise DeliveryRetry("signal: recipient rate limited")
            if "IDENTITY_FAILURE" in reasons:
                self._alert("signal.untrusted_recipient")
                raise DeliveryRefused("signal: recipient's safety number is not trusted")
            if "UNREGISTERED_FAILURE" in reasons:
                raise DeliveryRefused("signal: recipient is not registered on Signal")
            raise DeliveryUnknown("signal: recipient failure reported")
        return Delivered((str(value),))

    async def _ensure_expiry(self, identity: str, outbox_id: str) -> None:
        """Set the disappearing timer for ``identity`` once per process; never raises."""
        key = hmac.new(self._salt, identity.encode(), hashlib.sha256).digest()
        if key in self._expiry_set:
            return
        lock = self._expiry_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await self._put_expiry(key, identity, outbox_id)
        finally:
            if not lock.locked():
                self._expiry_locks.pop(key, None)

    async def _put_expiry(self, key: bytes, identity: str, outbox_id: str) -> None:
        """``PUT /v1/contacts/{number}`` with the timer, unless done meanwhile; never raises."""
        if key in self._expiry_set:
            return
        body = {"recipient": identity, "expiration_in_seconds": self._expire_seconds}
        budget = self._timeout / 2
        try:
            response = await self._client().put(
                f"/v1/contacts/{self._path_number}",
                json=body,
                timeout=httpx.Timeout(budget, connect=min(CONNECT_TIMEOUT, budget)),
            )
        except httpx.HTTPError as exc:
            log.warning(
                "signal.expiry_failed outbox_id=%s error=%s",
                _safe_token(outbox_id, 64),
                type(exc).__name__,
            )
            return
        if response.status_code not in (200, 204):
            log.warning(
                "signal.expiry_failed outbox_id=%s status=%s",
                _safe_token(outbox_id, 64),
                response.status_code,
            )
            return
        self._expiry_set.add(key)
        log.info("signal.expiry_set outbox_id=%s", _safe_token(outbox_id, 64))


def _kind(exc: BaseException) -> str:
    """The exception's class name (its message may quote a URL with our number)."""
    return type(exc).__name__
