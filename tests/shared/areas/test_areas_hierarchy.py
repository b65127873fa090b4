"""Hierarchy validation, GeoJSON import errors and the GeoJSON round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely.geometry import box

from shared.areas import Area, Hierarchy, HierarchyError, load_geojson_file


def _feature(code: str, level: str, parent: str | None, geometry: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": f"name {code}", "level": level, "parent": parent},
        "geometry": shapely.geometry.mapping(geometry),
    }


def _small_city() -> dict[str, Any]:
    """A 2×1 city: districts D1 (west) and D2 (east), each split into two streets."""
    features = [
        _feature("C", "city", None, box(0, 0, 2, 1)),
        _feature("D1", "district", "C", box(0, 0, 1, 1)),
        _feature("D2", "district", "C", box(1, 0, 2, 1)),
        _feature("S11", "street", "D1", box(0, 0, 1, 0.5)),
        _feature("S12", "street", "D1", box(0, 0.5, 1, 1)),
        _feature("S21", "street", "D2", box(1, 0, 2, 0.5)),
        _feature("S22", "street", "D2", box(1, 0.5, 2, 1)),
    ]
    return {"type": "FeatureCollection", "features": features}


def test_accessors() -> None:
    h = Hierarchy.from_geojson(_small_city())
    assert h.city.code == "C"
    assert [d.code for d in h.districts] == ["D1", "D2"]
    assert [s.code for s in h.streets] == ["S11", "S12", "S21", "S22"]
    assert [a.code for a in h.children("D2")] == ["S21", "S22"]
    assert [a.code for a in h.children("C")] == ["D1", "D2"]
    assert h.children("S11") == [] and h.children("nope") == []
    assert h.get("S12") == Area("S12", "name S12", "street", "D1", box(0, 0.5, 1, 1))
    assert h.get("nope") is None
    assert len(h) == 7
    assert [a.code for a in h] == ["C", "D1", "D2", "S11", "S12", "S21", "S22"]


def test_area_equality_ignores_geometry() -> None:
    a = Area("S", "n", "street", "D", box(0, 0, 1, 1))
    b = Area("S", "n", "street", "D", box(5, 5, 6, 6))
    assert a == b and hash(a) == hash(b)


def test_geojson_round_trip(tmp_path: Path) -> None:
    original = Hierarchy.from_geojson(_small_city())
    data = original.to_geojson()
    again = Hierarchy.from_geojson(json.loads(json.dumps(data)))
    assert list(again) == list(original)
    for a, b in zip(again, original, strict=True):
        assert a.geometry.equals_exact(b.geometry, 0.0)
    path = tmp_path / "city.geojson"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_geojson_file(path).to_geojson() == data


def test_demo_geojson_round_trip(demo: Hierarchy) -> None:
    data = demo.to_geojson()
    again = Hierarchy.from_geojson(json.loads(json.dumps(data)))
    assert again.to_geojson() == data
    assert list(again) == list(demo)


def test_overlapping_streets_are_named() -> None:
    data = _small_city()
    data["features"][4]["geometry"] = shapely.geometry.mapping(box(0, 0.4, 1, 1))
    with pytest.raises(HierarchyError, match=r"'S11'.*'S12'.*overlap"):
        Hierarchy.from_geojson(data)


def test_street_inside_another_street_is_an_overlap() -> None:
    data = _small_city()
    data["features"][4]["geometry"] = shapely.geometry.mapping(box(0.2, 0.1, 0.3, 0.2))
    with pytest.raises(HierarchyError, match=r"'S11'.*'S12'.*overlap"):
        Hierarchy.from_geojson(data)


def test_touching_streets_are_fine() -> None:
    # Shared borders (and a shared corner across districts) are not overlaps.
    assert len(Hierarchy.from_geojson(_small_city()).streets) == 4


def test_unknown_parent_is_named() -> None:
    data = _small_city()
    data["features"][6]["properties"]["parent"] = "D9"
    with pytest.raises(HierarchyError, match=r"street 'S22'.*'D9'"):
        Hierarchy.from_geojson(data)


def test_street_under_a_street_is_refused() -> None:
    data = _small_city()
    data["features"][6]["properties"]["parent"] = "S21"
    with pytest.raises(HierarchyError, match=r"street 'S22'.*not a known district"):
        Hierarchy.from_geojson(data)


def test_district_must_hang_from_the_city() -> None:
    data = _small_city()
    data["features"][2]["properties"]["parent"] = "D1"
    with pytest.raises(HierarchyError, match=r"district 'D2'.*not the city"):
        Hierarchy.from_geojson(data)


@pytest.mark.parametrize("key", ["code", "name", "level", "parent"])
def test_missing_property_names_the_feature(key: str) -> None:
    data = _small_city()
    del data["features"][5]["properties"][key]
    label = "feature #5" if key == "code" else "'S21'"
    with pytest.raises(HierarchyError, match=rf"{label}.*missing property '{key}'"):
        Hierarchy.from_geojson(data)


def test_unknown_level_is_named() -> None:
    data = _small_city()
    data["features"][3]["properties"]["level"] = "province"
    with pytest.raises(HierarchyError, match=r"'S11'.*unknown level 'province'"):
        Hierarchy.from_geojson(data)


def test_non_polygon_geometry_is_named() -> None:
    data = _small_city()
    data["features"][3]["geometry"] = {"type": "Point", "coordinates": [0.5, 0.5]}
    with pytest.raises(HierarchyError, match=r"'S11'.*Polygon or MultiPolygon.*'Point'"):
        Hierarchy.from_geojson(data)


def test_malformed_and_invalid_geometry_is_named() -> None:
    data = _small_city()
    data["features"][3]["geometry"] = {"type": "Polygon", "coordinates": "nonsense"}
    with pytest.raises(HierarchyError, match=r"'S11'.*malformed geometry"):
        Hierarchy.from_geojson(data)
    data = _small_city()
    bow_tie = [[[0, 0], [1, 0.5], [1, 0], [0, 0.5], [0, 0]]]
    data["features"][3]["geometry"] = {"type": "Polygon", "coordinates": bow_tie}
    with pytest.raises(HierarchyError, match=r"'S11'.*invalid"):
        Hierarchy.from_geojson(data)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"type": "Feature"},
        {"type": "FeatureCollection"},
        {"type": "FeatureCollection", "features": 3},
    ],
)
def test_wrong_json_shape(data: Any) -> None:
    with pytest.raises(HierarchyError, match="FeatureCollection"):
        Hierarchy.from_geojson(data)


def test_feature_that_is_not_an_object() -> None:
    data = _small_city()
    data["features"].append("oops")
    with pytest.raises(HierarchyError, match=r"feature #7: not a GeoJSON object"):
        Hierarchy.from_geojson(data)


def test_exactly_one_city() -> None:
    data = _small_city()
    no_city = copy.deepcopy(data)
    del no_city["features"][0]
    with pytest.raises(HierarchyError, match=r"exactly one city.*none"):
        Hierarchy.from_geojson(no_city)
    two = copy.deepcopy(data)
    two["features"].append(_feature("C2", "city", None, box(5, 5, 6, 6)))
    with pytest.raises(HierarchyError, match=r"exactly one city.*'C', 'C2'"):
        Hierarchy.from_geojson(two)


def test_duplicate_code_is_named() -> None:
    data = _small_city()
    data["features"][6]["properties"]["code"] = "S21"
    with pytest.raises(HierarchyError, match=r"'S21'.*duplicate"):
        Hierarchy.from_geojson(data)


def test_bad_json_file_is_a_hierarchy_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.geojson"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(HierarchyError, match="not valid JSON"):
        load_geojson_file(path)
