"""Every SQL query of the timer scheduler: claim due timers, lock their tickets, chain heads."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import OutboxMessage, SupervisionOrder, Ticket, TicketTransition, Timer


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer this scheduler claimed in its open transaction."""

    id: int
    ticket_id: uuid.UUID
    kind: str
    due_at: datetime


async def claim_due(
    session: AsyncSession, now: datetime, fired_by: str, limit: int, *, row_locks: bool
) -> list[DueTimer]:
    """Mark up to `limit` due timers fired (earliest first) in one statement and return them.

    The inner select walks the partial index `ix_timers_pending` (unfired timers by due time), so
    the cost follows the timers due, not the timers open. On PostgreSQL it locks each timer *and
    its ticket* with `SKIP LOCKED`: timers another scheduler is claiming stay with it (its commit
    sets `fired_at`, after which `fired_at IS NULL` matches them nowhere), and a ticket an action
    holds keeps its timers until the next tick. The scheduler never waits for a lock, so it
    cannot deadlock with ticket actions that lock the ticket and then change its timers.
    """
    due = (
        select(Timer.id)
        .join(Ticket, Ticket.id == Timer.ticket_id)
        .where(Timer.fired_at.is_(None), Timer.due_at <= now)
        .order_by(Timer.due_at)
        .limit(limit)
    )
    if row_locks:
        due = due.with_for_update(skip_locked=True, of=[Timer.__table__, Ticket.__table__])
    claim = (
        update(Timer)
        .where(Timer.id.in_(due.scalar_subquery()))
        .values(fired_at=now, fired_by=fired_by)
        .returning(Timer.id, Timer.ticket_id, Timer.kind, Timer.due_at)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(claim)).all()
    timers = [DueTimer(r.id, r.ticket_id, r.kind, r.due_at) for r in rows]
    return sorted(timers, key=lambda t: (t.due_at, t.id))


async def count_due(session: AsyncSession, now: datetime) -> int:
    """How many unfired timers are due (walks the partial index of unfired timers)."""
    due = (
        select(func.count()).select_from(Timer).where(Timer.fired_at.is_(None), Timer.due_at <= now)
    )
    return int(await session.scalar(due) or 0)


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """True when some unfired timer is due (a read: no write lock taken)."""
    due = select(Timer.id).where(Timer.fired_at.is_(None), Timer.due_at <= now).limit(1)
    return (await session.scalar(due)) is not None


async def load_tickets(
    session: AsyncSession, ticket_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Ticket]:
    """The tickets of the claimed timers (`claim_due` holds their row locks), detached from
    the session: the scheduler changes them in memory and writes the changes with `save`."""
    query = select(Ticket).where(Ticket.id.in_(list(ticket_ids)))
    tickets = {t.id: t for t in (await session.scalars(query)).all()}
    session.expunge_all()
    return tickets


async def timeline_heads(
    session: AsyncSession, ticket_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, str]]:
    """The last timeline entry (seq, hash) of each ticket that has one."""
    if not ticket_ids:
        return {}
    last = (
        select(TicketTransition.ticket_id, func.max(TicketTransition.seq))
        .where(TicketTransition.ticket_id.in_(list(ticket_ids)))
        .group_by(TicketTransition.ticket_id)
    )
    rows = await session.execute(
        select(TicketTransition.ticket_id, TicketTransition.seq, TicketTransition.hash).where(
            tuple_(TicketTransition.ticket_id, TicketTransition.seq).in_(last)
        )
    )
    return {r.ticket_id: (r.seq, r.hash) for r in rows}


async def save(
    session: AsyncSession,
    *,
    tickets: Sequence[dict[str, Any]],
    transitions: Sequence[dict[str, Any]],
    orders: Sequence[dict[str, Any]],
    timers: Sequence[dict[str, Any]],
    outbox: Sequence[dict[str, Any]],
    heads: Sequence[dict[str, Any]] = (),
) -> None:
    """Write a tick's changes with one statement per table (updates by primary key).

    Every ticket row carries the same keys (its id, overdue flag, owner and both deadlines), so
    the update stays one executemany rather than one statement per distinct key set."""
    for rows in (tickets, heads):  # changed tickets; tickets that only got an entry (warnings)
        if rows:
            await session.execute(update(Ticket), list(rows))
    for model, rows in (
        (TicketTransition, transitions), (SupervisionOrder, orders), (Timer, timers),
        (OutboxMessage, outbox),
    ):  # fmt: skip
        if rows:
            await session.execute(insert(model), list(rows))
