"""The three-tier area hierarchy (city → district → street) and its GeoJSON form.

A `Hierarchy` is validated when built, so the geotagger and the services can rely on it: one city,
districts under the city, streets under an existing district, unique codes, valid non-empty
polygons, and no two streets of one district overlapping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape

Level = Literal["city", "district", "street"]
LEVELS: tuple[Level, ...] = get_args(Level)

# Two streets "overlap" when their intersection is larger than this (deg², about 0.01 m²):
# shared borders computed by different tools differ by floating-point noise, never by this much.
OVERLAP_TOLERANCE_DEG2 = 1e-9

_REQUIRED_PROPERTIES = ("code", "name", "level", "parent")


class HierarchyError(ValueError):
    """A hierarchy or its GeoJSON is not usable; the message names the offending feature."""


@dataclass(frozen=True, slots=True)
class Area:
    """One city, district or street with its boundary in WGS84 lon/lat."""

    code: str
    name: str
    level: Level
    parent: str | None
    geometry: Polygon | MultiPolygon = field(compare=False, hash=False, repr=False)


def _check_geometry(area: Area) -> None:
    geom = area.geometry
    if not isinstance(geom, Polygon | MultiPolygon):
        raise HierarchyError(
            f"{area.level} {area.code!r}: geometry must be a Polygon or MultiPolygon,"
            f" got {type(geom).__name__}"
        )
    if geom.is_empty:
        raise HierarchyError(f"{area.level} {area.code!r}: geometry is empty")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise HierarchyError(f"{area.level} {area.code!r}: geometry is invalid ({reason})")
    if geom.area <= 0.0:
        raise HierarchyError(f"{area.level} {area.code!r}: geometry has no area")


class Hierarchy:
    """A validated city → district → street hierarchy."""

    __slots__ = ("_by_code", "_children", "_city", "_districts", "_streets")

    def __init__(self, areas: Sequence[Area]) -> None:
        by_code: dict[str, Area] = {}
        for area in areas:
            if area.level not in LEVELS:
                raise HierarchyError(f"area {area.code!r}: unknown level {area.level!r}")
            if area.code in by_code:
                raise HierarchyError(f"{area.level} {area.code!r}: duplicate code")
            _check_geometry(area)
            by_code[area.code] = area

        cities = [a for a in areas if a.level == "city"]
        if len(cities) != 1:
            found = ", ".join(repr(c.code) for c in cities) or "none"
            raise HierarchyError(f"expected exactly one city feature, found {found}")
        city = cities[0]
        if city.parent is not None:
            raise HierarchyError(f"city {city.code!r}: parent must be null, got {city.parent!r}")

        districts = [a for a in areas if a.level == "district"]
        streets = [a for a in areas if a.level == "street"]
        children: dict[str, list[Area]] = {a.code: [] for a in areas}
        for district in districts:
            if district.parent != city.code:
                raise HierarchyError(
                    f"district {district.code!r}: parent {district.parent!r} is not the city"
                    f" {city.code!r}"
                )
            children[city.code].append(district)
        for street in streets:
            parent = by_code.get(street.parent) if street.parent is not None else None
            if parent is None or parent.level != "district":
                raise HierarchyError(
                    f"street {street.code!r}: parent {street.parent!r} is not a known district"
                )
            children[parent.code].append(street)
        _check_street_overlaps(streets)

        self._by_code = by_code
        self._children = children
        self._city = city
        self._districts = districts
        self._streets = streets

    @property
    def city(self) -> Area:
        """The one city area."""
        return self._city

    @property
    def districts(self) -> list[Area]:
        """Districts in input order."""
        return list(self._districts)

    @property
    def streets(self) -> list[Area]:
        """Streets in input order."""
        return list(self._streets)

    def get(self, code: str) -> Area | None:
        """The area with this code, or None."""
        return self._by_code.get(code)

    def children(self, code: str) -> list[Area]:
        """Direct children of an area in input order (empty for streets and unknown codes)."""
        return list(self._children.get(code, ()))

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Area]:
        yield self._city
        yield from self._districts
        yield from self._streets

    @classmethod
    def from_geojson(cls, data: object) -> Hierarchy:
        """Build from a GeoJSON FeatureCollection with code/name/level/parent properties."""
        return cls(_areas_from_geojson(data))

    def to_geojson(self) -> dict[str, Any]:
        """This hierarchy as a FeatureCollection (city, then districts, then streets)."""
        features = [
            {
                "type": "Feature",
                "properties": {
                    "code": a.code,
                    "name": a.name,
                    "level": a.level,
                    "parent": a.parent,
                },
                "geometry": _geometry_json(a.geometry),
            }
            for a in self
        ]
        return {"type": "FeatureCollection", "features": features}


def load_geojson_file(path: str | PathLike[str]) -> Hierarchy:
    """Read a GeoJSON FeatureCollection file into a validated hierarchy."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HierarchyError(f"{path}: not valid JSON ({exc})") from exc
    return Hierarchy.from_geojson(data)


