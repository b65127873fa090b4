"""The gateway's fan-out of the live history to its websocket subscribers.

One task per gateway process follows the live log and offers each record to the subscribers whose
stream and scope take it, found through an index (city subscribers, by district, by street), so a
record costs only the subscribers it is for. Each subscriber has a bounded queue; one that falls
behind is marked for a resync and dropped by its own connection, never slowing the others.

A second task looks after every connection at once, rather than a timer per connection or per
frame: it ends those whose user was disabled or signed out (one check per distinct sign-in), whose
lifetime is over, or whose send has stalled; and it collects the reference cycles closed
connections leave behind (`tune_gc` makes full collections rare).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from shared.auth import Principal, Scope
from shared.bus.base import stop_if_cancelled
from shared.live import LiveHead, LiveLog, LiveRecord
from shared.live.base import LIVE_STREAMS, LiveStream
from shared.runtime import Runtime
from shared.settings import LiveSettings
from shared.telemetry.metrics import WEBSOCKET_CONNECTIONS, WEBSOCKET_SLOW_CLIENTS_DROPPED
from shared.web import still_signed_in

logger = logging.getLogger(__name__)

HUB_KEY = "live_hub"
FOLLOW_BLOCK_MS = 1_000
HEAD_CHECK_S = 1.0  # how often the follower looks for a lost history (a new epoch)
RETRY_S = 1.0  # pause after the live log failed (Redis down)
UPKEEP_S = 1.0  # how often stalled sends and lifetimes are looked at (at most)
# Closed connections leave reference cycles only a full collection frees (about 25 MB per 1,000
# connections): collect after this many closed, or this long after the first uncollected one.
GC_AFTER_CLOSED = 500
GC_AFTER_S = 60.0
# Queue entries are (seq, frame). Control frames have negative seqs and are always sent:
RESYNC = -1  # …and reset what the connection has sent (the history starts again)
CONTROL = -2  # …and leave it (pong)
STALLED = 0  # `Subscriber.ending` code of a connection whose send stalled: closed without a word

SignedIn = Callable[[Principal], Awaitable[bool]]


def control_frame(kind: str, **fields: object) -> str:
    """A protocol message that is not part of the history (hello, resync, pong)."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))


def reaches(scope: Scope, stream: LiveStream, district: str | None, street: str | None) -> bool:
    """True when a message of `stream` about (district, street) is for a subscription of
    `scope`. Tickets and alerts: anything inside the scope. KPIs: the scope's own area and its
    children only (a city screen ranks districts, not the 1,031 streets), so a city screen is
    not sent a burst of every changed street's figures each second."""
    if not scope.covers(district, street):
        return False
    if stream != "kpis":
        return True
    if scope.level == "city":
        return street is None
    return scope.level == "district" or street is not None


@dataclass(eq=False)
class Subscriber:
    """One websocket's subscription: what it wants and the frames waiting to be sent."""

    scope: Scope
    streams: frozenset[LiveStream]
    queue_max: int
    principal: Principal | None = None  # re-checked by the hub while connected
    expires: float = math.inf  # loop time at which its lifetime ends
    queue: asyncio.Queue[tuple[int, str]] = field(init=False)
    overflowed: bool = False
    sending_since: float | None = None  # loop time a send started, while one is in progress
    ending: tuple[int, str] | None = None  # (close code, reason) once the hub ended it
    ended: asyncio.Event = field(init=False)

    def __post_init__(self) -> None:
        # One slot beyond the bound, so the resync of an overflow always fits.
        self.queue = asyncio.Queue(self.queue_max + 1)
        self.ended = asyncio.Event()

    def wants(self, record: LiveRecord) -> bool:
        """True when the record belongs to this subscription (the same rule as the index)."""
        return record.stream in self.streams and reaches(
            self.scope, record.stream, record.district, record.street
        )

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

    def end(self, code: int, reason: str) -> None:
        """Ask the connection to close with `code` (the first reason given wins)."""
        if self.ending is None:
            self.ending = (code, reason)
            self.ended.set()


@dataclass
class _Index:
    """Subscribers of one stream by scope. `deep`: a record reaches every scope that covers it
    (tickets, alerts); otherwise only its own area's and its parent's (KPIs; see `reaches`)."""

    deep: bool = True
    city: set[Subscriber] = field(default_factory=set)
    districts: dict[str, set[Subscriber]] = field(default_factory=dict)
    streets: dict[str, set[Subscriber]] = field(default_factory=dict)

    def bucket(self, scope: Scope) -> set[Subscriber]:
        if scope.level == "city" or scope.code is None:
            return self.city
        table = self.districts if scope.level == "district" else self.streets
        return table.setdefault(scope.code, set())

    def targets(self, record: LiveRecord) -> Iterable[Subscriber]:
        if self.deep or record.street is None:
            yield from self.city
        if record.district is not None:
            yield from self.districts.get(record.district, ())
        if record.street is not None:
            yield from self.streets.get(record.street, ())


