"""Request rate limits as a generic cell rate algorithm (GCRA): one timestamp per caller.

Each caller has a theoretical arrival time (TAT): when it would be back to idle had every request
it made been spaced `1 / rate` apart. A request moves the TAT one interval on, and is admitted
while the TAT stays within `burst` requests' worth of now. That is a token bucket that refills
continuously, kept as one number, so the exact wait of a refused request is known (it becomes
`Retry-After`). `RedisRateStore` runs it as one Lua script per request (atomic, on Redis's
clock, so every gateway replica shares one budget); `MemoryRateStore` runs it in the process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    """A sustained rate (requests a second, > 0) and how many requests may come at once."""

    rate: float
    burst: float

    @property
    def interval_s(self) -> float:
        """Seconds one request uses of the budget."""
        return 1.0 / self.rate

    @property
    def window_s(self) -> float:
        """How far ahead of now the TAT may run: the burst's worth of intervals."""
        return max(self.burst, 1.0) * self.interval_s


class RateStore(Protocol):
    """Where callers' TATs live."""

    async def take(self, key: str, limit: Limit) -> float:
        """Count one request of `key`: 0 when admitted, else the seconds until one would be."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


MEMORY_MAX_KEYS = 100_000  # callers tracked in-process before idle ones are forgotten


class MemoryRateStore:
    """TATs in a dict (embedded mode: one process, one budget)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def take(self, key: str, limit: Limit) -> float:
        now = self._clock()
        tat = max(self._tat.get(key, now), now) + limit.interval_s
        wait = tat - limit.window_s - now
        if wait > 0:
            return wait
        if len(self._tat) >= MEMORY_MAX_KEYS:
            # A TAT in the past is an idle caller: forgetting it changes nothing.
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        self._tat[key] = tat
        return 0.0

    async def close(self) -> None:
        self._tat.clear()


# KEYS[1]: the caller's TAT (microseconds, Redis clock); ARGV: interval and window (µs).
# Returns 0 when admitted, else the wait in µs. The key expires when the caller is idle again.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + interval
local wait = tat - tonumber(ARGV[2]) - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
return 0
"""
REDIS_TIMEOUT_S = 0.5  # a Redis that does not answer this soon is treated as down
REDIS_RETRY_S = 1.0  # after a failure, admit without asking Redis for this long
US = 1_000_000


class RedisRateStore:
    """TATs in Redis under `<prefix>rate:`; fails open: while Redis is down every request is
    admitted (logged once per outage) rather than refusing all traffic."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "rate:"
        self._script = redis.register_script(GCRA_SCRIPT)
        self._down_until = 0.0
        self._down = False
        self.failed_open = 0  # requests admitted unchecked because Redis was down

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisRateStore:
        """A store on its own connection pool, with short timeouts (requests wait on it)."""
        redis = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        return cls(redis, prefix)

    async def take(self, key: str, limit: Limit) -> float:
        if self._down and time.monotonic() < self._down_until:
            self.failed_open += 1
            return 0.0
        interval, window = round(limit.interval_s * US), round(limit.window_s * US)
        try:
            wait_us: Any = await self._script(keys=[self._prefix + key], args=[interval, window])
        except (RedisError, OSError) as exc:
            if not self._down:
                logger.error("rate limits: Redis failed (%s); admitting unchecked meanwhile", exc)
            self._down, self._down_until = True, time.monotonic() + REDIS_RETRY_S
            self.failed_open += 1
            return 0.0
        if self._down:
            logger.warning("rate limits: Redis answers again; limits apply")
            self._down = False
        return int(wait_us) / US

    async def close(self) -> None:
        await self._redis.aclose()
