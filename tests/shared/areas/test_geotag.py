"""Geotagging points (single and batch) and the unlocated fallback."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, box

from shared.areas import (
    METHOD_NEAREST,
    METHOD_NONE,
    METHOD_POINT,
    Area,
    Geotag,
    Geotagger,
    Hierarchy,
)

M_PER_DEG_LAT = 110_540.0
CITY_BBOX = (105.287, 28.164, 110.190, 32.212)


def _shared_border(demo: Hierarchy) -> tuple[Area, Area, LineString]:
    """Two neighbouring streets of 渝中区 and the border they share."""
    streets = demo.children("500103")
    for i, a in enumerate(streets):
        for b in streets[i + 1 :]:
            border = a.geometry.intersection(b.geometry)
            if isinstance(border, LineString) and border.length > 1e-4:
                return a, b, border
    raise AssertionError("no neighbouring streets in 渝中区")


def _top_vertex(district: Area) -> tuple[float, float]:
    coords = shapely.get_coordinates(district.geometry)
    x, y = coords[np.argmax(coords[:, 1])]
    return float(x), float(y)


def test_point_inside_a_street(demo: Hierarchy, geotagger: Geotagger) -> None:
    street = demo.children("500103")[0]
    point = street.geometry.representative_point()
    tag = geotagger.locate(point.x, point.y)
    assert tag == Geotag(street, demo.get("500103"), demo.city, "point")
    assert tag.codes() == {"street": street.code, "district": "500103", "city": "500000"}


def test_point_on_a_shared_border_is_deterministic(demo: Hierarchy) -> None:
    a, b, border = _shared_border(demo)
    for fraction in (0.25, 0.5, 0.75):
        p = border.interpolate(fraction, normalized=True)
        answers = {Geotagger(demo).locate(p.x, p.y) for _ in range(2)}
        assert len(answers) == 1
        (tag,) = answers
        assert tag.street in (a, b) and tag.method in ("point", "nearest")
    # A vertex both polygons hold exactly is covered by both: the first-listed street wins.
    x, y = shapely.get_coordinates(border)[0]
    tag = Geotagger(demo).locate(float(x), float(y))
    owners = [s for s in demo.streets if s.geometry.intersects(Point(x, y))]
    assert tag.method == "point" and tag.street == owners[0]


def test_point_just_outside_the_city_edge_gets_the_nearest_street(
    demo: Hierarchy, geotagger: Geotagger
) -> None:
    # 城口县 is the northernmost district: nothing lies north of its top vertex.
    district = demo.get("500229")
    assert district is not None
    x, y = _top_vertex(district)
    owners = [s for s in demo.children("500229") if s.geometry.intersects(Point(x, y))]
    assert len(owners) == 1
    near = geotagger.locate(x, y + 200 / M_PER_DEG_LAT)
    assert near == Geotag(owners[0], district, demo.city, "nearest")
    assert geotagger.locate(x, y + 800 / M_PER_DEG_LAT).method == "none"
    wider = Geotagger(demo, tolerance_m=1000.0)
    assert wider.locate(x, y + 800 / M_PER_DEG_LAT).street == owners[0]


def test_point_in_a_gap_between_districts(demo: Hierarchy, geotagger: Geotagger) -> None:
    # The demo leaves land between district ellipses; a point there within 500 m of one street
    # and farther from every other gets that street.
    rng = np.random.default_rng(3)
    lons = rng.uniform(CITY_BBOX[0], CITY_BBOX[2], 200_000)
    lats = rng.uniform(CITY_BBOX[1], CITY_BBOX[3], 200_000)
    _, method = geotagger.locate_many(lons, lats)
    (gap,) = np.flatnonzero(method == METHOD_NEAREST)[:1]
    p = Point(lons[gap], lats[gap])
    assert not demo.city.geometry.intersects(p)
    tag = geotagger.locate(p.x, p.y)
    assert tag.method == "nearest" and tag.street is not None
    kx = math.cos(math.radians(30.19)) * 111_320
    # Distances in metres, roughly (the test's own projection): the answer is the closest street.
    distances = {
        s.code: shapely.distance(
            shapely.transform(s.geometry, lambda c: c * [kx, M_PER_DEG_LAT]),
            Point(p.x * kx, p.y * M_PER_DEG_LAT),
        )
        for s in demo.streets
    }
    closest = min(distances, key=lambda c: distances[c])
    assert tag.street.code == closest and distances[closest] <= 500 * 1.01


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(116.4, 39.9), (100.0, 20.0), (-106.5, 29.5), (math.nan, 29.5), (106.5, math.inf)],
)
def test_point_far_outside_is_unlocated(
    demo: Hierarchy, geotagger: Geotagger, lon: float, lat: float
) -> None:
    assert geotagger.locate(lon, lat) == Geotag(None, None, demo.city, "none")
    index, method = geotagger.locate_many(np.array([lon]), np.array([lat]))
    assert (index[0], method[0]) == (-1, METHOD_NONE)


def test_zero_tolerance_never_says_nearest(demo: Hierarchy) -> None:
    district = demo.get("500229")
    assert district is not None
    x, y = _top_vertex(district)
    assert Geotagger(demo, tolerance_m=0.0).locate(x, y + 1 / M_PER_DEG_LAT).method == "none"


def test_batch_agrees_with_single(demo: Hierarchy, geotagger: Geotagger) -> None:
    rng = np.random.default_rng(11)
    lons = rng.uniform(CITY_BBOX[0] - 0.2, CITY_BBOX[2] + 0.2, 3000)
    lats = rng.uniform(CITY_BBOX[1] - 0.2, CITY_BBOX[3] + 0.2, 3000)
    # Plus points scattered within about a kilometre of street borders, to reach every path.
    border = shapely.get_coordinates(shapely.boundary([s.geometry for s in demo.streets]))
    picks = border[rng.integers(0, len(border), 3000)]
    lons = np.concatenate([lons, picks[:, 0] + rng.normal(0, 0.005, 3000)])
    lats = np.concatenate([lats, picks[:, 1] + rng.normal(0, 0.005, 3000)])
    index, method = geotagger.locate_many(lons, lats)
    assert index.dtype.kind == "i" and method.dtype == np.uint8
    singles = [geotagger.locate(float(x), float(y)) for x, y in zip(lons, lats, strict=True)]
    batch = [geotagger.to_geotag(int(i), int(m)) for i, m in zip(index, method, strict=True)]
    assert singles == batch
    counts = np.bincount(method, minlength=3)
    assert counts[METHOD_NONE] and counts[METHOD_POINT] and counts[METHOD_NEAREST]
    located = index >= 0
    assert [geotagger.streets[i] for i in index[located][:5]] == [
        t.street for t, ok in zip(batch, located, strict=True) if ok
    ][:5]


def test_batch_agrees_with_brute_force(demo: Hierarchy, geotagger: Geotagger) -> None:
    rng = np.random.default_rng(5)
    lons = rng.uniform(CITY_BBOX[0], CITY_BBOX[2], 20_000)
    lats = rng.uniform(CITY_BBOX[1], CITY_BBOX[3], 20_000)
    index, method = geotagger.locate_many(lons, lats)
    polygons = np.array([s.geometry for s in geotagger.streets], dtype=object)
    points = shapely.points(lons, lats)
    inside = shapely.STRtree(polygons).query(points, predicate="intersects")
    expected = np.full(lons.size, -1)
    expected[inside[0][::-1]] = inside[1][::-1]  # the lowest street index wins a shared border
    hit = method == METHOD_POINT
    assert np.array_equal(hit, expected >= 0)
    assert np.array_equal(index[hit], expected[hit])


def test_empty_and_mismatched_batches(geotagger: Geotagger) -> None:
    index, method = geotagger.locate_many(np.array([]), np.array([]))
    assert index.size == 0 and method.size == 0
    with pytest.raises(ValueError, match="same length"):
        geotagger.locate_many(np.zeros(3), np.zeros(2))


def test_tag_prefers_the_point_then_the_address(demo: Hierarchy, geotagger: Geotagger) -> None:
    street = demo.children("500101")[3]
    p = street.geometry.representative_point()
    assert geotagger.tag(p.x, p.y, "渝中区解放碑街道").street == street
    by_address = geotagger.tag(None, None, "渝中区解放碑街道")
    assert by_address.method == "address" and by_address.street is not None
    assert by_address.street.name == "解放碑街道"
    assert geotagger.tag(116.4, 39.9, "渝中区").district == demo.get("500103")
    assert geotagger.tag(116.4, 39.9, None) == Geotag(None, None, demo.city, "none")
    assert geotagger.tag(None, None, "") == Geotag(None, None, demo.city, "none")


def test_negative_tolerance_is_refused(demo: Hierarchy) -> None:
    with pytest.raises(ValueError, match="tolerance_m"):
        Geotagger(demo, tolerance_m=-1.0)


def _scaled(geom: Any) -> Any:
    """A shape drawn on a 0.01° grid, placed at 106.5°E 29.5°N."""
    return shapely.transform(geom, lambda c: c * 0.01 + [106.5, 29.5])


def test_holes_multipolygons_and_cross_district_overlaps() -> None:
    donut = box(0, 0, 3, 3).difference(box(1, 1, 2, 2))
    areas = [
        Area("C", "city", "city", None, _scaled(box(0, 0, 8, 3))),
        Area("D1", "d1", "district", "C", _scaled(box(0, 0, 3, 3))),
        Area("D2", "d2", "district", "C", _scaled(box(4, 0, 7, 3))),
        Area("D3", "d3", "district", "C", _scaled(box(6.5, 0, 8, 3))),
        Area("DONUT", "donut", "street", "D1", _scaled(donut)),
        Area("HOLE", "hole", "street", "D1", _scaled(box(1, 1, 2, 2))),
        Area(
            "MULTI",
            "multi",
            "street",
            "D2",
            _scaled(MultiPolygon([box(4, 0, 5, 3), box(6, 0, 7, 3)])),
        ),
        Area("MID", "mid", "street", "D2", _scaled(box(5, 0, 6, 3))),
        Area("OVER", "over", "street", "D3", _scaled(box(6.5, 0, 8, 3))),  # overlaps MULTI
    ]
    tagger = Geotagger(Hierarchy(areas), tolerance_m=300.0)
    rng = np.random.default_rng(2)
    lons = rng.uniform(106.49, 106.59, 20_000)
    lats = rng.uniform(29.49, 29.54, 20_000)
    index, method = tagger.locate_many(lons, lats)

    # Brute force in the geotagger's documented plane.
    streets = tagger.streets
    lat0 = math.radians((29.5 + 29.53) / 2)
    scale = [math.cos(lat0) * 111_320, M_PER_DEG_LAT]
    planar = [shapely.transform(s.geometry, lambda c: c * scale) for s in streets]
    for i in range(lons.size):
        p = Point(lons[i] * scale[0], lats[i] * scale[1])
        covering = [k for k, g in enumerate(planar) if g.intersects(p)]
        if covering:
            assert (index[i], method[i]) == (covering[0], METHOD_POINT)
            continue
        distances = [g.distance(p) for g in planar]
        best = int(np.argmin(distances))
        if distances[best] <= 300.0:
            assert (index[i], method[i]) == (best, METHOD_NEAREST)
        else:
            assert (index[i], method[i]) == (-1, METHOD_NONE)
    assert set(index[method == METHOD_POINT]) == {0, 1, 2, 3, 4}
    assert tagger.locate(106.5 + 0.015, 29.5 + 0.015).street == streets[1]  # in the hole
    assert tagger.locate(106.5 + 0.068, 29.5 + 0.015).street == streets[2]  # MULTI before OVER
