"""The bus under test: every bus test runs on the in-process bus and on Redis Streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisBus


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A fresh bus of each backend (Redis isolated by a unique key prefix)."""
    if request.param == "memory":
        backend: Bus = MemoryBus()
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("bus_prefix")
        request.getfixturevalue("redis_cleanup")
        backend = RedisBus.from_url(redis_url, prefix)
    yield backend
    await backend.close()
