"""A faithful fake of signal-cli-rest-api (bbernhard), on aiohttp, for tests and benchmarks.

It follows /work/shared/contracts/signal-cli-rest-api.swagger.json and the research note
(shared/research/signal-api.md) route by route: status codes, JSON shapes, the exact
validation error strings, ``{"error": "..."}`` bodies, and the quirks a client must survive:

- ``GET /v1/receive/{number}`` in mode ``normal``/``native`` is a destructive pull: the items
  taken are gone even if the client never reads the answer; the 200 is ``text/plain``.
- In mode ``json-rpc`` that path is a websocket; a plain GET gets gorilla's 400. Items that
  arrive while no socket is attached are LOST (recorded in :attr:`FakeSignalApi.lost`), as in
  reality; items that arrive while the whole server is down wait and are pushed when it comes
  back (after ``daemon_start_delay``, to whoever is connected by then).
- ``POST /v2/send`` answers 201 with ``{"timestamp": "<string>"}`` (0.100) or, with
  ``send_shape="array"``, HEAD's ``[{"timestamp": "..."}]``.
- Unknown routes and wrong methods get gin's ``404 page not found`` (text/plain).

Fault injection: :meth:`fail_sends`, :meth:`fail_receives`, :meth:`fail_contact_updates`,
:meth:`reject_websockets`, :meth:`drop_websockets`, :meth:`restart`.

Deviation kept on purpose: a fault ``"429"`` on a send is answered in json-rpc shape in every
mode (the real normal/native mode never answers 429; a proxy in front may), and may carry a
``Retry-After`` header, which the real server never sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

ACCOUNT = "+15559870000"
JSON_CT = "application/json"

_E164 = re.compile(r"^\+[1-9]\d{5,14}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_USERNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{2,31}\.\d{2,9}$")
_GORILLA_NO_UPGRADE = (
    "websocket: the client is not using the websocket protocol: "
    "'upgrade' token not found in 'Connection' header"
)
_JAVA_TRACE = (
    'Exception in thread "main" java.lang.NullPointerException: Cannot invoke '
    '"org.asamk.signal.manager.api.MessageEnvelope$Data.reaction()"\n'
    "\tat org.asamk.signal.json.JsonDataMessage.from(JsonDataMessage.java:84)\n"
    "\tat org.asamk.signal.ReceiveMessageHandler.handleMessage(ReceiveMessageHandler.java:40)"
)
_RATE_LIMIT_429 = (
    "Failed to send message due to rate limiting. Use the attached challenge tokens to lift "
    "the rate limit restrictions via the '/v1/accounts/{number}/rate-limit-challenge' endpoint."
)

SEND_FAULTS = (
    "429",  # 429 SendMessageError (json-rpc shape), optional Retry-After; not sent
    "500",  # 500 {"error": ...} (a proxy's answer); not sent
    "rate_limit",  # mode-faithful rate limit: 429 (json-rpc) or 400 CAPTCHA text; not sent
    "invalid_json",  # 201 whose body is not JSON; SENT
    "hang",  # never answers before the client's timeout; SENT
    "drop",  # closes the connection without an answer; SENT
    "timeout_kill",  # 400 "process killed as timeout reached"; SENT (#737)
    "400",  # 400 with the given error text; not sent
)
RECEIVE_FAULTS = (
    "500",  # 500 {"error": ...}; nothing consumed
    "400",  # 400 with the given error text; nothing consumed
    "timeout_kill",  # 400 "process killed as timeout reached"; the batch is CONSUMED (lost)
    "invalid_json",  # 200 with a Java stack trace appended; the batch is consumed
    "hang",  # the batch is consumed, then no answer before the client's timeout
    "drop",  # the batch is consumed, then the connection is closed
)


# ------------------------------------------------------------------------------------------
# Sample items (research §5.1): every always-present field is present, possibly null.
# ------------------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def envelope(
    source_uuid: str | None,
    source_number: str | None,
    timestamp: int | None = None,
    *,
    name: str | None = "A. Defender",
    **parts: Any,
) -> dict[str, Any]:
    """An envelope (``JsonMessageEnvelope``) with the given content parts (``dataMessage``...)."""
    ts = timestamp if timestamp is not None else _now_ms()
    return {
        "source": source_number or source_uuid,
        "sourceNumber": source_number,
        "sourceUuid": source_uuid,
        "sourceName": name,
        "sourceDevice": 1,
        "timestamp": ts,
        "serverReceivedTimestamp": ts + 333,
        "serverDeliveredTimestamp": ts + 1666,
        **parts,
    }


def data_message(
    timestamp: int, text: str | None, *, expires: int = 0, **extra: Any
) -> dict[str, Any]:
    """A ``dataMessage`` with its always-present fields."""
    return {
        "timestamp": timestamp,
        "message": text,
        "expiresInSeconds": expires,
        "isExpirationUpdate": False,
        "viewOnce": False,
        **extra,
    }


def text_item(
    source_uuid: str | None,
    source_number: str | None,
    text: str | None,
    timestamp: int | None = None,
    *,
    account: str = ACCOUNT,
    **extra: Any,
) -> dict[str, Any]:
    """Sample (a): a 1:1 text message (``extra`` goes into the dataMessage)."""
    ts = timestamp if timestamp is not None else _now_ms()
    env = envelope(source_uuid, source_number, ts, dataMessage=data_message(ts, text, **extra))
    return {"envelope": env, "account": account}


def attachment_item(
    source_uuid: str, source_number: str | None, timestamp: int | None = None, **kw: Any
) -> dict[str, Any]:
    """A photo with no caption text (``message`` null, one attachment)."""
    attachment = {
        "contentType": "image/jpeg",
        "filename": None,
        "id": "q2Vb7xKp0cNw3YtLh9Re.jpg",
        "size": 183422,
        "width": 1280,
        "height": 960,
        "caption": None,
        "uploadTimestamp": 1764449999001,
    }
    return text_item(source_uuid, source_number, None, timestamp, attachments=[attachment], **kw)


def reaction_item(
    source_uuid: str, source_number: str | None, target_ts: int, *, account: str = ACCOUNT
) -> dict[str, Any]:
    """Sample (b): a reaction (no text)."""
    reaction = {
        "emoji": "\N{THUMBS UP SIGN}",
        "targetAuthor": account,
        "targetAuthorNumber": account,
        "targetAuthorUuid": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "targetSentTimestamp": target_ts,
        "isRemove": False,
    }
    return text_item(source_uuid, source_number, None, reaction=reaction, account=account)


def receipt_item(
    source_uuid: str,
    source_number: str | None,
    timestamps: list[int],
    *,
    read: bool = False,
    account: str = ACCOUNT,
) -> dict[str, Any]:
    """Sample (c): a delivery (or read) receipt for our sent ``timestamps``."""
    ts = _now_ms()
    receipt = {
        "when": ts,
        "isDelivery": not read,
        "isRead": read,
        "isViewed": False,
        "timestamps": timestamps,
    }
    env = envelope(source_uuid, source_number, ts, receiptMessage=receipt)
    return {"envelope": env, "account": account}


def typing_item(
    source_uuid: str, source_number: str | None, *, account: str = ACCOUNT
) -> dict[str, Any]:
    """A typing indicator."""
    ts = _now_ms()
    typing = {"action": "STARTED", "timestamp": ts}
    env = envelope(source_uuid, source_number, ts, typingMessage=typing)
    return {"envelope": env, "account": account}


def sync_item(
    destination_uuid: str, destination_number: str | None, text: str, *, account: str = ACCOUNT
) -> dict[str, Any]:
    """A sync transcript: our own linked phone sent ``text`` to someone."""
    ts = _now_ms()
    sent = {
        "destination": destination_number,
        "destinationNumber": destination_number,
        "destinationUuid": destination_uuid,
        "timestamp": ts,
        "message": text,
        "expiresInSeconds": 0,
        "isExpirationUpdate": False,
        "viewOnce": False,
    }
    own = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    env = envelope(own, account, ts, name=None, syncMessage={"sentMessage": sent})
    return {"envelope": env, "account": account}


def expiration_update_item(
    source_uuid: str, source_number: str | None, seconds: int, *, account: str = ACCOUNT
) -> dict[str, Any]:
    """The defender changed the chat's disappearing timer (no text)."""
    item = text_item(source_uuid, source_number, None, expires=seconds, account=account)
    item["envelope"]["dataMessage"]["isExpirationUpdate"] = True
    return item


