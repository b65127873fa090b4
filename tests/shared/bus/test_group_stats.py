"""What /metrics reads from the bus (pending and lag per consumer group) and what a consumer
counts (messages handled, failed, dead-lettered), on both backends."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from shared.bus import Bus, Consumer, Delivery
from shared.bus.base import GroupStats
from shared.bus.consumer import ConsumerConfig
from tests.support.waiting import wait_for

FAST = ConsumerConfig(batch=10, block_ms=20, claim_idle_ms=30, claim_every_s=0.0, max_attempts=2)


async def test_pending_and_lag_per_group(bus: Bus) -> None:
    stream = f"stats.{uuid.uuid4().hex[:8]}"
    assert await bus.group_stats(stream) == []  # no stream yet
    await bus.create_group(stream, "fast")
    await bus.create_group(stream, "slow")
    for i in range(5):
        await bus.publish(stream, str(i).encode())
    taken = await bus.read(stream, "fast", "c", count=5, block_ms=10)
    await bus.ack(stream, "fast", [d.id for d in taken[:3]])
    await bus.read(stream, "slow", "c", count=1, block_ms=10)
    stats = sorted(await bus.group_stats(stream), key=lambda s: s.group)
    assert stats == [GroupStats("fast", pending=2, lag=0), GroupStats("slow", pending=1, lag=4)]


def _counted(stream: str, outcome: str) -> float:
    labels = {"stream": stream, "group": "g", "outcome": outcome}
    return REGISTRY.get_sample_value("cityhub_bus_messages_total", labels) or 0.0


async def test_consumer_counts_outcomes(bus: Bus) -> None:
    stream = f"counted.{uuid.uuid4().hex[:8]}"

    async def handler(d: Delivery) -> None:
        if d.data == b"bad":
            raise ValueError("boom")

    consumer = Consumer(bus, stream, "g", "c", handler, FAST)
    await bus.create_group(stream, "g")
    for data in (b"ok", b"bad", b"ok"):
        await bus.publish(stream, data)

    async def given_up() -> int:
        await consumer.poll()
        return consumer.dead_lettered

    await wait_for(given_up, within=30)
    assert _counted(stream, "handled") == 2
    assert _counted(stream, "failed") == 2  # both attempts of the bad one
    assert _counted(stream, "dead_lettered") == 1
