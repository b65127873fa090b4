"""Wait on a condition with a timeout instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]], *, within: float = 10.0, interval: float = 0.02
) -> T:
    """Call `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last value {value!r})")
        await asyncio.sleep(interval)
