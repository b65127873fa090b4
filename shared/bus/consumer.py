"""The one delivery loop every bus consumer runs, whatever the backend.

A message is acknowledged only after its handler returned; a handler that raises leaves it pending,
so it comes back (to this or another consumer) once idle for `claim_idle_ms`. After `max_attempts`
deliveries, or at once for a `PoisonMessageError`, the consumer gives up on it: the optional
`on_give_up` hook sets it aside where the service's people can see and retry it, then it goes to
the dead-letter stream and is acknowledged. One bad message never stops the loop, nor the good
messages read with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.bus.base import Bus, Delivery, PoisonMessageError
from shared.errors import database_unavailable
from shared.telemetry.metrics import BUS_MESSAGES

logger = logging.getLogger(__name__)

Handler = Callable[[Delivery], Awaitable[None]]
# Handles a whole read in one go (e.g. one transaction); if it raises, each delivery is retried
# alone through the per-message handler, so one bad message cannot hold the others back.
BatchHandler = Callable[[list[Delivery]], Awaitable[None]]
# Called with a delivery the loop gives up on and why, before it is dead-lettered; if it raises,
# the message stays pending and is given up on again when it comes back (so it is never lost).
GiveUpHook = Callable[[Delivery, str], Awaitable[None]]
REASON_MAX_CHARS = 1_000  # a give-up reason is cut to this length


# Consumer loops running in this process, for `stop_consumers` (weak: a loop's owner keeps it).
_RUNNING: weakref.WeakSet[Consumer] = weakref.WeakSet()


async def stop_consumers() -> int:
    """Stop every consumer loop of this process gracefully (the process got SIGTERM) and wait
    until each has handled and acknowledged the batch it holds; how many there were."""
    consumers = list(_RUNNING)
    for consumer in consumers:
        consumer.stop()
    await asyncio.gather(*(consumer.stopped() for consumer in consumers))
    if consumers:
        logger.info(
            "bus consumers stopped: %s",
            "; ".join(
                f"{c.group} on {c.stream}: {c.handled} handled, {c.failed} failed, "
                f"{c.dead_lettered} dead-lettered"
                for c in consumers
            ),
        )
    return len(consumers)


def consumer_name() -> str:
    """A name unique to this process, so a restarted replica never inherits a dead one's state."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Timing and batching of a consumer loop."""

    batch: int = 100  # messages per read
    block_ms: int = 1_000  # how long a read waits for new messages
    claim_idle_ms: int = 30_000  # a pending message idle this long is taken over
    claim_every_s: float = 5.0  # how often to look for such messages
    max_attempts: int = 5  # deliveries before a failing message is dead-lettered
    retry_backoff_s: float = 1.0  # pause after the backend itself failed
    # After a read short of a full batch, wait this long before the next one, so that it takes
    # more at once: fewer, larger transactions, for consumers whose results are batched anyway.
    gather_s: float = 0.0


