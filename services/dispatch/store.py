"""Every SQL query of the dispatch service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Event, HeldEvent, Ticket, TicketEvent


async def ticket_for_event(session: AsyncSession, event_id: uuid.UUID) -> uuid.UUID | None:
    """The ticket an event already belongs to."""
    return await session.scalar(
        select(TicketEvent.ticket_id).where(TicketEvent.event_id == event_id)
    )


async def get_ticket(session: AsyncSession, ticket_id: uuid.UUID) -> Ticket | None:
    """A ticket by id."""
    return await session.get(Ticket, ticket_id)


async def linked_event_ids(session: AsyncSession, ticket_id: uuid.UUID) -> list[uuid.UUID]:
    """The events linked to a ticket, oldest first."""
    rows = await session.scalars(
        select(TicketEvent.event_id)
        .where(TicketEvent.ticket_id == ticket_id)
        .order_by(TicketEvent.linked_at)
    )
    return list(rows)


async def unticketed_events(
    session: AsyncSession, received_before: datetime, limit: int, *, due_by: datetime | None
) -> Sequence[tuple[Event, bool]]:
    """Events older than `received_before` that no ticket links (their message was lost), each
    with whether it is held; a held event only once its retry is due by `due_by` (None: every
    held one), so a poison event costs nothing between its retries."""
    query = (
        select(Event, HeldEvent.event_id.is_not(None))
        .outerjoin(TicketEvent, TicketEvent.event_id == Event.id)
        .outerjoin(HeldEvent, HeldEvent.event_id == Event.id)
        .where(TicketEvent.event_id.is_(None), Event.received_at < received_before)
        .order_by(Event.received_at)
        .limit(limit)
    )
    if due_by is not None:
        query = query.where(or_(HeldEvent.event_id.is_(None), HeldEvent.retry_at <= due_by))
    rows = await session.execute(query)
    return [(event, bool(held)) for event, held in rows]
