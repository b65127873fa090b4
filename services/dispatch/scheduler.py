"""Durable timers: every dispatch replica runs a scheduler that fires due `timers` rows.

Each tick claims up to `FIRE_BATCH` due timers with one `UPDATE … WHERE id IN (SELECT … FOR
UPDATE SKIP LOCKED) RETURNING` and applies them to their tickets in the same transaction: a timer
fires exactly once, whichever replica claims it, and a crash rolls claim and effects back
together (docs/decisions/0010-durable-timers.md). Time comes from an injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import scheduler_store as store
from services.dispatch.calendar import WorkCalendar
from services.dispatch.chain import ChainWriter
from services.dispatch.changes import summary
from services.dispatch.context import CONTEXT_KEY, DispatchContext
from services.dispatch.deadlines import WARN_FRACTION, plan
from services.dispatch.emergency import EmergencyCache, active_for, cache_of
from services.dispatch.supervision import Breach, Phase, Warn, decide, ticket_colour
from services.dispatch.work_calendar import load_calendar
from shared.bus.consumer import consumer_name
from shared.catalogue import Catalogue
from shared.db.engine import is_postgres
from shared.db.models import Ticket, Timer
from shared.db.retention import delete_older
from shared.messages import TicketChangedV2, TransitionInfo, encode
from shared.runtime import Runtime
from shared.telemetry.metrics import TIMER_LAG_SECONDS, TIMERS_DUE, TIMERS_FIRED

logger = logging.getLogger(__name__)

TICK_S = 0.2  # seconds between polls while fewer than a full batch fell due
FIRE_BATCH = 500  # timers claimed (and applied) per transaction
ERROR_BACKOFF_S = 1.0  # seconds to wait after a failed tick
ACTOR = "system"  # who timeline entries written by timers name
PRUNE_EVERY = timedelta(minutes=10)  # how often fired timer rows past their retention go

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass
class Tick:
    """What one tick writes; inserted in bulk before it commits."""

    now: datetime
    chain: ChainWriter
    outbox: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    timers: list[dict[str, Any]] = field(default_factory=list)
    changed: dict[uuid.UUID, Ticket] = field(default_factory=dict)

    async def write(self, session: AsyncSession) -> None:
        """Store the tick's changes in the open transaction."""
        heads = {row["ticket_id"]: row["hash"] for row in self.chain.rows}  # the last one wins
        tickets = [
            {"id": t.id, "overdue": t.overdue, "owner_tier": t.owner_tier,
             "owner_code": t.owner_code, "accept_due_at": t.accept_due_at,
             "handle_due_at": t.handle_due_at, "updated_at": t.updated_at,
             "timeline_head": heads.pop(t.id, t.timeline_head)}
            for t in self.changed.values()
        ]  # fmt: skip
        await store.save(
            session, tickets=tickets, transitions=self.chain.rows, orders=self.orders,
            timers=self.timers, outbox=self.outbox,
            heads=[{"id": ticket_id, "timeline_head": h} for ticket_id, h in heads.items()],
        )  # fmt: skip