def untrusted_item(
    source_uuid: str,
    source_number: str | None,
    timestamp: int | None = None,
    *,
    account: str = ACCOUNT,
) -> dict[str, Any]:
    """A message from a sender whose safety number changed: metadata, no content (§7.6)."""
    ts = timestamp if timestamp is not None else _now_ms()
    return {
        "account": account,
        "exception": {
            "message": f"Untrusted identity: {source_uuid}",
            "type": "UntrustedIdentityException",
        },
        "envelope": envelope(source_uuid, source_number, ts),
    }


def exception_only_item(*, account: str = ACCOUNT) -> dict[str, Any]:
    """An item with only an exception (signalbot #233)."""
    return {
        "exception": {
            "message": "SyncMessage missing destination, group ID, and recipient manifest!",
            "type": "InvalidMessageStructureException",
        },
        "account": account,
    }


# ------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------


@dataclass
class _Fault:
    kind: str
    retry_after: float | None = None
    error: str | None = None


@dataclass
class _Socket:
    number: str
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


def _json(status: int, data: Any) -> web.Response:
    """gin's ``c.JSON``: ``application/json; charset=utf-8``."""
    return web.json_response(data, status=status)


def _error(status: int, message: str) -> web.Response:
    """An ``api.Error`` body."""
    return _json(status, {"error": message})


