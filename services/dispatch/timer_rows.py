"""Timer-row bookkeeping: which deadline timers a ticket has pending (the scheduler fires them).

Rows follow `shared.db.models.Timer`: one per (ticket, kind) pending, kind one of accept_warn,
accept_due, handle_warn, handle_due. Fired rows are history and are never deleted here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.deadlines import TimerKind
from shared.db.models import Timer

ACCEPT: tuple[TimerKind, ...] = ("accept_warn", "accept_due")
HANDLE: tuple[TimerKind, ...] = ("handle_warn", "handle_due")
ALL: tuple[TimerKind, ...] = ACCEPT + HANDLE
TIMERS: Table = Timer.__table__  # type: ignore[assignment]  # a mapped class's Table


def rows(
    ticket_id: uuid.UUID, timers: Iterable[tuple[TimerKind, datetime]]
) -> list[dict[str, Any]]:
    """Insertable rows for a ticket's timers."""
    return [{"ticket_id": ticket_id, "kind": kind, "due_at": due} for kind, due in timers]


async def add_rows(session: AsyncSession, timer_rows: Sequence[dict[str, Any]]) -> None:
    """Insert timer rows (one statement)."""
    if timer_rows:
        await session.execute(insert(TIMERS), list(timer_rows))  # Core: no ORM bulk path


async def cancel(
    session: AsyncSession, ticket_id: uuid.UUID, kinds: Sequence[TimerKind] = ALL
) -> None:
    """Delete the ticket's pending timers of these kinds."""
    await session.execute(
        delete(Timer).where(
            Timer.ticket_id == ticket_id, Timer.fired_at.is_(None), Timer.kind.in_(kinds)
        )
    )


async def replace(
    session: AsyncSession, ticket_id: uuid.UUID, timers: Sequence[tuple[TimerKind, datetime]]
) -> None:
    """Put these timers in place of the ticket's pending timers of the same kinds."""
    await cancel(session, ticket_id, [kind for kind, _due in timers])
    await add_rows(session, rows(ticket_id, timers))
