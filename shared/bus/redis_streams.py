"""The production bus: Redis Streams with consumer groups (XREADGROUP, XACK, XAUTOCLAIM)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from shared.bus.base import DeadLetter, Delivery, GroupStats

DEAD_LETTER_MAXLEN = 100_000  # dead letters kept per stream (approximate trim)
DATA_FIELD = b"d"


class RedisBus:
    """A `Bus` on Redis Streams: keys `<prefix><stream>`, dead letters `<prefix>dead.<stream>`."""

    def __init__(self, redis: Redis, prefix: str = "cityhub:") -> None:
        self._redis = redis
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "cityhub:") -> RedisBus:
        """Connect lazily to the Redis at `url`."""
        return cls(Redis.from_url(url, decode_responses=False), prefix)

    def _key(self, stream: str) -> str:
        return self._prefix + stream

    def _dead_key(self, stream: str) -> str:
        return f"{self._prefix}dead.{stream}"

    async def publish(self, stream: str, data: bytes) -> str:
        entry_id: Any = await self._redis.xadd(self._key(stream), {DATA_FIELD: data})
        return _text(entry_id)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, data in messages:
                pipe.xadd(self._key(stream), {DATA_FIELD: data})
            await pipe.execute()

    async def create_group(self, stream: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(self._key(stream), group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        key = self._key(stream)
        # redis-py types stream replies loosely; their shape is fixed by the commands.
        reply: Any = await self._redis.xreadgroup(
            group, consumer, {key: ">"}, count=count, block=max(block_ms, 1)
        )
        out: list[Delivery] = []
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                out.append(Delivery(_text(entry_id), stream, fields[DATA_FIELD], 1))
        return out

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        key = self._key(stream)
        reply: Any = await self._redis.xautoclaim(
            key, group, consumer, min_idle_ms, "0-0", count=count
        )
        entries, deleted = reply[1], reply[2] if len(reply) > 2 else []
        if deleted:  # trimmed before anyone acknowledged them: nothing left to deliver
            await self._redis.xack(key, group, *deleted)
        if not entries:
            return []
        # XAUTOCLAIM does not return delivery counts; XPENDING on the claimed range does.
        pending: Any = await self._redis.xpending_range(
            key,
            group,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) * 2,
            consumername=consumer,
        )
        attempts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [
            Delivery(_text(eid), stream, fields[DATA_FIELD], attempts.get(_text(eid), 2))
            for eid, fields in entries
            if fields  # a claimed id whose entry vanished has no fields
        ]

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        if ids:
            await self._redis.xack(self._key(stream), group, *ids)

    async def pending_count(self, stream: str, group: str) -> int:
        info: Any = await self._redis.xpending(self._key(stream), group)
        return int(info["pending"])

    async def group_stats(self, stream: str) -> list[GroupStats]:
        try:
            groups: Any = await self._redis.xinfo_groups(self._key(stream))
        except ResponseError as exc:
            if "no such key" in str(exc):
                return []
            raise
        return [
            GroupStats(_text(g["name"]), int(g["pending"]), _count(g.get("lag"))) for g in groups
        ]

    async def dead_letter(self, delivery: Delivery, group: str, reason: str) -> None:
        await self._redis.xadd(
            self._dead_key(delivery.stream),
            {
                DATA_FIELD: delivery.data,
                b"reason": reason.encode(),
                b"group": group.encode(),
                b"origin": delivery.id.encode(),
                b"at": datetime.now(UTC).isoformat().encode(),
            },
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )

    async def dead_letters(self, stream: str, *, count: int = 100) -> list[DeadLetter]:
        entries: Any = await self._redis.xrevrange(self._dead_key(stream), count=count)
        return [
            DeadLetter(
                id=_text(fields[b"origin"]),
                stream=stream,
                group=_text(fields[b"group"]),
                data=fields[DATA_FIELD],
                reason=_text(fields[b"reason"]),
                at=datetime.fromisoformat(_text(fields[b"at"])),
            )
            for _eid, fields in entries
        ]

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _count(value: Any) -> int | None:
    """XINFO's lag: None before Redis 7 or when a trim made it unknowable."""
    return None if value is None else int(value)
