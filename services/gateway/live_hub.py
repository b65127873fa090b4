"""The gateway's fan-out of the live history to its websocket subscribers.

One task per gateway process follows the live log and offers each record to the subscribers whose
stream and scope take it, found through an index (city subscribers, by district, by street), so a
record costs only the subscribers it is for. Each subscriber has a bounded queue; one that falls
behind is marked for a resync and dropped by its own connection, never slowing the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from shared.auth import Scope
from shared.bus.base import stop_if_cancelled
from shared.live import LiveHead, LiveLog, LiveRecord
from shared.live.base import LIVE_STREAMS, LiveStream
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

HUB_KEY = "live_hub"
FOLLOW_BLOCK_MS = 1_000
HEAD_CHECK_S = 1.0  # how often the follower looks for a lost history (a new epoch)
RETRY_S = 1.0  # pause after the live log failed (Redis down)
# Queue entries are (seq, frame). Control frames have negative seqs and are always sent:
RESYNC = -1  # …and reset what the connection has sent (the history starts again)
CONTROL = -2  # …and leave it (pong, bye)
CLOSE = -3  # the connection closes with the code in the frame slot (gateway shutting down)


def control_frame(kind: str, **fields: object) -> str:
    """A protocol message that is not part of the history (hello, resync, pong)."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))


@dataclass(eq=False)
class Subscriber:
    """One websocket's subscription: what it wants and the frames waiting to be sent."""

    scope: Scope
    streams: frozenset[LiveStream]
    queue_max: int
    queue: asyncio.Queue[tuple[int, str]] = field(init=False)
    overflowed: bool = False

    def __post_init__(self) -> None:
        # One slot beyond the bound, so the resync of an overflow always fits.
        self.queue = asyncio.Queue(self.queue_max + 1)

    def wants(self, record: LiveRecord) -> bool:
        """True when the record belongs to this subscription (the same rule as the index)."""
        return record.stream in self.streams and self.scope.covers(record.district, record.street)

    def offer(self, seq: int, frame: str) -> None:
        """Queue a frame; a full queue marks the subscriber too slow (its connection ends it)."""
        if self.overflowed:
            return
        if self.queue.qsize() >= self.queue_max and seq >= 0:
            self.overflowed = True
            self.queue.put_nowait((RESYNC, control_frame("resync", reason="client too slow")))
            return
        try:
            self.queue.put_nowait((seq, frame))
        except asyncio.QueueFull:  # control frames on a full queue: too slow as well
            self.overflowed = True


@dataclass
class _Index:
    city: set[Subscriber] = field(default_factory=set)
    districts: dict[str, set[Subscriber]] = field(default_factory=dict)
    streets: dict[str, set[Subscriber]] = field(default_factory=dict)

    def bucket(self, scope: Scope) -> set[Subscriber]:
        if scope.level == "city" or scope.code is None:
            return self.city
        table = self.districts if scope.level == "district" else self.streets
        return table.setdefault(scope.code, set())

    def targets(self, record: LiveRecord) -> Iterable[Subscriber]:
        yield from self.city
        if record.district is not None:
            yield from self.districts.get(record.district, ())
        if record.street is not None:
            yield from self.streets.get(record.street, ())


class LiveHub:
    """Subscribers of one gateway process and the task that feeds them from the live log."""

    def __init__(self, log: LiveLog) -> None:
        self.log = log
        self._index = {stream: _Index() for stream in LIVE_STREAMS}
        self.subscribers: set[Subscriber] = set()
        self.delivered = 0  # frames queued for subscribers
        self.dropped_slow = 0  # subscribers dropped for falling behind
        self.epoch: str | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start offering records to a subscriber (before its replay, so nothing falls between)."""
        self.subscribers.add(subscriber)
        for stream in subscriber.streams:
            self._index[stream].bucket(subscriber.scope).add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop offering records to a subscriber."""
        self.subscribers.discard(subscriber)
        for stream in subscriber.streams:
            self._index[stream].bucket(subscriber.scope).discard(subscriber)
        if subscriber.overflowed:
            self.dropped_slow += 1

    def deliver(self, record: LiveRecord) -> None:
        """Offer a record to every subscriber it is for."""
        for subscriber in self._index[record.stream].targets(record):
            subscriber.offer(record.seq, record.frame)
            self.delivered += 1

    def broadcast(self, seq: int, frame: str) -> None:
        """A control frame to every subscriber."""
        for subscriber in list(self.subscribers):
            subscriber.offer(seq, frame)

    async def _first_head(self) -> LiveHead:
        """The history's head, waiting for the live log to answer (Redis may be down at start)."""
        while True:
            stop_if_cancelled()
            try:
                return await self.log.head()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the live history does not answer; retrying")
                await asyncio.sleep(RETRY_S)

    async def follow(self) -> None:
        """Feed subscribers from the log until cancelled; a lost history resyncs them all."""
        head = await self._first_head()
        self.epoch, last = head.epoch, head.seq
        checked = time.monotonic()
        while True:
            stop_if_cancelled()  # redis-py can turn a cancellation mid-XREAD into a return
            try:
                records = await self.log.follow(last, FOLLOW_BLOCK_MS)
                if not records or time.monotonic() - checked > HEAD_CHECK_S:
                    checked = time.monotonic()
                    head = await self.log.head()
                    if head.epoch != self.epoch or head.seq < last:
                        logger.warning("live history lost (epoch %s → %s)", self.epoch, head.epoch)
                        self.epoch, last = head.epoch, head.seq
                        self.broadcast(RESYNC, control_frame("resync", reason="history lost"))
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:
                stop_if_cancelled()
                logger.exception("following the live history failed; retrying")
                await asyncio.sleep(RETRY_S)
                continue
            if records and records[0].seq != last + 1:
                # Trimmed past where this gateway was (it was stalled for a long time).
                self.broadcast(RESYNC, control_frame("resync", reason="gateway fell behind"))
            for record in records:
                self.deliver(record)
            if records:
                last = records[-1].seq


@asynccontextmanager
async def live_hub(runtime: Runtime) -> AsyncIterator[LiveHub]:
    """The process's hub, following the live log while the process runs; on the way out every
    connection is closed with 1001 (going away), so clients reconnect to another replica."""
    hub = LiveHub(runtime.live)
    task = asyncio.create_task(hub.follow(), name="live-hub")
    try:
        yield hub
    finally:
        hub.broadcast(CLOSE, "1001")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
