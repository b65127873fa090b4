"""The thin path in embedded mode: POST an event → ingest → bus → dispatch → ticket via the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.hub import create_hub_app
from shared.netutil import reachable
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving
from tests.support.servers import Servers
from tests.support.waiting import wait_for


async def _ticket_of(client: httpx.AsyncClient, event_id: str, key: str) -> str:
    async def probe() -> str:
        reply = await client.get(f"/api/v1/events/{event_id}", headers={"X-API-Key": key})
        assert reply.status_code == 200, reply.text
        ticket_id: str = reply.json()["ticket_id"] or ""  # "" until dispatch has run
        return ticket_id

    return await wait_for(probe)


@pytest.mark.first_start  # on an empty data dir: migrations, demo areas, catalogue, then the flow
async def test_event_becomes_a_ticket_owned_by_its_street(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        runtime = runtime_of(app)
        street = runtime.hierarchy.streets[100]
        other = next(s for s in runtime.hierarchy.streets if s.parent != street.parent)
        point = street.geometry.representative_point()
        key = await add_key(app, "crm")
        await add_user(app, "city-desk", "dispatcher", "city")
        await add_user(app, "street-desk", "dispatcher", f"street:{street.code}")
        await add_user(app, "elsewhere", "dispatcher", f"street:{other.code}")

        body: dict[str, Any] = {
            "source": "hotline",
            "source_ref": "12345-0001",
            "category": "路灯不亮",  # ordinary, and routed to 城管 by a rule
            "description": "路灯坏了好几天",
            "location": {"lon": point.x, "lat": point.y},
        }
        created = await client.post("/api/v1/events", json=body, headers={"X-API-Key": key})
        assert created.status_code == 201, created.text
        event = created.json()
        assert event["geotag"] == {
            "street": street.code,
            "district": street.parent,
            "city": "500000",
            "method": "point",
        }

        ticket_id = await _ticket_of(client, event["id"], key)
        reply = await client.get(
            f"/api/v1/tickets/{ticket_id}", headers=await login(client, "city-desk")
        )
        assert reply.status_code == 200, reply.text
        ticket = reply.json()
        assert ticket["street"] == {"code": street.code, "name": street.name}
        assert ticket["district"]["code"] == street.parent
        assert ticket["city"]["code"] == "500000"
        assert (ticket["owner_tier"], ticket["owner_code"], ticket["status"]) == (
            "street",
            street.code,
            "dispatched",  # a routing rule matched, so it was dispatched on creation
        )
        assert ticket["department"] == f"cgj@{street.parent}"
        assert ticket["event_ids"] == [event["id"]]

        mine = await client.get(
            f"/api/v1/tickets/{ticket_id}", headers=await login(client, "street-desk")
        )
        assert mine.status_code == 200
        theirs = await client.get(
            f"/api/v1/tickets/{ticket_id}", headers=await login(client, "elsewhere")
        )
        assert theirs.status_code == 404

        again = await client.post("/api/v1/events", json=body, headers={"X-API-Key": key})
        assert again.status_code == 200
        assert again.json()["id"] == event["id"]


async def test_unlocated_event_goes_to_the_city_queue(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        key = await add_key(app, "crm")
        await add_user(app, "city-desk", "dispatcher", "city")
        created = await client.post(
            "/api/v1/events",
            json={
                "category": "噪声扰民",
                "description": "不知道在哪里",
                "attributes": {"time_of_day": "night"},
            },
            headers={"X-API-Key": key},
        )
        assert created.status_code == 201
        assert created.json()["geotag"]["method"] == "none"
        ticket_id = await _ticket_of(client, created.json()["id"], key)
        ticket = (
            await client.get(
                f"/api/v1/tickets/{ticket_id}", headers=await login(client, "city-desk")
            )
        ).json()
        assert (ticket["owner_tier"], ticket["owner_code"], ticket["street"]) == (
            "city",
            "500000",
            None,
        )


async def test_healthz_reports_each_dependency(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        reply = await client.get("/healthz")
        assert reply.status_code == 200
        body = reply.json()
        assert body["mode"] == "embedded"
        assert body["checks"] == {"database": "ok", "bus": "ok", "mqtt": "ok"}
        assert set(body["services"]) >= {"ingest", "dispatch", "metrics", "gateway"}


async def test_external_broker_replaces_the_embedded_one(
    embedded_settings: Settings, servers: Servers
) -> None:
    settings = Settings(
        data_dir=embedded_settings.data_dir,
        mqtt_port=embedded_settings.mqtt_port,
        mqtt_url=f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
    )
    app = create_hub_app(settings)
    async with serving(app) as client:
        body = (await client.get("/healthz")).json()
        assert body["checks"]["mqtt"] == "ok"
        assert "mqtt_broker" not in runtime_of(app).extras
        assert not await reachable("127.0.0.1", settings.mqtt_port)  # nothing embedded listens


async def test_landing_page(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-cache"
        assert '<html lang="zh-CN" class="dark">' in page.text  # Chinese, dark wall theme
        assert '<script type="module" src="/static/app/wall.js">' in page.text
        script = await client.get("/static/app/wall.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")


async def test_openapi_documents_auth_on_every_api_route(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        schema = (await client.get("/openapi.json")).json()
        assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        api = {p: ops for p, ops in schema["paths"].items() if p.startswith("/api/v1/")}
        assert api and all(
            op["security"] == [{"bearer": []}, {"apiKey": []}] for ops in api.values()
            for op in ops.values()
        )  # fmt: skip
        basic = await client.get("/api/v1/areas", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert basic.status_code == 401
