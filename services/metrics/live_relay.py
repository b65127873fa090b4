"""Ticket changes into the live history: each `tickets.changed` becomes one `tickets` message.

A consumer group of its own (`live`), so a slow KPI update never delays what the screens see.
The message carries what a screen draws (no reporter details, no notes: those stay behind the
scoped REST API) and the area codes the gateways filter subscribers by.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.bus import Consumer, Delivery
from shared.bus.consumer import ConsumerConfig, consumer_name
from shared.catalogue import Catalogue
from shared.live import LiveItem
from shared.messages import TICKETS_CHANGED, TicketChangedV2, decode
from shared.runtime import Runtime

GROUP = "live"
READ_BATCH = 500
# Latency matters more than round trips here: wait at most this long for the next change.
BLOCK_MS = 1_000


def ticket_data(message: TicketChangedV2, catalogue: Catalogue) -> dict[str, Any]:
    """The `data` of a `tickets` live message: the ticket summary plus its transition."""
    t, step = message.ticket, message.transition
    category = catalogue.get(t.category)
    return {
        "id": str(t.id),
        "status": t.status,
        "category": t.category,
        "category_name": category.name_zh if category is not None else t.category,
        "category_name_en": category.name_en if category is not None else t.category,
        "priority": t.priority,
        "source": t.source,
        "city_code": t.city,
        "district_code": t.district,
        "street_code": t.street,
        "owner_tier": t.owner_tier,
        "owner_code": t.owner_code,
        "department": t.department,
        "colour": message.colour,
        "overdue": t.overdue,
        "report_count": t.report_count,
        "rework_count": t.rework_count,
        "location": None if t.lon is None or t.lat is None else {"lon": t.lon, "lat": t.lat},
        "emergency": t.emergency,
        "merged_into": None if t.merged_into is None else str(t.merged_into),
        "accept_due_at": None if t.accept_due_at is None else t.accept_due_at.isoformat(),
        "handle_due_at": None if t.handle_due_at is None else t.handle_due_at.isoformat(),
        "created_at": t.created_at.isoformat(),
        "dispatched_at": None if t.dispatched_at is None else t.dispatched_at.isoformat(),
        "updated_at": t.updated_at.isoformat(),
        "transition": None
        if step is None
        else {
            "seq": step.seq,
            "action": step.action,
            "from": step.from_status,
            "to": step.to_status,
            "actor": step.actor,
            "at": step.at.isoformat(),
        },
    }


def ticket_item(message: TicketChangedV2, catalogue: Catalogue) -> LiveItem:
    """The live message for one ticket change, placed in the ticket's district and street."""
    at = message.transition.at if message.transition is not None else message.ticket.updated_at
    return LiveItem(
        stream="tickets",
        type=f"ticket.{message.change}",
        at=at,
        data=ticket_data(message, catalogue),
        district=message.ticket.district,
        street=message.ticket.street,
        key=str(message.id),  # a redelivered change is not appended twice
    )


def items_of(deliveries: list[Delivery], catalogue: Catalogue) -> list[LiveItem]:
    """The live messages of a read; anything that is not a version-2 ticket change is skipped
    (older versions carry no summary to show; garbage is the dispatch consumer's to report)."""
    items = []
    for delivery in deliveries:
        try:
            message = decode(delivery.data)
        except ValidationError:
            continue
        if isinstance(message, TicketChangedV2):
            items.append(ticket_item(message, catalogue))
    return items


def live_relay(runtime: Runtime) -> Consumer:
    """The consumer that appends ticket changes to the live history, in bus order."""

    async def handler(delivery: Delivery) -> None:
        await runtime.live.append(items_of([delivery], runtime.catalogue))

    async def batch_handler(deliveries: list[Delivery]) -> None:
        await runtime.live.append(items_of(deliveries, runtime.catalogue))

    config = ConsumerConfig(batch=READ_BATCH, block_ms=BLOCK_MS)
    return Consumer(
        runtime.bus, TICKETS_CHANGED, GROUP, consumer_name(), handler, config, batch_handler
    )


async def run_live_relay(runtime: Runtime) -> None:
    """Relay ticket changes to the live history until cancelled."""
    await live_relay(runtime).run()
