"""`cityhub kpis recompute`: every KPI fact rebuilt from the stored events, tickets and ticket
timelines, through the same derivation the incremental path applies to bus messages.

Tickets are read with their last timeline seq and their counted entries, derived, and staged in
bulk (COPY on PostgreSQL); then events, each with the `joined` flag the timelines gave it. In the
same transaction the stored facts are made equal to the staged ones, changing only rows that
differ (`store.apply_rebuild`): readers see the previous facts until it commits, consumers wait
for it, and the counts of changed rows say whether the incremental path had drifted.
"""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics import store
from services.metrics.facts import (
    EventFact,
    TicketFact,
    TransitionFact,
    accumulate,
    event_fact,
    ticket_state,
)
from services.metrics.kpis import KpiContext, kpis_of
from services.metrics.schemas import Window
from services.metrics.scopes import KpiScope, caller_place
from shared.auth import Scope

TICKET_PAGE = 5_000  # tickets (and their timelines) derived per step
EVENT_PAGE = 20_000  # events per step


@dataclass
class Derived:
    """One step's facts: tickets with their counted transitions, or events."""

    tickets: list[TicketFact] = field(default_factory=list)
    transitions: list[TransitionFact] = field(default_factory=list)
    # (event id, its fact or None when the event row is gone, joined an existing ticket)
    events: list[tuple[uuid.UUID, EventFact | None, bool]] = field(default_factory=list)


async def derive(session: AsyncSession) -> AsyncIterator[Derived]:
    """Every fact derived from the stored rows, a page at a time (nothing is written)."""
    joined: set[uuid.UUID] = set()
    async for page in store.stored_tickets(session, TICKET_PAGE):
        step = Derived()
        for row, last_seq, entries in page:
            (
                ticket_id, status, merged_into, category, district, street, department,
                created_at, accept_due_at, handle_due_at, overdue, closed_at,
            ) = row  # fmt: skip
            found = accumulate(ticket_id, created_at, district, street, entries)
            step.tickets.append(
                ticket_state(
                    ticket_id=ticket_id, version=last_seq, status=status, merged_into=merged_into,
                    category=category, district=district, street=street, department=department,
                    created_at=created_at, accept_due_at=accept_due_at,
                    handle_due_at=handle_due_at, overdue=bool(overdue), closed_at=closed_at,
                    accrual=found.accrual,
                )
            )  # fmt: skip
            step.transitions.extend(found.transitions)
            joined.update(found.joined)
        yield step
    seen: set[uuid.UUID] = set()
    async for events in store.stored_events(session, EVENT_PAGE):
        step = Derived()
        for row in events:
            event_id = row[0]
            step.events.append((event_id, event_fact(*row), event_id in joined))
            seen.add(event_id)
        yield step
    # Events named by a timeline whose row is gone: the incremental path keeps their flag too.
    orphans = sorted(joined - seen)
    if orphans:
        yield Derived(events=[(event_id, None, True) for event_id in orphans])


@dataclass
class Rebuilt:
    """What a recompute wrote and how long it took."""

    tickets: int = 0
    transitions: int = 0
    events: int = 0
    # Per fact table: (rows added or changed, rows removed) — both 0 when the incremental path
    # had kept every fact exactly.
    changes: dict[str, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Facts form no reference cycles, and the collector's passes over the millions of objects a
    recompute holds cost more than deriving them (about half the time of a month's recompute)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def rebuild(session: AsyncSession, now: datetime) -> Rebuilt:
    """Replace every fact with one derived from the stored rows (in the caller's transaction)."""
    with _no_cyclic_gc():
        return await _rebuild(session, now)


async def _rebuild(session: AsyncSession, now: datetime) -> Rebuilt:
    started = time.perf_counter()
    done = Rebuilt()
    await store.begin_rebuild(session)
    async for step in derive(session):
        for table, records in (
            (store.KPI_TICKETS, [_ticket_record(f, now) for f in step.tickets]),
            (store.KPI_TRANSITIONS, [_transition_record(f) for f in step.transitions]),
            (store.KPI_EVENTS, [_event_record(i, f, j, now) for i, f, j in step.events]),
        ):
            columns = [c.name for c in table.columns]
            await store.bulk_insert(session, store.staged(table), columns, records)
        done.tickets += len(step.tickets)
        done.transitions += len(step.transitions)
        done.events += len(step.events)
    done.changes = await store.apply_rebuild(session)
    done.seconds = time.perf_counter() - started
    return done


def _ticket_record(fact: TicketFact, now: datetime) -> tuple[Any, ...]:
    return (*fact.values(), now)  # TICKET_COLUMNS order (checked in store)


def _transition_record(f: TransitionFact) -> tuple[Any, ...]:
    return (f.ticket_id, f.seq, f.kind, f.at, f.passed, f.score, f.district, f.street)


def _event_record(
    event_id: uuid.UUID, fact: EventFact | None, joined: bool, now: datetime
) -> tuple[Any, ...]:
    if fact is None:
        return (event_id, None, None, None, None, None, joined, now)
    return (
        event_id, fact.received_at, fact.channel, fact.category, fact.district, fact.street,
        joined, now,
    )  # fmt: skip


async def recompute(
    sessions: async_sessionmaker[AsyncSession],
    ctx: KpiContext,
    windows: Sequence[Window],
    now: datetime,
) -> dict[str, Any]:
    """Rebuild every fact (one transaction), then the city's figures for `windows`, JSON-ready:
    what `cityhub kpis recompute` prints."""
    async with sessions() as session, session.begin():
        done = await rebuild(session, now)
    city = KpiScope(caller_place(Scope("city"), ctx.hierarchy))
    figures: dict[str, Any] = {}
    async with sessions() as session:
        for window in windows:
            found = await kpis_of(session, ctx, city, window, now)
            figures[window] = found.model_dump(mode="json")
    return {"facts": asdict(done), "kpis": figures}