def _text(status: int, body: str) -> web.Response:
    """A ``text/plain; charset=utf-8`` body (gin's ``c.String``)."""
    return web.Response(status=status, text=body, content_type="text/plain", charset="utf-8")


@web.middleware
async def _gin_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """gin answers unknown routes and wrong methods with ``404 page not found``."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return _text(404, "404 page not found")


class FakeSignalApi:
    """signal-cli-rest-api for one registered account, on 127.0.0.1 and a random port.

    Use as ``async with FakeSignalApi(mode="normal") as api:`` and point the client at
    ``api.url``.

    Args:
        mode: ``normal``, ``native`` or ``json-rpc``.
        number: the registered account.
        accounts: what ``GET /v1/accounts`` lists (default: ``[number]``).
        send_shape: ``object`` (0.100) or ``array`` (HEAD) for the 201 of ``/v2/send``.
        version: the ``version`` of ``/v1/about``.
        receive_wait_cap: at most this many seconds of the GET's ``timeout`` are really
            waited for a first message (0: answer at once, to keep tests fast).
        daemon_start_delay: json-rpc: seconds after a (re)start before items that arrived
            while the server was down are pushed (to whoever is connected by then).
        server_ping_interval: the server's websocket ping period (real: 54 s).
        answer_pings: False makes the websocket ignore the client's pings (a half-open link).
        hang_seconds: how long a ``hang`` fault holds its request.
    """

    def __init__(
        self,
        *,
        mode: str = "normal",
        number: str = ACCOUNT,
        accounts: list[str] | None = None,
        send_shape: str = "object",
        version: str = "0.100",
        receive_wait_cap: float = 0.0,
        daemon_start_delay: float = 0.05,
        server_ping_interval: float = 54.0,
        answer_pings: bool = True,
        hang_seconds: float = 30.0,
    ) -> None:
        if mode not in ("normal", "native", "json-rpc"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.number = number
        self.accounts = [number] if accounts is None else accounts
        self.send_shape = send_shape
        self.version = version
        self.receive_wait_cap = receive_wait_cap
        self.daemon_start_delay = daemon_start_delay
        self.server_ping_interval = server_ping_interval
        self.answer_pings = answer_pings
        self.hang_seconds = hang_seconds
        self.port = 0

        self.queue: deque[dict[str, Any]] = deque()  # normal/native: waiting at "Signal"
        self.lost: list[dict[str, Any]] = []  # json-rpc: arrived with no socket attached
        self.sent: list[dict[str, Any]] = []  # send bodies Signal accepted, + "timestamp"
        self.sent_at: list[float] = []  # time.time() of each accepted send (benchmarks)
        self.send_requests: list[Any] = []  # every /v2/send body as parsed
        self.contact_updates: list[dict[str, Any]] = []  # {"number": ..., **body}
        self.receive_requests: list[dict[str, str]] = []  # query of every plain GET receive
        self.about_requests = 0
        self.ws_attempts = 0  # websocket upgrade requests (json-rpc)
        self.unregistered: set[str] = set()
        self.untrusted: set[str] = set()

        self._send_faults: deque[_Fault] = deque()
        self._receive_faults: deque[_Fault] = deque()
        self._contact_faults: deque[_Fault] = deque()
        self._ws_rejects = 0
        self._sockets: list[_Socket] = []
        self._down_items: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_ts = 0

    # ------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server accepts connections."""
        return self._runner is not None

    @property
    def sockets(self) -> int:
        """How many receive websockets are attached now."""
        return len(self._sockets)

    async def __aenter__(self) -> FakeSignalApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 (the same port again after :meth:`stop`)."""
        self._release = asyncio.Event()
        app = web.Application(middlewares=[_gin_not_found])
        app.router.add_get("/v1/about", self._about)
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/v1/accounts", self._accounts)
        app.router.add_get("/v1/receive/{number}", self._receive)
        app.router.add_post("/v2/send", self._send)
        app.router.add_put("/v1/contacts/{number}", self._update_contact)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        if not self.port:
            self.port = runner.addresses[0][1]
        if self.mode == "json-rpc" and self._down_items:
            self._spawn(self._flush_down_items())

    async def stop(self) -> None:
        """Stop listening; attached websockets are cut (no close frame), like a crash."""
        runner, self._runner = self._runner, None
        self._release.set()
        await self.drop_websockets()
        if runner is not None:
            await runner.cleanup()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restart(self, downtime: float = 0.0) -> None:
        """Stop, wait ``downtime`` seconds, start on the same port; queued items are kept."""
        await self.stop()
        await asyncio.sleep(downtime)
        await self.start()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- incoming messages

    def deliver(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item arrives from the Signal network for ``item["account"]``; returns it."""
        item.setdefault("account", self.number)
        if self.mode != "json-rpc":
            self.queue.append(item)
            self._arrived.set()
        elif not self.running:
            self._down_items.append(item)  # the daemon is down: it stays queued at Signal
        else:
            self._push(item)
        return item

    def deliver_text(
        self,
        source_uuid: str | None,
        source_number: str | None,
        text: str | None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A 1:1 text message arrives (see :func:`text_item`)."""
        return self.deliver(text_item(source_uuid, source_number, text, timestamp))

    def _push(self, item: dict[str, Any]) -> None:
        """json-rpc fan-out: a copy per attached socket of that account, else lost."""
        frame = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        targets = [s for s in self._sockets if s.number == item.get("account")]
        if not targets:
            self.lost.append(item)
        for socket in targets:
            socket.queue.put_nowait(frame)

    async def _flush_down_items(self) -> None:
        await asyncio.sleep(self.daemon_start_delay)
        items, self._down_items = self._down_items, []
        for item in items:
            self._push(item)

    async def wait_for_sockets(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` receive websockets are attached."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._sockets) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{len(self._sockets)} websockets attached, not {count}")
            await asyncio.sleep(0.01)

    # -------------------------------------------------------------------------- faults

    def fail_sends(
        self,
        kind: str,
        count: int = 1,
        *,
        retry_after: float | None = None,
        error: str | None = None,
    ) -> None:
        """The next ``count`` sends fail with ``kind`` (one of :data:`SEND_FAULTS`)."""
        if kind not in SEND_FAULTS:
            raise ValueError(kind)
        self._send_faults.extend(_Fault(kind, retry_after, error) for _ in range(count))

    def fail_receives(self, kind: str, count: int = 1, *, error: str | None = None) -> None:
        """The next ``count`` plain receive GETs fail with ``kind`` (:data:`RECEIVE_FAULTS`)."""
        if kind not in RECEIVE_FAULTS:
            raise ValueError(kind)
        self._receive_faults.extend(_Fault(kind, None, error) for _ in range(count))

    def fail_contact_updates(self, kind: str = "400", count: int = 1) -> None:
        """The next ``count`` contact updates fail (``400``, ``500``, ``hang`` or ``drop``)."""
        self._contact_faults.extend(_Fault(kind) for _ in range(count))

    def reject_websockets(self, count: int) -> None:
        """Cut the next ``count`` websocket upgrade requests before answering them."""
        self._ws_rejects = count

    async def drop_websockets(self) -> None:
        """Cut every attached receive websocket without a close frame."""
        sockets, self._sockets = self._sockets, []
        for socket in sockets:
            if isinstance(socket.transport, asyncio.WriteTransport):
                socket.transport.abort()

    def _next_ts(self) -> int:
        self._last_ts = max(self._last_ts + 1, _now_ms())
        return self._last_ts

    async def _hang(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), self.hang_seconds)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client

    # -------------------------------------------------------------------------- routes

    async def _about(self, request: web.Request) -> web.Response:
        self.about_requests += 1
        return _json(
            200,
            {
                "versions": ["v1", "v2"],
                "build": 2,
                "mode": self.mode,
                "version": self.version,
                "capabilities": {"v2/send": ["quotes", "mentions"]},
            },
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _accounts(self, request: web.Request) -> web.Response:
        return _json(200, list(self.accounts))

    def _registered(self, number: str) -> bool:
        return number in self.accounts

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        number = request.match_info["number"]
        if self.mode == "json-rpc":
            return await self._receive_ws(request, number)
        query = request.query
        checks = (
            ("timeout", "1", "Couldn't process request - timeout needs to be numeric!"),
            ("max_messages", "0", "Couldn't process request - max_messages needs to be numeric!"),
        )
        values: dict[str, int] = {}
        for name, default, message in checks:
            try:
                values[name] = int(query.get(name, default))
            except ValueError:
                return _error(400, message)
        for name in (
            "ignore_attachments",
            "ignore_stories",
            "ignore_avatars",
            "ignore_stickers",
            "send_read_receipts",
        ):
            if query.get(name, "false") not in ("true", "false"):
                return _error(
                    400,
                    f"Couldn't process request - {name} parameter needs to be either "
                    "'true' or 'false'",
                )
        self.receive_requests.append(dict(query))
        if not self._registered(number):
            return _error(400, f"User {number} is not registered.")
        fault = self._receive_faults.popleft() if self._receive_faults else None
        if fault is not None and fault.kind in ("500", "400"):
            return _error(int(fault.kind), fault.error or "Couldn't receive messages")
        if not self.queue and values["timeout"] > 0 and self.receive_wait_cap > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._arrived.wait(), min(values["timeout"], self.receive_wait_cap)
                )
        batch = self._take(number, values["max_messages"])
        if fault is not None:
            if fault.kind == "timeout_kill":
                return _error(400, "process killed as timeout reached")
            if fault.kind == "hang":
                await self._hang()
            elif fault.kind == "drop":
                return self._drop(request)
        lines = [json.dumps(item, separators=(",", ":"), ensure_ascii=False) for item in batch]
        if fault is not None and fault.kind == "invalid_json":
            lines.append(_JAVA_TRACE)
        return _text(200, "[" + ",".join(lines) + "]")

    def _take(self, number: str, limit: int) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        keep: deque[dict[str, Any]] = deque()
        while self.queue:
            item = self.queue.popleft()
            if item.get("account") == number and (limit <= 0 or len(taken) < limit):
                taken.append(item)
            else:
                keep.append(item)
        self.queue = keep
        return taken

    async def _receive_ws(self, request: web.Request, number: str) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        connection = "upgrade" in request.headers.get("Connection", "").lower()
        if not (upgrade and connection):
            # gorilla has written its own 400 text before gin appends the JSON error (#184).
            body = "Bad Request\n" + json.dumps({"error": _GORILLA_NO_UPGRADE})
            response = _text(400, body)
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
        self.ws_attempts += 1
        if self._ws_rejects > 0:
            self._ws_rejects -= 1
            return self._drop(request)
        ws = web.WebSocketResponse(autoping=self.answer_pings, max_msg_size=512)
        await ws.prepare(request)
        socket = _Socket(number, ws, request.transport)
        self._sockets.append(socket)
        writer = asyncio.ensure_future(self._ws_writer(socket))
        pinger = asyncio.ensure_future(self._ws_pinger(ws))
        try:
            async for msg in ws:  # control frames only; gorilla's read limit is 512 bytes
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            if socket in self._sockets:
                self._sockets.remove(socket)
            writer.cancel()
            pinger.cancel()
            await asyncio.gather(writer, pinger, return_exceptions=True)
        return ws

    async def _ws_writer(self, socket: _Socket) -> None:
        while True:
            frame = await socket.queue.get()
            await socket.ws.send_str(frame)

    async def _ws_pinger(self, ws: web.WebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.server_ping_interval)
            await ws.ping()

    async def _read_json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            return None

    async def _send(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        self.send_requests.append(body)
        if not _valid_send_body(body):
            return _error(400, "Couldn't process request - invalid request")
        recipients: list[str] = list(body.get("recipients") or [])
        if body.get("recipient"):
            recipients.append(body["recipient"])
        if not recipients:
            return _error(400, "Couldn't process request - please provide at least one recipient")
        number = body.get("number") or ""
        if not number:
            return _error(400, "Couldn't process request - please provide a valid number")
        for recipient in recipients:
            if not (
                _E164.match(recipient)
                or _UUID.match(recipient)
                or recipient.startswith("group.")
                or _USERNAME.match(recipient)
            ):
                return _error(400, f"Invalid identifier {recipient}")
        groups = [r for r in recipients if r.startswith("group.")]
        if groups and len(groups) != len(recipients):
            return _error(
                400,
                "Signal Messenger Groups and phone numbers cannot be specified together in one "
                "request! Please split them up into multiple REST API calls.",
            )
        if len(groups) > 1:
            return _error(
                400,
                "A signal message cannot be sent to more than one group at once! Please use "
                "multiple REST API calls for that.",
            )
        fault = self._send_faults.popleft() if self._send_faults else None
        if fault is not None:
            answer = await self._send_fault(request, fault, body, number)
            if answer is not None:
                return answer
        if not self._registered(number):
            return _error(400, f"User {number} is not registered.")
        for recipient in recipients:
            if recipient in self.unregistered:
                if self.mode == "json-rpc":
                    return _error(400, f"The user {recipient} is not registered.")
                return _error(
                    400,
                    f'Failed to send (some) messages:{recipient}: Unregistered user "{recipient}"'
                    f"{self._next_ts()}",
                )
            if recipient in self.untrusted:
                if self.mode == "json-rpc":
                    return _error(400, "Failed to send message due to untrusted identities")
                return _error(
                    400,
                    f'Failed to send (some) messages:{recipient}: Untrusted Identity for "'
                    f'{recipient}"{self._next_ts()}',
                )
        return self._accepted(body)

    def _accepted(self, body: dict[str, Any]) -> web.Response:
        """Record ``body`` as sent and answer 201 in the configured shape."""
        ts = self._next_ts()
        self.sent.append({**body, "timestamp": ts})
        self.sent_at.append(time.time())
        entry = {"timestamp": str(ts)}
        return _json(201, [entry] if self.send_shape == "array" else entry)

    async def _send_fault(
        self, request: web.Request, fault: _Fault, body: dict[str, Any], number: str
    ) -> web.Response | None:
        kind = fault.kind
        if kind == "429" or (kind == "rate_limit" and self.mode == "json-rpc"):
            response = _json(
                429,
                {
                    "error": _RATE_LIMIT_429,
                    "challenge_tokens": [str(uuidlib.uuid4())],
                    "account": number,
                },
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
            return response
        if kind == "rate_limit":
            token = uuidlib.uuid4()
            recipient = body["recipients"][0]
            return _error(
                400,
                f"Failed to send (some) messages:\n{recipient}: CAPTCHA proof required for sending "
                f'to "{recipient}", available options "RECAPTCHA, PUSH_CHALLENGE" with challenge '
                f'token "{token}", or wait "86400" seconds.\n{self._next_ts()}\n'
                "Failed to send message due to rate limiting\n",
            )
        if kind == "500":
            return _error(500, fault.error or "Internal Server Error")
        if kind == "400":
            return _error(400, fault.error or "Failed to send message")
        # The remaining faults happen after signal-cli has sent the message.
        self._accepted(body)
        if kind == "invalid_json":
            return _text(201, '{"timestamp":')
        if kind == "timeout_kill":
            return _error(400, "process killed as timeout reached")
        if kind == "hang":
            await self._hang()
            return _error(400, "process killed as timeout reached")
        return self._drop(request)  # "drop"

    async def _update_contact(self, request: web.Request) -> web.Response:
        number = request.match_info["number"]
        body = await self._read_json(request)
        if not isinstance(body, dict) or not _valid_contact_body(body):
            return _error(400, "Couldn't process request - invalid request")
        if not body.get("recipient"):
            return _error(400, "Couldn't process request - recipient missing")
        fault = self._contact_faults.popleft() if self._contact_faults else None
        if fault is not None:
            if fault.kind == "hang":
                await self._hang()
            elif fault.kind == "drop":
                return self._drop(request)
            return _error(int(fault.kind) if fault.kind.isdigit() else 400, "Failed to update")
        if not self._registered(number):
            return _error(400, f"User {number} is not registered.")
        record = {"number": number, **body}
        if self.mode == "json-rpc" and record.get("expiration_in_seconds") == 0:
            del record["expiration_in_seconds"]  # omitempty in the JSON-RPC request (§6.8)
        self.contact_updates.append(record)
        return web.Response(status=204)


def _valid_send_body(body: Any) -> bool:
    """gin's BindJSON into ``api.SendMessageV2``: an object with the right types."""
    if not isinstance(body, dict):
        return False
    types: dict[str, type | tuple[type, ...]] = {
        "number": str,
        "recipient": str,
        "message": str,
        "text_mode": str,
        "notify_self": bool,
        "view_once": bool,
        "quote_timestamp": int,
        "edit_timestamp": int,
        "recipients": list,
        "base64_attachments": list,
    }
    for key, expected in types.items():
        value = body.get(key)
        if value is not None and not isinstance(value, expected):
            return False
    recipients = body.get("recipients") or []
    return all(isinstance(r, str) for r in recipients)


def _valid_contact_body(body: dict[str, Any]) -> bool:
    """BindJSON into ``api.UpdateContactRequest``."""
    name = body.get("name")
    seconds = body.get("expiration_in_seconds")
    recipient = body.get("recipient")
    return (
        (recipient is None or isinstance(recipient, str))
        and (name is None or isinstance(name, str))
        and (seconds is None or (isinstance(seconds, int) and not isinstance(seconds, bool)))
    )
