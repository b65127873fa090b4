"""Area outlines for the screens' maps: simplified for a zoom level, rounded, rendered once.

A map needs far fewer vertices than the hierarchy keeps for geotagging. Each level's outlines are
simplified to about half a screen pixel at the map's zoom, rounded to 5 decimals (about 1 m) and
rendered as compact GeoJSON once per (hierarchy, level, parent, zoom bucket, visible subset);
the rendered bytes, their gzip form and their ETag are kept in a small LRU.

Tolerance by zoom (Web Mercator, 256 px tiles): one pixel spans 360 / (256 · 2^zoom) degrees of
longitude everywhere and less latitude away from the equator, so half of it never shows. Zooms are
clamped to MIN_ZOOM..MAX_ZOOM; without a zoom a level gets its usual view's (metres of latitude):

    zoom  5  0.0220°     ≈ 2.4 km
    zoom  9  0.00137°    ≈ 150 m   the city and its districts at the city view (default)
    zoom 12  0.000172°   ≈ 19 m    one district's streets (default)
    zoom 15  0.0000215°  ≈ 2.4 m

Neighbouring areas that form a valid coverage (edge-matched, as streets cut from one tessellation
are) are simplified together with `shapely.coverage_simplify`, so a shared border stays one line;
anything else (the demo's districts, which leave gaps and are not edge-matched) is simplified
polygon by polygon with topology preserved. Nothing here does I/O; building is CPU work that the
caller runs in a thread.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from shared.areas import Area, Hierarchy, Level

Outline: TypeAlias = Polygon | MultiPolygon

DECIMALS = 5  # coordinate decimals kept: 1e-5° ≈ 1.1 m, below half a pixel up to zoom 16
GRID_DEG = 10.0**-DECIMALS
TILE_PX = 256  # pixels per Web Mercator tile side
PIXEL_FRACTION = 0.5  # tolerance as a fraction of one pixel at the requested zoom
MIN_ZOOM = 5  # below this (whole provinces) outlines would collapse to triangles
MAX_ZOOM = 17  # beyond this half a pixel is finer than the rounding
DEFAULT_ZOOM: dict[Level, int] = {"city": 9, "district": 9, "street": 12}
# `coverage_simplify` is Visvalingam-Whyatt: its tolerance is the square root of the triangle
# areas it removes, not a distance. On the demo densified to 50 m and wiggled (a stand-in for a
# city's detailed import), three times the distance tolerance kept the largest deviation at about
# the distance tolerance (0.32 × its own), with about 1.5 times the vertices Douglas-Peucker keeps.
COVERAGE_FACTOR = 3.0
GZIP_LEVEL = 9  # compressed once per cached body, so the slowest level costs nothing per request
MAX_FEATURE_SETS = 128  # simplified feature sets kept (level, parent, zoom bucket per hierarchy)
MAX_RENDERED = 256  # rendered bodies kept (a feature set per visible subset)


def zoom_bucket(level: Level, zoom: int | None) -> int:
    """The zoom whose tolerance serves a request: the level's default, clamped to the range."""
    chosen = DEFAULT_ZOOM[level] if zoom is None else zoom
    return min(max(chosen, MIN_ZOOM), MAX_ZOOM)


def tolerance_deg(bucket: int) -> float:
    """The simplification distance for a zoom bucket: half a pixel of longitude, in degrees."""
    return PIXEL_FRACTION * 360.0 / (TILE_PX * 2.0**bucket)


def outline_members(hierarchy: Hierarchy, level: Level, parent: str | None) -> list[Area]:
    """The areas one outline set holds: the city, every district, or one district's streets."""
    if level == "city":
        return [hierarchy.city]
    if level == "district":
        return hierarchy.districts
    return [a for a in hierarchy.children(parent or "") if a.level == "street"]


def _simplify_coverage(originals: np.ndarray, tolerance: float) -> np.ndarray | None:
    """The outlines simplified together, or None when they do not form a valid coverage."""
    coverage = getattr(shapely, "coverage_simplify", None)  # shapely >= 2.1
    if coverage is None or len(originals) < 2 or not shapely.coverage_is_valid(originals):
        return None
    try:
        simplified: np.ndarray = coverage(originals, tolerance * COVERAGE_FACTOR)
    except shapely.errors.GEOSException:
        return None
    bad = ~shapely.is_valid(simplified) | shapely.is_empty(simplified)
    if bad.any():
        simplified[bad] = shapely.simplify(originals[bad], tolerance, preserve_topology=True)
    return simplified


def _without_specks(outline: Outline, min_area: float) -> Outline:
    """`outline` without holes and parts smaller than `min_area` (its largest part stays)."""
    parts = list(outline.geoms) if isinstance(outline, MultiPolygon) else [outline]
    if len(parts) == 1 and not parts[0].interiors:
        return outline
    largest = max(parts, key=lambda p: p.area)
    kept = [
        Polygon(p.exterior, [r for r in p.interiors if Polygon(r).area >= min_area])
        for p in parts
        if p is largest or p.area >= min_area
    ]
    return kept[0] if len(kept) == 1 else MultiPolygon(kept)


