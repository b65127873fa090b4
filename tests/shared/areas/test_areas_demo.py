"""The generated Chongqing demo: real names and codes, determinism, and sound geometry."""

from __future__ import annotations

import csv
import io
import json
import math
from importlib.resources import files

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from shared.areas import Hierarchy, generate_demo

# The plane the demo sizes districts in (km): x = lon·cos(lat0)·111.32, y = lat·110.57.
LAT0 = (28.164 + 32.212) / 2
KM2_PER_DEG2 = math.cos(math.radians(LAT0)) * 111.32 * 110.57


def _csv(name: str) -> list[dict[str, str]]:
    text = (files("shared.areas") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _dumps(h: Hierarchy) -> str:
    return json.dumps(h.to_geojson(), ensure_ascii=False, sort_keys=True)


def test_counts_names_and_codes(demo: Hierarchy) -> None:
    assert (demo.city.code, demo.city.name, demo.city.parent) == ("500000", "重庆市", None)
    districts = _csv("chongqing_districts.csv")
    assert [(d.code, d.name, d.parent) for d in demo.districts] == [
        (row["centre_id"], row["name_zh"], "500000") for row in districts
    ]
    streets = _csv("chongqing_streets_1031.csv")
    assert len(demo.streets) == 1031
    assert {(s.code, s.name, s.parent) for s in demo.streets} == {
        (row["code9"], row["name_zh"], row["governance_centre_41"]) for row in streets
    }
    assert len(demo) == 1 + 41 + 1031
    for row in districts:
        assert len(demo.children(row["centre_id"])) == int(row["streets_count"])


def test_same_seed_same_map_other_seed_other_map(demo: Hierarchy) -> None:
    assert _dumps(generate_demo()) == _dumps(demo)
    other = generate_demo(seed=7)
    assert _dumps(other) != _dumps(demo)
    # Only the streets move; the districts come from the published figures.
    assert [d.geometry.wkb for d in other.districts] == [d.geometry.wkb for d in demo.districts]


def test_districts_are_polygons_that_do_not_overlap(demo: Hierarchy) -> None:
    geoms = np.array([d.geometry for d in demo.districts], dtype=object)
    assert all(isinstance(g, Polygon) for g in geoms)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
    assert overlap.max(initial=0.0) < 1e-9


def test_city_is_the_union_of_its_districts(demo: Hierarchy) -> None:
    total = sum(d.geometry.area for d in demo.districts)
    assert demo.city.geometry.area == pytest.approx(total, rel=1e-9)
    minx, miny, maxx, maxy = demo.city.geometry.bounds
    assert 105.2 < minx < maxx < 110.3 and 28.1 < miny < maxy < 32.3


def test_streets_tile_their_district(demo: Hierarchy) -> None:
    for district in demo.districts:
        streets = [s.geometry for s in demo.children(district.code)]
        union = shapely.union_all(streets)
        area = district.geometry.area
        # Union equal to the district: no gaps; sum equal to the union: no overlaps.
        assert union.area == pytest.approx(area, rel=1e-9), district.code
        assert sum(s.area for s in streets) == pytest.approx(area, rel=1e-9), district.code
        assert shapely.symmetric_difference(union, district.geometry).area < 1e-9 * area
        assert all(isinstance(s, Polygon) and s.is_valid for s in streets)


def test_district_areas_follow_the_published_figures(demo: Hierarchy) -> None:
    published = {
        row["name_zh"]: float(row["area_km2_after_zone_carveout_est"])
        for row in _csv("chongqing_districts_geometry_stats.csv")
    }
    ratios = {d.name: d.geometry.area * KM2_PER_DEG2 / published[d.name] for d in demo.districts}
    assert all(0.6 < r < 1.05 for r in ratios.values()), ratios
    # Most districts fit exactly; only crowded Voronoi cells keep a district smaller.
    assert sum(abs(r - 1) < 0.01 for r in ratios.values()) >= 30


def test_districts_sit_in_their_published_bounding_boxes(demo: Hierarchy) -> None:
    stats = {row["name_zh"]: row for row in _csv("chongqing_districts_geometry_stats.csv")}
    for d in demo.districts:
        row = stats[d.name]
        if not row["bbox_minlon"]:
            continue  # the three zones publish no bounding box
        minx, miny, maxx, maxy = d.geometry.bounds
        assert float(row["bbox_minlon"]) - 1e-9 <= minx and maxx <= float(row["bbox_maxlon"]) + 1e-9
        assert float(row["bbox_minlat"]) - 1e-9 <= miny and maxy <= float(row["bbox_maxlat"]) + 1e-9
