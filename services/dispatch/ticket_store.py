"""Every SQL query about tickets beyond the basics in store.py: merge candidates, locks, links,
timelines, lists and tasks."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Float,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from services.dispatch.lifecycle import BEFORE_ACCEPT, HANDLING_STATUSES, OPEN_STATUSES
from services.dispatch.merging import Box
from shared.auth import Scope
from shared.db.models import (
    OPEN_TICKET_SQL,
    Event,
    OutboxMessage,
    SensorAlarm,
    Ticket,
    TicketEvent,
    TicketTransition,
)

MAX_NEAR = 50  # open tickets of one category looked at around one point
# The partial index's own predicate, as literal SQL: a condition on bound parameters cannot be
# proven to imply it, and the planner would not use the index.
OPEN_LITERAL = text(OPEN_TICKET_SQL)


@dataclass(frozen=True, slots=True)
class GeoQuery:
    """Open tickets of these categories inside a box, created since a time."""

    categories: Sequence[str]
    box: Box
    since: datetime


async def begin_write(session: AsyncSession) -> None:
    """SQLite: take the database's write lock now, so what we read stays true until commit.

    (The driver begins a transaction only at the first write; an empty UPDATE starts it.)
    """
    await session.execute(
        update(Ticket)
        .where(text("0 = 1"))
        .values(status=Ticket.status)
        .execution_options(synchronize_session=False)
    )


async def lock_cells(session: AsyncSession, keys: Sequence[int]) -> None:
    """PostgreSQL: take the merge-cell advisory locks (sorted, so replicas never deadlock)."""
    if keys:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": sorted(keys)},
        )


def _among(
    session: AsyncSession, column: Any, values: Collection[Any], item: Any
) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `= ANY(array)`: one statement for any count, where an
    IN list of a new length is a new statement to prepare."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(item)))  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


async def links(
    session: AsyncSession, event_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """event id → ticket id for the events already linked."""
    if not event_ids:
        return {}
    rows = await session.execute(
        select(TicketEvent.event_id, TicketEvent.ticket_id).where(
            _among(session, TicketEvent.event_id, event_ids, Uuid)
        )
    )
    return {e: t for e, t in rows.all()}


async def sensor_refs(session: AsyncSession, refs: Collection[str]) -> dict[str, str]:
    """Alarm reference (an event's source_ref) → the sensor that raised it."""
    if not refs:
        return {}
    rows = await session.execute(
        select(SensorAlarm.ref, SensorAlarm.sensor_id).where(
            _among(session, SensorAlarm.ref, refs, String)
        )
    )
    return {r: s for r, s in rows.all()}


def _geo_ids_postgres(queries: Sequence[GeoQuery]) -> Any:
    """Ids of open tickets matching any query: the queries as unnested arrays (one statement
    whatever the batch size), each probing the partial index through a LATERAL subquery."""
    flat = [(c, q) for q in queries for c in q.categories]
    q = (
        func.unnest(
            bindparam("g_cat", [c for c, _ in flat], type_=ARRAY(String)),
            bindparam("g_x0", [q.box.lon_min for _, q in flat], type_=ARRAY(Float)),
            bindparam("g_x1", [q.box.lon_max for _, q in flat], type_=ARRAY(Float)),
            bindparam("g_y0", [q.box.lat_min for _, q in flat], type_=ARRAY(Float)),
            bindparam("g_y1", [q.box.lat_max for _, q in flat], type_=ARRAY(Float)),
            bindparam("g_since", [q.since for _, q in flat], type_=ARRAY(DateTime(timezone=True))),
        )
        .table_valued("category", "x0", "x1", "y0", "y1", "since")
        .render_derived(name="q")
    )
    t = aliased(Ticket, name="near")
    near = (
        select(t.id)
        .where(
            t.category == q.c.category,
            t.lon.between(q.c.x0, q.c.x1),
            t.lat.between(q.c.y0, q.c.y1),
            t.created_at >= q.c.since,
            OPEN_LITERAL,
        )
        .limit(MAX_NEAR)
        .lateral("n")
    )
    return select(near.c.id).select_from(q).join(near, true())


def _geo_condition(queries: Sequence[GeoQuery]) -> ColumnElement[bool]:
    """The same match as one OR (SQLite: no arrays; embedded batches are small)."""
    boxes = [
        and_(
            Ticket.category.in_(q.categories),
            Ticket.lon.between(q.box.lon_min, q.box.lon_max),
            Ticket.lat.between(q.box.lat_min, q.box.lat_max),
            Ticket.created_at >= q.since,
        )
        for q in queries
    ]
    return and_(OPEN_LITERAL, or_(*boxes))


async def candidates(
    session: AsyncSession,
    queries: Sequence[GeoQuery],
    sensor_ids: Collection[str],
    *,
    row_locks: bool,
) -> list[Ticket]:
    """Open tickets an event of the batch may join (nearby, or of its sensor), locked on
    PostgreSQL in id order; the exact distance is checked by the caller."""
    matches: list[ColumnElement[bool]] = []
    if queries:
        if row_locks:
            matches.append(Ticket.id.in_(_geo_ids_postgres(queries)))
        else:
            matches.append(_geo_condition(queries))
    if sensor_ids:
        matches.append(_among(session, Ticket.sensor_id, sensor_ids, String))
    if not matches:
        return []
    stmt = select(Ticket).where(Ticket.status.in_(OPEN_STATUSES), or_(*matches)).order_by(Ticket.id)
    if row_locks:
        stmt = stmt.with_for_update(of=Ticket)
    return list((await session.scalars(stmt)).all())


async def chain_heads(
    session: AsyncSession, ticket_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, str]]:
    """ticket id → (seq, hash) of its last timeline entry."""
    if not ticket_ids:
        return {}
    last = (
        select(TicketTransition.ticket_id, func.max(TicketTransition.seq).label("seq"))
        .where(_among(session, TicketTransition.ticket_id, ticket_ids, Uuid))
        .group_by(TicketTransition.ticket_id)
        .subquery()
    )
    rows = await session.execute(
        select(TicketTransition.ticket_id, TicketTransition.seq, TicketTransition.hash).join(
            last,
            and_(
                TicketTransition.ticket_id == last.c.ticket_id,
                TicketTransition.seq == last.c.seq,
            ),
        )
    )
    return {t: (s, h) for t, s, h in rows.all()}


