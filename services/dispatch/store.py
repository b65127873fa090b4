"""Every SQL query of the dispatch service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Event, Ticket, TicketEvent


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
    session: AsyncSession, received_before: datetime, limit: int
) -> Sequence[Event]:
    """Events older than `received_before` that no ticket links (their message was lost)."""
    return (
        await session.scalars(
            select(Event)
            .outerjoin(TicketEvent, TicketEvent.event_id == Event.id)
            .where(TicketEvent.event_id.is_(None), Event.received_at < received_before)
            .order_by(Event.received_at)
            .limit(limit)
        )
    ).all()
