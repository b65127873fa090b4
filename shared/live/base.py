"""The live log's port and the value types both backends share."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, get_args

LiveStream = Literal["tickets", "kpis", "alerts"]
LIVE_STREAMS: tuple[LiveStream, ...] = get_args(LiveStream)
# Kept for at least this long or this many messages, whichever is more.
RETAIN_S = 3_600
RETAIN_COUNT = 100_000


@dataclass(frozen=True, slots=True)
class LiveItem:
    """One message to stream: what happened, where (for scope filtering) and its data."""

    stream: LiveStream
    type: str  # what happened, e.g. "ticket.dispatched", "kpis", "alert.breach"
    at: datetime  # when it happened (zone-aware)
    data: dict[str, Any]  # JSON-ready
    # The area it belongs to: a ticket's or an alert's district and street; for a KPI message
    # the area of its scope (both None: the city). A subscriber receives it when its scope
    # covers (district, street) — see `shared.auth.Scope.covers`.
    district: str | None = None
    street: str | None = None
    # What it announces, once: the bus message's id. An item whose key the history still holds
    # is not appended again (a message redelivered after its append, e.g. its ack was lost
    # to a Redis restart), so each change reaches the screens once.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class LiveRecord:
    """A stored message: its place in the history and the frame subscribers receive."""

    seq: int
    stream: LiveStream
    district: str | None
    street: str | None
    frame: str  # {"seq":…,"epoch":…,"type":…,"stream":…,"at":…,"data":…}


@dataclass(frozen=True, slots=True)
class LiveHead:
    """Where the history stands: its epoch (changes when history was lost) and latest seq."""

    epoch: str
    seq: int  # 0 while empty


def render_body(item: LiveItem) -> str:
    """The frame without its opening `{"seq":…,"epoch":…,` (the log adds those)."""
    body = json.dumps(
        {"type": item.type, "stream": item.stream, "at": item.at.isoformat(), "data": item.data},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return body[1:]  # drop "{": the frame is '{"seq":N,"epoch":"E",' + body


def frame(seq: int, epoch: str, body: str) -> str:
    """The complete frame of a message (the Redis backend builds the same string in Lua)."""
    return f'{{"seq":{seq},"epoch":"{epoch}",{body}'


class LiveLog(Protocol):
    """An append-only, bounded, ordered history of live messages."""

    async def append(self, items: Sequence[LiveItem]) -> list[int]:
        """Store messages in order; returns the seqs of those stored (not of an item whose
        `key` the history already holds: it is skipped)."""
        ...

    async def head(self) -> LiveHead:
        """The epoch and the latest seq."""
        ...

    async def read_after(self, seq: int, count: int) -> list[LiveRecord] | None:
        """Up to `count` records with a seq above `seq`, oldest first; None when the history no
        longer reaches back to `seq + 1` (trimmed, or lost: the caller resyncs)."""
        ...

    async def follow(self, after: int, block_ms: int) -> list[LiveRecord]:
        """Records above `after`, waiting up to `block_ms` for the first (empty on timeout); when
        the history no longer reaches back to `after + 1`, its oldest records (the caller sees
        the gap between `after` and the first seq)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
