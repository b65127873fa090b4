"""A consumer with a batch handler: one call per read, and one by one when a batch fails."""

from __future__ import annotations

from shared.bus import Consumer, Delivery, PoisonMessageError
from shared.bus.memory import MemoryBus

STREAM = "batches"


async def test_a_read_goes_to_the_batch_handler_in_one_call() -> None:
    bus = MemoryBus()
    for n in range(5):
        await bus.publish(STREAM, f"m{n}".encode())
    batches: list[list[bytes]] = []
    singles: list[bytes] = []

    async def one(delivery: Delivery) -> None:
        singles.append(delivery.data)

    async def many(deliveries: list[Delivery]) -> None:
        batches.append([d.data for d in deliveries])

    consumer = Consumer(bus, STREAM, "g", "c", one, batch_handler=many)
    await bus.create_group(STREAM, "g")
    assert await consumer.poll() == 5
    assert batches == [[b"m0", b"m1", b"m2", b"m3", b"m4"]] and singles == []
    assert consumer.handled == 5 and await bus.pending_count(STREAM, "g") == 0


async def test_a_failed_batch_is_retried_one_by_one() -> None:
    bus = MemoryBus()
    for data in (b"ok-1", b"poison", b"ok-2"):
        await bus.publish(STREAM, data)
    singles: list[bytes] = []

    async def one(delivery: Delivery) -> None:
        if delivery.data == b"poison":
            raise PoisonMessageError("never valid")
        singles.append(delivery.data)

    async def many(deliveries: list[Delivery]) -> None:
        raise PoisonMessageError("a poison message in the batch")

    consumer = Consumer(bus, STREAM, "g", "c", one, batch_handler=many)
    await bus.create_group(STREAM, "g")
    await consumer.poll()
    assert singles == [b"ok-1", b"ok-2"]
    assert consumer.dead_lettered == 1
    assert [d.data for d in await bus.dead_letters(STREAM)] == [b"poison"]
    assert await bus.pending_count(STREAM, "g") == 0
