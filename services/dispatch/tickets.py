"""Tickets from events: each ingested event joins the open ticket of its problem or opens a new
one — routed, timed and timelined — in one transaction per batch of events.

Idempotent: an event already linked changes nothing (the `ticket_events` primary key is the event
id, so a concurrent duplicate fails the batch, which is then retried one event at a time).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import store, ticket_store, timer_rows
from services.dispatch.changes import ticket_changed
from services.dispatch.context import DispatchContext, context_of
from services.dispatch.deadlines import Deadlines, plan
from services.dispatch.emergency import EMERGENCY_TIER, ActiveMode, cache_of, pick
from services.dispatch.merging import (
    Candidate,
    MergePolicy,
    family,
    family_members,
    sensor_of,
)
from services.dispatch.routing import Tier, route
from services.dispatch.timeline import GENESIS, entry_row
from shared.catalogue import Catalogue, Category
from shared.db.models import Ticket
from shared.messages import EventIngestedV1, Message, TransitionInfo, encode
from shared.outbox import add_to_outbox
from shared.runtime import Runtime
from shared.telemetry.request_id import tag_messages

logger = logging.getLogger(__name__)

SYSTEM = "system"  # the actor of what dispatch does by itself (opening, routing, merging)
TIER_RANK: dict[str, int] = {"street": 0, "district": 1, "city": 2}
PRIORITY_RANK: dict[str, int] = {"normal": 0, "urgent": 1, "critical": 2}
FALLBACK_HOURS = (4.0, 48.0)  # accept/handle hours of a category missing from the catalogue


def category_of(catalogue: Catalogue, code: str, priority: str) -> Category:
    """The catalogue's category, or a stand-in with ordinary deadlines when it was deleted."""
    found = catalogue.get(code)
    if found is not None:
        return found
    return Category(
        code=code, group="event", major="", major_zh="", major_en="", name_zh=code,
        name_en=code, department="cgj",
        priority=priority if priority in PRIORITY_RANK else "normal",
        accept_hours=FALLBACK_HOURS[0], handle_hours=FALLBACK_HOURS[1],
    )  # fmt: skip


@dataclass
class Subject:
    """Where a new ticket is and what it is about (from an event, or from split-off events)."""

    category: str
    priority: str | None
    source: str
    description: str
    lon: float | None
    lat: float | None
    street: str | None
    district: str | None
    city: str | None
    geotag_method: str
    sensor_id: str | None = None
    report_count: int = 1


@dataclass
class Batch:
    """What one transaction writes: new rows in bulk, changed tickets through the session."""

    tickets: list[Ticket] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    timers: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    heads: dict[uuid.UUID, tuple[int, str]] = field(default_factory=dict)
    # Deadlines by (category, priority, factor, start): a batch shares one start time.
    plans: dict[tuple[str, str, float, datetime], Deadlines] = field(default_factory=dict)

    def entry(self, ticket: Ticket, at: datetime, **fields: Any) -> TransitionInfo:
        """Chain the next timeline entry of a ticket whose head is known."""
        seq, prev = self.heads.get(ticket.id, (0, GENESIS))
        row = entry_row(ticket.id, seq + 1, prev, at=at, **fields)
        self.heads[ticket.id] = (row["seq"], row["hash"])
        ticket.timeline_head = row["hash"]
        self.entries.append(row)
        return TransitionInfo(
            seq=row["seq"], at=at, actor=row["actor"], action=row["action"],
            from_status=row["from_status"], to_status=row["to_status"], note=row["note"],
            data=row["data"],
        )  # fmt: skip

    async def write(self, session: AsyncSession) -> None:
        """Insert the new rows (after the ORM flushed changed tickets)."""
        await session.flush()
        await ticket_store.insert_rows(
            session, ticket_store.TICKETS, [ticket_store.ticket_row(t) for t in self.tickets]
        )
        await ticket_store.insert_rows(session, ticket_store.TICKET_EVENTS, self.links)
        await ticket_store.insert_rows(session, ticket_store.TRANSITIONS, self.entries)
        await timer_rows.add_rows(session, self.timers)
        now = datetime.now(UTC)
        await ticket_store.insert_rows(
            session,
            ticket_store.OUTBOX,
            [ticket_store.outbox_row(m.stream, encode(m), now) for m in self.messages],
        )