@dataclass
class Scheduler:
    """Fires due timers; any number of instances may share one database."""

    sessions: async_sessionmaker[AsyncSession]
    catalogue: Callable[[], Catalogue]  # the live catalogue (replaced wholesale on refresh)
    calendar: WorkCalendar
    city: str  # the city centre's code, for tickets located nowhere
    row_locks: bool  # PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one process, plain select
    emergency: EmergencyCache | None = None
    clock: Clock = utc_now
    name: str = field(default_factory=consumer_name)  # stored in timers.fired_by
    batch: int = FIRE_BATCH
    on_commit: Callable[[], None] = lambda: None  # wake the outbox relay
    retention: timedelta = timedelta(days=7)  # fired timer rows are kept this long
    fired: int = 0  # timers applied by this instance so far
    _next_prune: datetime | None = None

    async def fire_due(self) -> int:
        """Claim and apply one batch of due timers in one transaction; returns how many fired."""
        now = self.clock()
        if not self.row_locks and not await self._anything_due(now):
            return 0  # SQLite: don't take the single write lock on every idle tick
        async with self.sessions() as session, session.begin():
            claimed = await store.claim_due(
                session, now, self.name, self.batch, row_locks=self.row_locks
            )
            if not claimed:
                return 0
            tickets = await store.load_tickets(session, {t.ticket_id for t in claimed})
            tick = Tick(now, ChainWriter(await store.timeline_heads(session, tickets.keys())))
            for timer in claimed:
                await self._apply(session, tick, timer, tickets[timer.ticket_id])
            await tick.write(session)
        self.fired += len(claimed)
        for timer in claimed:
            TIMERS_FIRED.labels(timer.kind).inc()
            TIMER_LAG_SECONDS.observe(max(0.0, (now - timer.due_at).total_seconds()))
        if tick.outbox:
            self.on_commit()
        return len(claimed)

    async def run(self) -> None:
        """Fire timers until cancelled: at once on start (catching up after downtime), then
        every `TICK_S`, without pausing while full batches keep falling due."""
        while True:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a driver swallowed it: stop all the same
            try:
                fired = await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("timer tick failed; retrying")
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if fired < self.batch:
                await self._prune_when_due()
                await asyncio.sleep(TICK_S)

    async def prune(self) -> int:
        """Delete fired timer rows older than `retention` (they would otherwise pile up for
        ever); how many. Runs between ticks, in batches, so firing never waits long."""
        return await delete_older(self.sessions, Timer.fired_at, self.clock() - self.retention)

    async def _prune_when_due(self) -> None:
        now = self.clock()
        if self._next_prune is None:  # not at start-up, when every worker wants the database
            self._next_prune = now + PRUNE_EVERY
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            await self.prune()
        except Exception:
            logger.exception("pruning fired timers failed; trying again later")

    async def _anything_due(self, now: datetime) -> bool:
        async with self.sessions() as session:
            return bool(await store.any_due(session, now))

    async def _apply(
        self, session: AsyncSession, tick: Tick, timer: store.DueTimer, ticket: Ticket
    ) -> None:
        category = self.catalogue().get(ticket.category)
        escalates = category.escalate_on_breach if category is not None else True
        outcome = decide(
            timer.kind, ticket, escalate_on_breach=escalates, city=self.city, now=tick.now
        )
        if isinstance(outcome, Warn):
            due = _iso(outcome.deadline)
            note = f"{WARN_FRACTION:.0%} of the {outcome.phase} time has passed (due {due})"
            data = {"timer_id": timer.id, "timer": timer.kind, "due_at": due}
            self._record(tick, ticket, "warning", note, data)
        elif isinstance(outcome, Breach):
            await self._breach(session, tick, timer, ticket, outcome)

    async def _breach(
        self,
        session: AsyncSession,
        tick: Tick,
        timer: store.DueTimer,
        ticket: Ticket,
        breach: Breach,
    ) -> None:
        now = tick.now
        ticket.overdue = True
        ticket.updated_at = now
        tick.changed[ticket.id] = ticket
        due = _iso(timer.due_at)
        data: dict[str, Any] = {"timer_id": timer.id, "timer": timer.kind, "due_at": due}
        self._record(tick, ticket, "overdue", f"{breach.phase} deadline passed", data)
        to_tier, to_code = breach.supervisor
        order_id = uuid.uuid4()
        reason = f"{breach.phase} deadline {due} missed"
        tick.orders.append(
            {"id": order_id, "ticket_id": ticket.id, "reason": reason,
             "from_tier": ticket.owner_tier, "from_code": ticket.owner_code, "to_tier": to_tier,
             "to_code": to_code, "created_at": now, "closed_at": None}
        )  # fmt: skip
        data = {"order_id": str(order_id), "to_tier": to_tier, "to_code": to_code}
        self._record(tick, ticket, "supervise", f"督办 by {to_code}", data)
        if breach.escalate_to is None:
            return
        from_tier, from_code = ticket.owner_tier, ticket.owner_code
        ticket.owner_tier, ticket.owner_code = breach.escalate_to
        next_due = None
        if breach.follow_up:
            next_due = await self._follow_up(session, ticket, breach.phase, now)
        if next_due is not None:
            # The ticket shows the deadline its new owner must meet, not the one already missed.
            if breach.phase == "accept":
                ticket.accept_due_at = next_due
            else:
                ticket.handle_due_at = next_due
            tick.timers.append(
                {"ticket_id": ticket.id, "kind": f"{breach.phase}_due", "due_at": next_due,
                 "fired_at": None, "fired_by": None}
            )  # fmt: skip
        data = {
            "from_tier": from_tier, "from_code": from_code, "to_tier": ticket.owner_tier,
            "to_code": ticket.owner_code, "next_due_at": _iso(next_due),
        }  # fmt: skip
        note = f"escalated {from_tier} → {ticket.owner_tier} after a missed {breach.phase} deadline"
        self._record(tick, ticket, "escalate", note, data)

    async def _follow_up(
        self, session: AsyncSession, ticket: Ticket, phase: Phase, now: datetime
    ) -> datetime | None:
        """The deadline at the new tier: another full period from the breach."""
        category = self.catalogue().get(ticket.category)
        if category is None:
            return None
        factor = 1.0
        if ticket.emergency is not None:
            active = await active_for(
                self.emergency or session, ticket.district_code, ticket.category
            )
            factor = active[1] if active is not None else 1.0
        deadlines = plan(
            category, ticket.priority or category.priority, self.calendar, now, factor=factor
        )
        return deadlines.accept_due if phase == "accept" else deadlines.handle_due

    def _record(
        self, tick: Tick, ticket: Ticket, action: str, note: str, data: dict[str, Any]
    ) -> None:
        """A timeline entry and its `tickets.changed` message (status never changes here)."""
        status = ticket.status
        entry = tick.chain.append(
            ticket.id, at=tick.now, actor=ACTOR, action=action, from_status=status,
            to_status=status, note=note, data=data,
        )  # fmt: skip
        transition = TransitionInfo(
            seq=entry["seq"], at=tick.now, actor=ACTOR, action=action, from_status=status,
            to_status=status, note=note, data=data,
        )  # fmt: skip
        message = TicketChangedV2(
            change=action,
            ticket=summary(ticket),
            transition=transition,
            colour=ticket_colour(ticket, tick.now),
        )
        tick.outbox.append(
            {"stream": message.stream, "payload": encode(message), "created_at": tick.now}
        )


def for_runtime(runtime: Runtime) -> Scheduler:
    """A scheduler on the process's database, catalogue, calendar and emergency cache."""
    context = runtime.extras.get(CONTEXT_KEY)
    if isinstance(context, DispatchContext):
        calendar = context.calendar
    else:
        calendar = load_calendar(runtime.settings.dispatch.calendar_file)
    return Scheduler(
        sessions=runtime.sessions,
        catalogue=lambda: runtime.catalogue,
        calendar=calendar,
        city=runtime.hierarchy.city.code,
        row_locks=is_postgres(runtime.engine),
        emergency=cache_of(runtime),
        on_commit=runtime.outbox.wake,
        retention=timedelta(hours=runtime.settings.dispatch.fired_timer_retention_h),
    )


async def timers_due(runtime: Runtime) -> None:
    """/metrics probe: unfired timers already due (a backlog: schedulers not keeping up)."""
    async with runtime.sessions() as session:
        TIMERS_DUE.set(await store.count_due(session, utc_now()))


async def run_scheduler(runtime: Runtime) -> None:
    """Fire due timers for as long as the process runs (every dispatch replica may)."""
    await for_runtime(runtime).run()
