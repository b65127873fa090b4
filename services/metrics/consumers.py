"""The incremental path: KPI facts from `events.ingested` and `tickets.changed` (group `kpis`),
one transaction per read. Idempotent without an inbox: every write is a merge that a repeated or
late message cannot change (see services/metrics/store.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics import store
from services.metrics.facts import TicketFact, TransitionFact, event_fact, fold, from_message
from shared.bus import Consumer, Delivery, PoisonMessageError
from shared.bus.consumer import ConsumerConfig, consumer_name
from shared.messages import (
    EVENTS_INGESTED,
    TICKETS_CHANGED,
    AnyMessageType,
    EventIngestedV1,
    TicketChangedV1,
    TicketChangedV2,
    decode,
)
from shared.runtime import Runtime
from shared.telemetry.metrics import KPI_UPDATE_LAG_SECONDS

GROUP = "kpis"
READ_BATCH = 500  # messages read, and applied in one transaction, at a time
# KPI figures are pushed once a second: a read that found little waits a quarter of that for
# more, so facts are written in a few larger transactions (a change applied alone costs ~30×
# one applied in a batch of 500: docs/benchmarks.md), leaving the CPU to the live relay.
GATHER_S = 0.25


def _lag_seen(stream: str, messages: Sequence[EventIngestedV1 | TicketChangedV2]) -> None:
    """/metrics: seconds from each message's creation to the commit of its KPI facts."""
    histogram = KPI_UPDATE_LAG_SECONDS.labels(stream)
    now = datetime.now(UTC)
    for message in messages:
        histogram.observe(max(0.0, (now - message.created_at).total_seconds()))


def _decode(delivery: Delivery) -> AnyMessageType:
    try:
        return decode(delivery.data)
    except ValidationError as exc:
        raise PoisonMessageError(f"undecodable message: {exc.errors()[:1]}") from exc


def decode_events(deliveries: Sequence[Delivery]) -> list[EventIngestedV1]:
    """The `events.ingested` messages of a read (anything else is poison)."""
    found = []
    for delivery in deliveries:
        message = _decode(delivery)
        if not isinstance(message, EventIngestedV1):
            raise PoisonMessageError(f"unexpected {message.kind!r} on {EVENTS_INGESTED}")
        found.append(message)
    return found


def decode_changes(deliveries: Sequence[Delivery]) -> list[TicketChangedV2]:
    """The version-2 `tickets.changed` messages of a read (version 1 is skipped, anything else
    is poison)."""
    found = []
    for delivery in deliveries:
        message = _decode(delivery)
        if isinstance(message, TicketChangedV1):
            continue  # no ticket summary to count (nothing publishes version 1 any more)
        if not isinstance(message, TicketChangedV2):
            raise PoisonMessageError(f"unexpected {message.kind!r} on {TICKETS_CHANGED}")
        found.append(message)
    return found


async def apply_events(
    sessions: async_sessionmaker[AsyncSession], messages: Sequence[EventIngestedV1]
) -> None:
    """Store the facts of ingested events (read from their rows: `received_at` is there)."""
    ids = {m.event_id for m in messages}
    if not ids:
        return
    async with sessions() as session, session.begin():
        rows = await store.events_by_id(session, ids)
        await store.upsert_events(session, [event_fact(*r) for r in rows], datetime.now(UTC))
    _lag_seen(EVENTS_INGESTED, messages)


async def apply_changes(
    sessions: async_sessionmaker[AsyncSession], messages: Sequence[TicketChangedV2]
) -> None:
    """Merge the facts of ticket changes into the stored ones."""
    if not messages:
        return
    tickets: dict[uuid.UUID, TicketFact] = {}
    transitions: list[TransitionFact] = []
    joined: list[uuid.UUID] = []
    for message in messages:
        delta = from_message(message)
        known = tickets.get(delta.ticket.ticket_id)
        tickets[delta.ticket.ticket_id] = (
            delta.ticket if known is None else fold(known, delta.ticket)
        )
        transitions.extend(delta.transitions)
        joined.extend(delta.joined)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await store.upsert_tickets(session, list(tickets.values()), now)
        await store.insert_transitions(session, transitions)
        await store.mark_joined(session, joined, now)
    _lag_seen(TICKETS_CHANGED, messages)


def event_consumer(runtime: Runtime, config: ConsumerConfig | None = None) -> Consumer:
    """The `kpis` group's consumer of `events.ingested`."""

    async def handler(delivery: Delivery) -> None:
        await apply_events(runtime.sessions, decode_events([delivery]))

    async def batch_handler(deliveries: list[Delivery]) -> None:
        await apply_events(runtime.sessions, decode_events(deliveries))

    return Consumer(
        runtime.bus, EVENTS_INGESTED, GROUP, consumer_name(), handler,
        config or ConsumerConfig(batch=READ_BATCH, gather_s=GATHER_S), batch_handler,
    )  # fmt: skip


def change_consumer(runtime: Runtime, config: ConsumerConfig | None = None) -> Consumer:
    """The `kpis` group's consumer of `tickets.changed`."""

    async def handler(delivery: Delivery) -> None:
        await apply_changes(runtime.sessions, decode_changes([delivery]))

    async def batch_handler(deliveries: list[Delivery]) -> None:
        await apply_changes(runtime.sessions, decode_changes(deliveries))

    return Consumer(
        runtime.bus, TICKETS_CHANGED, GROUP, consumer_name(), handler,
        config or ConsumerConfig(batch=READ_BATCH, gather_s=GATHER_S), batch_handler,
    )  # fmt: skip


async def run_event_consumer(runtime: Runtime) -> None:
    """Count ingested events until cancelled."""
    await event_consumer(runtime).run()


async def run_change_consumer(runtime: Runtime) -> None:
    """Count ticket changes until cancelled."""
    await change_consumer(runtime).run()
