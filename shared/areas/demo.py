"""The deterministic Chongqing-like demo hierarchy: 1 city, 41 real districts, 1031 real streets.

Real boundaries are not openly licensed, so shapes are generated from public figures:

* Districts: the Voronoi cell of each centre's centroid (over the city bounding box), cut to the
  district's published bounding box, then to an ellipse around the centroid (aspect from the
  bounding box) whose size is bisected until the area matches the published area as closely as the
  cell allows. Cells never overlap and everything is convex, so each district is one Polygon; the
  space the ellipses leave between districts stands in for rivers and hills (the geotagger's
  "nearest").
* Streets: `streets_count` random points per district (seeded from `seed` + district index), a
  few Lloyd relaxations, then Voronoi cells cut to the district, so a district's streets tile it
  with no gaps and no overlaps. Cells nearest the district seat get the subdistricts (街道), then
  towns, then townships, each group by code.

All construction happens in a local km plane (x = lon·cos(lat0)·111.32, y = lat·110.57) so that
Voronoi cells and ellipses are isotropic and areas are in km²; shapes go back to WGS84 at the end.
Coordinates are not rounded: rounding would open slivers between neighbouring streets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Polygon, box

from shared.areas.chongqing import (
    CITY_CODE,
    CITY_NAME,
    STREET_TYPE_RANK,
    DistrictFacts,
    StreetFacts,
    load_districts,
    load_streets,
)
from shared.areas.hierarchy import Area, Hierarchy

DEFAULT_SEED = 20241

KM_PER_DEG_LAT = 110.57  # km per degree of latitude
KM_PER_DEG_LON_EQUATOR = 111.32  # km per degree of longitude at the equator

LLOYD_ITERATIONS = 4
ELLIPSE_VERTICES = 96
AREA_BISECTION_STEPS = 40
# At this scale an ellipse centred anywhere in the bounding box covers the whole box (2·√2 < 3).
ELLIPSE_SCALE_MAX = 3.0
# The three zones have no published bounding box: use a square of this many times √area a side.
ZONE_BBOX_SIDE_PER_SQRT_AREA = 2.0


class _Plane:
    """The demo's local km plane around the city's middle latitude."""

    def __init__(self, lat0: float) -> None:
        self.kx = math.cos(math.radians(lat0)) * KM_PER_DEG_LON_EQUATOR
        self.ky = KM_PER_DEG_LAT

    def to_km(self, lon: float, lat: float) -> tuple[float, float]:
        return lon * self.kx, lat * self.ky

    def to_degrees(self, geoms: np.ndarray) -> np.ndarray:
        scale = np.array([1.0 / self.kx, 1.0 / self.ky])
        return np.asarray(shapely.transform(geoms, lambda xy: xy * scale))


def _district_bbox_km(d: DistrictFacts, plane: _Plane) -> Polygon:
    cx, cy = plane.to_km(d.lon, d.lat)
    if d.bbox is None:
        half = ZONE_BBOX_SIDE_PER_SQRT_AREA * math.sqrt(d.area_km2) / 2.0
        return box(cx - half, cy - half, cx + half, cy + half)
    x0, y0 = plane.to_km(d.bbox[0], d.bbox[1])
    x1, y1 = plane.to_km(d.bbox[2], d.bbox[3])
    # A centroid estimated after a zone carve-out may sit just outside the published box.
    return box(min(x0, cx), min(y0, cy), max(x1, cx), max(y1, cy))


def _ellipse(cx: float, cy: float, a: float, b: float) -> Polygon:
    t = np.linspace(0.0, 2.0 * math.pi, ELLIPSE_VERTICES, endpoint=False)
    return Polygon(np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)]))


def _fit_district(cell: Polygon, bbox: Polygon, cx: float, cy: float, target: float) -> Polygon:
    """Cut cell ∩ bbox with the centred ellipse whose area best matches the target (km²)."""
    region = cell.intersection(bbox)
    if region.area <= target:
        return shapely.normalize(region)
    minx, miny, maxx, maxy = bbox.bounds
    half_w, half_h = (maxx - minx) / 2.0, (maxy - miny) / 2.0
    lo, hi = 0.0, ELLIPSE_SCALE_MAX
    for _ in range(AREA_BISECTION_STEPS):
        mid = (lo + hi) / 2.0
        if region.intersection(_ellipse(cx, cy, mid * half_w, mid * half_h)).area < target:
            lo = mid
        else:
            hi = mid
    return shapely.normalize(region.intersection(_ellipse(cx, cy, hi * half_w, hi * half_h)))


def _district_shapes(districts: Sequence[DistrictFacts], plane: _Plane) -> list[Polygon]:
    bboxes = [_district_bbox_km(d, plane) for d in districts]
    city_box = box(*shapely.total_bounds(np.array(bboxes, dtype=object)))
    sites = [plane.to_km(d.lon, d.lat) for d in districts]
    cells = shapely.get_parts(
        shapely.voronoi_polygons(MultiPoint(sites), extend_to=city_box, ordered=True)
    )
    shapes = []
    for d, cell, bbox, (cx, cy) in zip(districts, cells, bboxes, sites, strict=True):
        shape = _fit_district(cell, bbox, cx, cy, d.area_km2)
        if not isinstance(shape, Polygon) or shape.is_empty:
            raise RuntimeError(f"district {d.centre_id}: generated shape is not a polygon")
        shapes.append(shape)
    return shapes


def _sample_inside(district: Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    minx, miny, maxx, maxy = district.bounds
    shapely.prepare(district)
    points = np.empty((0, 2))
    while len(points) < n:
        batch = rng.uniform((minx, miny), (maxx, maxy), size=(4 * n, 2))
        inside = shapely.contains_xy(district, batch[:, 0], batch[:, 1])
        points = np.concatenate([points, batch[inside]])
    return points[:n]


def _voronoi_cells(points: np.ndarray, district: Polygon) -> np.ndarray:
    cells = shapely.get_parts(
        shapely.voronoi_polygons(MultiPoint(points), extend_to=district, ordered=True)
    )
    return np.asarray(shapely.intersection(cells, district))


def _street_cells(district: Polygon, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Voronoi cells tiling the district, and the seed point of each."""
    points = _sample_inside(district, n, rng)
    for _ in range(LLOYD_ITERATIONS):
        # Moving each seed to its cell's centroid evens out street sizes.
        points = shapely.get_coordinates(shapely.centroid(_voronoi_cells(points, district)))
    return _voronoi_cells(points, district), points


