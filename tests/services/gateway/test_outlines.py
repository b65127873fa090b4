"""Area outlines for the screens' maps: simplified, complete and valid, small, cached by ETag,
filtered by scope, and replaced with the hierarchy."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import shapely
from shapely.geometry import box, shape

from services.gateway import outlines
from services.gateway.outlines import (
    Outline,
    OutlineCache,
    OutlineQuery,
    build_features,
    simplify,
    tolerance_deg,
    zoom_bucket,
)
from services.hub import create_hub_app
from shared.areas import Area, Hierarchy, generate_demo, load_geojson_file
from shared.db.areas import replace_hierarchy
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving

CITY = "500000"
YUZHONG = "500103"  # 渝中区, 11 streets
NANAN = "500108"
URL = "/api/v1/areas/outlines"
# Gzipped sizes measured on the demo map (city 5.3 KB, 41 districts 6.2 KB, the 52 streets of
# 万州区 3.1 KB; a detailed stand-in for a city's own import: 8.5, 12.1 and 23.5 KB), with margin:
# the wall's first load has 1.5 MB for everything.
MAX_CITY_AND_DISTRICTS_GZ = 40_000  # bytes
MAX_STREETS_GZ = 20_000  # bytes, the largest district's streets

Headers = dict[str, dict[str, str]]


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Headers]]:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        street = runtime_of(app).hierarchy.children(YUZHONG)[0].code
        await add_user(app, "city", "manager", "city")
        await add_user(app, "yz", "dispatcher", f"district:{YUZHONG}")
        await add_user(app, "st", "field_staff", f"street:{street}", department=f"office@{street}")
        headers = {name: await login(client, name) for name in ("city", "yz", "st")}
        headers["key"] = {"X-API-Key": await add_key(app, "sensors-inc")}
        headers["street"] = {"code": street}
        yield client, headers


async def _collection(client: httpx.AsyncClient, query: str, who: dict[str, str]) -> Any:
    reply = await client.get(f"{URL}?{query}", headers=who)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/geo+json"
    return reply.json()


def _sizes(reply: httpx.Response) -> tuple[int, int]:
    """(raw, gzipped) bytes of a gzipped answer: what it decodes to, and what was sent."""
    assert reply.headers["content-encoding"] == "gzip"
    return len(reply.content), int(reply.headers["content-length"])


def _near(outline: Outline, original: Outline, tolerance: float) -> bool:
    """True when neither shape strays more than a pixel (two tolerances) outside the other: what
    lies further out in total covers less than a pixel (a dropped sub-pixel hole, at most)."""
    pixel = 2 * tolerance
    outside = outline.difference(original.buffer(pixel)).area
    missing = original.difference(outline.buffer(pixel)).area
    return bool(outside < pixel**2 and missing < pixel**2)


def _check_features(collection: Any, expected: list[Area]) -> None:
    """Every expected area once, with its properties, a valid non-empty outline near the original
    (at the level's default zoom) and its bounding box; the collection's box holds them all."""
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert [f["properties"]["code"] for f in features] == [a.code for a in expected]
    for feature, area in zip(features, expected, strict=True):
        assert feature["properties"] == {
            "code": area.code, "name": area.name, "level": area.level, "parent": area.parent
        }  # fmt: skip
        outline = shape(feature["geometry"])
        assert outline.is_valid and not outline.is_empty, area.code
        assert outline.geom_type in ("Polygon", "MultiPolygon")
        assert _near(outline, area.geometry, tolerance_deg(zoom_bucket(area.level, None)))
        west, south, east, north = feature["bbox"]
        assert outline.bounds == pytest.approx((west, south, east, north), abs=1e-9)
        cw, cs, ce, cn = collection["bbox"]
        assert cw <= west and cs <= south and ce >= east and cn >= north


async def test_city_and_districts_are_complete_valid_and_small(
    hub: tuple[httpx.AsyncClient, Headers],
) -> None:
    client, h = hub
    hierarchy = generate_demo()
    city = await _collection(client, "level=city", h["city"])
    _check_features(city, [hierarchy.city])
    districts = await _collection(client, "level=district", h["city"])
    _check_features(districts, hierarchy.districts)
    assert len(districts["features"]) == 41
    # Explicitly under the city, the same answer.
    same = await client.get(f"{URL}?level=district&parent={CITY}", headers=h["city"])
    assert same.json() == districts
    # Five decimals at most.
    text = json.dumps(districts["features"][0]["geometry"])
    assert all(len(n.split(".")[1]) <= 5 for n in text.replace("]", ",").split(",") if "." in n)

    sizes = {
        level: _sizes(await client.get(f"{URL}?level={level}", headers=h["city"]))
        for level in ("city", "district")
    }
    print(f"\noutlines bytes (raw, gzip): {sizes}")
    assert sum(gz for _raw, gz in sizes.values()) < MAX_CITY_AND_DISTRICTS_GZ


async def test_streets_of_one_district(hub: tuple[httpx.AsyncClient, Headers]) -> None:
    client, h = hub
    hierarchy = generate_demo()
    yuzhong = await _collection(client, f"level=street&parent={YUZHONG}", h["city"])
    _check_features(yuzhong, hierarchy.children(YUZHONG))
    assert len(yuzhong["features"]) == 11

    largest = Counter(s.parent or "" for s in hierarchy.streets).most_common(1)[0][0]
    reply = await client.get(f"{URL}?level=street&parent={largest}", headers=h["key"])
    _check_features(reply.json(), hierarchy.children(largest))
    raw, gz = _sizes(reply)
    print(f"\nstreets of {largest} ({len(reply.json()['features'])}): {raw} B raw, {gz} B gzip")
    assert gz < MAX_STREETS_GZ


async def test_bad_requests(hub: tuple[httpx.AsyncClient, Headers]) -> None:
    client, h = hub
    for query, status in (
        ("level=street", 422),  # streets come one district at a time
        (f"level=street&parent={CITY}", 422),  # of a district, not the city
        (f"level=district&parent={YUZHONG}", 422),
        (f"level=city&parent={CITY}", 422),
        ("level=street&parent=999999", 404),
        ("level=district&parent=999999", 404),
        ("level=town", 422),
        ("level=district&zoom=25", 422),
        ("level=district&zoom=-1", 422),
        ("", 422),
    ):
        reply = await client.get(f"{URL}?{query}", headers=h["city"])
        assert reply.status_code == status, query
        assert "detail" in reply.json()
    assert (await client.get(f"{URL}?level=city")).status_code == 401


async def test_etag_and_304(hub: tuple[httpx.AsyncClient, Headers]) -> None:
    client, h = hub
    first = await client.get(f"{URL}?level=district", headers=h["city"])
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('-gzip"')
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["vary"] == "Accept-Encoding"

    for tag in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(
            f"{URL}?level=district", headers={**h["city"], "If-None-Match": tag}
        )
        assert again.status_code == 304, tag
        assert again.content == b"" and again.headers["etag"] == etag
    stale = await client.get(f"{URL}?level=district", headers={**h["city"], "If-None-Match": '"x"'})
    assert stale.status_code == 200 and stale.content == first.content

    # Without gzip: the same JSON, its own strong ETag, which validates the gzip form too.
    plain = await client.get(
        f"{URL}?level=district", headers={**h["city"], "Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    assert plain.content == first.content
    assert plain.headers["etag"] == etag.removesuffix('-gzip"') + '"'
    assert int(plain.headers["content-length"]) == len(plain.content)
    for refusal in ("gzip;q=0, br", "gzip;q=0, *", "*;q=0"):
        refused = await client.get(
            f"{URL}?level=district", headers={**h["city"], "Accept-Encoding": refusal}
        )
        assert "content-encoding" not in refused.headers, refusal
    anything = await client.get(
        f"{URL}?level=district", headers={**h["city"], "Accept-Encoding": "*"}
    )
    assert anything.headers["content-encoding"] == "gzip"
    cross = await client.get(
        f"{URL}?level=district",
        headers={**h["city"], "If-None-Match": plain.headers["etag"]},
    )
    assert cross.status_code == 304 and cross.headers["etag"] == etag

    # Another zoom, other outlines: fewer vertices further out, more further in.
    def vertices(collection: Any) -> int:
        return sum(
            shapely.get_num_coordinates(shape(f["geometry"])) for f in collection["features"]
        )

    coarse = await client.get(f"{URL}?level=district&zoom=6", headers=h["city"])
    fine = await client.get(f"{URL}?level=district&zoom=14", headers=h["city"])
    assert coarse.headers["etag"] != etag != fine.headers["etag"]
    assert vertices(coarse.json()) < vertices(first.json()) < vertices(fine.json())


async def test_scope_filters_outlines(hub: tuple[httpx.AsyncClient, Headers]) -> None:
    client, h = hub
    everyone = await client.get(f"{URL}?level=district", headers=h["city"])
    own = await client.get(f"{URL}?level=district", headers=h["yz"])
    assert [f["properties"]["code"] for f in own.json()["features"]] == [YUZHONG]
    assert own.headers["etag"] != everyone.headers["etag"]
    # The city manager's ETag does not validate the district dispatcher's (one browser, two users).
    reused = await client.get(
        f"{URL}?level=district", headers={**h["yz"], "If-None-Match": everyone.headers["etag"]}
    )
    assert reused.status_code == 200 and len(reused.json()["features"]) == 1
    streets = await _collection(client, f"level=street&parent={YUZHONG}", h["yz"])
    assert len(streets["features"]) == 11
    assert (
        await client.get(f"{URL}?level=street&parent={NANAN}", headers=h["yz"])
    ).status_code == 404
    city = await _collection(client, "level=city", h["yz"])
    assert [f["properties"]["code"] for f in city["features"]] == [CITY]

    street = h["street"]["code"]
    mine = await _collection(client, "level=district", h["st"])
    assert [f["properties"]["code"] for f in mine["features"]] == [YUZHONG]
    siblings = await _collection(client, f"level=street&parent={YUZHONG}", h["st"])
    assert [f["properties"]["code"] for f in siblings["features"]] == [street]
    assert (
        await client.get(f"{URL}?level=street&parent={NANAN}", headers=h["st"])
    ).status_code == 404


def _custom_city() -> dict[str, Any]:
    """A small city of its own: two districts side by side, each cut into two streets."""
    features: list[dict[str, Any]] = []

    def add(code: str, name: str, level: str, parent: str | None, *bounds: float) -> None:
        geometry = shapely.geometry.mapping(box(*bounds))
        properties = {"code": code, "name": name, "level": level, "parent": parent}
        features.append({"type": "Feature", "properties": properties, "geometry": geometry})

    add("990000", "示例市", "city", None, 120.0, 30.0, 120.2, 30.1)
    add("990001", "东区", "district", "990000", 120.1, 30.0, 120.2, 30.1)
    add("990002", "西区", "district", "990000", 120.0, 30.0, 120.1, 30.1)
    for district, west in (("990001", 120.1), ("990002", 120.0)):
        add(f"{district}001", "北街道", "street", district, west, 30.05, west + 0.1, 30.1)
        add(f"{district}002", "南街道", "street", district, west, 30.0, west + 0.1, 30.05)
    return {"type": "FeatureCollection", "features": features}


async def test_imported_hierarchy_changes_outlines_and_etag(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        await add_user(app, "city", "manager", "city")
        before = await client.get(f"{URL}?level=district", headers=await login(client, "city"))
        assert len(before.json()["features"]) == 41
        # What `cityhub areas import` does, then a restart (it tells running services to).
        path = tmp_path / "city.geojson"
        path.write_text(json.dumps(_custom_city(), ensure_ascii=False), encoding="utf-8")
        async with runtime_of(app).sessions() as session, session.begin():
            await replace_hierarchy(session, load_geojson_file(path))

    restarted = create_hub_app(embedded_settings)
    async with serving(restarted) as client:
        who = await login(client, "city")
        after = await client.get(f"{URL}?level=district", headers=who)
        assert after.status_code == 200
        assert after.headers["etag"] != before.headers["etag"]
        names = {f["properties"]["code"]: f["properties"]["name"] for f in after.json()["features"]}
        assert names == {"990001": "东区", "990002": "西区"}
        assert after.json()["bbox"] == [120.0, 30.0, 120.2, 30.1]
        streets = await client.get(f"{URL}?level=street&parent=990001", headers=who)
        assert [f["properties"]["code"] for f in streets.json()["features"]] == [
            "990001001",
            "990001002",
        ]
        assert (
            await client.get(f"{URL}?level=street&parent={YUZHONG}", headers=who)
        ).status_code == 404


# ---- the pure module -------------------------------------------------------------------------


def test_zoom_buckets_and_tolerances() -> None:
    assert zoom_bucket("district", None) == 9 and zoom_bucket("city", None) == 9
    assert zoom_bucket("street", None) == 12
    assert zoom_bucket("street", 0) == outlines.MIN_ZOOM
    assert zoom_bucket("district", 24) == outlines.MAX_ZOOM
    assert zoom_bucket("district", 11) == 11
    # Half a pixel: about 150 m at the city view, about 20 m on a district's streets.
    m_per_deg = 110_574
    assert 120 < tolerance_deg(9) * m_per_deg < 170
    assert 15 < tolerance_deg(12) * m_per_deg < 25
    assert tolerance_deg(10) == pytest.approx(tolerance_deg(9) / 2)


def _wiggle(xy: np.ndarray) -> np.ndarray:
    """A smooth displacement of up to about 150 m (gradient well below 1: shapes stay valid)."""
    x, y = xy[:, 0], xy[:, 1]
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for amplitude, k, phase in ((0.001, 150.0, 0.3), (0.0003, 500.0, 1.1), (0.0001, 1500.0, 2.0)):
        dx += amplitude * np.sin(k * y + phase) * np.cos(0.7 * k * x)
        dy += amplitude * np.sin(k * x + 2 * phase) * np.cos(0.6 * k * y)
    return np.column_stack([x + dx, y + dy])


def _detailed(areas: list[Area]) -> list[Area]:
    """The areas as a city's own survey might draw them: a vertex every 50 m, wiggling borders
    (shared borders stay shared: the same points move the same way)."""
    geometries = shapely.segmentize(np.array([a.geometry for a in areas]), 0.0005)
    geometries = shapely.set_precision(shapely.transform(geometries, _wiggle), 1e-9)
    return [
        Area(a.code, a.name, a.level, a.parent, g) for a, g in zip(areas, geometries, strict=True)
    ]


def test_detailed_outlines_lose_vertices_not_shape() -> None:
    demo = generate_demo()
    streets = _detailed(demo.children(YUZHONG) + demo.children("500101"))
    districts = _detailed(demo.districts)
    for areas, level in ((streets, "street"), (districts, "district")):
        tolerance = tolerance_deg(zoom_bucket(level, None))  # type: ignore[arg-type]
        originals = [a.geometry for a in areas]
        simplified = simplify(originals, tolerance)
        before = sum(shapely.get_num_coordinates(g) for g in originals)
        after = sum(shapely.get_num_coordinates(g) for g in simplified)
        assert after * 4 < before, (level, before, after)
        for original, outline in zip(originals, simplified, strict=True):
            assert outline.is_valid and not outline.is_empty
            assert _near(outline, original, tolerance)
    # Neighbouring streets still share their borders exactly (coverage simplification).
    yuzhong = [a.geometry for a in streets if a.parent == YUZHONG]
    assert shapely.coverage_is_valid(np.array(simplify(yuzhong, tolerance_deg(12))))
    features = build_features([a for a in streets if a.parent == YUZHONG], tolerance_deg(12))
    assert [f.code for f in features] == [a.code for a in streets if a.parent == YUZHONG]


def test_cache_is_per_hierarchy_and_builds_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = outlines.build_features

    def counting(areas: list[Area], tolerance: float) -> list[outlines.OutlineFeature]:
        calls.append(len(areas))
        return real(areas, tolerance)

    monkeypatch.setattr(outlines, "build_features", counting)
    cache = OutlineCache()
    demo = generate_demo()
    everything = OutlineQuery("district", None, 9)
    assert cache.cached(demo, everything) is None
    full = cache.render(demo, everything)
    assert cache.cached(demo, everything) is full and cache.render(demo, everything) is full
    subset = cache.render(demo, OutlineQuery("district", None, 9, (YUZHONG,)))
    assert [f["properties"]["code"] for f in json.loads(subset.body)["features"]] == [YUZHONG]
    assert gzip.decompress(full.gzipped) == full.body
    assert calls == [41]  # the subset came from the same simplified districts
    # The same map loaded again (a restart) is another hierarchy object: built anew, same bytes.
    reloaded = Hierarchy(list(demo))
    again = cache.render(reloaded, everything)
    assert calls == [41, 41] and again.etag == full.etag
