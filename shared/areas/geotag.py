"""Geotag a point or an address to street → district → city.

Geometry is handled in a local metric plane: an equirectangular projection at the middle latitude
lat0 of the streets (x = lon·cos(lat0)·111 320 m, y = lat·110 540 m). Across Chongqing (28°–32° N)
east-west distances are then off by at most about 2 %, i.e. 10 m on the default 500 m tolerance,
and the tolerance is a plain Euclidean distance. The street polygons are projected once; a query
point is projected with two multiplications.

A point covered by a street (its boundary included) → "point"; a point covered by two streets (on
a shared border) goes to the one listed first in the hierarchy, so the answer never changes between
runs or between `locate` and `locate_many`. Otherwise the nearest street within the tolerance →
"nearest" (ties again to the first listed), else only the city → "none" (the unlocated queue).

The spatial index is a precomputed cell grid (see `shared.areas.grid`) rather than an STRtree: a
cell wholly inside one street, or far from every street, needs no geometry at all (one array read,
well under a microsecond); a cell crossed by a border tests the prepared polygons of its two or
three candidate streets with `intersects_xy`; only a point outside every street but near one pays
for a Point and a few `distance` calls. `locate_many` runs the same steps on whole arrays, so both
paths give identical answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely

from shared.areas.grid import CHECK, FAR, CellGrid, build_grid
from shared.areas.hierarchy import Area, Hierarchy
from shared.areas.names import AddressMatcher

Method = Literal["point", "nearest", "address", "none"]

# Codes of `locate_many`'s method array.
METHOD_NONE = 0
METHOD_POINT = 1
METHOD_NEAREST = 2
METHOD_BY_CODE: tuple[Method, Method, Method] = ("none", "point", "nearest")

DEFAULT_TOLERANCE_M = 500.0
M_PER_DEG_LAT = 110_540.0  # metres per degree of latitude
M_PER_DEG_LON_EQUATOR = 111_320.0  # metres per degree of longitude at the equator


@dataclass(frozen=True, slots=True)
class Geotag:
    """Where something was located, and how."""

    street: Area | None
    district: Area | None
    city: Area | None
    method: Method

    def codes(self) -> dict[str, str | None]:
        """The street, district and city codes (None where not located)."""
        return {
            "street": self.street.code if self.street else None,
            "district": self.district.code if self.district else None,
            "city": self.city.code if self.city else None,
        }


class Geotagger:
    """Locates points and addresses in a hierarchy; build once, then share (read-only)."""

    def __init__(self, hierarchy: Hierarchy, tolerance_m: float = DEFAULT_TOLERANCE_M) -> None:
        if not tolerance_m >= 0.0 or math.isinf(tolerance_m):
            raise ValueError(f"tolerance_m must be a finite number >= 0, got {tolerance_m!r}")
        self.hierarchy = hierarchy
        self.tolerance_m = float(tolerance_m)
        self.streets: tuple[Area, ...] = tuple(hierarchy.streets)
        if not self.streets:
            raise ValueError("the hierarchy has no streets to geotag against")

        _, miny, _, maxy = shapely.total_bounds([s.geometry for s in self.streets])
        lat0 = math.radians((miny + maxy) / 2.0)
        self._kx = math.cos(lat0) * M_PER_DEG_LON_EQUATOR
        self._ky = M_PER_DEG_LAT
        scale = np.array([self._kx, self._ky])
        geoms = np.array([s.geometry for s in self.streets], dtype=object)
        self._polygons = shapely.transform(geoms, lambda xy: xy * scale)
        shapely.prepare(self._polygons)
        # GEOS builds a prepared polygon's point index on first use: build them all now, on one
        # thread, so that lookups (which release the GIL) only ever read shared state.
        inner = shapely.get_coordinates(shapely.point_on_surface(self._polygons))
        shapely.intersects_xy(self._polygons, inner[:, 0], inner[:, 1])
        self.grid: CellGrid = build_grid(self._polygons, self.tolerance_m)
        grid = self.grid
        # Plain Python copies for the single-point path, where numpy scalars cost more than work.
        self._x0, self._y0, self._inv = grid.x0, grid.y0, grid.inv_cell
        self._nx, self._ny = grid.nx, grid.ny
        self._states = grid.states.data.cast("B").cast("i")
        self._point_offsets = grid.point_offsets.tolist()
        self._near_offsets = grid.near_offsets.tolist()
        self._point_polygons = self._polygons[grid.point_streets]
        self._near_polygons = self._polygons[grid.near_streets]

        city = hierarchy.city
        districts = [hierarchy.get(s.parent) if s.parent else None for s in self.streets]
        self._point_tags = tuple(
            Geotag(s, d, city, "point") for s, d in zip(self.streets, districts, strict=True)
        )
        self._nearest_tags = tuple(
            Geotag(s, d, city, "nearest") for s, d in zip(self.streets, districts, strict=True)
        )
        self._none_tag = Geotag(None, None, city, "none")
        self._addresses = AddressMatcher(hierarchy)

    def locate(self, lon: float, lat: float) -> Geotag:
        """Geotag one WGS84 point: "point", "nearest" (within tolerance) or "none"."""
        x = lon * self._kx
        y = lat * self._ky
        fx = (x - self._x0) * self._inv
        fy = (y - self._y0) * self._inv
        # Written so that NaN fails the test too.
        if not (0.0 <= fx < self._nx and 0.0 <= fy < self._ny):
            return self._none_tag
        state = self._states[int(fy) * self._nx + int(fx)]
        if state >= 0:
            return self._point_tags[state]
        if state == FAR:
            return self._none_tag
        slot = CHECK - state
        start, stop = self._point_offsets[slot], self._point_offsets[slot + 1]
        if start < stop:
            hits = shapely.intersects_xy(self._point_polygons[start:stop], x, y)
            if hits.any():
                # Candidates are ascending, so the first hit is the first-listed street.
                return self._point_tags[int(self.grid.point_streets[start + hits.argmax()])]
        start, stop = self._near_offsets[slot], self._near_offsets[slot + 1]
        # An (x, y) array makes the Point in half the time of shapely.points(x, y).
        point = shapely.points(np.array((x, y)))
        distance = shapely.distance(self._near_polygons[start:stop], point)
        best = int(distance.argmin())  # the first of equal distances: lowest street index
        if distance[best] <= self.tolerance_m:
            return self._nearest_tags[int(self.grid.near_streets[start + best])]
        return self._none_tag

    def locate_many(self, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised `locate`: (street index or -1, method code) per point; see `to_geotag`."""
        lons = np.asarray(lons, dtype=np.float64)
        lats = np.asarray(lats, dtype=np.float64)
        if lons.shape != lats.shape or lons.ndim != 1:
            raise ValueError("lons and lats must be 1-D arrays of the same length")
        n = lons.size
        xs = lons * self._kx
        ys = lats * self._ky
        fx = (xs - self._x0) * self._inv
        fy = (ys - self._y0) * self._inv
        on_grid = np.flatnonzero((fx >= 0.0) & (fx < self._nx) & (fy >= 0.0) & (fy < self._ny))
        state = np.full(n, FAR, dtype=np.int32)
        cell = fy[on_grid].astype(np.int64) * self._nx + fx[on_grid].astype(np.int64)
        state[on_grid] = self.grid.states[cell]

        index = np.full(n, -1, dtype=np.int32)
        method = np.zeros(n, dtype=np.uint8)
        inside = state >= 0
        index[inside] = state[inside]
        method[inside] = METHOD_POINT

        check = np.flatnonzero(state <= CHECK)
        slot = CHECK - state[check].astype(np.int64)
        found = self._contain(check, slot, xs, ys, index, method)
        missed = ~found
        if missed.any():
            self._nearest(check[missed], slot[missed], xs, ys, index, method)
        return index, method

    def to_geotag(self, index: int, method: int) -> Geotag:
        """The Geotag for one (street index, method code) pair from `locate_many`."""
        if index < 0 or method == METHOD_NONE:
            return self._none_tag
        if method == METHOD_POINT:
            return self._point_tags[index]
        return self._nearest_tags[index]

    def locate_address(self, text: str) -> Geotag:
        """Geotag by street or district names found in address text ("address" or "none")."""
        found = self._addresses.match(text)
        if found.street is None and found.district is None:
            return self._none_tag
        return Geotag(found.street, found.district, self.hierarchy.city, "address")

    def tag(self, lon: float | None, lat: float | None, address: str | None) -> Geotag:
        """Geotag by point if it locates, else by address text, else "none"."""
        if lon is not None and lat is not None:
            located = self.locate(lon, lat)
            if located.method != "none":
                return located
        if address:
            return self.locate_address(address)
        return self._none_tag

    def _contain(
        self,
        points: np.ndarray,
        slot: np.ndarray,
        xs: np.ndarray,
        ys: np.ndarray,
        index: np.ndarray,
        method: np.ndarray,
    ) -> np.ndarray:
        """Test points in check cells against their point candidates; True where one holds it."""
        owner, pair = _expand(slot, self.grid.point_offsets)
        hit = shapely.intersects_xy(
            self._point_polygons[pair], xs[points[owner]], ys[points[owner]]
        )
        owner, street = owner[hit], self.grid.point_streets[pair[hit]]
        # Pairs run by point, then by ascending street: a point's first hit is its answer.
        first = np.ones(owner.size, dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        found = np.zeros(points.size, dtype=bool)
        found[owner[first]] = True
        index[points[owner[first]]] = street[first]
        method[points[owner[first]]] = METHOD_POINT
        return found

    def _nearest(
        self,
        points: np.ndarray,
        slot: np.ndarray,
        xs: np.ndarray,
        ys: np.ndarray,
        index: np.ndarray,
        method: np.ndarray,
    ) -> None:
        """Give points outside every street their nearest street within the tolerance."""
        owner, pair = _expand(slot, self.grid.near_offsets)
        if owner.size == 0:
            return
        distance = shapely.distance(
            self._near_polygons[pair], shapely.points(xs[points], ys[points])[owner]
        )
        # Per point, the smallest distance, and among equals the lowest street index (pairs of
        # one point list its candidate streets in ascending order).
        order = np.lexsort((pair, distance, owner))
        owner, pair, distance = owner[order], pair[order], distance[order]
        first = np.ones(owner.size, dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        best = first & (distance <= self.tolerance_m)
        chosen = points[owner[best]]
        index[chosen] = self.grid.near_streets[pair[best]]
        method[chosen] = METHOD_NEAREST


def _expand(slot: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For CSR lists, (position in `slot`, list entry) for every entry of each slot's list."""
    start = offsets[slot]
    count = offsets[slot + 1] - start
    owner = np.repeat(np.arange(slot.size), count)
    pair = np.repeat(start - (np.cumsum(count) - count), count) + np.arange(owner.size)
    return owner, pair
