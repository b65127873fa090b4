"""Property tests: points inside a generated street geotag back to that street."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from shared.areas import Geotagger

STREETS = 1031


@settings(max_examples=200, deadline=None)
@given(index=st.integers(min_value=0, max_value=STREETS - 1))
def test_representative_point_geotags_to_its_street(geotagger: Geotagger, index: int) -> None:
    street = geotagger.streets[index]
    p = street.geometry.representative_point()
    tag = geotagger.locate(p.x, p.y)
    assert (tag.street, tag.method) == (street, "point")
    assert tag.district is not None and tag.district.code == street.parent


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=STREETS - 1),
    u=st.floats(min_value=0.0, max_value=1.0),
    v=st.floats(min_value=0.0, max_value=1.0),
)
def test_points_inside_a_street_geotag_to_it(
    geotagger: Geotagger, index: int, u: float, v: float
) -> None:
    street = geotagger.streets[index]
    minx, miny, maxx, maxy = street.geometry.bounds
    p = Point(minx + u * (maxx - minx), miny + v * (maxy - miny))
    # Clear of the border by 1e-9° (0.1 mm): closer than that, projecting the point into the
    # geotagger's metric plane may round it onto the neighbour's side, which is allowed.
    assume(street.geometry.contains(p) and street.geometry.exterior.distance(p) > 1e-9)
    tag = geotagger.locate(p.x, p.y)
    assert (tag.street, tag.method) == (street, "point")