def _geometry_json(geom: Polygon | MultiPolygon) -> dict[str, Any]:
    # mapping() gives nested tuples; lists keep to_geojson() equal to its own JSON round trip.
    return cast(dict[str, Any], json.loads(json.dumps(mapping(geom))))


def _areas_from_geojson(data: object) -> list[Area]:
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise HierarchyError("GeoJSON must be an object with type 'FeatureCollection'")
    features = data.get("features")
    if not isinstance(features, list):
        raise HierarchyError("GeoJSON FeatureCollection must have a 'features' list")
    return [_area_from_feature(i, feature) for i, feature in enumerate(features)]


def _area_from_feature(index: int, feature: object) -> Area:
    label = f"feature #{index}"
    if not isinstance(feature, dict):
        raise HierarchyError(f"{label}: not a GeoJSON object")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise HierarchyError(f"{label}: missing 'properties' object")
    code = props.get("code")
    if isinstance(code, str) and code:
        label = f"feature {code!r} (#{index})"
    for key in _REQUIRED_PROPERTIES:
        if key not in props:
            raise HierarchyError(f"{label}: missing property {key!r}")
    name, level, parent = props["name"], props["level"], props["parent"]
    if not isinstance(code, str) or not code:
        raise HierarchyError(f"{label}: property 'code' must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise HierarchyError(f"{label}: property 'name' must be a non-empty string")
    if level not in LEVELS:
        raise HierarchyError(f"{label}: unknown level {level!r} (expected one of {LEVELS})")
    if parent is not None and (not isinstance(parent, str) or not parent):
        raise HierarchyError(f"{label}: property 'parent' must be a code or null")
    raw_geometry = feature.get("geometry")
    if not isinstance(raw_geometry, dict):
        raise HierarchyError(f"{label}: missing 'geometry' object")
    if raw_geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise HierarchyError(
            f"{label}: geometry must be a Polygon or MultiPolygon, got {raw_geometry.get('type')!r}"
        )
    try:
        geometry = shape(raw_geometry)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise HierarchyError(f"{label}: malformed geometry ({exc})") from exc
    except shapely.errors.GEOSException as exc:
        raise HierarchyError(f"{label}: malformed geometry ({exc})") from exc
    return Area(code=code, name=name, level=cast(Level, level), parent=parent, geometry=geometry)


def _check_street_overlaps(streets: list[Area]) -> None:
    if len(streets) < 2:
        return
    geoms = np.array([s.geometry for s in streets], dtype=object)
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    parents = np.array([s.parent for s in streets], dtype=object)
    # Each unordered pair once, and only pairs within one district (the rule the data promises).
    keep = (left < right) & (parents[left] == parents[right])
    left, right = left[keep], right[keep]
    if left.size == 0:
        return
    areas = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    bad = np.flatnonzero(areas > OVERLAP_TOLERANCE_DEG2)
    if bad.size:
        first = bad[0]
        a, b = streets[int(left[first])], streets[int(right[first])]
        raise HierarchyError(
            f"streets {a.code!r} and {b.code!r} of district {a.parent!r} overlap"
            f" ({float(areas[first]):.3g} deg²)"
        )