def new_ticket(
    batch: Batch,
    ctx: DispatchContext,
    catalogue: Catalogue,
    city_code: str,
    subject: Subject,
    *,
    now: datetime,
    actor: str = SYSTEM,
    opening: dict[str, Any],
    note: str = "",
    emergency: ActiveMode | None = None,
) -> Ticket:
    """Route, time and open a ticket (dispatched at once when a rule matches a located one)."""
    category = category_of(catalogue, subject.category, subject.priority or "normal")
    priority = subject.priority or category.priority
    city = subject.city or city_code
    at_least: Tier | None = EMERGENCY_TIER if emergency is not None else None
    where = route(
        ctx.rules, category=subject.category, priority=priority, source=subject.source,
        street=subject.street, district=subject.district, city=city,
        report_count=subject.report_count, at_least=at_least,
    )  # fmt: skip
    auto = where.rule is not None and subject.district is not None
    factor = emergency.factor if emergency is not None else 1.0
    key = (category.code, priority, factor, now)
    deadlines = batch.plans.get(key)
    if deadlines is None:
        deadlines = batch.plans[key] = plan(category, priority, ctx.calendar, now, factor=factor)
    ticket = Ticket(
        id=uuid.uuid4(), category=subject.category, priority=priority,
        status="dispatched" if auto else "new", owner_tier=where.tier, owner_code=where.centre,
        description=subject.description, lon=subject.lon, lat=subject.lat,
        street_code=subject.street, district_code=subject.district, city_code=city,
        geotag_method=subject.geotag_method,
        report_count=subject.report_count, created_at=now, updated_at=now, source=subject.source,
        department=where.department, sensor_id=subject.sensor_id,
        accept_due_at=deadlines.accept_due, handle_due_at=deadlines.handle_due, overdue=False,
        rework_count=0, merged_into=None, emergency=emergency.incident if emergency else None,
        dispatched_at=now if auto else None, accepted_at=None, resolved_at=None,
        timeline_head=None,
        closed_at=None, satisfaction=None,
    )  # fmt: skip
    batch.tickets.append(ticket)
    last = batch.entry(
        ticket, now, actor=actor, action="create", from_status=None, to_status="new",
        note=note, data={**opening, "owner": f"{where.tier}:{where.centre}",
                         "department": where.department},
    )  # fmt: skip
    if auto:
        assert where.rule is not None
        last = batch.entry(
            ticket, now, actor=SYSTEM, action="dispatch", from_status="new",
            to_status="dispatched", data={"department": where.department,
                                          "rule": where.rule.model_dump(exclude_none=True)},
        )  # fmt: skip
    batch.timers.extend(timer_rows.rows(ticket.id, deadlines.timers()))
    batch.messages.append(ticket_changed(ticket, "created", last))
    return ticket


def reroute(ctx: DispatchContext, ticket: Ticket) -> str | None:
    """Move ownership up when priority or repetition now call for a higher tier (never down);
    returns the new `tier:centre`, or None when nothing changed."""
    city = ticket.city_code or ""
    where = route(
        ctx.rules, category=ticket.category, priority=ticket.priority or "normal",
        source=ticket.source, street=ticket.street_code, district=ticket.district_code,
        city=city, report_count=ticket.report_count,
    )  # fmt: skip
    if TIER_RANK[where.tier] <= TIER_RANK.get(ticket.owner_tier, 0):
        return None
    ticket.owner_tier, ticket.owner_code = where.tier, where.centre
    if ticket.status == "new":  # still in a dispatcher queue: suggest the new tier's department
        ticket.department = where.department
    return f"{where.tier}:{where.centre}"


