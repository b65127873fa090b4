"""Public facts on Chongqing's 41 district-level centres and 1031 streets, from package data.

The CSVs ship inside the package (`shared/areas/data/`) and are read lazily through
`importlib.resources`, so this works from an installed wheel and does no I/O at import time.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

CITY_CODE = "500000"
CITY_NAME = "重庆市"

_DISTRICTS_CSV = "chongqing_districts.csv"
_GEOMETRY_STATS_CSV = "chongqing_districts_geometry_stats.csv"
_STREETS_CSV = "chongqing_streets_1031.csv"

# Order in which a district hands out its cells, innermost first: urban subdistricts sit around
# the district seat, towns around them, rural townships at the edge.
STREET_TYPE_RANK = {"subdistrict": 0, "town": 1, "township": 2}


@dataclass(frozen=True, slots=True)
class DistrictFacts:
    """One district-level governance centre with the figures used to size its demo shape."""

    centre_id: str
    name: str
    kind: str
    lon: float
    lat: float
    streets_count: int
    area_km2: float
    # (minlon, minlat, maxlon, maxlat) of the published boundary; None for the three zones.
    bbox: tuple[float, float, float, float] | None


@dataclass(frozen=True, slots=True)
class StreetFacts:
    """One town, township or subdistrict and the governance centre it belongs to."""

    code: str
    name: str
    type: str
    centre_id: str


def _read_csv(name: str) -> list[dict[str, str]]:
    text = (files("shared.areas") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


@cache
def load_districts() -> tuple[DistrictFacts, ...]:
    """The 41 centres in file order, joined with their geometry stats by Chinese name."""
    stats = {row["name_zh"]: row for row in _read_csv(_GEOMETRY_STATS_CSV)}
    districts = []
    for row in _read_csv(_DISTRICTS_CSV):
        # The three zones have no administrative code, so the join key is the name, not adcode.
        stat = stats.get(row["name_zh"])
        if stat is None:
            raise ValueError(f"no geometry stats for district {row['name_zh']!r}")
        corners = [
            _optional_float(stat[k])
            for k in ("bbox_minlon", "bbox_minlat", "bbox_maxlon", "bbox_maxlat")
        ]
        bbox = None
        if all(c is not None for c in corners):
            minlon, minlat, maxlon, maxlat = (float(c) for c in corners if c is not None)
            bbox = (minlon, minlat, maxlon, maxlat)
        districts.append(
            DistrictFacts(
                centre_id=row["centre_id"],
                name=row["name_zh"],
                kind=row["kind"],
                lon=float(row["lon"]),
                lat=float(row["lat"]),
                streets_count=int(row["streets_count"]),
                area_km2=float(stat["area_km2_after_zone_carveout_est"]),
                bbox=bbox,
            )
        )
    return tuple(districts)


@cache
def load_streets() -> tuple[StreetFacts, ...]:
    """The 1031 streets in file order with their 41-centre governance centre."""
    return tuple(
        StreetFacts(
            code=row["code9"],
            name=row["name_zh"],
            type=row["type"],
            centre_id=row["governance_centre_41"],
        )
        for row in _read_csv(_STREETS_CSV)
    )