async def insert_rows(session: AsyncSession, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """One multi-row INSERT (no ORM unit of work: the batch path)."""
    if rows:
        await session.execute(insert(table), list(rows))


def ticket_row(ticket: Ticket) -> dict[str, Any]:
    """A transient Ticket's column values, for `insert_rows`."""
    return {c.key: getattr(ticket, c.key) for c in Ticket.__table__.columns}


def outbox_row(stream: str, payload: bytes, at: datetime) -> dict[str, Any]:
    """An outbox row, for `insert_rows`."""
    return {"stream": stream, "payload": payload, "created_at": at}


OUTBOX = OutboxMessage.__table__
TICKETS = Ticket.__table__
TICKET_EVENTS = TicketEvent.__table__
TRANSITIONS = TicketTransition.__table__


async def lock_tickets(
    session: AsyncSession, ticket_ids: Collection[uuid.UUID], *, row_locks: bool
) -> dict[uuid.UUID, Ticket]:
    """Load tickets for changing them: row-locked in id order (PostgreSQL) or under the write
    lock (SQLite); fresh from the database either way."""
    if not ticket_ids:
        return {}
    if not row_locks:
        await begin_write(session)
    stmt = (
        select(Ticket)
        .where(Ticket.id.in_(sorted(ticket_ids)))
        .order_by(Ticket.id)
        .execution_options(populate_existing=True)
    )
    if row_locks:
        stmt = stmt.with_for_update()
    return {t.id: t for t in (await session.scalars(stmt)).all()}


async def timeline(session: AsyncSession, ticket_id: uuid.UUID) -> list[TicketTransition]:
    """A ticket's timeline, oldest first."""
    rows = await session.scalars(
        select(TicketTransition)
        .where(TicketTransition.ticket_id == ticket_id)
        .order_by(TicketTransition.seq)
    )
    return list(rows.all())


async def linked_events(session: AsyncSession, ticket_id: uuid.UUID) -> list[Event]:
    """The events linked to a ticket, in the order they were reported."""
    rows = await session.scalars(
        select(Event)
        .join(TicketEvent, TicketEvent.event_id == Event.id)
        .where(TicketEvent.ticket_id == ticket_id)
        .order_by(Event.reported_at, Event.id)
    )
    return list(rows.all())


async def event_ids_by_ticket(
    session: AsyncSession, ticket_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """ticket id → its linked event ids (oldest link first), for a page of tickets."""
    out: dict[uuid.UUID, list[uuid.UUID]] = {t: [] for t in ticket_ids}
    if not ticket_ids:
        return out
    rows = await session.execute(
        select(TicketEvent.ticket_id, TicketEvent.event_id)
        .where(TicketEvent.ticket_id.in_(list(ticket_ids)))
        .order_by(TicketEvent.linked_at, TicketEvent.event_id)
    )
    for ticket_id, event_id in rows.all():
        out[ticket_id].append(event_id)
    return out


async def reporter_event_ids(session: AsyncSession, ticket_id: uuid.UUID) -> list[uuid.UUID]:
    """The ticket's events whose reporter left contact details (to call back on close)."""
    rows = await session.scalars(
        select(Event.id)
        .join(TicketEvent, TicketEvent.event_id == Event.id)
        .where(TicketEvent.ticket_id == ticket_id, Event.reporter.is_not(None))
        .order_by(Event.reported_at)
    )
    return list(rows.all())


async def relink(
    session: AsyncSession, event_ids: Collection[uuid.UUID], ticket_id: uuid.UUID, at: datetime
) -> None:
    """Move events to another ticket."""
    await session.execute(
        update(TicketEvent)
        .where(TicketEvent.event_id.in_(list(event_ids)))
        .values(ticket_id=ticket_id, linked_at=at)
    )


def scope_condition(scope: Scope) -> ColumnElement[bool]:
    """Tickets located inside a scope."""
    if scope.level == "district":
        return Ticket.district_code == scope.code
    if scope.level == "street":
        return Ticket.street_code == scope.code
    return Ticket.id.is_not(None)


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """What GET /tickets narrows by (None: any)."""

    status: Sequence[str] = ()
    tier: str | None = None
    centre: str | None = None
    district: str | None = None
    street: str | None = None
    department: str | None = None
    category: str | None = None
    overdue: bool | None = None
    priority: str | None = None
    source: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    located: bool | None = None  # False: the geotagger could not place it (a dispatcher must)
    returned: bool | None = None  # True: back in the dispatcher queue, a department returned it


def _conditions(f: TicketFilter) -> list[ColumnElement[bool]]:
    pairs: list[tuple[Any, Any]] = [
        (Ticket.owner_tier, f.tier),
        (Ticket.owner_code, f.centre),
        (Ticket.district_code, f.district),
        (Ticket.street_code, f.street),
        (Ticket.department, f.department),
        (Ticket.category, f.category),
        (Ticket.overdue, f.overdue),
        (Ticket.priority, f.priority),
        (Ticket.source, f.source),
    ]
    out: list[ColumnElement[bool]] = [col == value for col, value in pairs if value is not None]
    if f.status:
        out.append(Ticket.status.in_(list(f.status)))
    if f.created_from is not None:
        out.append(Ticket.created_at >= f.created_from)
    if f.created_to is not None:
        out.append(Ticket.created_at < f.created_to)
    if f.located is not None:
        out.append(
            (Ticket.geotag_method != "none") if f.located else (Ticket.geotag_method == "none")
        )
    if f.returned is not None:
        # Only `return` brings a dispatched ticket back to new, and it keeps `dispatched_at`.
        back = and_(Ticket.status == "new", Ticket.dispatched_at.is_not(None))
        out.append(back if f.returned else ~back)
    return out


def due_now() -> ColumnElement[datetime]:
    """The deadline that matters now, as the warning colour takes it: accepting before
    acceptance, else handling."""
    return case(
        (Ticket.status.in_(sorted(BEFORE_ACCEPT)), Ticket.accept_due_at),
        else_=Ticket.handle_due_at,
    )


async def list_tickets(
    session: AsyncSession,
    scope: Scope,
    f: TicketFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Ticket]:
    """A page of tickets in the scope, newest first, after a (created_at, id) cursor."""
    stmt = select(Ticket).where(scope_condition(scope), *_conditions(f))
    if after is not None:
        at, ticket_id = after
        stmt = stmt.where(
            or_(Ticket.created_at < at, and_(Ticket.created_at == at, Ticket.id < ticket_id))
        )
    stmt = stmt.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


async def list_by_deadline(
    session: AsyncSession,
    scope: Scope,
    f: TicketFilter,
    *,
    after: tuple[datetime | None, uuid.UUID] | None,
    limit: int,
) -> list[Ticket]:
    """A page of tickets in the scope, soonest deadline (`due_now`) first and those without
    one last, after a (deadline, id) cursor."""
    due = due_now()
    stmt = select(Ticket).where(scope_condition(scope), *_conditions(f))
    if after is not None:
        at, ticket_id = after
        if at is None:
            stmt = stmt.where(due.is_(None), Ticket.id > ticket_id)
        else:
            stmt = stmt.where(or_(due > at, and_(due == at, Ticket.id > ticket_id), due.is_(None)))
    stmt = stmt.order_by(due.is_(None), due, Ticket.id).limit(limit)
    return list((await session.scalars(stmt)).all())


async def tasks(
    session: AsyncSession, scope: Scope, department: str, *, limit: int
) -> list[Ticket]:
    """A department's tickets in a scope: those waiting on it first (by handling deadline),
    then the rest, newest first."""
    waiting = case((Ticket.status.in_(HANDLING_STATUSES), 0), else_=1)
    stmt = (
        select(Ticket)
        .where(scope_condition(scope), Ticket.department == department)
        .order_by(
            waiting,
            Ticket.handle_due_at.is_(None),
            Ticket.handle_due_at,
            Ticket.created_at.desc(),
            Ticket.id.desc(),
        )
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def events_by_ids(session: AsyncSession, event_ids: Collection[uuid.UUID]) -> list[Event]:
    """Events by id, in the order they were reported."""
    rows = await session.scalars(
        select(Event).where(Event.id.in_(list(event_ids))).order_by(Event.reported_at, Event.id)
    )
    return list(rows.all())