def join(
    batch: Batch,
    ctx: DispatchContext,
    ticket: Ticket,
    *,
    reports: int,
    priority: str | None,
    sensor_id: str | None,
    now: datetime,
    actor: str,
    action: str,
    data: dict[str, Any],
    note: str = "",
) -> TransitionInfo:
    """Add reports to an open ticket (an event joined, or a ticket merged into it)."""
    ticket.report_count += reports
    if sensor_id and ticket.sensor_id is None:
        ticket.sensor_id = sensor_id
    if priority and PRIORITY_RANK.get(priority, 0) > PRIORITY_RANK.get(ticket.priority or "", 0):
        ticket.priority = priority
    moved = reroute(ctx, ticket)
    ticket.updated_at = now
    entry = batch.entry(
        ticket, now, actor=actor, action=action, from_status=ticket.status,
        to_status=ticket.status, note=note,
        data={**data, "report_count": ticket.report_count,
              **({"rerouted_to": moved} if moved else {})},
    )  # fmt: skip
    batch.messages.append(ticket_changed(ticket, action, entry))
    return entry


def _candidate(ticket: Ticket) -> Candidate:
    return Candidate(
        ticket.id, ticket.category, ticket.lon, ticket.lat, ticket.created_at, ticket.sensor_id
    )


class Pool:
    """Open tickets an event may join, indexed by merge cell and by sensor."""

    def __init__(self, policy: MergePolicy) -> None:
        self.policy = policy
        self.by_id: dict[uuid.UUID, Ticket] = {}
        self.cells: dict[int, list[Candidate]] = defaultdict(list)
        # (sensor, problem family): a sensor's alarms join its open ticket of that problem even
        # when a citizen's report of the same family opened it (积水 alarm → 道路积水 ticket).
        self.sensors: dict[tuple[str, str], Ticket] = {}

    def add(self, ticket: Ticket) -> None:
        """Make a ticket joinable."""
        self.by_id[ticket.id] = ticket
        if ticket.lon is not None and ticket.lat is not None:
            key = self.policy.cell_key(ticket.category, ticket.lon, ticket.lat)
            self.cells[key].append(_candidate(ticket))
        if ticket.sensor_id is not None:
            self.sensors.setdefault((ticket.sensor_id, family(ticket.category)), ticket)

    def adopt_sensor(self, ticket: Ticket, sensor_id: str, category: str) -> None:
        """Later alarms of this sensor and type join this ticket too."""
        self.sensors.setdefault((sensor_id, family(category)), ticket)

    def find(self, msg: EventIngestedV1, sensor_id: str | None) -> Ticket | None:
        """The ticket the event joins, if any."""
        if sensor_id is not None:
            found = self.sensors.get((sensor_id, family(msg.category)))
            if found is not None:
                return found
        if msg.lon is None or msg.lat is None:
            return None
        near = [
            c
            for key in self.policy.lock_keys(msg.category, msg.lon, msg.lat)
            for c in self.cells.get(key, ())
        ]
        best = self.policy.nearest(
            near, category=msg.category, lon=msg.lon, lat=msg.lat, reported_at=msg.reported_at
        )
        return self.by_id[best.id] if best is not None else None


def subject_of(msg: EventIngestedV1, sensor_id: str | None) -> Subject:
    """A new ticket's subject, from its first event."""
    return Subject(
        category=msg.category, priority=msg.priority, source=msg.source,
        description=msg.description, lon=msg.lon, lat=msg.lat, street=msg.geotag.street,
        district=msg.geotag.district, city=msg.geotag.city, geotag_method=msg.geotag.method,
        sensor_id=sensor_id,
    )  # fmt: skip


