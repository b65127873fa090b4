"""Every SQL query of the ingest service."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import CategoryRow, Event, Ticket, TicketEvent, TicketTransition


async def find_by_source_ref(
    session: AsyncSession, submitted_by: str | None, source: str, source_ref: str
) -> Event | None:
    """The event this sender already submitted under this reference."""
    return await session.scalar(
        select(Event).where(
            Event.submitted_by == submitted_by,
            Event.source == source,
            Event.source_ref == source_ref,
        )
    )


async def find_by_source_refs(
    session: AsyncSession, submitted_by: str | None, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], Event]:
    """The events this sender already submitted under these (source, source_ref) keys, by key:
    one query for a whole batch."""
    if not keys:
        return {}
    wanted = set(keys)
    rows = await session.scalars(
        select(Event).where(
            Event.submitted_by == submitted_by,
            Event.source.in_({source for source, _ in wanted}),
            Event.source_ref.in_({ref for _, ref in wanted}),
        )
    )
    found = {}
    for event in rows:
        assert event.source_ref is not None  # the query asked for one
        key = (event.source, event.source_ref)
        if key in wanted:  # IN × IN also matches a ref under another of the sources asked
            found[key] = event
    return found


async def get_event(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    """An event by id."""
    return await session.get(Event, event_id)


async def ticket_of(session: AsyncSession, event_id: uuid.UUID) -> uuid.UUID | None:
    """The ticket an event opened or joined, if dispatch has handled it yet."""
    return await session.scalar(
        select(TicketEvent.ticket_id).where(TicketEvent.event_id == event_id)
    )


async def events_with_tickets(
    session: AsyncSession,
    *,
    ids: Collection[uuid.UUID] | None = None,
    categories: Collection[str] = (),
    reported_from: datetime | None = None,
    reported_to: datetime | None = None,
    closed: bool | None = None,
    closed_statuses: Collection[str] = (),
    offset: int = 0,
    limit: int = 1000,
) -> Sequence[tuple[Event, Ticket | None]]:
    """Events, newest first, each with its ticket if any; `closed` filters on the ticket status
    being one of `closed_statuses` (True), not being one or no ticket yet (False), or not (None)."""
    query = (
        select(Event, Ticket)
        .outerjoin(TicketEvent, TicketEvent.event_id == Event.id)
        .outerjoin(Ticket, Ticket.id == TicketEvent.ticket_id)
    )
    if ids is not None:
        query = query.where(Event.id.in_(ids))
    if categories:
        query = query.where(Event.category.in_(categories))
    if reported_from is not None:
        query = query.where(Event.reported_at >= reported_from)
    if reported_to is not None:
        query = query.where(Event.reported_at <= reported_to)
    if closed is True:
        query = query.where(Ticket.status.in_(closed_statuses))
    elif closed is False:
        query = query.where(or_(Ticket.id.is_(None), Ticket.status.not_in(closed_statuses)))
    query = query.order_by(Event.reported_at.desc(), Event.id).offset(offset).limit(limit)
    return [(event, ticket) for event, ticket in await session.execute(query)]


async def catalogue_changed_at(session: AsyncSession) -> datetime | None:
    """When a category was last added or edited."""
    return await session.scalar(select(func.max(CategoryRow.updated_at)))


async def latest_notes(
    session: AsyncSession, ticket_ids: Collection[uuid.UUID], actions: Collection[str]
) -> dict[uuid.UUID, tuple[str, str]]:
    """Per ticket, the latest non-empty note left by one of `actions`, as (the status that
    action led to, the note): one query for a whole page of tickets."""
    if not ticket_ids:
        return {}
    latest = (
        select(TicketTransition.ticket_id, func.max(TicketTransition.seq).label("seq"))
        .where(
            TicketTransition.ticket_id.in_(list(ticket_ids)),
            TicketTransition.action.in_(list(actions)),
            TicketTransition.note != "",
        )
        .group_by(TicketTransition.ticket_id)
        .subquery()
    )
    rows = await session.execute(
        select(TicketTransition.ticket_id, TicketTransition.to_status, TicketTransition.note).join(
            latest,
            and_(
                TicketTransition.ticket_id == latest.c.ticket_id,
                TicketTransition.seq == latest.c.seq,
            ),
        )
    )
    return {r.ticket_id: (r.to_status, r.note) for r in rows}