def _street_order(streets: list[StreetFacts]) -> list[StreetFacts]:
    return sorted(
        streets, key=lambda s: (STREET_TYPE_RANK.get(s.type, len(STREET_TYPE_RANK)), s.code)
    )


def generate_demo(seed: int = DEFAULT_SEED) -> Hierarchy:
    """Generate the Chongqing-like demo hierarchy; the same seed gives the same map."""
    districts = load_districts()
    streets_by_centre: dict[str, list[StreetFacts]] = defaultdict(list)
    for street in load_streets():
        streets_by_centre[street.centre_id].append(street)

    lats = [d.lat for d in districts]
    plane = _Plane((min(lats) + max(lats)) / 2.0)
    shapes_km = _district_shapes(districts, plane)

    district_areas: list[Area] = []
    street_areas: list[Area] = []
    for index, (facts, shape_km) in enumerate(zip(districts, shapes_km, strict=True)):
        members = _street_order(streets_by_centre.get(facts.centre_id, []))
        if len(members) != facts.streets_count:
            raise RuntimeError(
                f"district {facts.centre_id}: {len(members)} streets listed,"
                f" {facts.streets_count} expected"
            )
        rng = np.random.default_rng(seed + index)
        cells_km, seeds = _street_cells(shape_km, len(members), rng)
        site = np.array(plane.to_km(facts.lon, facts.lat))
        distance = np.hypot(seeds[:, 0] - site[0], seeds[:, 1] - site[1])
        order = np.lexsort((seeds[:, 1], seeds[:, 0], distance))
        cells = plane.to_degrees(cells_km[order])
        placed = []
        for street, cell in zip(members, cells, strict=True):
            if not isinstance(cell, Polygon):
                raise RuntimeError(f"street {street.code}: generated cell is not a polygon")
            placed.append(Area(street.code, street.name, "street", facts.centre_id, cell))
        street_areas.extend(sorted(placed, key=lambda a: a.code))
        district_geom = plane.to_degrees(np.array([shape_km], dtype=object))[0]
        district_areas.append(
            Area(facts.centre_id, facts.name, "district", CITY_CODE, district_geom)
        )

    city_geom = shapely.union_all([d.geometry for d in district_areas])
    city = Area(CITY_CODE, CITY_NAME, "city", None, city_geom)
    return Hierarchy([city, *district_areas, *street_areas])
