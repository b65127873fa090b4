"""A ticket goes only to a department that serves its area (its staff can see and take it): a
city bureau anywhere, a district bureau in its district, a street office in its street."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted

DISTRICT, JIANGBEI = "500103", "500105"  # 渝中区, 江北区


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        yield running


async def test_dispatch_and_reassign_only_to_departments_serving_the_area(hub: Hub) -> None:
    street, neighbour = hub.streets()[7], hub.streets()[8]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    crew = await hub.user("crew", "field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}")
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="C0501", location=shifted(lon, lat))  # 属地: new

    wrong = await hub.act(ticket_id, desk, "dispatch", department=f"cgj@{JIANGBEI}")
    assert wrong.status_code == 422
    detail = wrong.json()["detail"]
    assert f"cgj@{JIANGBEI} does not serve" in detail
    named = detail.partition("departments that do: ")[2].split(", ")
    assert named[:2] == [f"cgj@{DISTRICT}", "cgj"]  # the same kind first
    assert {f"office@{street.code}", f"zjw@{DISTRICT}", "zjw"} <= set(named)
    assert not any(code.endswith(JIANGBEI) or neighbour.code in code for code in named)
    elsewhere = await hub.act(ticket_id, desk, "dispatch", department=f"office@{neighbour.code}")
    assert elsewhere.status_code == 422
    assert (await hub.ticket(ticket_id, desk))["status"] == "new"  # nothing changed

    sent = await hub.ok(ticket_id, desk, "dispatch", department=f"cgj@{DISTRICT}")
    assert sent["department"] == f"cgj@{DISTRICT}"
    moved = await hub.act(ticket_id, desk, "reassign", department=f"gaj@{JIANGBEI}")
    assert moved.status_code == 422 and "departments that do" in moved.json()["detail"]
    assert (await hub.ticket(ticket_id, crew))["allowed_actions"] == ["accept", "comment"]
    city = await hub.ok(ticket_id, desk, "reassign", department="cgj")  # a city bureau: anywhere
    assert city["department"] == "cgj"
    office = await hub.ok(ticket_id, desk, "reassign", department=f"office@{street.code}")
    assert office["department"] == f"office@{street.code}"
