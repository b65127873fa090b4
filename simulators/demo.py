"""The demo load of `cityhub run --simulate`: hotline calls, grid reports and a sensor fleet
publishing over MQTT, all on the hub itself."""

from __future__ import annotations

import asyncio

import httpx

from simulators import grid, hotline, sensor_fleet
from simulators.city import fetch_streets

DEMO_HOTLINE_PER_S = 0.5  # Chongqing sees ~0.14 calls/s city-wide; the demo is livelier
DEMO_GRID_PER_S = 0.2
DEMO_SENSORS = 40
DEMO_READINGS_PER_S = 2.0  # whole fleet: each sensor reports every 20 s


async def run_demo(base_url: str, key: str, mqtt: tuple[str, int], topic_root: str) -> None:
    """Feed the hub at `base_url` (and its broker at `mqtt`) until cancelled."""
    headers = {"X-API-Key": key}
    fleet = sensor_fleet.Fleet.generate(
        DEMO_SENSORS, prefix="demo-", rate_per_s=DEMO_READINGS_PER_S
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        streets = await fetch_streets(client, headers)
        integrator = await sensor_fleet.register(client, key, fleet)
        await asyncio.gather(
            hotline.run(client, key, streets, rate_per_s=DEMO_HOTLINE_PER_S, progress=False),
            grid.run(client, headers, streets, rate_per_s=DEMO_GRID_PER_S, progress=False),
            sensor_fleet.run(
                fleet,
                host=mqtt[0],
                port=mqtt[1],
                username=integrator,
                password=key,
                root=topic_root,
                rate_per_s=DEMO_READINGS_PER_S,
                progress=False,
            ),
        )
