"""Which open ticket an event joins (pure): the same problem, close by and recent; or, for a sensor
alarm, the open ticket of that sensor and alarm type.

"The same problem" is the same category, or categories of one family across channels: a sensor's
积水 alarm (S0101) and a 12345 call about 道路积水 (E0501) describe one flooded point. Distances
use an equirectangular plane at the point's latitude (at 100 m the error is centimetres).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

M_PER_DEG_LAT = 110_540.0  # metres per degree of latitude
M_PER_DEG_LON_EQUATOR = 111_320.0  # metres per degree of longitude at the equator
# Advisory-lock cells are this many degrees wide per metre of merge distance: two merge
# distances at 60° N, so a box spans at most 2 × 2 cells anywhere south of that.
CELL_DEG_PER_M = 2 / (M_PER_DEG_LON_EQUATOR * 0.5)

# Sensor alarm types that report the same problem as a citizen's category (family = the latter).
FAMILIES: dict[str, str] = {
    "S0101": "E0501",  # 积水 alarm ~ 道路积水
    "S0103": "E0504",  # 烟感 alarm ~ 火情
    "S0104": "E0503",  # 可燃气体 alarm ~ 燃气泄漏
}


def family(category: str) -> str:
    """The family a category merges within (itself when it has none)."""
    return FAMILIES.get(category, category)


def family_members(category: str) -> list[str]:
    """Every category that merges with `category` (sorted, including itself)."""
    root = family(category)
    return sorted({root, category, *(c for c, f in FAMILIES.items() if f == root)})


@dataclass(frozen=True, slots=True)
class Box:
    """A lon/lat rectangle around a point that contains every point within the distance."""

    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open ticket an event might join."""

    id: uuid.UUID
    category: str
    lon: float | None
    lat: float | None
    created_at: datetime
    sensor_id: str | None


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Ground distance in metres between two nearby points."""
    cos_lat = math.cos(math.radians((lat1 + lat2) / 2))
    dx = (lon2 - lon1) * M_PER_DEG_LON_EQUATOR * cos_lat
    dy = (lat2 - lat1) * M_PER_DEG_LAT
    return math.hypot(dx, dy)


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """How close and how recent an open ticket must be for an event to join it."""

    distance_m: float = 100.0
    window: timedelta = timedelta(hours=24)

    def box(self, lon: float, lat: float) -> Box:
        """The bounding box of the merge circle around a point (the index-friendly filter)."""
        dlat = self.distance_m / M_PER_DEG_LAT
        cos_lat = max(math.cos(math.radians(min(abs(lat) + dlat, 89.0))), 0.01)
        dlon = self.distance_m / (M_PER_DEG_LON_EQUATOR * cos_lat)
        return Box(lon - dlon, lon + dlon, lat - dlat, lat + dlat)

    def since(self, reported_at: datetime) -> datetime:
        """The oldest creation time of a ticket an event reported at `reported_at` may join."""
        return reported_at - self.window

    def nearest(
        self,
        candidates: Iterable[Candidate],
        *,
        category: str,
        lon: float,
        lat: float,
        reported_at: datetime,
    ) -> Candidate | None:
        """The closest candidate of the same family within distance and window (older wins ties)."""
        root = family(category)
        since = self.since(reported_at)
        best: tuple[float, datetime, Candidate] | None = None
        for c in candidates:
            if c.lon is None or c.lat is None or family(c.category) != root:
                continue
            if c.created_at < since:
                continue
            d = distance_m(lon, lat, c.lon, c.lat)
            if d > self.distance_m:
                continue
            if best is None or (d, c.created_at) < (best[0], best[1]):
                best = (d, c.created_at, c)
        return best[2] if best else None

    def lock_keys(self, category: str, lon: float, lat: float) -> set[int]:
        """Advisory-lock keys of the grid cells the merge box touches.

        Two events that could join the same ticket (or each other's new ticket) share a cell, so
        replicas that lock these keys before looking for candidates never both open a ticket
        for one problem.
        """
        box = self.box(lon, lat)
        size = CELL_DEG_PER_M * self.distance_m
        root = family(category)
        return {
            _cell(root, ix, iy)
            for ix in range(math.floor(box.lon_min / size), math.floor(box.lon_max / size) + 1)
            for iy in range(math.floor(box.lat_min / size), math.floor(box.lat_max / size) + 1)
        }

    def cell_key(self, category: str, lon: float, lat: float) -> int:
        """The key of the one cell a point lies in (one of `lock_keys` of every nearby point)."""
        size = CELL_DEG_PER_M * self.distance_m
        return _cell(family(category), math.floor(lon / size), math.floor(lat / size))


def _cell(root: str, ix: int, iy: int) -> int:
    digest = hashlib.blake2b(f"{root}:{ix}:{iy}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def sensor_of(source: str, source_ref: str | None, known: dict[str, str]) -> str | None:
    """The sensor behind an event: from its stored alarm (`known`: ref → sensor id), else the
    `<sensor id>:` prefix of its reference."""
    if source != "sensor" or not source_ref:
        return None
    if source_ref in known:
        return known[source_ref]
    head, sep, _rest = source_ref.partition(":")
    return head if sep and head else None
