"""Production's live log: a Redis stream whose entry ids are the seqs (`<seq>-0`).

One Lua script appends: it takes the next seq from a counter, renders the frame with the seq and
the epoch, and adds the entry, atomically, so every gateway replica reads the same seq for the same
message. The epoch is a random string stored beside the stream: if Redis loses its data, the epoch
goes with it and the next append (or `head`) makes a new one, which tells resuming clients to
resync. Trimming keeps every message younger than `retain_s` and the newest `retain_count`,
whichever is more: a hash remembers the first seq appended in each minute.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from shared.live.base import (
    RETAIN_COUNT,
    RETAIN_S,
    LiveHead,
    LiveItem,
    LiveLog,
    LiveRecord,
    render_body,
)

POOL_SIZE = 100  # connections per process (redis-py's default pool size)
POOL_WAIT_S = 20.0  # longest a caller waits for a free connection before failing

# KEYS: stream, counter, epoch, minutes, keys. ARGV: epoch if none is stored, retain_s (0: count
# only), retain_count, trim_every, then (stream name, district, street, key, body) per message.
# A message whose key ('' for none) is in the keys sorted set (key -> seq) is skipped. Returns the
# seqs of those appended. It trims at the first append of each minute and whenever a seq passes a
# multiple of trim_every; the keys of trimmed entries go with them.
_APPEND = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
end
local seqs = {}
for i = 5, #ARGV, 5 do
  local key = ARGV[i + 3]
  if key == '' or not redis.call('ZSCORE', KEYS[5], key) then
    local seq = redis.call('INCR', KEYS[2])
    local frame = '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '",' .. ARGV[i + 4]
    redis.call('XADD', KEYS[1], seq .. '-0', 'k', ARGV[i], 'd', ARGV[i + 1], 's', ARGV[i + 2],
               'f', frame)
    if key ~= '' then
      redis.call('ZADD', KEYS[5], seq, key)
    end
    seqs[#seqs + 1] = seq
  end
end
if #seqs == 0 then
  return seqs
end
local minute = math.floor(tonumber(redis.call('TIME')[1]) / 60)
local every = tonumber(ARGV[4])
local new_minute = redis.call('HSETNX', KEYS[4], minute, seqs[1]) == 1
if new_minute or math.floor(seqs[#seqs] / every) > math.floor((seqs[1] - 1) / every) then
  -- Trim what is both older than retain_s and beyond the newest retain_count.
  local retain_s = tonumber(ARGV[2])
  local oldest_kept_minute = minute - math.ceil(retain_s / 60) - 1
  -- Time rule: keep from the first seq of the oldest minute still inside retain_s.
  local keep_from = seqs[#seqs] + 1
  for _, m in ipairs(redis.call('HKEYS', KEYS[4])) do
    if tonumber(m) < oldest_kept_minute then
      redis.call('HDEL', KEYS[4], m)
    elseif retain_s > 0 then
      local first = tonumber(redis.call('HGET', KEYS[4], m))
      if first < keep_from then
        keep_from = first
      end
    end
  end
  local by_count = seqs[#seqs] - tonumber(ARGV[3]) + 1
  if by_count < keep_from then
    keep_from = by_count
  end
  if keep_from > 1 then
    redis.call('XTRIM', KEYS[1], 'MINID', keep_from .. '-0')
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. keep_from)
  end
end
return seqs
"""


def _seq(entry_id: Any) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.partition("-")[0])


def _record(entry_id: Any, fields: dict[bytes, bytes]) -> LiveRecord:
    return LiveRecord(
        seq=_seq(entry_id),
        stream=fields[b"k"].decode(),  # type: ignore[arg-type]  # written by `append` only
        district=fields[b"d"].decode() or None,
        street=fields[b"s"].decode() or None,
        frame=fields[b"f"].decode(),
    )


class RedisLiveLog(LiveLog):
    """A `LiveLog` on one Redis stream, keys under `<prefix>live:`."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "cityhub:",
        *,
        retain_s: float = RETAIN_S,
        retain_count: int = RETAIN_COUNT,
        trim_every: int = 1_024,
    ) -> None:
        self._redis = redis
        base = prefix + "live:"
        self._keys = [
            base + "stream", base + "seq", base + "epoch", base + "minutes", base + "keys"
        ]  # fmt: skip
        self._stream, self._counter, self._epoch = self._keys[:3]
        self._trim = (retain_s, retain_count, trim_every)
        self._append = redis.register_script(_APPEND)

    @classmethod
    def from_url(cls, url: str, prefix: str = "cityhub:") -> RedisLiveLog:
        """Connect lazily to the Redis at `url`. When every connection is busy (a thousand screens
        reconnecting at once, each replaying what it missed) a caller waits its turn for one
        rather than failing, as the default pool would."""
        pool = BlockingConnectionPool.from_url(
            url, decode_responses=False, max_connections=POOL_SIZE, timeout=POOL_WAIT_S
        )
        return cls(Redis.from_pool(pool), prefix)

    async def append(self, items: Sequence[LiveItem]) -> list[int]:
        if not items:
            return []
        args: list[str | float | int] = [uuid.uuid4().hex[:12], *self._trim]
        for item in items:
            args += [
                item.stream, item.district or "", item.street or "", item.key or "",
                render_body(item),
            ]  # fmt: skip
        seqs: list[int] = await self._append(keys=self._keys, args=args)
        return [int(s) for s in seqs]

    async def head(self) -> LiveHead:
        # SET NX: the first reader of an empty (or lost) history fixes its epoch.
        await self._redis.set(self._epoch, uuid.uuid4().hex[:12], nx=True)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._epoch)
            pipe.get(self._counter)
            epoch, seq = await pipe.execute()
        return LiveHead(epoch.decode(), int(seq or 0))

    async def read_after(self, seq: int, count: int) -> list[LiveRecord] | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._counter)
            pipe.xrange(self._stream, "-", "+", count=1)
            pipe.xrange(self._stream, f"{seq + 1}-0", "+", count=count)
            head, first, entries = await pipe.execute()
        latest = int(head or 0)
        oldest = _seq(first[0][0]) if first else latest + 1
        if seq > latest or seq + 1 < oldest:
            return None
        return [_record(entry_id, fields) for entry_id, fields in entries]

    async def follow(self, after: int, block_ms: int) -> list[LiveRecord]:
        reply: Any = await self._redis.xread(
            {self._stream: f"{after}-0"}, count=1_000, block=block_ms
        )
        if not reply:
            return []
        return [_record(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def close(self) -> None:
        await self._redis.aclose()
