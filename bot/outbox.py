"""The outbox sender: claims due messages, hands them to their channel, records the outcome.

A claim is committed before the platform is called, and the outcome is committed after, so
no transaction is ever held open across network I/O. Outcomes (DESIGN.md, durability rule 2):

- delivered → ``sent``;
- certainly not delivered (:class:`DeliveryRetry`) → ``pending`` again, after the platform's
  ``retry_after`` or an exponential back-off; with a ``retry_after``, the other messages to the
  same responder on that channel are not claimed either until then (a backlog of pages to
  one rate-limited chat is not claimed and put back once per message every second);
- refused for good (:class:`DeliveryRefused`) → ``failed``; a failed page makes its case's
  escalation move to the next step at once;
- unknown (:class:`DeliveryUnknown`, or a crash while ``sending``) → sent once more, marked as
  a repeat, and never a third time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from bot.core.clock import Clock
from bot.core.messages import (
    DeliveryRefused,
    DeliveryRetry,
    DeliveryUnknown,
    OutboundMessage,
    Priority,
)
from bot.core.ports import Channel, Store, Transaction
from bot.core.records import ClaimedMessage

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)
MAX_BACKOFF = timedelta(minutes=5)
# While a channel fails, one row is tried this often whatever its back-off, and the first
# success makes every row waiting out a back-off due at once: service is back within
# seconds of the platform, while a platform that stays down sees one request per probe.
PROBE_EVERY = timedelta(seconds=4)
WRITE_RETRY_START = 0.2  # seconds; while the database is unreachable, doubling up to...
WRITE_RETRY_MAX = 2.0
T = TypeVar("T")


def _never(exc: BaseException) -> bool:
    return False


def backoff(attempts: int) -> timedelta:
    """Return the wait before attempt ``attempts + 1``: 2 s, 4 s, 8 s … capped at 5 minutes."""
    return min(timedelta(seconds=2 ** min(attempts, 16)), MAX_BACKOFF)


def bundles(messages: list[ClaimedMessage]) -> list[list[ClaimedMessage]]:
    """Group claimed messages into what is sent: first-attempt pages to the same address,
    claimed together, travel as one message (critical with critical, the rest together), so
    a backlog after a storm or an outage reaches a responder many pages at a time instead of
    one a second; a lone page, a repeat and everything else go alone. Order is kept (a group
    goes where its first member was). Nothing is held back to make a bundle."""
    groups: list[list[ClaimedMessage]] = []
    open_bundles: dict[tuple[str, str, bool], list[ClaimedMessage]] = {}
    for message in messages:
        if message.kind != "page" or message.repeat:
            groups.append([message])
            continue
        critical = message.priority >= Priority.URGENT
        key = (message.recipient.channel, message.recipient.identity, critical)
        if key in open_bundles:
            open_bundles[key].append(message)
        else:
            open_bundles[key] = [message]
            groups.append(open_bundles[key])
    return groups


def repeat_marked(text: str) -> str:
    """Return ``text`` with its first line marked as a repeat (same reference, so an ack of
    either copy works)."""
    first, _, rest = text.partition("\n")
    return f"{first} (repeat)" + (f"\n{rest}" if rest else "")


class OutboxSender:
    """Delivers queued messages through the channels running in this process."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        clock: Clock,
        lease: timedelta = LEASE,
        batch: int = 20,
        unavailable: Callable[[BaseException], bool] = _never,
    ) -> None:
        self._store = store
        self._channels = dict(channels)
        self._clock = clock
        self._lease = lease
        self._batch = batch
        self._unavailable = unavailable  # tells "the database is unreachable" from other errors
        # channel -> responder -> until when the platform (or our pacing) holds their chat
        self._held: dict[str, dict[str, datetime]] = {}
        # channel -> when it was last tried while failing (no success since a failure)
        self._failing: dict[str, datetime] = {}

    @property
    def channel_names(self) -> list[str]:
        """The channels this sender delivers for."""
        return sorted(self._channels)

    def add_channel(self, name: str, channel: Channel) -> None:
        """Deliver for ``channel`` from now on (e.g. this instance became its leader)."""
        self._channels[name] = channel

    def remove_channel(self, name: str) -> None:
        """Stop delivering for ``name``; its messages wait for whoever runs it next."""
        self._channels.pop(name, None)

    async def pending(self) -> int:
        """Return how many messages are due now on this sender's channels."""
        async with self._store.transaction() as tx:
            return await tx.outbox_due_count(self.channel_names, self._clock.now())

    async def send_due(self) -> int:
        """Send everything due now; return how many were delivered.

        Each channel has its own queue, served side by side: a platform that is slow, down or
        rate-limiting never holds up another. Within a channel, messages go out batch by
        batch in claim order (most urgent first, pages first within a priority).
        """
        delivered = 0
        while True:  # again while a round did something: a failure may release a fallback
            rounds = await asyncio.gather(*(self._drain(name) for name in self.channel_names))
            delivered += sum(sent for _, sent in rounds)
            if not any(claimed for claimed, _ in rounds):
                return delivered

    async def send_channel(self, name: str) -> int:
        """Send everything due now on channel ``name`` (nothing if this process does not run
        it at the moment); return how many were delivered."""
        return (await self._drain(name))[1]

    async def _drain(self, name: str) -> tuple[int, int]:
        """Claim and send batch after batch on one channel; return (claimed, delivered)."""
        claimed_total = delivered = 0
        while name in self._channels:
            now = self._clock.now()
            held = self._held_responders(name, now)
            async with self._store.transaction() as tx:
                claimed = await tx.outbox_claim([name], now, self._lease, self._batch, held)
                if not claimed and self._probe_due(name, now):
                    claimed = await tx.outbox_claim(
                        [name], now, self._lease, 1, held, early=MAX_BACKOFF
                    )
                    self._failing[name] = now
            if not claimed:
                break
            claimed_total += len(claimed)
            delivered += await self._deliver_all(claimed)
        return claimed_total, delivered

    def _probe_due(self, channel: str, now: datetime) -> bool:
        """True when ``channel`` is failing and was last tried ``PROBE_EVERY`` ago or more."""
        last = self._failing.get(channel)
        return last is not None and now - last >= PROBE_EVERY

    def _held_responders(self, channel: str, now: datetime) -> set[str]:
        """The responders whose chat on ``channel`` the platform is rate-limiting now."""
        held = self._held.get(channel, {})
        for responder in [r for r, until in held.items() if until <= now]:
            del held[responder]
        return set(held)

    async def _deliver_all(self, messages: list[ClaimedMessage]) -> int:
        delivered = 0
        for group in bundles(messages):
            delivered += await self._deliver(group)
        return delivered

    async def _deliver(self, group: list[ClaimedMessage]) -> int:
        """Send one message (or one bundle of pages to one person) and record the outcome on
        every outbox row it carries. Only the rows marked ``sending`` right before the call
        can be left with an unknown outcome by a crash; the rest of a claimed batch is simply
        claimed again. A message our own pacing would hold (a platform's per-chat limit) is
        put back untried, so it never waits out the pacing while marked as being sent."""
        channel = self._channels[group[0].recipient.channel]
        pacing = getattr(channel, "wait_before", None)
        if pacing is not None:
            wait = float(pacing(self._outbound(group)))
            if wait > 0:
                await self._hold(group, wait)
                return 0

        async def attempting(tx: Transaction) -> set[str]:
            return await tx.outbox_attempting([(m.id, m.token) for m in group], self._clock.now())

        ours = await self._write(attempting)
        group = [m for m in group if m.id in ours]
        if not group:
            return 0
        message = group[0]
        outbound = self._outbound(group)
        try:
            delivered = await channel.send(outbound)
        except DeliveryRetry as exc:
            if exc.retry_after is None:  # the platform failed (not a rate limit): probe it
                self._failing.setdefault(channel.name, self._clock.now())
            if exc.retry_after and message.responder is not None:
                until = self._clock.now() + timedelta(seconds=exc.retry_after)
                self._held.setdefault(message.recipient.channel, {})[message.responder] = until
            error, retry_after = type(exc).__name__, exc.retry_after

            async def retry(tx: Transaction) -> None:
                for row in group:
                    # 0 is "now" (a local limiter rounding a tiny wait), not "no advice".
                    wait = (
                        timedelta(seconds=retry_after)
                        if retry_after is not None
                        else backoff(row.attempts)
                    )
                    await tx.outbox_retry(row.id, row.token, self._clock.now() + wait, error)

            await self._write(retry)
            log.warning("outbox.retry id=%s rows=%s", message.id, len(group))
            return 0
        except DeliveryUnknown as exc:
            error = type(exc).__name__

            async def unknown(tx: Transaction) -> None:
                for row in group:
                    state = await tx.outbox_retry(
                        row.id, row.token, self._clock.now(), error, ambiguous=True
                    )
                    if state == "failed":
                        await self._page_failed(tx, row)

            await self._write(unknown)
            log.warning("outbox.unknown_outcome id=%s rows=%s", message.id, len(group))
            return 0
        except DeliveryRefused as exc:
            error = type(exc).__name__

            async def refused(tx: Transaction) -> None:
                for row in group:
                    released = await tx.outbox_failed(row.id, row.token, error, self._clock.now())
                    if released == 0:  # no other address of this responder takes over
                        await self._page_failed(tx, row)

            await self._write(refused)
            log.error("outbox.refused id=%s kind=%s rows=%s", message.id, message.kind, len(group))
            return 0
        except Exception:  # a channel bug must not kill the sender; the lease will expire
            log.exception("outbox.channel_error id=%s channel=%s", message.id, channel.name)
            return 0
        ids = delivered.message_ids if delivered is not None else ()
        recovered = self._failing.pop(channel.name, None) is not None

        async def sent(tx: Transaction) -> int:
            for row in group:
                if not await tx.outbox_sent(row.id, row.token, self._clock.now(), ids):
                    log.warning("outbox.claim_lost id=%s (a repeat may follow)", row.id)
            return await tx.outbox_hurry(channel.name, self._clock.now()) if recovered else 0

        hurried = await self._write(sent)
        if recovered:
            log.warning("outbox.channel_back channel=%s hurried=%s", channel.name, hurried)
        return len(group)

    @staticmethod
    def _outbound(group: list[ClaimedMessage]) -> OutboundMessage:
        """What the platform is handed for ``group``: one message, a repeat marked as such,
        or one bundle listing several pages (a case once, even when two of its steps are in
        the bundle, e.g. both came due while the process was down)."""
        message = group[0]
        texts = list({m.case_id or m.id: m.text for m in reversed(group)}.values())[::-1]
        if len(texts) > 1:
            text = f"{len(texts)} pages:\n\n" + "\n\n".join(texts)
        elif len(group) > 1:
            text = texts[0]
        elif message.repeat and message.kind == "page":
            text = repeat_marked(message.text)
        else:
            text = message.text
        return OutboundMessage(
            recipient=message.recipient,
            text=text,
            outbox_id=message.id,
            repeat=message.repeat,
            kind=message.kind,
            priority=message.priority,
            choices=message.choices,
            delete_ids=message.delete_ids,
            to_defender=message.to_defender,
        )

    async def _hold(self, group: list[ClaimedMessage], wait: float) -> None:
        """Put ``group`` back untried for ``wait`` seconds, and leave its responder's other
        rows unclaimed meanwhile (they would be held the same way)."""
        until = self._clock.now() + timedelta(seconds=wait)
        responder = group[0].responder
        if responder is not None:
            self._held.setdefault(group[0].recipient.channel, {})[responder] = until

        async def release(tx: Transaction) -> None:
            await tx.outbox_release([(m.id, m.token) for m in group], until)

        await self._write(release)

    async def _write(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction; while the database is unreachable, wait and run it
        again. A claim in hand (and the outcome of its platform call) is recorded once the
        database is back, instead of its row waiting out the lease to go out as a repeat."""
        delay = WRITE_RETRY_START
        while True:
            try:
                async with self._store.transaction() as tx:
                    return await work(tx)
            except Exception as exc:
                if not self._unavailable(exc):
                    raise
            log.warning("outbox.db_unavailable retry_in=%.1f", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, WRITE_RETRY_MAX)

    async def _page_failed(self, tx: Transaction, message: ClaimedMessage) -> None:
        """A page that will never arrive: move its case's escalation on at once."""
        if message.kind != "page" or message.case_id is None or message.step is None:
            return
        now = self._clock.now()
        if await tx.escalation_hurry(message.case_id, message.loop or 0, message.step, now):
            await tx.log(
                "escalation.hurried",
                now,
                case_id=message.case_id,
                detail=f"page {message.id} failed",
            )
            log.warning("escalation.hurried case=%s", message.case_id)
