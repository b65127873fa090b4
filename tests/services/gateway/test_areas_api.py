"""Areas and geotag read API: scope filtering and bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving

YUZHONG = "500103"


@pytest.fixture
async def hub(
    embedded_settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
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


async def test_every_route_needs_credentials(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, _ = hub
    for path in ("/api/v1/areas", f"/api/v1/areas/{YUZHONG}", "/api/v1/geotag?lon=106.5&lat=29.5"):
        reply = await client.get(path)
        assert reply.status_code == 401, path
        assert reply.headers["www-authenticate"] == "Bearer"
    bad = await client.get("/api/v1/areas", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401
    assert (
        await client.get("/api/v1/areas", headers={"X-API-Key": "chk_wrong"})
    ).status_code == 401


async def test_list_by_level_and_parent(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    districts = (await client.get("/api/v1/areas?level=district", headers=h["city"])).json()
    assert len(districts) == 41
    assert all("geometry" not in d or d["geometry"] is None for d in districts)
    streets = (
        await client.get(f"/api/v1/areas?level=street&parent={YUZHONG}", headers=h["city"])
    ).json()
    assert len(streets) == 11 and {s["parent"] for s in streets} == {YUZHONG}
    shaped = (
        await client.get(f"/api/v1/areas?parent={YUZHONG}&geometry=true", headers=h["city"])
    ).json()
    assert shaped[0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    one = (await client.get(f"/api/v1/areas/{YUZHONG}", headers=h["city"])).json()
    assert (one["name"], one["level"], one["parent"]) == ("渝中区", "district", "500000")
    assert one["geometry"]["type"] == "Polygon"


async def test_scoped_users_see_only_their_part(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    seen = (await client.get("/api/v1/areas?level=district", headers=h["yz"])).json()
    assert [d["code"] for d in seen] == [YUZHONG]
    assert (await client.get("/api/v1/areas/500101", headers=h["yz"])).status_code == 404
    own_street = h["street"]["code"]
    visible = (await client.get("/api/v1/areas", headers=h["st"])).json()
    assert sorted(a["code"] for a in visible) == sorted(["500000", YUZHONG, own_street])
    siblings = (await client.get(f"/api/v1/areas?parent={YUZHONG}", headers=h["st"])).json()
    assert [a["code"] for a in siblings] == [own_street]


async def test_unknown_area_is_a_json_404(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    reply = await client.get("/api/v1/areas/999999", headers=h["city"])
    assert reply.status_code == 404
    assert "999999" in reply.json()["detail"]
    assert (await client.get("/api/v1/areas?parent=999999", headers=h["city"])).status_code == 404


async def test_geotag(hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]]) -> None:
    client, h = hub
    reply = await client.get("/api/v1/geotag?lon=106.5516&lat=29.5630", headers=h["key"])
    assert reply.status_code == 200
    body = reply.json()
    assert body["method"] == "point"
    assert body["district"] == {"code": YUZHONG, "name": "渝中区"}
    assert body["city"] == {"code": "500000", "name": "重庆市"}
    assert body["street"]["code"].startswith(YUZHONG)
    far = (await client.get("/api/v1/geotag?lon=116.4&lat=39.9", headers=h["key"])).json()
    assert (far["method"], far["street"], far["district"]) == ("none", None, None)


@pytest.mark.parametrize(
    "query",
    [
        "lon=181&lat=29",
        "lon=106&lat=-91",
        "lon=abc&lat=29",
        "lon=106",
        "lon=nan&lat=29",
        "lon=inf&lat=29",
    ],
)
async def test_geotag_bad_coordinates_are_422(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]], query: str
) -> None:
    client, h = hub
    reply = await client.get(f"/api/v1/geotag?{query}", headers=h["city"])
    assert reply.status_code == 422


async def test_sign_in_errors(hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]]) -> None:
    client, _ = hub
    wrong = await client.post("/auth/token", data={"username": "city", "password": "nope-nope"})
    assert wrong.status_code == 401
    nobody = await client.post("/auth/token", data={"username": "ghost", "password": "nope-nope"})
    assert nobody.status_code == 401 and nobody.json() == wrong.json()
    missing = await client.post("/auth/token", data={"username": "city"})
    assert missing.status_code == 422
