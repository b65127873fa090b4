"""The bus port: the primitives both backends provide; `Consumer` builds the delivery loop on them.

Semantics follow Redis Streams: a stream is an append-only log; each consumer group receives every
message once, spread over its consumers; a delivered message stays pending until acknowledged, and
a message pending too long (its consumer died) can be claimed by another consumer of the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a message to a consumer; `attempts` counts deliveries, 1 the first time."""

    id: str
    stream: str
    data: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a consumer group gave up on, and why."""

    id: str
    stream: str
    group: str
    data: bytes
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GroupStats:
    """How far a consumer group is behind on a stream (for /metrics)."""

    group: str
    pending: int  # delivered, not yet acknowledged
    lag: int | None  # not yet delivered; None when the backend cannot tell (Redis after a trim)


def stop_if_cancelled() -> None:
    """Raise CancelledError when this task was cancelled but a library swallowed it.

    redis-py 8.1's pipelines can turn a cancellation that lands mid-read into a reconnect and a
    normal return; a loop that keeps going would then never stop (and shutdown would hang).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PoisonMessageError(Exception):
    """Raised by a handler for a message that can never succeed: dead-letter it at once."""


class Bus(Protocol):
    """Streams with consumer groups, acknowledgement, re-claiming and dead letters."""

    async def publish(self, stream: str, data: bytes) -> str:
        """Append a message; returns its id in the stream."""
        ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Append (stream, data) messages in order, in one round trip where the backend can."""
        ...

    async def create_group(self, stream: str, group: str) -> None:
        """Create a consumer group reading from the start of the stream (no-op if it exists)."""
        ...

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        """Deliver up to `count` new messages, waiting up to `block_ms` for the first."""
        ...

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        """Take over messages left pending longer than `min_idle_ms` (their consumer died)."""
        ...

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """Acknowledge messages: the group is done with them."""
        ...

    async def pending_count(self, stream: str, group: str) -> int:
        """How many messages of the group are delivered but not acknowledged."""
        ...

    async def group_stats(self, stream: str) -> list[GroupStats]:
        """Pending and lag of every consumer group of a stream (none when it does not exist)."""
        ...

    async def dead_letter(self, delivery: Delivery, group: str, reason: str) -> None:
        """Record a message the group gives up on (the caller acknowledges it)."""
        ...

    async def dead_letters(self, stream: str, *, count: int = 100) -> list[DeadLetter]:
        """The newest dead letters of a stream, newest first."""
        ...

    async def ping(self) -> bool:
        """True when the backend answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
