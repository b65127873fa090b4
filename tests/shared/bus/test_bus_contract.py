"""One contract, both backends: the in-process bus and Redis Streams behave the same."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from shared.bus import Bus, Consumer, ConsumerConfig, Delivery, PoisonMessageError
from shared.bus.redis_streams import RedisBus
from tests.support.waiting import wait_for

STREAM = "contract"


async def test_publish_then_read_in_a_group(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    ids = [await bus.publish(STREAM, f"m{i}".encode()) for i in range(3)]
    got = await bus.read(STREAM, "g", "c1", count=10, block_ms=100)
    assert [d.data for d in got] == [b"m0", b"m1", b"m2"]
    assert [d.id for d in got] == ids
    assert all(d.attempts == 1 for d in got)


async def test_group_created_late_still_sees_earlier_messages(bus: Bus) -> None:
    await bus.publish(STREAM, b"early")
    await bus.create_group(STREAM, "late")
    got = await bus.read(STREAM, "late", "c", count=10, block_ms=100)
    assert [d.data for d in got] == [b"early"]


async def test_each_group_gets_every_message_consumers_share_one_group(bus: Bus) -> None:
    await bus.create_group(STREAM, "a")
    await bus.create_group(STREAM, "b")
    for i in range(4):
        await bus.publish(STREAM, str(i).encode())
    a1 = await bus.read(STREAM, "a", "a1", count=2, block_ms=100)
    a2 = await bus.read(STREAM, "a", "a2", count=10, block_ms=100)
    b1 = await bus.read(STREAM, "b", "b1", count=10, block_ms=100)
    assert [d.data for d in a1 + a2] == [b"0", b"1", b"2", b"3"]
    assert {d.id for d in a1}.isdisjoint({d.id for d in a2})
    assert [d.data for d in b1] == [b"0", b"1", b"2", b"3"]


async def test_read_blocks_until_a_message_arrives(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    reader = asyncio.create_task(bus.read(STREAM, "g", "c", count=1, block_ms=5_000))
    await asyncio.sleep(0)  # let the read start waiting before we publish
    await bus.publish(STREAM, b"wake")
    got = await asyncio.wait_for(reader, 5)
    assert [d.data for d in got] == [b"wake"]


async def test_read_returns_empty_after_block_timeout(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    assert await bus.read(STREAM, "g", "c", count=1, block_ms=50) == []


async def test_ack_removes_from_pending(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"x")
    await bus.publish(STREAM, b"y")
    got = await bus.read(STREAM, "g", "c", count=10, block_ms=100)
    assert await bus.pending_count(STREAM, "g") == 2
    await bus.ack(STREAM, "g", [got[0].id])
    assert await bus.pending_count(STREAM, "g") == 1


async def test_unacked_message_is_redelivered_to_another_consumer(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"orphan")
    first = await bus.read(STREAM, "g", "dies", count=1, block_ms=100)
    assert len(first) == 1
    # The consumer "dies" without acking; once idle long enough another one takes it over.
    assert await bus.claim_stale(STREAM, "g", "heir", min_idle_ms=60_000, count=10) == []
    claimed = await wait_for(
        lambda: bus.claim_stale(STREAM, "g", "heir", min_idle_ms=30, count=10), within=5
    )
    assert [(d.data, d.attempts) for d in claimed] == [(b"orphan", 2)]
    await bus.ack(STREAM, "g", [claimed[0].id])
    assert await bus.pending_count(STREAM, "g") == 0


async def test_dead_letter_keeps_message_and_reason(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"poison")
    (delivery,) = await bus.read(STREAM, "g", "c", count=1, block_ms=100)
    await bus.dead_letter(delivery, "g", "cannot parse")
    await bus.ack(STREAM, "g", [delivery.id])
    (dead,) = await bus.dead_letters(STREAM)
    assert (dead.id, dead.data, dead.group, dead.reason) == (
        delivery.id,
        b"poison",
        "g",
        "cannot parse",
    )
    assert await bus.pending_count(STREAM, "g") == 0


FAST = ConsumerConfig(batch=10, block_ms=20, claim_idle_ms=30, claim_every_s=0.0, max_attempts=3)


async def test_consumer_handles_and_acks(bus: Bus) -> None:
    seen: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.data)

    consumer = Consumer(bus, STREAM, "g", "c", handler, FAST)
    await bus.create_group(STREAM, "g")
    for i in range(5):
        await bus.publish(STREAM, str(i).encode())
    await wait_for(lambda: _poll_until(consumer, lambda: len(seen) == 5))
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    assert await bus.pending_count(STREAM, "g") == 0


async def test_consumer_retries_then_dead_letters_and_keeps_going(bus: Bus) -> None:
    attempts: dict[bytes, int] = {}

    async def handler(d: Delivery) -> None:
        attempts[d.data] = d.attempts
        if d.data == b"bad":
            raise ValueError("boom")

    consumer = Consumer(bus, STREAM, "g", "c", handler, FAST)
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"bad")
    await bus.publish(STREAM, b"good")
    await wait_for(lambda: _poll_until(consumer, lambda: consumer.dead_lettered == 1))
    assert attempts == {b"bad": 3, b"good": 1}
    (dead,) = await bus.dead_letters(STREAM)
    assert dead.data == b"bad" and "boom" in dead.reason
    assert await bus.pending_count(STREAM, "g") == 0


async def test_poison_message_is_dead_lettered_at_once(bus: Bus) -> None:
    async def handler(d: Delivery) -> None:
        raise PoisonMessageError("not JSON")

    consumer = Consumer(bus, STREAM, "g", "c", handler, FAST)
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"{{{")
    await wait_for(lambda: _poll_until(consumer, lambda: consumer.dead_lettered == 1))
    (dead,) = await bus.dead_letters(STREAM)
    assert dead.reason == "poison: not JSON"
    assert consumer.failed == 0


async def test_consumer_that_dies_mid_message_is_covered_by_another(bus: Bus) -> None:
    handled: list[tuple[str, bytes]] = []
    gate = asyncio.Event()

    async def stuck(d: Delivery) -> None:
        await gate.wait()  # never set: this consumer is killed while handling

    async def healthy(d: Delivery) -> None:
        handled.append(("heir", d.data))

    dying = Consumer(bus, STREAM, "g", "dying", stuck, FAST)
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"job")
    task = asyncio.create_task(dying.run())
    await wait_for(lambda: bus.pending_count(STREAM, "g"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    heir = Consumer(bus, STREAM, "g", "heir", healthy, FAST)
    await wait_for(lambda: _poll_until(heir, lambda: bool(handled)))
    assert handled == [("heir", b"job")]
    assert await bus.pending_count(STREAM, "g") == 0


async def _poll_until(consumer: Consumer, done: object) -> bool:
    assert callable(done)
    await consumer.poll()
    return bool(done())


async def test_publish_many_keeps_order(bus: Bus) -> None:
    await bus.create_group(STREAM, "g")
    await bus.create_group("other", "g")
    await bus.publish_many([(STREAM, b"1"), ("other", b"x"), (STREAM, b"2"), (STREAM, b"3")])
    got = await bus.read(STREAM, "g", "c", count=10, block_ms=100)
    assert [d.data for d in got] == [b"1", b"2", b"3"]
    assert [d.data for d in await bus.read("other", "g", "c", count=10, block_ms=100)] == [b"x"]
    await bus.publish_many([])


async def test_a_running_consumer_recreates_its_group_after_redis_lost_it(
    redis_url: str, bus_prefix: str, redis_cleanup: None
) -> None:
    bus = RedisBus.from_url(redis_url, bus_prefix)
    seen: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.data)

    consumer = Consumer(bus, STREAM, "g", "c", handler, FAST)
    running = asyncio.create_task(consumer.run())
    await bus.publish(STREAM, b"before")
    await wait_for(lambda: _true(seen == [b"before"]))
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.delete(bus_prefix + STREAM)  # as a Redis restarted without its data
    await client.aclose()
    await bus.publish(STREAM, b"after")  # XADD makes a stream without the group
    await wait_for(lambda: _true(seen == [b"before", b"after"]), within=15)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await bus.close()


async def _true(value: bool) -> bool:
    return value