async def _open(
    session: AsyncSession, runtime: Runtime, msgs: Sequence[EventIngestedV1], now: datetime
) -> dict[uuid.UUID, uuid.UUID]:
    ctx = context_of(runtime)
    if not ctx.row_locks:
        await ticket_store.begin_write(session)
    result = await ticket_store.links(session, [m.event_id for m in msgs])
    todo = [m for m in msgs if m.event_id not in result]
    if not todo:
        return result
    refs = [m.source_ref for m in todo if m.source == "sensor" and m.source_ref]
    known = await ticket_store.sensor_refs(session, refs)
    sensors = {m.event_id: sensor_of(m.source, m.source_ref, known) for m in todo}
    policy = ctx.policy
    located = [m for m in todo if m.lon is not None and m.lat is not None]
    if ctx.row_locks:
        keys = {k for m in located for k in policy.lock_keys(m.category, m.lon, m.lat)}  # type: ignore[arg-type]
        await ticket_store.lock_cells(session, sorted(keys))
    queries = [
        ticket_store.GeoQuery(
            family_members(m.category),
            policy.box(m.lon, m.lat),  # type: ignore[arg-type]  # located: both set
            policy.since(m.reported_at),
        )
        for m in located
    ]
    found = await ticket_store.candidates(
        session, queries, {s for s in sensors.values() if s}, row_locks=ctx.row_locks
    )
    pool = Pool(policy)
    for ticket in found:
        pool.add(ticket)
    batch = Batch()
    batch.heads = await ticket_store.chain_heads(session, [t.id for t in found])
    modes = await cache_of(runtime).modes()
    catalogue, city_code = runtime.catalogue, runtime.hierarchy.city.code
    for msg in todo:
        first = len(batch.messages)  # this event's messages carry its request id
        sensor_id = sensors[msg.event_id]
        target = pool.find(msg, sensor_id)
        opening = {"event_id": str(msg.event_id), "source": msg.source}
        if target is not None:
            join(
                batch, ctx, target, reports=1, priority=msg.priority, sensor_id=sensor_id,
                now=now, actor=SYSTEM, action="report", data=opening,
            )  # fmt: skip
            if sensor_id is not None:
                pool.adopt_sensor(target, sensor_id, msg.category)
        else:
            emergency = pick(modes, msg.geotag.district, msg.category)
            target = new_ticket(
                batch, ctx, catalogue, city_code, subject_of(msg, sensor_id), now=now,
                opening=opening, emergency=emergency,
            )  # fmt: skip
            pool.add(target)
        batch.links.append({"event_id": msg.event_id, "ticket_id": target.id, "linked_at": now})
        result[msg.event_id] = target.id
        tag_messages(batch.messages, first, msg.request_id)
    await batch.write(session)
    return result


async def open_tickets(
    runtime: Runtime, msgs: Sequence[EventIngestedV1], *, announce: bool = False
) -> dict[uuid.UUID, uuid.UUID]:
    """Open or join tickets for a batch of events in one transaction; event id → ticket id.

    With `announce` (events read from the database, whose `events.ingested` message may never
    have been published: Redis was down when ingest committed them), the messages are queued in
    the same transaction's outbox, so the stream's other consumers (KPIs) count them too.

    Raises IntegrityError when another replica linked one of the events meanwhile (the caller
    retries one at a time with `open_ticket`).
    """
    unique = list({m.event_id: m for m in msgs}.values())
    async with runtime.sessions() as session, session.begin():
        result = await _open(session, runtime, unique, datetime.now(UTC))
        if announce:
            for msg in unique:
                add_to_outbox(session, msg)
    runtime.outbox.wake()
    return result


async def open_ticket(
    runtime: Runtime, msg: EventIngestedV1, *, announce: bool = False
) -> uuid.UUID:
    """Open or join the ticket of one event, or return the one it already belongs to."""
    try:
        return (await open_tickets(runtime, [msg], announce=announce))[msg.event_id]
    except IntegrityError:
        # Another replica linked this event in the meantime: its ticket stands.
        async with runtime.sessions() as session:
            linked = await store.ticket_for_event(session, msg.event_id)
        if linked is None:
            raise
        return linked
