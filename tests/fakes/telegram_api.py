"""A faithful fake of the Telegram Bot API server, on aiohttp, for tests and benchmarks.

It listens on 127.0.0.1 with a random port; point PTB at it with
``base_url=f"{fake.url}/bot"``. It follows the wire format described in
``shared/research/telegram.md`` §3 and the payload shapes of
``shared/contracts/telegram-samples.json``:

- ``POST|GET /bot<token>/<method>``, method names case-insensitive; a malformed token gets
  401 "Unauthorized: invalid token specified", an unknown well-formed one 401 "Unauthorized",
  an unknown method 404 "Not Found: method not found".
- Parameters from the query string, ``application/x-www-form-urlencoded`` (what PTB sends),
  ``multipart/form-data`` or ``application/json``; array and object fields sent as form
  values are JSON-decoded, as the real server does.
- Success: 200 ``{"ok": true, "result": ...}``; errors: HTTP status = ``error_code`` and
  ``{"ok": false, "error_code": N, "description": "<Prefix>: ..."}``; 429 carries
  ``parameters.retry_after`` and a ``Retry-After`` header.
- getUpdates: a queue; ``update_id < offset`` confirms (and forgets) updates, a negative
  offset keeps the last ``-offset``; long poll up to ``min(timeout, 50)`` s, woken early by a
  new update; ``allowed_updates`` is sticky; a newer getUpdates terminates an older pending
  one with 409; 409 while a webhook is set; updates expire after 24 h.

Test helpers: :meth:`FakeBotApi.user_says`, :meth:`FakeBotApi.user_presses` and friends build
updates; :attr:`FakeBotApi.chats` records what each chat saw; :meth:`FakeBotApi.fail_next`
injects faults; :meth:`FakeBotApi.restart` drops every connection and comes back on the same
port; :meth:`FakeBotApi.deliver` POSTs an update to a webhook the way Telegram does.

Flood control is opt-in (``FakeBotApi(rate_limit=True)``): sendMessage then enforces the
limits of research §4.2 — at most one message per second to a chat and 30 per second overall —
answering 429 "Too Many Requests: retry after N" with ``parameters.retry_after`` and a
``Retry-After`` header (N whole seconds, at least 1, as the real server sends). The default
(off) accepts everything, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

TOKEN = "7000000001:AAF-fake-token-for-tests_0123456789abc"
BOT_ID = 7000000001
BOT_USERNAME = "intake_desk_bot"
FIRST_UPDATE_ID = 815240001
LONG_POLL_MAX = 50
FLOOD_PER_CHAT_INTERVAL = 1.0  # seconds between two messages to one chat (research §4.2)
FLOOD_OVERALL_RATE = 30  # messages per second overall
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
DELETE_WINDOW = 48 * 3600
UPDATE_TTL = 24 * 3600

_TOKEN_RE = re.compile(r"[1-9][0-9]{0,16}:[A-Za-z0-9_-]+")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "message_ids",
        "allowed_updates",
        "entities",
        "link_preview_options",
        "reply_parameters",
        "commands",
        "scope",
    }
)
_INT_FIELDS = frozenset(
    {"offset", "limit", "timeout", "message_id", "max_connections", "cache_time"}
)
_BOOL_FIELDS = frozenset(
    {"drop_pending_updates", "disable_notification", "protect_content", "show_alert"}
)
_UPDATE_KINDS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "inline_query",
    "my_chat_member",
)
_DEFAULT_ALLOWED = frozenset(_UPDATE_KINDS)

BOT_USER: dict[str, Any] = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Intake Desk",
    "username": BOT_USERNAME,
}
GET_ME: dict[str, Any] = {
    **BOT_USER,
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
    "supports_guest_queries": False,
    "can_connect_to_business": False,
    "has_main_web_app": False,
    "has_topics_enabled": False,
    "allows_users_to_create_topics": False,
    "can_manage_bots": False,
}


class ApiError(Exception):
    """An error answer of the fake API (HTTP status = ``code``)."""

    PREFIX: ClassVar[dict[int, str]] = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }

    def __init__(self, code: int, text: str, *, retry_after: int | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.retry_after = retry_after

    def response(self) -> web.Response:
        """Return the envelope the real server sends for this error."""
        prefix = self.PREFIX.get(self.code, "Error")
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": f"{prefix}: {self.text}" if self.text else prefix,
        }
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
            headers["Retry-After"] = str(self.retry_after)
        return _json_response(body, status=self.code, headers=headers)


@dataclass
class Fault:
    """A scripted failure for the next call(s) of one method.

    kind: ``"429"`` (with ``retry_after``), ``"500"``, ``"502"``, ``"400"``, ``"403"``,
    ``"409"``, ``"invalid_json"`` (200 with an HTML body), ``"hang"`` (no answer for
    ``hang_for`` seconds) or ``"drop"`` (the connection is closed without an answer).
    processed: whether the call takes effect before the fault (``hang``, ``drop`` and
    ``invalid_json`` default to True: the request arrived, only the answer is lost).
    """

    kind: str
    retry_after: int = 1
    processed: bool | None = None
    description: str | None = None
    hang_for: float = 30.0

    def takes_effect(self) -> bool:
        """Return whether the call is carried out despite the fault."""
        if self.processed is not None:
            return self.processed
        return self.kind in ("hang", "drop", "invalid_json")


@dataclass
class Sent:
    """A message the bot sent, as the fake stored it."""

    message_id: int
    text: str
    reply_markup: dict[str, Any] | None
    protect_content: bool
    disable_notification: bool
    date: int
    accepted_at: float = 0.0  # time.time() when the fake accepted it (benchmarks order by it)


@dataclass
class Chat:
    """Everything one private chat saw: both sides, deletions and the visible transcript."""

    chat_id: int
    first_name: str = "Dana"
    sent: list[Sent] = field(default_factory=list)
    received: list[int] = field(default_factory=list)  # message ids the user wrote
    deleted: list[int] = field(default_factory=list)
    blocked: bool = False
    # message_id -> (side "user"|"bot", text, date): what is still visible in the chat
    visible: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    next_message_id: int = 17

    def new_message_id(self) -> int:
        """Allocate the next message id of this chat (both sides share the counter)."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    def transcript(self) -> list[tuple[str, str]]:
        """Return the (side, text) pairs still visible, oldest first."""
        return [(side, text) for _, (side, text, _) in sorted(self.visible.items())]

    def sent_texts(self) -> list[str]:
        """Return the texts the bot sent here, in order (deleted or not)."""
        return [message.text for message in self.sent]


