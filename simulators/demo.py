"""The demo load of `cityhub run --simulate`: hotline calls and grid reports on the hub itself."""

from __future__ import annotations

import asyncio

import httpx

from simulators import grid, hotline
from simulators.city import fetch_streets

DEMO_HOTLINE_PER_S = 0.5  # Chongqing sees ~0.14 calls/s city-wide; the demo is livelier
DEMO_GRID_PER_S = 0.2


async def run_demo(base_url: str, key: str) -> None:
    """Feed the hub at `base_url` until cancelled."""
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        streets = await fetch_streets(client, headers)
        await asyncio.gather(
            hotline.run(client, key, streets, rate_per_s=DEMO_HOTLINE_PER_S, progress=False),
            grid.run(client, headers, streets, rate_per_s=DEMO_GRID_PER_S, progress=False),
        )
