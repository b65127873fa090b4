"""Every query and path parameter is bounded: a value outside the bounds is a 400 in Open311's
format under /open311 and a 422 naming the parameter under /api/v1, never a 500 from an overflow
further in (a year-9999 date in a 90-day window or in UTC, an id no 64-bit integer holds)."""

from __future__ import annotations

import base64
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import add_user, login, serving

Hub = tuple[httpx.AsyncClient, dict[str, str]]


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The all-in-one app on SQLite and on PostgreSQL, with an admin signed in."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = create_hub_app(settings)
    async with serving(app) as client:
        await add_user(app, "root", "admin", "city")
        yield client, await login(client, "root")


OPEN311_DATES_OUT_OF_RANGE = (
    "start_date=9999-12-31T23:59:59%2B14:00",
    "end_date=0001-01-01T00:00:00Z",
    "start_date=9999-12-31T23:59:59-14:00&end_date=9999-12-31T23:59:59-14:00",
    "start_date=1999-12-31T23:59:59Z",
    "end_date=2100-01-01T00:00:00Z",
)
API_OUT_OF_RANGE = (
    ("/api/v1/dead-letters?before=633797994937098567680", "before"),
    ("/api/v1/dead-letters?before=0", "before"),
    ("/api/v1/tickets?created_from=9999-12-31T23:59:59-14:00", "created_from"),
    ("/api/v1/tickets?created_to=0001-01-01T00:00:00Z", "created_to"),
    ("/api/v1/tickets?district=" + "5" * 65, "district"),
    ("/api/v1/tickets?" + "&".join(["status=new"] * 9), "status"),
    ("/api/v1/sensors?after=" + "s" * 65, "after"),
    ("/api/v1/departments?area=" + "5" * 65, "area"),
    ("/api/v1/areas?parent=" + "5" * 65, "parent"),
    ("/api/v1/areas/" + "5" * 65, "code"),
    ("/api/v1/categories/" + "C" * 65, "code"),
    ("/files/" + "a" * 81, "name"),
)


async def test_open311_dates_out_of_range_are_400(hub: Hub) -> None:
    client, _ = hub
    for query in OPEN311_DATES_OUT_OF_RANGE:
        as_json = await client.get(f"/open311/v2/requests.json?{query}")
        assert as_json.status_code == 400, (query, as_json.text)
        [error] = as_json.json()
        assert error["code"] == 400
        assert "between 2000-01-01 and 2100-01-01" in error["description"]
        as_xml = await client.get(f"/open311/v2/requests.xml?{query}")
        assert as_xml.status_code == 400, (query, as_xml.text)
        assert as_xml.headers["content-type"].startswith("text/xml")
        assert ET.fromstring(as_xml.content).findtext("error/code") == "400"


async def test_open311_parameters_are_bounded(hub: Hub) -> None:
    client, _ = hub
    for query in ("lang=" + "e" * 65, "service_code=" + "C" * 2001, "service_request_id=编号"):
        reply = await client.get(f"/open311/v2/requests.json?{query}")
        assert reply.status_code == 400, (query, reply.text)
        assert reply.json()[0]["code"] == 400
    reply = await client.get("/open311/v2/requests/" + "1" * 101 + ".json")
    assert reply.status_code == 400, reply.text
    in_range = await client.get("/open311/v2/requests.json?start_date=2026-01-01T00:00:00%2B08:00")
    assert in_range.status_code == 200, in_range.text


def _forged_cursor(moment: str) -> str:
    raw = json.dumps([moment, str(uuid.uuid4())]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_api_parameters_out_of_range_are_422(hub: Hub) -> None:
    client, admin = hub
    for path, parameter in API_OUT_OF_RANGE:
        reply = await client.get(path, headers=admin)
        assert reply.status_code == 422, (path, reply.text)
        assert parameter in [issue["loc"][-1] for issue in reply.json()["detail"]], path


async def test_a_forged_cursor_far_in_time_is_422(hub: Hub) -> None:
    client, admin = hub
    for moment in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        reply = await client.get(f"/api/v1/tickets?cursor={_forged_cursor(moment)}", headers=admin)
        assert reply.status_code == 422, reply.text
        assert "invalid cursor" in reply.json()["detail"]
    page = await client.get("/api/v1/dead-letters?before=9223372036854775807", headers=admin)
    assert page.status_code == 200, page.text
