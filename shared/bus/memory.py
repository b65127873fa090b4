"""The in-process bus of embedded mode: Redis Streams semantics in one event loop's memory.

It is not durable: what survives a restart is guaranteed by the database (the outbox and the
consumers' sweeps of unprocessed rows), exactly as it must be when Redis loses its data.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.bus.base import DeadLetter, Delivery, GroupStats

DEAD_LETTER_KEEP = 10_000  # dead letters kept per stream


@dataclass
class _Pending:
    consumer: str
    delivered_at: float  # time.monotonic()
    attempts: int


@dataclass
class _Group:
    last_delivered: int = 0
    pending: dict[int, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: dict[int, bytes] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)


class MemoryBus:
    """A `Bus` held in memory; fully functional within one process."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._seq = itertools.count(1)
        self._changed = asyncio.Condition()

    def _stream(self, name: str) -> _Stream:
        return self._streams.setdefault(name, _Stream())

    async def publish(self, stream: str, data: bytes) -> str:
        seq = next(self._seq)
        self._stream(stream).entries[seq] = data
        async with self._changed:
            self._changed.notify_all()
        return f"{seq}-0"

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for stream, data in messages:
            await self.publish(stream, data)

    async def create_group(self, stream: str, group: str) -> None:
        self._stream(stream).groups.setdefault(group, _Group())

    def _take_new(self, stream: str, group: str, consumer: str, count: int) -> list[Delivery]:
        s = self._stream(stream)
        g = s.groups[group]
        now = time.monotonic()
        out: list[Delivery] = []
        # Entries are inserted in increasing id order, so the dict is already sorted.
        for seq, data in s.entries.items():
            if seq <= g.last_delivered:
                continue
            if len(out) >= count:
                break
            g.last_delivered = seq
            g.pending[seq] = _Pending(consumer, now, 1)
            out.append(Delivery(f"{seq}-0", stream, data, 1))
        return out

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        if group not in self._stream(stream).groups:
            raise LookupError(f"no consumer group {group!r} on stream {stream!r}")
        deadline = time.monotonic() + block_ms / 1000
        async with self._changed:
            while True:
                out = self._take_new(stream, group, consumer, count)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                try:
                    async with asyncio.timeout(remaining):  # not wait_for: see shared/outbox.py
                        await self._changed.wait()
                except TimeoutError:
                    return self._take_new(stream, group, consumer, count)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        s = self._stream(stream)
        g = s.groups[group]
        now = time.monotonic()
        out: list[Delivery] = []
        for seq in sorted(g.pending):
            if len(out) >= count:
                break
            p = g.pending[seq]
            if (now - p.delivered_at) * 1000 < min_idle_ms:
                continue
            if seq not in s.entries:  # trimmed meanwhile: nothing left to deliver
                del g.pending[seq]
                continue
            g.pending[seq] = _Pending(consumer, now, p.attempts + 1)
            out.append(Delivery(f"{seq}-0", stream, s.entries[seq], p.attempts + 1))
        return out

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        s = self._stream(stream)
        g = s.groups[group]
        for raw in ids:
            seq = int(raw.split("-", 1)[0])
            g.pending.pop(seq, None)
            self._forget_if_done(s, seq)

    @staticmethod
    def _forget_if_done(s: _Stream, seq: int) -> None:
        # Drop an entry once every group has delivered and acknowledged it, so memory stays flat.
        if all(g.last_delivered >= seq and seq not in g.pending for g in s.groups.values()):
            s.entries.pop(seq, None)

    async def pending_count(self, stream: str, group: str) -> int:
        return len(self._stream(stream).groups[group].pending)

    async def group_stats(self, stream: str) -> list[GroupStats]:
        s = self._streams.get(stream)
        if s is None:
            return []
        return [
            GroupStats(name, len(g.pending), _undelivered(s, g.last_delivered))
            for name, g in s.groups.items()
        ]

    async def dead_letter(self, delivery: Delivery, group: str, reason: str) -> None:
        dead = self._stream(delivery.stream).dead
        dead.append(
            DeadLetter(
                delivery.id, delivery.stream, group, delivery.data, reason, datetime.now(UTC)
            )
        )
        del dead[:-DEAD_LETTER_KEEP]

    async def dead_letters(self, stream: str, *, count: int = 100) -> list[DeadLetter]:
        return list(reversed(self._stream(stream).dead[-count:]))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _undelivered(s: _Stream, last_delivered: int) -> int:
    """Entries after `last_delivered` (kept in id order, newest last: counts only the lag)."""
    count = 0
    for seq in reversed(s.entries):
        if seq <= last_delivered:
            break
        count += 1
    return count
