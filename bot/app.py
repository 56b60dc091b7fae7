"""The composition root: the only module that knows every concrete class.

It builds config → keys → database → flows → services → channels → scheduler, owns the
order in which they start and stop, and wires each inbound message through the inbox to the
router. Everything else sees only ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config
from bot.conversation.engine import Timing
from bot.conversation.languages import LANGUAGE_NAMES
from bot.conversation.loader import LanguageSettings, load_flows
from bot.conversation.model import FlowSet
from bot.conversation.service import CaseTexts, ConversationService
from bot.core.clock import Clock
from bot.core.messages import Address, InboundMessage, Priority
from bot.core.ports import Channel
from bot.core.records import OutboxItem
from bot.core.text import without_lone_surrogates
from bot.outbox import LEASE, OutboxSender
from bot.paging.directory import Directory, ResponderEntry
from bot.paging.oncall import report as oncall_report
from bot.paging.service import PagingService
from bot.paging.watchdog import OperatorAlerts, Problem, check
from bot.safety.service import SafetyService
from bot.triage.rules import RuleSet, load_rules
from db import migrate
from db.base import InstanceLock, create_engine, instance_lock, unavailable
from db.crypto import KeyRing
from db.store import Store

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FLOWS_DIR = PROJECT_ROOT / "flows"
TICK_SECONDS = 1.0
# Sweeps whose timers need no second precision (draft expiry, automatic trusted-contact
# alerts, retention) run at most this often; what is due is always read from the rows.
SWEEP_EVERY = timedelta(seconds=60)
TICK_CHUNK = 50  # escalation steps per transaction
TICK_MAX_CHUNKS = 50  # per tick; the next tick (a second later) goes on
WATCHDOG_OVERDUE_AFTER = timedelta(seconds=30)  # a due step later than this: the tick stalled
DB_RETRY_START = 0.2  # seconds; while the database is unreachable, doubling up to...
DB_RETRY_MAX = 2.0
SORRY = (
    "Sorry — something went wrong on our side while reading your message. It was received. "
    "If you are in danger, send SOS."
)


def flows_dir(config: Config) -> Path:
    """Return the flows directory the config names, or the project's own."""
    return config.flows.dir or DEFAULT_FLOWS_DIR


def load_flow_data(config: Config) -> tuple[FlowSet, RuleSet]:
    """Load and validate the flows and triage rules (raises ``FlowError`` naming file and step)."""
    directory = flows_dir(config)
    flows = load_flows(directory, language_settings(config))
    return flows, load_rules(directory, flows)


def language_settings(config: Config) -> LanguageSettings:
    """The languages the config offers, each with its own name, and its alarm words."""
    languages = config.languages
    return LanguageSettings(
        default=config.flows.language,
        offered={code: LANGUAGE_NAMES.get(code, code) for code in languages.offered},
        sos_words={code: tuple(words) for code, words in languages.sos_words.items()},
    )


def _entries(people: Iterable[Any]) -> list[ResponderEntry]:
    """Turn configured people (responders or operators) into directory entries. Their
    addresses are tried in this order: Signal (end-to-end encrypted), Telegram, console."""
    entries = []
    for person in people:
        addresses = []
        if person.signal:
            addresses.append(Address("signal", person.signal))
        if person.telegram is not None:
            addresses.append(Address("telegram", str(person.telegram)))
        if person.console:
            addresses.append(Address("console", person.name))
        entries.append(ResponderEntry(person.name, tuple(addresses)))
    return entries


def directory_from(config: Config, active_channels: set[str]) -> Directory:
    """Build the responder directory from the config, limited to ``active_channels``."""
    return Directory(_entries(config.responders), active_channels)


def operators_from(config: Config, active_channels: set[str]) -> Directory:
    """Build the directory of operators (paged when the system itself is unhealthy)."""
    return Directory(_entries(getattr(config, "operators", ())), active_channels)


