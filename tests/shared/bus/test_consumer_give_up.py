"""The give-up hook: a message the consumer gives up on is handed to the service first (to set it
aside where people can see and retry it), and stays pending if that fails; the good messages read
with it are handled regardless (both backends)."""

from __future__ import annotations

from shared.bus import Bus, Consumer, ConsumerConfig, Delivery, PoisonMessageError
from tests.support.waiting import wait_for

STREAM = "give-up"
FAST = ConsumerConfig(batch=10, block_ms=20, claim_idle_ms=30, claim_every_s=0.0, max_attempts=3)


async def _poll_until(consumer: Consumer, done: object) -> bool:
    assert callable(done)
    await consumer.poll()
    return bool(done())


async def test_the_hook_gets_a_message_given_up_on_before_it_is_dead_lettered(bus: Bus) -> None:
    handled: list[bytes] = []
    set_aside: list[tuple[bytes, str, int]] = []

    async def one(delivery: Delivery) -> None:
        if delivery.data == b"bad":
            raise ValueError("boom")
        handled.append(delivery.data)

    async def many(deliveries: list[Delivery]) -> None:
        raise ValueError("a bad message in the batch")

    async def hook(delivery: Delivery, reason: str) -> None:
        dead = len(await bus.dead_letters(STREAM))  # not dead-lettered yet
        set_aside.append((delivery.data, reason, dead))

    consumer = Consumer(bus, STREAM, "g", "c", one, FAST, many, on_give_up=hook)
    await bus.create_group(STREAM, "g")
    for data in (b"ok-1", b"bad", b"ok-2"):
        await bus.publish(STREAM, data)

    await consumer.poll()  # the batch fails; one by one, the good ones go through at once
    assert handled == [b"ok-1", b"ok-2"]
    assert await bus.pending_count(STREAM, "g") == 1 and set_aside == []

    await wait_for(lambda: _poll_until(consumer, lambda: consumer.dead_lettered == 1))
    assert set_aside == [(b"bad", "failed 3 times: ValueError('boom')", 0)]
    (dead,) = await bus.dead_letters(STREAM)
    assert dead.data == b"bad"
    assert await bus.pending_count(STREAM, "g") == 0
    assert handled == [b"ok-1", b"ok-2"]


async def test_a_message_the_hook_cannot_set_aside_stays_pending_until_it_can(bus: Bus) -> None:
    calls: list[bytes] = []
    broken = True

    async def handler(delivery: Delivery) -> None:
        raise PoisonMessageError("never valid")

    async def hook(delivery: Delivery, reason: str) -> None:
        calls.append(delivery.data)
        if broken:
            raise RuntimeError("the database is down")

    consumer = Consumer(bus, STREAM, "g", "c", handler, FAST, on_give_up=hook)
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"poison")

    await consumer.poll()
    assert calls == [b"poison"]
    assert consumer.dead_lettered == 0 and await bus.dead_letters(STREAM) == []
    assert await bus.pending_count(STREAM, "g") == 1  # kept: it comes back

    broken = False
    await wait_for(lambda: _poll_until(consumer, lambda: consumer.dead_lettered == 1))
    assert calls == [b"poison", b"poison"]
    assert [d.reason for d in await bus.dead_letters(STREAM)] == ["poison: never valid"]
    assert await bus.pending_count(STREAM, "g") == 0


async def test_a_message_failing_while_the_database_is_down_is_never_given_up_on(bus: Bus) -> None:
    down = True
    handled: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        if down:
            raise ConnectionRefusedError(111, "Connection refused")  # as asyncpg's connect
        handled.append(delivery.data)

    consumer = Consumer(bus, STREAM, "g", "c", handler, FAST)
    await bus.create_group(STREAM, "g")
    await bus.publish(STREAM, b"event")

    # Well past max_attempts deliveries while the database is away: it stays pending.
    await wait_for(lambda: _poll_until(consumer, lambda: consumer.failed >= 2 * FAST.max_attempts))
    assert consumer.dead_lettered == 0 and await bus.dead_letters(STREAM) == []
    assert await bus.pending_count(STREAM, "g") == 1

    down = False
    await wait_for(lambda: _poll_until(consumer, lambda: handled == [b"event"]))
    assert await bus.pending_count(STREAM, "g") == 0 and consumer.dead_lettered == 0
