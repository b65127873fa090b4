"""What simulators know of the city: its streets (fetched from the hub's API), where people live,
and when they call."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import httpx
import shapely
from shapely.geometry import Polygon, shape

# Relative call volume by hour of day (Beijing time): quiet nights, a morning and an afternoon
# peak, as 12345 centres report. Mean is 1.0, so `rate × weight` keeps the daily average.
HOURLY_WEIGHT = (
    0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.0, 1.6, 1.9, 1.9, 1.6,
    1.2, 1.4, 1.7, 1.8, 1.7, 1.5, 1.3, 1.2, 1.0, 0.8, 0.5, 0.28,
)  # fmt: skip
# Population weight by street type: urban subdistricts are far denser than rural towns.
TYPE_WEIGHT = {"街道": 4.0, "镇": 1.0, "乡": 0.4}


@dataclass(frozen=True, slots=True)
class Street:
    """A street the simulator can place reports in."""

    code: str
    name: str
    district: str
    polygon: Polygon
    weight: float


def hourly_weight(hour: int) -> float:
    """Relative arrival rate at an hour of day (mean 1.0 over the day)."""
    mean = sum(HOURLY_WEIGHT) / len(HOURLY_WEIGHT)
    return HOURLY_WEIGHT[hour % 24] / mean


def street_weight(name: str) -> float:
    """Population weight of a street from its name's type suffix."""
    for suffix, weight in TYPE_WEIGHT.items():
        if name.endswith(suffix):
            return weight
    return 1.0


async def fetch_streets(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Street]:
    """Every street with its geometry, from `GET /api/v1/areas`."""
    reply = await client.get(
        "/api/v1/areas", params={"level": "street", "geometry": "true"}, headers=headers
    )
    reply.raise_for_status()
    return [
        Street(a["code"], a["name"], a["parent"], shape(a["geometry"]), street_weight(a["name"]))
        for a in reply.json()
    ]


def pick_street(streets: list[Street], rng: random.Random) -> Street:
    """A street drawn in proportion to its population weight."""
    return rng.choices(streets, weights=[s.weight for s in streets], k=1)[0]


def point_in(polygon: Polygon, rng: random.Random) -> tuple[float, float]:
    """A uniformly random point inside a polygon (rejection sampling in its bounds)."""
    minx, miny, maxx, maxy = polygon.bounds
    for _ in range(1000):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if shapely.contains_xy(polygon, x, y):
            return round(x, 6), round(y, 6)
    point = polygon.representative_point()
    return point.x, point.y


def next_gap(rate_per_s: float, rng: random.Random) -> float:
    """Seconds to the next arrival of a Poisson process with this rate."""
    return -math.log(1.0 - rng.random()) / max(rate_per_s, 1e-9)
