"""Held events: an event dispatch cannot turn into a ticket (a poison event) is set aside — kept,
with the reason, for admins to see — and tried again later, so it never holds back the others.

Every try of an event that may be poison runs in its own transaction: a batch that fails is
taken apart and each of its events tried alone; those that still fail are recorded in
`held_events` (services/dispatch/held_store.py) with a retry time (services/dispatch/backoff.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from services.dispatch import held_store, store
from services.dispatch.backoff import bounded, reason_of
from services.dispatch.tickets import open_ticket, open_tickets
from shared.bus import Delivery
from shared.db.models import Event, HeldEvent
from shared.events import ingested_message
from shared.messages import EventIngestedV1, decode
from shared.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one try of an event came to: its ticket, or its (new) held record."""

    event_id: uuid.UUID
    ticket_id: uuid.UUID | None = None
    held: HeldEvent | None = None


async def hold(runtime: Runtime, event_id: uuid.UUID, reason: str, now: datetime) -> Outcome:
    """Record that an event failed (in its own transaction); a ticket linking it meanwhile wins."""
    async with runtime.sessions() as session, session.begin():
        held = await held_store.record_failure(session, event_id, reason, now)
    if held is not None:
        logger.warning(
            "event %s set aside (failure %d, next try at %s): %s",
            event_id,
            held.attempts,
            held.retry_at.isoformat(),
            held.reason,
        )
        return Outcome(event_id, held=held)
    async with runtime.sessions() as session:
        ticket_id = await store.ticket_for_event(session, event_id)
    if ticket_id is None:
        logger.warning("event %s failed but is not stored: nothing to hold (%s)", event_id, reason)
    return Outcome(event_id, ticket_id=ticket_id)


async def ticket_one(
    runtime: Runtime, msg: EventIngestedV1, now: datetime, *, was_held: bool
) -> Outcome:
    """Open or join the ticket of one event alone; set it aside when that fails."""
    try:
        ticket_id = await open_ticket(runtime, msg, announce=True)
    except Exception as exc:  # whatever it is, it must not stop the events after this one
        return await hold(runtime, msg.event_id, reason_of(exc), now)
    if was_held:
        async with runtime.sessions() as session, session.begin():
            await held_store.release(session, [msg.event_id])
        logger.info("held event %s has its ticket %s now", msg.event_id, ticket_id)
    return Outcome(msg.event_id, ticket_id=ticket_id)


async def ticket_events(
    runtime: Runtime, events: Sequence[Event], now: datetime, *, held_ids: Collection[uuid.UUID]
) -> int:
    """Ticket stored events: the new ones in one transaction when that works, else each alone;
    held ones (`held_ids`) always alone. Failures are set aside. Each is announced again on
    `events.ingested` with its ticket (its message may never have been published). Returns how
    many got a ticket."""
    fresh: list[EventIngestedV1] = []
    retried: list[EventIngestedV1] = []
    for event in events:
        try:
            msg = ingested_message(event)
        except Exception as exc:  # a stored value the message refuses
            await hold(runtime, event.id, reason_of(exc), now)
            continue
        (retried if event.id in held_ids else fresh).append(msg)
    done = 0
    if len(fresh) > 1:
        try:
            await open_tickets(runtime, fresh, announce=True)
        except Exception:
            logger.warning(
                "batch of %d events failed; opening their tickets one by one",
                len(fresh),
                exc_info=True,
            )
        else:
            done, fresh = len(fresh), []
    for msgs, was_held in ((fresh, False), (retried, True)):
        for msg in msgs:
            outcome = await ticket_one(runtime, msg, now, was_held=was_held)
            done += outcome.ticket_id is not None
    return done


async def retry(runtime: Runtime, event_id: uuid.UUID) -> Outcome | None:
    """Try a held event now (an admin fixed its cause); None when it is not held."""
    now = datetime.now(UTC)
    async with runtime.sessions() as session:
        record = await held_store.get_held(session, event_id)
        event = await held_store.event_of(session, event_id) if record is not None else None
    if record is None:
        return None
    if event is None:  # its row is gone: nothing could ever ticket it, and nothing to show
        async with runtime.sessions() as session, session.begin():
            await held_store.release(session, [event_id])
        logger.warning("held event %s no longer exists; its record is removed", event_id)
        return None
    try:
        msg = ingested_message(event)
    except Exception as exc:
        return await hold(runtime, event_id, reason_of(exc), now)
    return await ticket_one(runtime, msg, now, was_held=True)


def event_id_of(data: bytes) -> uuid.UUID | None:
    """The event an `events.ingested` message is about, even when it does not fully decode."""
    try:
        msg = decode(data)
    except ValueError:  # pydantic's ValidationError is one
        try:
            raw = json.loads(data)
            return uuid.UUID(str(raw["event_id"])) if isinstance(raw, dict) else None
        except (ValueError, KeyError):
            return None
    return msg.event_id if isinstance(msg, EventIngestedV1) else None


async def set_aside(runtime: Runtime, delivery: Delivery, reason: str) -> None:
    """The event consumer's give-up hook: hold the message's event, so admins see it and the
    sweep retries it with back-off (the bus dead-letter stream is seen by no one)."""
    event_id = event_id_of(delivery.data)
    if event_id is None:
        logger.warning(
            "message %s names no event; only the dead-letter stream keeps it", delivery.id
        )
        return
    await hold(runtime, event_id, bounded(f"bus consumer gave up: {reason}"), datetime.now(UTC))
