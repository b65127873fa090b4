"""Embedded mode's live log: a ring in memory (history is lost with the process: a new epoch)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import uuid
from collections.abc import Sequence

from shared.live.base import (
    RETAIN_COUNT,
    RETAIN_S,
    LiveHead,
    LiveItem,
    LiveLog,
    LiveRecord,
    frame,
    render_body,
)


class MemoryLiveLog(LiveLog):
    """A `LiveLog` for one process: a deque of records, trimmed past both retention limits."""

    def __init__(self, *, retain_s: float = RETAIN_S, retain_count: int = RETAIN_COUNT) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self._records: collections.deque[tuple[float, LiveRecord]] = collections.deque()
        self._keys: dict[str, int] = {}  # LiveItem.key -> seq, for the records kept
        self._seq = 0
        self._retain_s, self._retain_count = retain_s, retain_count
        self._appended = asyncio.Event()

    async def append(self, items: Sequence[LiveItem]) -> list[int]:
        now = time.monotonic()
        seqs = []
        for item in items:
            if item.key is not None:
                if item.key in self._keys:
                    continue
                self._keys[item.key] = self._seq + 1
            self._seq += 1
            record = LiveRecord(
                self._seq, item.stream, item.district, item.street,
                frame(self._seq, self.epoch, render_body(item)),
            )  # fmt: skip
            self._records.append((now, record))
            seqs.append(self._seq)
        self._trim(now)
        if seqs:
            self._appended.set()
            self._appended = asyncio.Event()
        return seqs

    def _trim(self, now: float) -> None:
        # Drop the oldest only while it is both older than retain_s and beyond retain_count.
        while (
            len(self._records) > self._retain_count and now - self._records[0][0] > self._retain_s
        ):
            self._records.popleft()
        if self._keys and self._records:
            first = self._records[0][1].seq
            # Keys come in seq order (dicts keep insertion order): drop those trimmed away.
            while self._keys and next(iter(self._keys.values())) < first:
                del self._keys[next(iter(self._keys))]

    async def head(self) -> LiveHead:
        return LiveHead(self.epoch, self._seq)

    async def read_after(self, seq: int, count: int) -> list[LiveRecord] | None:
        first = self._records[0][1].seq if self._records else self._seq + 1
        if seq + 1 < first or seq > self._seq:
            return None
        start = seq + 1 - first  # seqs are dense within the ring
        return [r for _, r in itertools.islice(self._records, start, start + count)]

    async def follow(self, after: int, block_ms: int) -> list[LiveRecord]:
        if after >= self._seq:
            waiter = self._appended
            try:
                await asyncio.wait_for(waiter.wait(), block_ms / 1000)
            except TimeoutError:
                return []
        found = await self.read_after(after, 1_000)
        if found is None:  # fell off the ring: the caller sees the gap in the seqs
            found = [r for _, r in itertools.islice(self._records, 0, 1_000)]
        return found

    async def close(self) -> None:
        return None
