"""Every SQL query about held events: events set aside because dispatch could not ticket them."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import backoff
from shared.db.models import Event, HeldEvent, TicketEvent


@dataclass(frozen=True, slots=True)
class HeldView:
    """A held event with what admins need to recognise the event (None if its row is gone)."""

    held: HeldEvent
    source: str | None
    category: str | None
    received_at: datetime | None


async def record_failure(
    session: AsyncSession, event_id: uuid.UUID, reason: str, now: datetime
) -> HeldEvent | None:
    """Set an event aside, or count one more failure of a held one, with the next retry time.

    None when there is nothing to hold: no such event, or a ticket links it already.
    """
    found = (
        await session.execute(
            select(Event.id, TicketEvent.ticket_id)
            .outerjoin(TicketEvent, TicketEvent.event_id == Event.id)
            .where(Event.id == event_id)
        )
    ).first()
    if found is None or found.ticket_id is not None:
        return None
    previous = await session.scalar(
        select(HeldEvent.attempts).where(HeldEvent.event_id == event_id)
    )
    attempts = (previous or 0) + 1
    values = {
        "event_id": event_id,
        "reason": backoff.bounded(reason),
        "attempts": attempts,
        "first_failed_at": now,
        "last_failed_at": now,
        "retry_at": backoff.retry_at(now, attempts),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(HeldEvent).values(values)
    # Upsert: two replicas failing on one event at once must not fail on the primary key.
    changed = {
        c: statement.excluded[c] for c in ("reason", "attempts", "last_failed_at", "retry_at")
    }
    await session.execute(
        statement.on_conflict_do_update(index_elements=["event_id"], set_=changed)
    )
    return await get_held(session, event_id)


async def get_held(session: AsyncSession, event_id: uuid.UUID) -> HeldEvent | None:
    """The held record of an event, fresh from the database."""
    return await session.scalar(
        select(HeldEvent)
        .where(HeldEvent.event_id == event_id)
        .execution_options(populate_existing=True)
    )


async def release(session: AsyncSession, event_ids: Collection[uuid.UUID]) -> None:
    """Forget held records (their events have a ticket now)."""
    if event_ids:
        await session.execute(delete(HeldEvent).where(HeldEvent.event_id.in_(list(event_ids))))


async def purge_ticketed(session: AsyncSession) -> int:
    """Delete the records of held events a ticket links by now (however it got there)."""
    linked = exists().where(TicketEvent.event_id == HeldEvent.event_id)
    result = await session.execute(delete(HeldEvent).where(linked))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _views() -> Select[HeldEvent, str, str, datetime]:  # outer join: the last three may be None
    return select(HeldEvent, Event.source, Event.category, Event.received_at).outerjoin(
        Event, Event.id == HeldEvent.event_id
    )


async def list_held(session: AsyncSession, limit: int) -> list[HeldView]:
    """Held events, the longest held first."""
    rows = await session.execute(
        _views().order_by(HeldEvent.first_failed_at, HeldEvent.event_id).limit(limit)
    )
    return [HeldView(*row) for row in rows]


async def view_of(session: AsyncSession, event_id: uuid.UUID) -> HeldView | None:
    """One held event as listed."""
    row = (
        await session.execute(
            _views().where(HeldEvent.event_id == event_id).execution_options(populate_existing=True)
        )
    ).first()
    return HeldView(*row) if row is not None else None


async def count_held(session: AsyncSession) -> int:
    """How many events are held."""
    return int(await session.scalar(select(func.count()).select_from(HeldEvent)) or 0)


async def event_of(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    """The stored event."""
    return await session.get(Event, event_id)