@dataclass
class Call:
    """One API call as received: method (canonical case), parameters, and the time."""

    method: str
    params: dict[str, Any]
    at: float


def _json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeBotApi:
    """The fake server. Use as ``async with FakeBotApi() as fake:`` or start()/stop().

    Args:
        token: the one token this fake accepts.
        port: 0 picks a free port (kept across :meth:`restart`).
        rate_limit: enforce Telegram's flood limits on sendMessage (module docstring);
            :attr:`rate_limited` counts the 429s answered.
        per_chat_interval: with ``rate_limit``, seconds between two messages to one chat.
        overall_rate: with ``rate_limit``, messages per second overall.
        rate_slack: with ``rate_limit``, seconds of tolerance on both windows (a client's
            own limiter measures from when it sent, the server from when a request arrived).
    """

    def __init__(
        self,
        token: str = TOKEN,
        *,
        port: int = 0,
        rate_limit: bool = False,
        per_chat_interval: float = FLOOD_PER_CHAT_INTERVAL,
        overall_rate: int = FLOOD_OVERALL_RATE,
        rate_slack: float = 0.05,
    ) -> None:
        self.token = token
        self.port = port
        self.rate_limit = rate_limit
        self.per_chat_interval = per_chat_interval
        self.overall_rate = overall_rate
        self.rate_slack = rate_slack
        self.rate_limited = 0
        self._last_sent: dict[int, float] = {}  # chat id -> monotonic time of the last accept
        self._recent_sent: deque[float] = deque()  # monotonic times of accepts in the last second
        self.chats: dict[int, Chat] = {}
        self.calls: list[Call] = []
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_allowed: list[str] | None = None
        self.webhook_max_connections: int | None = None
        self.allowed_updates: frozenset[str] = _DEFAULT_ALLOWED
        self.answered_callbacks: list[dict[str, Any]] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.confirmed: list[int] = []
        self._updates: list[tuple[float, dict[str, Any]]] = []  # (expires_at, update)
        self._next_update_id = FIRST_UPDATE_ID
        self._callbacks: dict[str, bool] = {}  # callback query id -> answered
        self._callback_ids = itertools.count(5318008123456789012)
        self._poll_generation = 0
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give PTB as ``base_url``: ``{url}/bot``."""
        return f"{self.url}/bot"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port the first time, the same port afterwards)."""
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and drop every connection (hanging calls end)."""
        self._closing.set()
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def restart(self) -> None:
        """Go away (every connection dropped) and come back on the same port, state kept."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ test helpers

    def chat(self, chat_id: int, first_name: str = "Dana") -> Chat:
        """Return the record of private chat ``chat_id`` (created on first use)."""
        if chat_id not in self.chats:
            self.chats[chat_id] = Chat(chat_id, first_name)
        return self.chats[chat_id]

    def user_says(self, user_id: int, text: str, *, first_name: str = "Dana") -> dict[str, Any]:
        """Queue a private text message from ``user_id`` (a leading /command gets its
        ``bot_command`` entity, as real clients send it); return the update."""
        fields: dict[str, Any] = {"text": text}
        command = re.match(r"/[A-Za-z0-9_]+", text)
        if command:
            fields["entities"] = [{"offset": 0, "length": command.end(), "type": "bot_command"}]
        return self.user_sends(user_id, fields, first_name=first_name, shown=text)

    def user_sends_photo(self, user_id: int, *, caption: str | None = None) -> dict[str, Any]:
        """Queue a private photo message (no ``text``) from ``user_id``; return the update."""
        fields: dict[str, Any] = {
            "photo": [
                {
                    "file_id": "AgACAgQAAxkBAAIBZ2fake",
                    "file_unique_id": "AQADfake",
                    "file_size": 1024,
                    "width": 90,
                    "height": 67,
                }
            ]
        }
        if caption is not None:
            fields["caption"] = caption
        return self.user_sends(user_id, fields, shown="[photo]")

    def user_sends(
        self,
        user_id: int,
        fields: dict[str, Any],
        *,
        first_name: str = "Dana",
        shown: str = "",
    ) -> dict[str, Any]:
        """Queue a private message from ``user_id`` with the given content ``fields``."""
        chat = self.chat(user_id, first_name)
        message_id = chat.new_message_id()
        now = int(time.time())
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._user(user_id, first_name),
            "chat": {"id": user_id, "first_name": first_name, "type": "private"},
            "date": now,
            **fields,
        }
        chat.received.append(message_id)
        chat.visible[message_id] = ("user", shown, now)
        return self.enqueue({"message": message})

    def group_says(self, user_id: int, group_id: int, text: str) -> dict[str, Any]:
        """Queue a message from ``user_id`` in group ``group_id`` (negative); return it."""
        message = {
            "message_id": 900 + len(self._updates),
            "from": self._user(user_id, "Dana"),
            "chat": {"id": group_id, "title": "Some group", "type": "group"},
            "date": int(time.time()),
            "text": text,
        }
        return self.enqueue({"message": message})

    def user_edits(self, user_id: int, message_id: int, text: str) -> dict[str, Any]:
        """Queue an ``edited_message`` update for a private message; return it."""
        now = int(time.time())
        message = {
            "message_id": message_id,
            "from": self._user(user_id, "Dana"),
            "chat": {"id": user_id, "first_name": "Dana", "type": "private"},
            "date": now - 10,
            "edit_date": now,
            "text": text,
        }
        return self.enqueue({"edited_message": message})

    def user_presses(self, user_id: int, message_id: int, data: str) -> dict[str, Any]:
        """Queue the press of the inline button with ``data`` under the bot's message
        ``message_id`` in ``user_id``'s chat; the update's message carries the inline keyboard
        that was sent, as in the real API. Return the update."""
        chat = self.chat(user_id)
        sent = next((m for m in chat.sent if m.message_id == message_id), None)
        if sent is None:
            raise AssertionError("the bot sent no such message in this chat")
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(BOT_USER),
            "chat": {"id": user_id, "first_name": chat.first_name, "type": "private"},
            "date": sent.date,
            "text": sent.text,
        }
        if sent.reply_markup is not None:
            message["reply_markup"] = sent.reply_markup
        query_id = str(next(self._callback_ids))
        self._callbacks[query_id] = False
        return self.enqueue(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(user_id, chat.first_name),
                    "message": message,
                    "chat_instance": "-3288441675213987654",
                    "data": data,
                }
            }
        )

    def enqueue(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue an update built from ``body`` (everything but ``update_id``); return it."""
        update = {"update_id": self._next_update_id, **body}
        self._next_update_id += 1
        self._updates.append((time.time() + UPDATE_TTL, update))
        self._wake()
        return update

    def pending_ids(self) -> list[int]:
        """Return the update ids still held (not confirmed), oldest first."""
        self._expire()
        return [update["update_id"] for _, update in self._updates]

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sending to them answers 403."""
        self.chat(user_id).blocked = True

    def fail_next(self, method: str, times: int = 1, kind: str = "500", **options: Any) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``kind`` (see :class:`Fault`)."""
        queue = self.faults.setdefault(method.lower(), deque())
        for _ in range(times):
            queue.append(Fault(kind, **options))

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        """Return the parameters of every call of ``method`` so far, in order."""
        return [call.params for call in self.calls if call.method.lower() == method.lower()]

    async def deliver(
        self,
        update: dict[str, Any] | bytes,
        *,
        url: str | None = None,
        secret: str | EllipsisType | None = ...,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> int:
        """POST ``update`` to the webhook as Telegram does; return the HTTP status.

        ``url`` defaults to the one set with setWebhook; ``secret`` defaults to the one set
        with setWebhook (None sends no secret header). Bytes are sent as they are.
        """
        target = url or self.webhook_url
        if not target:
            raise AssertionError("no webhook is set")
        headers = {"Content-Type": content_type}
        chosen = self.webhook_secret if isinstance(secret, EllipsisType) else secret
        if chosen is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = chosen
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        if self._client is None:
            self._client = aiohttp.ClientSession()
        async with self._client.post(
            target, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            await response.read()
            return response.status

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _user(user_id: int, first_name: str) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _expire(self) -> None:
        now = time.time()
        self._updates = [(exp, update) for exp, update in self._updates if exp > now]

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise ApiError(400, "can't parse JSON object") from exc
                if not isinstance(body, dict):
                    raise ApiError(400, "JSON object expected")
                params.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        params[key] = value
            else:
                await request.read()
        for key, value in list(params.items()):
            if not isinstance(value, str):
                continue
            try:
                if key in _JSON_FIELDS:
                    params[key] = json.loads(value)
                elif key in _INT_FIELDS:
                    params[key] = int(value)
                elif key in _BOOL_FIELDS:
                    params[key] = value.lower() in ("true", "1")
            except ValueError as exc:
                raise ApiError(400, f"can't parse {key}") from exc
        return params

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        if len(token) > 80 or not _TOKEN_RE.fullmatch(token):
            return ApiError(401, "invalid token specified").response()
        if token != self.token:
            return ApiError(401, "").response()
        method = request.match_info["method"].lower()
        handler = self._methods().get(method)
        if handler is None:
            return ApiError(404, "method not found").response()
        try:
            params = await self._params(request)
        except ApiError as exc:
            return exc.response()
        self.calls.append(Call(_CANONICAL[method], params, time.monotonic()))
        queue = self.faults.get(method)
        fault = queue.popleft() if queue else None
        if fault is not None and not fault.takes_effect():
            return await self._fault_response(request, fault)
        try:
            result = await handler(params)
        except ApiError as exc:
            response: web.StreamResponse = exc.response()
        else:
            if isinstance(result, web.StreamResponse):
                response = result
            else:
                response = _json_response({"ok": True, "result": result})
        if fault is not None:
            return await self._fault_response(request, fault)
        return response

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.hang_for)
            return ApiError(500, "").response()
        if fault.kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # aiohttp's way of ending a handler without a reply
        if fault.kind == "invalid_json":
            return web.Response(
                status=200,
                text="<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        code = int(fault.kind)
        retry_after = fault.retry_after if code == 429 else None
        text = fault.description
        if text is None:
            text = {
                429: f"retry after {fault.retry_after}",
                403: "bot was blocked by the user",
                400: "chat not found",
                409: "terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
            }.get(code, "")
        return ApiError(code, text, retry_after=retry_after).response()

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "deletemessage": self._delete_message,
            "deletemessages": self._delete_messages,
            "answercallbackquery": self._answer_callback_query,
        }

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return dict(GET_ME)

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "can't use getUpdates method while webhook is active; use deleteWebhook to "
                "delete the webhook first",
            )
        self._poll_generation += 1
        generation = self._poll_generation
        offset = params.get("offset")
        limit = min(max(int(params.get("limit", 100)), 1), 100)
        timeout = min(max(int(params.get("timeout", 0)), 0), LONG_POLL_MAX)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            self.allowed_updates = frozenset(allowed) if allowed else _DEFAULT_ALLOWED
        self._confirm(offset)
        deadline = time.monotonic() + timeout
        while True:
            ready = self._ready(limit)
            if ready or self._closing.is_set():
                return ready
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "terminated by other getUpdates request; make sure that only one bot "
                    "instance is running",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _confirm(self, offset: Any) -> None:
        self._expire()
        if offset is None:
            return
        offset = int(offset)
        if offset < 0:
            dropped = self._updates[:offset]
            self._updates = self._updates[offset:]
        else:
            dropped = [(e, u) for e, u in self._updates if u["update_id"] < offset]
            self._updates = [(e, u) for e, u in self._updates if u["update_id"] >= offset]
        self.confirmed.extend(update["update_id"] for _, update in dropped)

    def _ready(self, limit: int) -> list[dict[str, Any]]:
        out = []
        for _, update in self._updates:
            kind = next((k for k in update if k != "update_id"), "")
            if kind in self.allowed_updates:
                out.append(update)
            if len(out) >= limit:
                break
        return out

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self.confirmed.extend(update["update_id"] for _, update in self._updates)
            self._updates.clear()
        had = bool(self.webhook_url)
        self.webhook_url = ""
        self.webhook_secret = None
        description = "Webhook was deleted" if had else "Webhook is already deleted"
        return _json_response({"ok": True, "result": True, "description": description})

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        url = str(params.get("url", ""))
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_RE.fullmatch(str(secret)):
            raise ApiError(400, "secret token contains unallowed characters")
        max_connections = params.get("max_connections")
        if max_connections is not None and not 1 <= int(max_connections) <= 100:
            raise ApiError(400, "bad max_connections")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if "allowed_updates" in params:
            self.webhook_allowed = list(params["allowed_updates"])
        self.webhook_url = url
        self.webhook_secret = secret if url else None
        self.webhook_max_connections = max_connections
        self._poll_generation += 1  # a pending getUpdates ends with 409
        self._wake()
        description = "Webhook was set" if url else "Webhook was deleted"
        return _json_response({"ok": True, "result": True, "description": description})

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        self._expire()
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url:
            info["max_connections"] = self.webhook_max_connections or 40
            if self.webhook_allowed is not None:
                info["allowed_updates"] = self.webhook_allowed
        return info

    def _known_chat(self, params: dict[str, Any]) -> Chat:
        raw = params.get("chat_id")
        if raw is None:
            raise ApiError(400, "chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "chat not found") from exc
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ApiError(400, "chat not found")
        return chat

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat = self._known_chat(params)
        if chat.blocked:
            raise ApiError(403, "bot was blocked by the user")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "message text is empty")
        if _utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "message is too long")
        markup = params.get("reply_markup")
        if markup is not None:
            rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
            if not isinstance(rows, list):
                raise ApiError(400, "can't parse reply keyboard markup JSON object")
            for row in rows:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                        raise ApiError(400, "BUTTON_DATA_INVALID")
                    if not button.get("text"):
                        raise ApiError(400, "text buttons are unallowed in the inline keyboard")
        if self.rate_limit:
            self._flood_control(chat.chat_id)
        protect = bool(params.get("protect_content", False))
        accepted_at = time.time()
        now = int(accepted_at)
        message_id = chat.new_message_id()
        chat.sent.append(
            Sent(
                message_id=message_id,
                text=text,
                reply_markup=markup,
                protect_content=protect,
                disable_notification=bool(params.get("disable_notification", False)),
                date=now,
                accepted_at=accepted_at,
            )
        )
        chat.visible[message_id] = ("bot", text, now)
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(BOT_USER),
            "chat": {"id": chat.chat_id, "first_name": chat.first_name, "type": "private"},
            "date": now,
            "text": text,
        }
        if protect:
            result["has_protected_content"] = True
        if markup is not None:
            result["reply_markup"] = markup
        return result

    def _flood_control(self, chat_id: int) -> None:
        """Take a slot for one message to ``chat_id`` or raise the 429 the real server
        answers (retry_after: whole seconds until the slot is free, at least 1)."""
        now = time.monotonic()
        window = 1.0 - self.rate_slack
        while self._recent_sent and self._recent_sent[0] <= now - window:
            self._recent_sent.popleft()
        wait = 0.0
        last = self._last_sent.get(chat_id)
        if last is not None and now - last < self.per_chat_interval - self.rate_slack:
            wait = last + self.per_chat_interval - now
        if len(self._recent_sent) >= self.overall_rate:
            wait = max(wait, self._recent_sent[0] + 1.0 - now)
        if wait > 0:
            self.rate_limited += 1
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"retry after {retry_after}", retry_after=retry_after)
        self._last_sent[chat_id] = now
        self._recent_sent.append(now)

    def _deletable(self, chat: Chat, message_id: int) -> bool | None:
        """True: deletable; False: too old; None: not found."""
        entry = chat.visible.get(message_id)
        if entry is None:
            return None
        return time.time() - entry[2] < DELETE_WINDOW

    async def _delete_message(self, params: dict[str, Any]) -> Any:
        chat = self._known_chat(params)
        message_id = int(params.get("message_id", 0))
        state = self._deletable(chat, message_id)
        if state is None:
            raise ApiError(400, "message to delete not found")
        if state is False:
            raise ApiError(400, "message can't be deleted")
        del chat.visible[message_id]
        chat.deleted.append(message_id)
        return True

    async def _delete_messages(self, params: dict[str, Any]) -> Any:
        chat = self._known_chat(params)
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not ids:
            raise ApiError(400, "message_ids is empty")
        if len(ids) > 100:
            raise ApiError(400, "too many message identifiers specified")
        for raw in ids:  # "If some of the specified messages can't be found, they are skipped."
            message_id = int(raw)
            if self._deletable(chat, message_id):
                del chat.visible[message_id]
                chat.deleted.append(message_id)
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id", ""))
        if self._callbacks.get(query_id, True):
            raise ApiError(
                400, "query is too old and response timeout expired or query ID is invalid"
            )
        self._callbacks[query_id] = True
        self.answered_callbacks.append(params)
        return True


_CANONICAL = {
    name.lower(): name
    for name in (
        "getMe",
        "getUpdates",
        "deleteWebhook",
        "setWebhook",
        "getWebhookInfo",
        "sendMessage",
        "deleteMessage",
        "deleteMessages",
        "answerCallbackQuery",
    )
}
