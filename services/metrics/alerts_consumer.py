"""Alerts from the bus: a consumer group of its own (`alerts`) on `tickets.changed`,
`emergency.changed` and `alerts.raised` stores each alert once and appends it to the live log.

Per read: map the messages (services/metrics/alerts.py), insert the alerts in one transaction
(ids derived from the message, so a redelivered message inserts nothing), then append to the
live log those stored but not streamed yet, then record them as streamed. A crash after the
commit leaves them unstreamed and the redelivered message streams them then; a crash after the
append but before that record streams them twice (at least once; frames carry the alert's id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from services.metrics import alerts_store as store
from services.metrics.alerts import Alert, Names, alerts_of
from shared.bus import Bus, Consumer, Delivery, PoisonMessageError
from shared.bus.consumer import ConsumerConfig, consumer_name
from shared.messages import (
    ALERTS_RAISED,
    EMERGENCY_CHANGED,
    TICKETS_CHANGED,
    AnyMessageType,
    decode,
)
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

GROUP = "alerts"
STREAMS = (TICKETS_CHANGED, EMERGENCY_CHANGED, ALERTS_RAISED)
READ_BATCH = 500  # messages read (and their alerts stored in one transaction) at a time
PRUNE_EVERY_S = 3_600.0  # how often alerts past their retention are deleted


def names_of(runtime: Runtime) -> Names:
    """Area and category names from the process's hierarchy and (live) catalogue."""
    hierarchy = runtime.hierarchy

    def area(code: str) -> str | None:
        found = hierarchy.get(code)
        return None if found is None else found.name

    def level(code: str) -> str | None:
        found = hierarchy.get(code)
        return None if found is None else found.level

    def category(code: str) -> tuple[str, str] | None:
        found = runtime.catalogue.get(code)
        return None if found is None else (found.name_zh, found.name_en)

    return Names(area=area, area_level=level, category=category)


def _message(delivery: Delivery) -> AnyMessageType:
    try:
        return decode(delivery.data)
    except ValidationError as exc:
        raise PoisonMessageError(f"undecodable message: {exc.errors()[:1]}") from exc


async def record(runtime: Runtime, messages: Sequence[AnyMessageType]) -> list[Alert]:
    """Store the alerts of these messages and stream the ones not streamed yet; those, in order."""
    names = names_of(runtime)
    alerts = [alert for message in messages for alert in alerts_of(message, names)]
    if not alerts:
        return []  # most ticket changes: no database work at all
    async with runtime.sessions() as session, session.begin():
        await store.insert_new(session, alerts)
        pending = await store.unstreamed(session, [a.id for a in alerts])
    fresh = list({a.id: a for a in alerts if a.id in pending}.values())
    if fresh:
        await runtime.live.append([a.live_item() for a in fresh])
        async with runtime.sessions() as session, session.begin():
            await store.mark_streamed(session, [a.id for a in fresh], datetime.now(UTC))
    return fresh


def alert_consumer(
    runtime: Runtime, stream: str, *, bus: Bus | None = None, config: ConsumerConfig | None = None
) -> Consumer:
    """The `alerts` group's consumer of one stream."""

    async def handler(delivery: Delivery) -> None:
        await record(runtime, [_message(delivery)])

    async def batch_handler(deliveries: list[Delivery]) -> None:
        await record(runtime, [_message(d) for d in deliveries])

    return Consumer(
        bus or runtime.bus, stream, GROUP, consumer_name(), handler,
        config or ConsumerConfig(batch=READ_BATCH), batch_handler,
    )  # fmt: skip


async def run_alert_consumers(runtime: Runtime) -> None:
    """Turn the three streams' messages into alerts until cancelled."""
    async with asyncio.TaskGroup() as group:
        for stream in STREAMS:
            group.create_task(alert_consumer(runtime, stream).run(), name=f"alerts:{stream}")


async def prune_alerts(runtime: Runtime, now: datetime | None = None) -> int:
    """Delete alerts older than the retention (`CITYHUB_ALERTS__RETENTION_DAYS`); how many."""
    now = now or datetime.now(UTC)
    retention = timedelta(days=runtime.settings.alerts.retention_days)
    return await store.delete_before(runtime.sessions, now - retention)


async def run_alert_retention(runtime: Runtime) -> None:
    """Prune old alerts hourly (not at start-up, when every worker wants the database)."""
    while True:
        await asyncio.sleep(PRUNE_EVERY_S)
        try:
            await prune_alerts(runtime)
        except Exception:
            logger.exception("pruning alerts failed; trying again later")
