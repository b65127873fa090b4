"""Bus handlers of dispatch: every ingested event opens (or joins) a ticket, exactly once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from services.dispatch import held_store, store
from services.dispatch.held import set_aside, ticket_events
from services.dispatch.tickets import open_ticket, open_tickets
from shared.bus import Bus, Consumer, Delivery, PoisonMessageError
from shared.bus.consumer import ConsumerConfig, consumer_name
from shared.messages import EVENTS_INGESTED, EventIngestedV1, decode
from shared.runtime import Runtime
from shared.telemetry.request_id import request_scope

logger = logging.getLogger(__name__)

GROUP = "dispatch"
# How often to sweep, how old an unlinked event must be, and when a dead replica's deliveries
# are taken over: Settings.dispatch (CITYHUB_DISPATCH__SWEEP_EVERY_S, _SWEEP_GRACE_S,
# _CLAIM_IDLE_S), 30 s each by default.
SWEEP_BATCH = 500
READ_BATCH = 500  # events read (and turned into tickets in one transaction) at a time


def _event(delivery: Delivery) -> EventIngestedV1:
    try:
        msg = decode(delivery.data)
    except ValidationError as exc:
        raise PoisonMessageError(f"undecodable message: {exc.errors()[:1]}") from exc
    if not isinstance(msg, EventIngestedV1):
        raise PoisonMessageError(f"unexpected message kind {msg.kind!r} on {EVENTS_INGESTED}")
    return msg


def _log_tickets(msgs: Sequence[EventIngestedV1], tickets: Mapping[uuid.UUID, uuid.UUID]) -> None:
    """A debug line per event handled, under the request id it came with (X-Request-ID at
    intake): one grep finds a request's way from the gateway to its ticket. Debug, like the
    access log: at INFO a busy hub would write a line per event (~20 µs each as JSON)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    for msg in msgs:
        with request_scope(msg.request_id):
            logger.debug(
                "event %s (%s) is in ticket %s",
                msg.event_id,
                msg.source,
                tickets.get(msg.event_id),
                extra={"event_id": str(msg.event_id), "ticket_id": str(tickets.get(msg.event_id))},
            )


async def handle_event_ingested(runtime: Runtime, delivery: Delivery) -> None:
    """Decode an `events.ingested` delivery and open (or join) its ticket."""
    msg = _event(delivery)
    _log_tickets([msg], {msg.event_id: await open_ticket(runtime, msg)})


async def handle_event_batch(runtime: Runtime, deliveries: list[Delivery]) -> None:
    """Open or join the tickets of a whole read in one transaction."""
    msgs = [_event(d) for d in deliveries]
    _log_tickets(msgs, await open_tickets(runtime, msgs))


def event_consumer(
    runtime: Runtime, *, bus: Bus | None = None, config: ConsumerConfig | None = None
) -> Consumer:
    """The consumer of `events.ingested` as a member of the dispatch group; a message it gives
    up on has its event held (visible to admins, retried by the sweep), not only dead-lettered."""

    async def handler(delivery: Delivery) -> None:
        await handle_event_ingested(runtime, delivery)

    async def batch_handler(deliveries: list[Delivery]) -> None:
        await handle_event_batch(runtime, deliveries)

    async def give_up(delivery: Delivery, reason: str) -> None:
        await set_aside(runtime, delivery, reason)

    if config is None:
        idle_ms = round(runtime.settings.dispatch.claim_idle_s * 1000)
        config = ConsumerConfig(batch=READ_BATCH, claim_idle_ms=idle_ms)
    return Consumer(
        bus or runtime.bus, EVENTS_INGESTED, GROUP, consumer_name(), handler, config,
        batch_handler, on_give_up=give_up,
    )  # fmt: skip


async def run_event_consumer(runtime: Runtime) -> None:
    """Consume `events.ingested` as a member of the dispatch group."""
    await event_consumer(runtime).run()


async def sweep_once(
    runtime: Runtime, now: datetime | None = None, *, every_held: bool = False
) -> int:
    """Open tickets for events whose message was lost (bus restarted empty); returns how many.

    An event that fails is held (set aside with the reason) and skipped until its retry is due,
    so it never blocks the others; `every_held` tries every held event now (at process start,
    when a fix has often just been deployed).
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=runtime.settings.dispatch.sweep_grace_s)
    async with runtime.sessions() as session:
        found = await store.unticketed_events(
            session, cutoff, SWEEP_BATCH, due_by=None if every_held else now
        )
    held_ids = {event.id for event, is_held in found if is_held}
    done = await ticket_events(runtime, [event for event, _ in found], now, held_ids=held_ids)
    async with runtime.sessions() as session, session.begin():
        await held_store.purge_ticketed(session)  # held events ticketed some other way
    if done:
        logger.warning("sweep opened tickets for %d events whose message was lost", done)
    return done


async def run_sweeper(runtime: Runtime) -> None:
    """Sweep at start (after downtime, trying every held event) and then periodically."""
    every_held = True
    while True:
        try:
            await sweep_once(runtime, every_held=every_held)
            every_held = False
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("event sweep failed; will retry")
        await asyncio.sleep(runtime.settings.dispatch.sweep_every_s)