class Consumer:
    """Runs `handler` over a stream as one member of a consumer group."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        name: str,
        handler: Handler,
        config: ConsumerConfig | None = None,
        batch_handler: BatchHandler | None = None,
        *,
        on_give_up: GiveUpHook | None = None,
    ) -> None:
        self.bus, self.stream, self.group, self.name = bus, stream, group, name
        self.handler = handler
        self.batch_handler = batch_handler
        self.on_give_up = on_give_up
        self.config = config or ConsumerConfig()
        # This consumer's counters on /metrics (children bound once: the loop is hot).
        self._counted = {
            outcome: BUS_MESSAGES.labels(stream, group, outcome)
            for outcome in ("handled", "failed", "dead_lettered")
        }
        self._next_claim = 0.0
        self._stopping = False
        self._ended = asyncio.Event()
        self.handled = 0
        self.failed = 0
        self.dead_lettered = 0

    async def run(self) -> None:
        """Consume until cancelled or stopped; backend failures are logged and retried (the
        group is created again after one: a Redis that restarted empty, or was down at start,
        has none).

        `stop()` (on SIGTERM: `stop_consumers`) is the graceful end: no new read starts, but
        the read in progress is finished — its batch handled and acknowledged — and `run`
        returns. A cancel is the hard end: the batch in hand is abandoned unacknowledged (its
        transaction rolls back) and stays pending until another consumer claims it."""
        _RUNNING.add(self)
        try:
            await self._loop()
        finally:
            _RUNNING.discard(self)
            self._ended.set()
            logger.debug("consumer %s/%s ended", self.group, self.name)

    async def _loop(self) -> None:
        group_ready = False
        while not self._stopping:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py 8 can swallow a cancellation that lands while it connects (it then
                # fails the command instead); without this the loop would never stop.
                raise asyncio.CancelledError
            try:
                if not group_ready:
                    await self.bus.create_group(self.stream, self.group)
                    group_ready = True
                got = await self.poll()
                if 0 < got < self.config.batch and self.config.gather_s and not self._stopping:
                    await asyncio.sleep(self.config.gather_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("consumer %s/%s: bus failure, retrying", self.group, self.name)
                group_ready = False
                if not self._stopping:
                    await asyncio.sleep(self.config.retry_backoff_s)

    def stop(self) -> None:
        """Read no more: `run` returns once the batch in hand is handled and acknowledged."""
        self._stopping = True

    async def stopped(self) -> None:
        """Wait until `run` has returned (or ended otherwise)."""
        await self._ended.wait()

    async def poll(self) -> int:
        """One pass: claim stale messages when due, read new ones, handle them; returns count."""
        cfg = self.config
        deliveries: list[Delivery] = []
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + cfg.claim_every_s
            deliveries = await self.bus.claim_stale(
                self.stream, self.group, self.name, min_idle_ms=cfg.claim_idle_ms, count=cfg.batch
            )
        if not deliveries:
            deliveries = await self.bus.read(
                self.stream, self.group, self.name, count=cfg.batch, block_ms=cfg.block_ms
            )
        done: list[str] = []
        if await self._handle_batch(deliveries):
            done = [d.id for d in deliveries]
        else:
            for delivery in deliveries:
                if await self._handle(delivery):
                    done.append(delivery.id)
        await self.bus.ack(self.stream, self.group, done)
        return len(deliveries)

    async def _handle_batch(self, deliveries: list[Delivery]) -> bool:
        """Try the batch handler on a read; False when there is none or it failed."""
        if self.batch_handler is None or len(deliveries) < 2:
            return False
        try:
            await self.batch_handler(deliveries)
        except Exception:
            logger.warning(
                "consumer %s: batch of %d failed; handling one by one",
                self.group,
                len(deliveries),
                exc_info=True,
            )
            return False
        self.handled += len(deliveries)
        self._counted["handled"].inc(len(deliveries))
        return True

    async def _handle(self, delivery: Delivery) -> bool:
        """Handle one delivery; True when it is finished with (handled or dead-lettered)."""
        try:
            await self.handler(delivery)
        except PoisonMessageError as exc:
            return await self._give_up(delivery, f"poison: {exc}")
        except Exception as exc:
            self.failed += 1
            self._counted["failed"].inc()
            # A database outage is no fault of the message: it waits, however long that lasts.
            if delivery.attempts >= self.config.max_attempts and not database_unavailable(exc):
                return await self._give_up(delivery, f"failed {delivery.attempts} times: {exc!r}")
            logger.exception(
                "consumer %s: message %s failed (attempt %d)",
                self.group,
                delivery.id,
                delivery.attempts,
            )
            return False
        self.handled += 1
        self._counted["handled"].inc()
        return True

    async def _give_up(self, delivery: Delivery, reason: str) -> bool:
        """Set a delivery aside (hook), dead-letter it; True when done, False to keep it pending."""
        reason = reason[:REASON_MAX_CHARS]
        if self.on_give_up is not None:
            try:
                await self.on_give_up(delivery, reason)
            except Exception:
                logger.exception(
                    "consumer %s: could not set %s aside; it stays pending", self.group, delivery.id
                )
                return False
        logger.warning("consumer %s: dead-lettering %s: %s", self.group, delivery.id, reason)
        await self.bus.dead_letter(delivery, self.group, reason)
        self.dead_lettered += 1
        self._counted["dead_lettered"].inc()
        return True
