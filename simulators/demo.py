"""The demo load of `cityhub run --simulate`: hotline calls, grid reports and a sensor fleet
publishing over MQTT, all on the hub itself, and simulated field staff working the tickets of a
few streets. Quiet: one summary line a minute, no line per call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from simulators import field_staff, grid, hotline, sensor_fleet
from simulators.city import fetch_streets
from simulators.runner import Tally

logger = logging.getLogger(__name__)

DEMO_HOTLINE_PER_S = 0.5  # Chongqing sees ~0.14 calls/s city-wide; the demo is livelier
DEMO_GRID_PER_S = 0.2
DEMO_SENSORS = 40
# The demo runs at its rates at any hour: shaped by the time of day, a newcomer trying it at night
# (Beijing time) would see almost nothing arrive. `cityhub simulate` keeps the daily profile.
SHAPED = False
DEMO_READINGS_PER_S = 2.0  # whole fleet: each sensor reports every 20 s
SUMMARY_EVERY_S = 60.0  # how often the demo logs what it has sent


@dataclass(frozen=True)
class DemoAccess:
    """What the demo's simulators sign in with: the integrator key, and the field staff."""

    key: str
    staff: field_staff.Staff | None = None


def summary(
    hotline_tally: Tally,
    grid_tally: Tally,
    sensors: sensor_fleet.Stats,
    staff_tally: Tally | None = None,
) -> str:
    """One line: what each simulator sent so far, by outcome."""
    parts = [hotline_tally.line("hotline"), grid_tally.line("grid reports"), sensors.line()]
    if staff_tally is not None:
        parts.append(staff_tally.line("field staff"))
    return " · ".join(parts)


async def run_demo(
    base_url: str,
    key: str,
    mqtt: tuple[str, int],
    topic_root: str,
    summary_every_s: float = SUMMARY_EVERY_S,
    staff: field_staff.Staff | None = None,
) -> None:
    """Feed the hub at `base_url` (and its broker at `mqtt`) until cancelled; `staff` work the
    tickets of their streets meanwhile."""
    headers = {"X-API-Key": key}
    fleet = sensor_fleet.Fleet.generate(
        DEMO_SENSORS, prefix="demo-", rate_per_s=DEMO_READINGS_PER_S
    )
    calls, reports, readings = Tally(), Tally(), sensor_fleet.Stats()
    work = Tally() if staff is not None else None

    async def summarise() -> None:
        while True:
            await asyncio.sleep(summary_every_s)
            logger.info("simulators: %s", summary(calls, reports, readings, work))

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        streets = await fetch_streets(client, headers)
        integrator = await sensor_fleet.register(client, key, fleet)
        logger.info(
            "simulators started: %d sensors; a summary every %.0f s", DEMO_SENSORS, summary_every_s
        )
        others: list[Coroutine[Any, Any, object]] = []
        if staff is not None:
            others.append(field_staff.run(client, staff.team, staff.password, streets, tally=work))
        await asyncio.gather(
            *others,
            summarise(),
            hotline.run(
                client,
                key,
                streets,
                rate_per_s=DEMO_HOTLINE_PER_S,
                shaped=SHAPED,
                progress=False,
                tally=calls,
            ),
            grid.run(
                client,
                headers,
                streets,
                rate_per_s=DEMO_GRID_PER_S,
                shaped=SHAPED,
                progress=False,
                tally=reports,
            ),
            sensor_fleet.run(
                fleet,
                host=mqtt[0],
                port=mqtt[1],
                username=integrator,
                password=key,
                root=topic_root,
                rate_per_s=DEMO_READINGS_PER_S,
                progress=False,
                stats=readings,
            ),
        )