def _encodable(message: InboundMessage) -> InboundMessage:
    """Return ``message`` with every text field encodable as UTF-8 (see
    :func:`without_lone_surrogates`)."""

    def fix(value: str | None) -> str | None:
        return None if value is None else without_lone_surrogates(value)

    def fixed(address: Address) -> Address:
        return Address(address.channel, without_lone_surrogates(address.identity))

    return replace(
        message,
        sender=fixed(message.sender),
        text=without_lone_surrogates(message.text),
        dedup_key=without_lone_surrogates(message.dedup_key),
        aliases=tuple(fixed(alias) for alias in message.aliases),
        platform_message_id=fix(message.platform_message_id),
        button=fix(message.button),
        language_hint=fix(message.language_hint),
    )


class _AlreadyProcessed(Exception):
    """Raised to roll back a processing whose message another attempt already finished."""


@dataclass
class App:
    """A running defender-intake: inbox → router → services → outbox → channels.

    Build it with :func:`open_app`; close it with :meth:`close`.
    """

    config: Config
    engine: AsyncEngine
    store: Store
    clock: Clock
    channels: Mapping[str, Channel]
    conversations: ConversationService
    safety: SafetyService
    paging: PagingService
    sender: OutboxSender
    alerts: OperatorAlerts
    lock: InstanceLock | None = None
    _wakes: dict[str, asyncio.Event] = field(default_factory=dict)
    _swept_at: datetime | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _scheduler: AsyncIOScheduler | None = None

    # -- the path of one message ---------------------------------------------------------

    async def receive(self, message: InboundMessage) -> bool:
        """Store ``message`` in the inbox, then process it; return False for a duplicate.

        Once this returns, the message and everything it caused are committed; a crash
        between storing and processing is repaired by :meth:`recover`. Lone surrogates (JSON
        can carry them) are replaced first, so that no payload makes storing fail forever.
        """
        message = _encodable(message)
        async with self.store.transaction() as tx:
            inbox_id = await tx.inbox_add(message, self.clock.now())
        if inbox_id is None:
            log.info("inbox.duplicate channel=%s", message.sender.channel)
            return False
        await self._process(inbox_id, message)
        return True

    async def _process(self, inbox_id: str, message: InboundMessage) -> None:
        """Process a stored message once. While the database is unreachable, wait and try
        again (the message stays in hand); any other failure marks it failed and tells the
        sender sorry."""
        delay = DB_RETRY_START
        while True:
            now = self.clock.now()
            try:
                await self._process_once(inbox_id, message, now)
            except _AlreadyProcessed:
                log.info("inbox.already_processed id=%s", inbox_id)
                return
            except Exception as exc:
                if not unavailable(exc):
                    await self._process_failed(inbox_id, message, now)
                    break
                log.warning("inbox.db_unavailable id=%s retry_in=%.1f", inbox_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX)
                continue
            break
        self.wake()

    async def _process_once(self, inbox_id: str, message: InboundMessage, now: datetime) -> None:
        async with self.store.transaction() as tx:
            responder = self.responder_of(message)
            if responder is not None:
                text = message.text
                if message.button is not None:
                    # The bot sends responders no buttons: a press is forged or stale,
                    # and the label it carries is never run as a command.
                    log.warning("auth.responder_button_refused channel=%s", message.sender.channel)
                    text = ""
                await self.paging.command(tx, responder, message.sender, text, now, inbox_id)
            else:
                await self.conversations.handle(tx, inbox_id, message, now)
            if not await tx.inbox_finish(inbox_id, now):
                raise _AlreadyProcessed  # e.g. its commit was cut off: undo this repetition

    async def _process_failed(self, inbox_id: str, message: InboundMessage, now: datetime) -> None:
        log.exception("inbox.process_failed id=%s", inbox_id)
        async with self.store.transaction() as tx:
            if not await tx.inbox_finish(inbox_id, now, failed=True):
                return
            await tx.log("inbox.process_failed", now, detail=inbox_id)
            await tx.outbox_add(
                OutboxItem(
                    idempotency_key=f"sorry:{inbox_id}",
                    kind="reply",
                    priority=Priority.URGENT,
                    recipient=message.sender,
                    text=SORRY,
                ),
                now,
            )

    def responder_of(self, message: InboundMessage) -> str | None:
        """Return the responder who wrote ``message``, recognised only by the addresses in the
        config (the sender's own address or an alias such as their Signal number)."""
        directory = self.paging.directory
        for address in (message.sender, *message.aliases):
            name = directory.responder_at(address)
            if name is not None:
                return name
        return None

    async def operator_alert(self, event: str) -> None:
        """Page the operators about platform trouble (an event name, never content)."""
        log.warning("operator.alert event=%s", event)
        async with self.store.transaction() as tx:
            await self.alerts.alert(
                tx,
                Problem(f"platform:{event[:80]}", f"A channel reports: {event[:200]}"),
                self.clock.now(),
            )
        self.wake()

    async def watchdog(self) -> int:
        """Check that every open case is being paged on time and nothing is stuck in the
        outbox; page the operators about each problem; return how many problems were found."""
        now = self.clock.now()
        async with self.store.transaction() as tx:
            snapshot = await tx.watchdog_snapshot(now, self.config.watchdog.stuck_after)
            problems = check(snapshot, now, WATCHDOG_OVERDUE_AFTER)
            for name, channel in self.channels.items():
                health = getattr(channel, "health", None)
                reason = health.problem() if health is not None else None
                if reason is not None:
                    problems.append(Problem(f"channel:{name}", reason))
            for problem in problems:
                await self.alerts.alert(tx, problem, now)
        if problems:
            log.warning("watchdog.problems count=%s", len(problems))
            self.wake()
        return len(problems)

    async def recover(self) -> int:
        """Process inbox messages stored but not processed before a crash; return how many.

        On SQLite this process is the only instance (it holds the instance lock), so what a
        dead process left claimed or half-sent is released at once: a critical page waits
        for no lease after a crash."""
        if self.store.dialect == "sqlite":
            async with self.store.transaction() as tx:
                released = await tx.outbox_release_leases()
            if released:
                log.warning("outbox.leases_released count=%s", released)
        async with self.store.transaction() as tx:
            pending = await tx.inbox_pending()
        for inbox_id, message in pending:
            await self._process(inbox_id, message)
        if pending:
            log.warning("inbox.recovered count=%s", len(pending))
        return len(pending)

    async def tick(self) -> int:
        """Advance due escalations and check-ins, run the slower sweeps when their minute has
        come, and wake the sender; return how many steps fired."""
        now = self.clock.now()
        async with self.store.transaction() as tx:
            fired = chunk = await self.paging.tick(tx, now, TICK_CHUNK)
            fired += await self.safety.tick(tx, now)
        # A backlog (hundreds of steps overdue after downtime, or a ladder catching up step
        # by step) is committed a chunk at a time, the sender woken after each: the first
        # pages go out while the rest fire.
        for _ in range(TICK_MAX_CHUNKS):
            if not chunk:
                break
            self.wake()
            async with self.store.transaction() as tx:
                chunk = await self.paging.tick(tx, now, TICK_CHUNK)
            fired += chunk
        if self._swept_at is None or now - self._swept_at >= SWEEP_EVERY:
            async with self.store.transaction() as tx:
                await self.conversations.expire_drafts(tx, now)
                fired += await self.safety.auto_alerts(tx, now)
                await self.safety.shred_closed(tx, now)
            self._swept_at = now
        if fired:
            self.wake()
        return fired

    async def drain(self) -> int:
        """Send everything due now; return how many messages were delivered."""
        return await self.sender.send_due()

    def wake(self) -> None:
        """Wake the outbox sender of every channel at once."""
        for event in self._wakes.values():
            event.set()

    # -- background work -----------------------------------------------------------------

    async def _sender_loop(self, channel: str) -> None:
        """One sender per channel: a platform that hangs or is down never holds up another."""
        wake = self._wakes.setdefault(channel, asyncio.Event())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), TICK_SECONDS)
            wake.clear()
            try:
                await self.sender.send_channel(channel)
            except Exception:
                log.exception("outbox.sender_failed channel=%s", channel)

    async def _safe_watchdog(self) -> None:
        try:
            await self.watchdog()
        except Exception:
            log.exception("watchdog.failed")

    async def _safe_tick(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("escalation.tick_failed")

    async def _precise_ticks(self) -> None:
        """Sleep until the earliest due escalation (at most a second at a time) and tick then,
        so a step fires within milliseconds of its due time; the APScheduler tick every second
        remains the safety net if this loop ever fails."""
        while True:
            try:
                async with self.store.transaction() as tx:
                    due = await tx.next_due()
                wait = TICK_SECONDS
                if due is not None:
                    wait = min(max((due - self.clock.now()).total_seconds(), 0.0), TICK_SECONDS)
                await asyncio.sleep(wait)
                if due is not None and due <= self.clock.now():
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation.precise_tick_failed")
                await asyncio.sleep(TICK_SECONDS)

    def start_background(self) -> None:
        """Start the escalation tick (APScheduler, every second, plus precise wake-ups at the
        next due time), the watchdog and the outbox sender."""
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            self._safe_tick,
            "interval",
            seconds=TICK_SECONDS,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=30,
            id="escalation-tick",
        )
        scheduler.add_job(
            self._safe_watchdog,
            "interval",
            seconds=self.config.watchdog.interval.total_seconds(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
            id="watchdog",
        )
        scheduler.start()
        self._scheduler = scheduler
        for channel in self.channels:
            self._wakes.setdefault(channel, asyncio.Event())
            self._tasks.append(
                asyncio.create_task(self._sender_loop(channel), name=f"outbox-sender-{channel}")
            )
        self._tasks.append(asyncio.create_task(self._precise_ticks(), name="precise-ticks"))

    async def stop_background(self) -> None:
        """Stop the tick and the sender (a message in hand is finished by its lease rules)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def close(self) -> None:
        """Stop background work, close the database and release the instance lock."""
        await self.stop_background()
        await self.engine.dispose()
        if self.lock is not None:
            self.lock.release()


async def open_app(
    config: Config,
    keyring: KeyRing,
    clock: Clock,
    channels: Mapping[str, Channel],
    *,
    flow_data: tuple[FlowSet, RuleSet] | None = None,
    sender_lease: timedelta | None = None,
) -> App:
    """Build an :class:`App`: take the instance lock, migrate the database, load the flows.

    Raises ``DatabaseInUse`` when another process runs on the same SQLite file and
    ``FlowError`` when the flows are invalid.
    """
    flows, rules = flow_data or load_flow_data(config)
    lock = instance_lock(config.database.url)
    if lock is not None:
        lock.acquire()
    try:
        engine = create_engine(config.database.url)
        before, after = await migrate.upgrade(engine)
        if before != after:
            log.info("db.migrated from=%s to=%s", before, after)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    store = Store(engine, keyring)
    directory = directory_from(config, set(channels))
    alerts = OperatorAlerts(operators_from(config, set(channels)))
    texts = CaseTexts(flows, config.flows.language)
    paging = PagingService(
        directory=directory,
        policies={str(tier): policy for tier, policy in config.paging.items()},
        describe=texts.describe,
        detail_lines=texts.detail_lines,
        defender_text=texts.defender_text,
        default_language=config.flows.language,
        alerts=alerts,
        resolve=config.resolve_targets,
        oncall=functools.partial(oncall_report, config),
        bundle_window=config.delivery.bundle_window,
    )
    safety = SafetyService(
        flows,
        paging,
        grace=config.safety.checkin_grace,
        auto_alert_after=config.safety.auto_alert_after,
        closed_case_days=config.safety.closed_case_days,
    )
    conversations = ConversationService(
        flows,
        rules,
        paging,
        config.flows.language,
        config.limits.max_message_chars,
        scrub_channels={"telegram"} if config.telegram.delete_after_intake else set(),
        scrub_delay=config.telegram.delete_delay,
        signal_number=config.signal.number if config.signal.enabled else None,
        timing=Timing(
            resume_after=config.languages.resume_after,
            draft_expiry=config.languages.draft_expiry,
        ),
        safety=safety,
        deleting_channels={"telegram"},
    )
    sender = OutboxSender(
        store, channels, clock, lease=sender_lease or LEASE, unavailable=unavailable
    )
    return App(
        config=config,
        engine=engine,
        store=store,
        clock=clock,
        channels=channels,
        conversations=conversations,
        safety=safety,
        paging=paging,
        sender=sender,
        alerts=alerts,
        lock=lock,
    )
