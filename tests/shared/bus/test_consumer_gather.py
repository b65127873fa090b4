"""`gather_s`: after a read short of a full batch the consumer waits before reading again, so what
arrived meanwhile is handled as one batch (both backends)."""

from __future__ import annotations

import asyncio

from shared.bus import Bus, Consumer, ConsumerConfig, Delivery
from tests.support.waiting import wait_for

STREAM = "gather"


async def _batches(bus: Bus, gather_s: float) -> list[int]:
    sizes: list[int] = []

    async def one(delivery: Delivery) -> None:
        sizes.append(1)

    async def many(deliveries: list[Delivery]) -> None:
        sizes.append(len(deliveries))

    config = ConsumerConfig(batch=100, block_ms=50, gather_s=gather_s)
    consumer = Consumer(bus, f"{STREAM}-{gather_s}", "g", "c", one, config, many)
    running = asyncio.create_task(consumer.run())
    try:
        await bus.publish(consumer.stream, b"first")

        async def first_handled() -> bool:
            return sum(sizes) == 1

        await wait_for(first_handled)
        for n in range(20):  # arrive one by one, while the consumer gathers (or reads)
            await bus.publish(consumer.stream, b"%d" % n)
            await asyncio.sleep(0.005)

        async def all_handled() -> bool:
            return sum(sizes) == 21

        await wait_for(all_handled)
    finally:
        consumer.stop()
        await asyncio.wait_for(consumer.stopped(), timeout=10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    return sizes


async def test_a_gathering_consumer_takes_what_arrived_meanwhile_in_one_batch(bus: Bus) -> None:
    # 20 messages over ~0.1 s + publishing time: all inside one 2 s gathering pause.
    assert await _batches(bus, gather_s=2.0) == [1, 20]