class LiveHub:
    """Subscribers of one gateway process, the task that feeds them from the live log and the
    task that looks after their connections."""

    def __init__(
        self, log: LiveLog, settings: LiveSettings | None = None, signed_in: SignedIn | None = None
    ) -> None:
        self.log = log
        self.settings = settings or LiveSettings()
        self.signed_in = signed_in
        self._index = {stream: _Index(deep=stream != "kpis") for stream in LIVE_STREAMS}
        self.subscribers: set[Subscriber] = set()
        self.delivered = 0  # frames queued for subscribers
        self.dropped_slow = 0  # subscribers dropped for falling behind
        self.closed = 0  # subscriptions ended
        self.epoch: str | None = None
        self.last = 0  # seq of the last record offered: where a new subscriber's frames start

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start offering records to a subscriber (before its replay, so nothing falls between)."""
        self.subscribers.add(subscriber)
        for stream in subscriber.streams:
            self._index[stream].bucket(subscriber.scope).add(subscriber)
        WEBSOCKET_CONNECTIONS.inc()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop offering records to a subscriber."""
        self.subscribers.discard(subscriber)
        for stream in subscriber.streams:
            self._index[stream].bucket(subscriber.scope).discard(subscriber)
        if subscriber.overflowed:
            self.dropped_slow += 1
            WEBSOCKET_SLOW_CLIENTS_DROPPED.inc()
        self.closed += 1
        WEBSOCKET_CONNECTIONS.dec()

    async def head(self) -> LiveHead:
        """Where the frames a subscriber added now will start: the hub's own position once it
        follows the log (no Redis round trip per connection: a reconnect storm after a restart
        is a thousand handshakes at once), the log's head before that."""
        if self.epoch is None:
            return await self.log.head()
        return LiveHead(self.epoch, self.last)

    def deliver(self, record: LiveRecord) -> None:
        """Offer a record to every subscriber it is for."""
        for subscriber in self._index[record.stream].targets(record):
            subscriber.offer(record.seq, record.frame)
            self.delivered += 1

    def broadcast(self, seq: int, frame: str) -> None:
        """A control frame to every subscriber."""
        for subscriber in list(self.subscribers):
            subscriber.offer(seq, frame)

    def end_all(self, code: int, reason: str) -> None:
        """Close every connection with `code`."""
        for subscriber in list(self.subscribers):
            subscriber.end(code, reason)

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
        self.epoch, self.last = head.epoch, head.seq
        checked = time.monotonic()
        while True:
            stop_if_cancelled()  # redis-py can turn a cancellation mid-XREAD into a return
            try:
                records = await self.log.follow(self.last, FOLLOW_BLOCK_MS)
                if not records or time.monotonic() - checked > HEAD_CHECK_S:
                    checked = time.monotonic()
                    head = await self.log.head()
                    if head.epoch != self.epoch or head.seq < self.last:
                        logger.warning("live history lost (epoch %s → %s)", self.epoch, head.epoch)
                        self.epoch, self.last = head.epoch, head.seq
                        self.broadcast(RESYNC, control_frame("resync", reason="history lost"))
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:
                stop_if_cancelled()
                logger.exception("following the live history failed; retrying")
                await asyncio.sleep(RETRY_S)
                continue
            if records and records[0].seq != self.last + 1:
                # Trimmed past where this gateway was (it was stalled for a long time).
                self.broadcast(RESYNC, control_frame("resync", reason="gateway fell behind"))
            for record in records:
                self.deliver(record)
            if records:
                self.last = records[-1].seq

    def check_connections(self, now: float) -> None:
        """End connections whose send stalled or whose lifetime is over (`now`: loop time)."""
        stalled_after = self.settings.send_timeout_s
        for sub in list(self.subscribers):
            if sub.sending_since is not None and now - sub.sending_since > stalled_after:
                sub.end(STALLED, "a send to the client stalled")
            elif now >= sub.expires:
                sub.end(4000, "maximum connection lifetime reached: reconnect with since")

    async def check_sign_ins(self) -> None:
        """End the connections of users disabled or signed out: one check per distinct sign-in,
        however many screens it holds open."""
        if self.signed_in is None:
            return
        holders: dict[Principal, list[Subscriber]] = {}
        for sub in self.subscribers:
            if sub.principal is not None and sub.ending is None:
                holders.setdefault(sub.principal, []).append(sub)
        for principal, subs in holders.items():
            if not await self.signed_in(principal):
                for sub in subs:
                    sub.end(4401, "signed out or disabled")

    async def upkeep(self) -> None:
        """Look after every connection until cancelled (see the module docstring)."""
        loop = asyncio.get_running_loop()
        tick = min(UPKEEP_S, self.settings.recheck_s, self.settings.send_timeout_s)
        next_recheck = loop.time() + self.settings.recheck_s
        collected, collected_at = self.closed, loop.time()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            self.check_connections(now)
            if now >= next_recheck:
                next_recheck = now + self.settings.recheck_s
                try:
                    await self.check_sign_ins()
                except Exception:  # the database is down: keep the screens, ask again later
                    logger.exception("re-checking live connections' sign-ins failed")
            if self.closed == collected:
                collected_at = now
            elif self.closed - collected >= GC_AFTER_CLOSED or now - collected_at >= GC_AFTER_S:
                gc.collect()
                collected, collected_at = self.closed, now


@asynccontextmanager
async def live_hub(runtime: Runtime) -> AsyncIterator[LiveHub]:
    """The process's hub, following the live log while the process runs; on the way out every
    connection is closed with 1001 (going away), so clients reconnect to another replica."""
    hub = LiveHub(runtime.live, runtime.settings.live, partial(still_signed_in, runtime))
    tasks = [
        asyncio.create_task(hub.follow(), name="live-hub"),
        asyncio.create_task(hub.upkeep(), name="live-upkeep"),
    ]
    try:
        yield hub
    finally:
        hub.end_all(1001, "the gateway is shutting down: reconnect with since")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
