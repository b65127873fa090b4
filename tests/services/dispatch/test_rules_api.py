"""Routing rules, the department directory and per-priority deadlines through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        await running.user("admin", "admin", "city")
        await running.user("desk", "dispatcher", "city")
        yield running


async def test_routing_rules_are_data_an_admin_edits(hub: Hub) -> None:
    admin, desk = hub.users["admin"], hub.users["desk"]
    assert (await hub.client.get("/api/v1/routing-rules", headers=desk)).status_code == 403
    stored = (await hub.client.get("/api/v1/routing-rules", headers=admin)).json()["rules"]
    assert {"category": "C0201", "department": "cgj", "district": None, "priority": None,
            "source": None} in stored  # fmt: skip
    assert not any(r["category"] == "C0501" for r in stored)  # 属地 by design

    bad = await hub.client.put(
        "/api/v1/routing-rules",
        json={"rules": [*stored, {"category": "C0501", "department": "nasa"}]},
        headers=admin,
    )
    assert bad.status_code == 422 and "nasa" in bad.json()["detail"]
    rules = [*stored, {"category": "C0501", "department": "mzj"}]
    put = await hub.client.put("/api/v1/routing-rules", json={"rules": rules}, headers=admin)
    assert put.status_code == 200, put.text
    again = (await hub.client.get("/api/v1/routing-rules", headers=admin)).json()["rules"]
    assert len(again) == len(stored) + 1 and again[-1]["department"] == "mzj"

    lon, lat = hub.point(hub.streets()[0])
    ticket = await hub.ticket(await hub.report(category="C0501", location=shifted(lon, lat)), desk)
    assert (ticket["status"], ticket["department"]) == ("dispatched", "mzj@500103")


async def test_department_directory(hub: Hub) -> None:
    desk = hub.users["desk"]
    reply = await hub.client.get("/api/v1/departments", headers=desk)
    assert reply.status_code == 200
    by_code = {d["code"]: d for d in reply.json()}
    assert by_code["cgj"]["name"] == "重庆市城市管理局"
    assert by_code["cgj@500103"]["name"] == "渝中区城市管理局"
    assert by_code["office@500103001"]["name"] == "七星岗街道办事处"
    assert by_code["dispatch@500000"]["group"] == "dispatch"
    offices = await hub.client.get(
        "/api/v1/departments", params={"group": "office", "area": "500103001"}, headers=desk
    )
    assert [d["code"] for d in offices.json()] == ["office@500103001"]
    bureaus = await hub.client.get(
        "/api/v1/departments", params={"level": "district", "kind": "gaj"}, headers=desk
    )
    assert len(bureaus.json()) == 41


async def test_per_priority_deadlines(hub: Hub) -> None:
    admin, desk = hub.users["admin"], hub.users["desk"]
    path = "/api/v1/categories/C0201/deadlines"
    assert (await hub.client.get(path, headers=desk)).status_code == 403
    shown = (await hub.client.get(path, headers=admin)).json()
    assert shown["default_priority"] == "normal"
    assert shown["priorities"]["normal"] == {
        "accept_hours": 4.0, "handle_hours": 48.0, "overridden": False,
    }  # fmt: skip
    assert shown["priorities"]["urgent"]["handle_hours"] == 24.0  # scaled from the default
    body = {"deadlines": {"urgent": {"accept_hours": 1, "handle_hours": 6}}}
    put = await hub.client.put(path, json=body, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["priorities"]["urgent"] == {
        "accept_hours": 1.0, "handle_hours": 6.0, "overridden": True,
    }  # fmt: skip
    category = (await hub.client.get("/api/v1/categories/C0201", headers=admin)).json()
    assert category["deadlines"] == {"urgent": {"accept_hours": 1.0, "handle_hours": 6.0}}
    refused = await hub.client.put(
        path, json={"deadlines": {"urgent": {"accept_hours": 0, "handle_hours": 6}}}, headers=admin
    )
    assert refused.status_code == 422
    missing = await hub.client.get("/api/v1/categories/X0000/deadlines", headers=admin)
    assert missing.status_code == 404