def simplify(geometries: Sequence[Outline], tolerance: float) -> list[Outline]:
    """Each outline simplified by `tolerance` degrees and rounded to DECIMALS: valid, non-empty,
    shared borders kept shared when the outlines form a valid coverage."""
    originals = np.array(geometries, dtype=object)
    simplified = _simplify_coverage(originals, tolerance)
    if simplified is None:
        # Alone, a polygon can lose what no screen shows: a hole or a part under a pixel (a city
        # drawn as the union of districts that leave gaps had thousands of such holes, and each
        # made the topology-preserving simplifier slower).
        speck = (tolerance / PIXEL_FRACTION) ** 2
        visible = np.array([_without_specks(g, speck) for g in originals], dtype=object)
        simplified = shapely.simplify(visible, tolerance, preserve_topology=True)
    # Plain rounding moves a shared vertex the same way in both neighbours (snap-rounding each
    # polygon on its own would not); the rare outline it breaks is snapped properly instead.
    rounded = shapely.set_precision(simplified, GRID_DEG, mode="pointwise")
    broken = ~shapely.is_valid(rounded) | shapely.is_empty(rounded)
    rounded[~broken] = shapely.remove_repeated_points(rounded[~broken])
    for i in np.flatnonzero(broken):
        snapped = shapely.set_precision(simplified[i], GRID_DEG)
        # A sub-metre sliver would vanish on the grid: keep it unrounded rather than lose it.
        rounded[i] = simplified[i] if snapped.is_empty else snapped
    orient = getattr(shapely, "orient_polygons", None)  # RFC 7946: exteriors counter-clockwise
    if orient is not None:
        rounded = orient(rounded)
    return list(rounded)


@dataclass(frozen=True, slots=True)
class OutlineFeature:
    """One area's simplified outline as a rendered GeoJSON Feature, with its bounding box."""

    code: str
    bbox: tuple[float, float, float, float]
    json: str


@dataclass(frozen=True, slots=True)
class Rendered:
    """A FeatureCollection as sent: the body, its gzip form and a strong ETag for each."""

    body: bytes
    gzipped: bytes
    etag: str  # of `body`, quoted
    gzip_etag: str  # of `gzipped` (a different representation needs a different strong tag)


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _bbox_json(bbox: Sequence[float]) -> str:
    # Bounds of rounded outlines are rounded already; rounding again could cut an unrounded one.
    return "[" + ",".join(repr(float(v)) for v in bbox) + "]"


def build_features(areas: Sequence[Area], tolerance: float) -> list[OutlineFeature]:
    """The areas' outlines simplified by `tolerance` degrees, as rendered Features."""
    if not areas:
        return []
    outlines = simplify([a.geometry for a in areas], tolerance)
    geometries = shapely.to_geojson(np.array(outlines, dtype=object))
    bounds = shapely.bounds(np.array(outlines, dtype=object))
    features = []
    for area, geometry, box in zip(areas, geometries, bounds, strict=True):
        bbox = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        properties: dict[str, str | None] = {
            "code": area.code, "name": area.name, "level": area.level, "parent": area.parent
        }  # fmt: skip
        text = (
            f'{{"type":"Feature","bbox":{_bbox_json(bbox)},'
            f'"properties":{_compact(properties)},"geometry":{geometry}}}'
        )
        features.append(OutlineFeature(area.code, bbox, text))
    return features


def render_collection(features: Sequence[OutlineFeature]) -> Rendered:
    """A FeatureCollection of `features` (with the bounding box of them all), gzipped once."""
    head = '{"type":"FeatureCollection",'
    if features:
        boxes = np.array([f.bbox for f in features])
        total = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
        head += f'"bbox":{_bbox_json(total)},'
    body = (head + '"features":[' + ",".join(f.json for f in features) + "]}").encode()
    gzipped = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)  # same bytes every time
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Rendered(body, gzipped, f'"{digest}"', f'"{digest}-gzip"')


@dataclass(frozen=True, slots=True)
class OutlineQuery:
    """What one response holds: a level's outlines (one district's streets) at a zoom bucket,
    limited to the codes a caller may see (None: all of them)."""

    level: Level
    parent: str | None  # the district, for streets only
    bucket: int
    codes: tuple[str, ...] | None = None


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """A thread-safe LRU that builds each missing value once, however many threads ask."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[K, threading.Lock] = {}

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # later askers wait here for the first one's result
            value = self.get(key)
            if value is None:
                value = build()
                with self._lock:
                    self._values[key] = value
                    if len(self._values) > self._max:
                        self._values.popitem(last=False)
        with self._lock:
            self._building.pop(key, None)
        return value


class OutlineCache:
    """Rendered outlines per hierarchy and query. The hierarchy object itself is part of every
    key: a process that loads another hierarchy (after `cityhub areas import`) never meets the old
    entries, and holding the object means its identity cannot be reused while they live."""

    def __init__(self) -> None:
        self._features: _Memo[tuple[Hierarchy, Level, str | None, int], list[OutlineFeature]]
        self._features = _Memo(MAX_FEATURE_SETS)
        self._rendered: _Memo[tuple[Hierarchy, OutlineQuery], Rendered] = _Memo(MAX_RENDERED)

    def cached(self, hierarchy: Hierarchy, query: OutlineQuery) -> Rendered | None:
        """The rendered outlines if they are at hand (cheap: call it on the event loop)."""
        return self._rendered.get((hierarchy, query))

    def render(self, hierarchy: Hierarchy, query: OutlineQuery) -> Rendered:
        """The rendered outlines, built when missing (CPU work: call it in a thread)."""

        def features() -> list[OutlineFeature]:
            members = outline_members(hierarchy, query.level, query.parent)
            return build_features(members, tolerance_deg(query.bucket))

        def rendered() -> Rendered:
            key = (hierarchy, query.level, query.parent, query.bucket)
            every = self._features.get_or_build(key, features)
            if query.codes is None:
                return render_collection(every)
            wanted = set(query.codes)
            return render_collection([f for f in every if f.code in wanted])

        return self._rendered.get_or_build((hierarchy, query), rendered)
