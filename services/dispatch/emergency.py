"""Emergency mode (平急转换): which incident, if any, governs a new ticket at a place.

While a mode is active for an area (a district, or the whole city), new tickets of its categories
located there get deadlines × its factor, go to the district tier and carry the incident's name.
Ticket creation asks `active_for(source, district, category)`, where `source` is a session (one
small query) or the process's `EmergencyCache` (no query; a switch made through another replica
applies here within `EMERGENCY_CACHE_TTL_S`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import emergency_store as store
from services.dispatch.routing import Tier
from shared.runtime import Runtime

EMERGENCY_KEY = "emergency"  # runtime.extras key of the process's EmergencyCache
EMERGENCY_CACHE_TTL_S = 2.0  # seconds a cached list of active modes is trusted
EMERGENCY_TIER: Tier = "district"  # tier that owns new tickets under emergency mode


@dataclass(frozen=True, slots=True)
class ActiveMode:
    """An active emergency mode as ticket creation needs it."""

    id: uuid.UUID
    area: str
    city_wide: bool
    incident: str
    categories: frozenset[str]
    factor: float
    started_at: datetime


def pick(modes: Iterable[ActiveMode], district: str | None, category: str) -> ActiveMode | None:
    """The mode governing a category in a district: the district's own before a city-wide one,
    the latest started among equals."""
    matching = [
        m
        for m in modes
        if category in m.categories and (m.city_wide or (district and m.area == district))
    ]
    return max(matching, key=lambda m: (not m.city_wide, m.started_at), default=None)


async def load_active(session: AsyncSession) -> list[ActiveMode]:
    """Every active mode."""
    return [
        ActiveMode(
            id=mode.id,
            area=mode.area,
            city_wide=level == "city",
            incident=mode.incident,
            categories=frozenset(mode.categories),
            factor=mode.deadline_factor,
            started_at=mode.started_at,
        )
        for mode, level in await store.active_with_level(session)
    ]


class EmergencyCache:
    """The active modes, re-read at most every `ttl_s` seconds (one per process)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float = EMERGENCY_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._clock = clock
        self._modes: list[ActiveMode] = []
        self._expires = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget the cached modes (after a switch made in this process)."""
        self._expires = float("-inf")

    async def modes(self) -> list[ActiveMode]:
        """The active modes, from memory while fresh."""
        if self._clock() < self._expires:
            return self._modes
        async with self._lock:
            if self._clock() >= self._expires:
                async with self._sessions() as session:
                    self._modes = await load_active(session)
                self._expires = self._clock() + self._ttl_s
        return self._modes


async def active_mode(
    source: AsyncSession | EmergencyCache, district: str | None, category: str
) -> ActiveMode | None:
    """The mode governing a new ticket of `category` in `district`, if any."""
    modes = await (source.modes() if isinstance(source, EmergencyCache) else load_active(source))
    return pick(modes, district, category)


async def active_for(
    source: AsyncSession | EmergencyCache, district: str | None, category: str
) -> tuple[str, float] | None:
    """(incident, deadline factor) for a new ticket of `category` in `district`, or None."""
    mode = await active_mode(source, district, category)
    return None if mode is None else (mode.incident, mode.factor)


@asynccontextmanager
async def open_cache(runtime: Runtime) -> AsyncIterator[EmergencyCache]:
    """The process's cache of active modes (a component resource)."""
    yield EmergencyCache(runtime.sessions)


def cache_of(runtime: Runtime) -> EmergencyCache:
    """The process's cache (made on first use when the resource was not opened)."""
    cache = runtime.extras.get(EMERGENCY_KEY)
    if not isinstance(cache, EmergencyCache):
        cache = runtime.extras[EMERGENCY_KEY] = EmergencyCache(runtime.sessions)
    return cache
