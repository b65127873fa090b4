"""Events become tickets: merging across channels, routing on creation, idempotency (both
backends)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from services.dispatch.tickets import open_tickets
from shared.db.models import Event, Ticket, TicketEvent, Timer
from shared.events import ingested_message
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        await running.user("city-desk", "dispatcher", "city")
        yield running


async def test_reports_of_one_point_from_every_channel_make_one_ticket(hub: Hub) -> None:
    street = hub.streets()[0]
    lon, lat = hub.point(street)
    first = await hub.report(
        source="hotline", category="道路积水", location=shifted(lon, lat), description="积水"
    )
    sensor = await hub.report(
        source="sensor",
        source_ref="WL-0001:water_level_cm>30:1763700000000",
        category="S0101",
        location=shifted(lon, lat, east_m=40),
    )
    grid = await hub.report(source="grid", category="E0501", location=shifted(lon, lat, 0, 70))
    calls = [
        await hub.report(source="hotline", category="E0501", location=shifted(lon, lat, -30, -30))
        for _ in range(2)
    ]
    assert {sensor, grid, *calls} == {first}
    ticket = await hub.ticket(first, hub.users["city-desk"])
    assert ticket["report_count"] == 5
    assert sorted(e["source"] for e in ticket["events"]) == [
        "grid", "hotline", "hotline", "hotline", "sensor",
    ]  # fmt: skip
    assert ticket["sensor_id"] == "WL-0001"
    assert [e["action"] for e in ticket["timeline"]][:2] == ["create", "dispatch"]
    assert [e["action"] for e in ticket["timeline"]][2:] == ["report"] * 4
    assert "reporter" not in str(ticket["events"])


async def test_farther_points_and_other_problems_open_their_own_tickets(hub: Hub) -> None:
    lon, lat = hub.point(hub.streets()[1])
    first = await hub.report(category="E0101", location=shifted(lon, lat))
    far = await hub.report(category="E0101", location=shifted(lon, lat, east_m=150))
    other = await hub.report(category="C0201", location=shifted(lon, lat, east_m=10))
    near = await hub.report(category="E0101", location=shifted(lon, lat, north_m=90))
    assert len({first, far, other}) == 3
    assert near == first


async def test_closed_tickets_never_merge(hub: Hub) -> None:
    street = hub.streets()[2]
    desk = await hub.user("street-desk", "dispatcher", f"street:{street.code}")  # the owner
    lon, lat = hub.point(street)
    first = await hub.report(category="E0602", location=shifted(lon, lat))  # 属地: stays new
    assert (await hub.act(first, desk, "reject", reason="不属于城市管理范围")).status_code == 200
    again = await hub.report(category="E0602", location=shifted(lon, lat, east_m=5))
    assert again != first
    assert (await hub.ticket(again, desk))["report_count"] == 1


async def test_alarms_of_one_sensor_join_its_open_ticket_wherever_and_whenever(hub: Hub) -> None:
    lon, lat = hub.point(hub.streets()[3])
    first = await hub.report(
        source="sensor",
        source_ref="TILT-7:tilt_deg>5:1",
        category="S0102",
        location=shifted(lon, lat),
    )
    moved = await hub.report(  # a relocated (or mislocated) device: still its ticket
        source="sensor", source_ref="TILT-7:tilt_deg>5:2", category="S0102",
        location=shifted(lon, lat, east_m=800),
    )  # fmt: skip
    other_type = await hub.report(
        source="sensor", source_ref="TILT-7:offline:3", category="S0108", location=shifted(lon, lat)
    )
    other_sensor = await hub.report(
        source="sensor", source_ref="TILT-8:tilt_deg>5:1", category="S0102",
        location=shifted(lon, lat, east_m=800),
    )  # fmt: skip
    assert moved == first
    assert other_type != first
    assert other_sensor not in (first, moved)


@pytest.mark.first_start  # each backend stores the areas and catalogue itself first
async def test_routing_on_creation(hub: Hub) -> None:
    desk = hub.users["city-desk"]
    street = hub.streets()[4]
    lon, lat = hub.point(street)

    ruled = await hub.ticket(await hub.report(category="E0101", location=shifted(lon, lat)), desk)
    assert (ruled["status"], ruled["owner_tier"], ruled["owner_code"]) == (
        "dispatched", "street", street.code,
    )  # fmt: skip
    assert ruled["department"] == "cgj@500103"
    assert ruled["department_name"] == "渝中区城市管理局"

    local = await hub.ticket(
        await hub.report(category="C0501", location=shifted(lon, lat, 300)), desk
    )
    assert (local["status"], local["owner_tier"]) == ("new", "street")  # 属地, waits in the queue
    assert local["department"] == f"office@{local['street']['code']}"

    urgent = await hub.ticket(
        await hub.report(category="E0501", location=shifted(lon, lat, -300)), desk
    )
    assert (urgent["owner_tier"], urgent["owner_code"], urgent["department"]) == (
        "district", "500103", "slj@500103",
    )  # fmt: skip

    critical = await hub.ticket(
        await hub.report(category="E0502", location=shifted(lon, lat, 0, 300)), desk
    )
    assert (critical["owner_tier"], critical["owner_code"], critical["department"]) == (
        "city", "500000", "zjw",
    )  # fmt: skip

    nowhere = await hub.ticket(await hub.report(category="E0602", description="不知道在哪"), desk)
    assert (nowhere["status"], nowhere["owner_tier"], nowhere["owner_code"]) == (
        "new", "city", "500000",
    )  # fmt: skip
    for ticket in (ruled, local, urgent, critical):
        assert ticket["accept_due_at"] < ticket["handle_due_at"]
        assert ticket["colour"] in ("blue", "yellow", "orange")


async def test_a_third_report_moves_the_ticket_to_the_district(hub: Hub) -> None:
    desk = hub.users["city-desk"]
    lon, lat = hub.point(hub.streets()[5])
    ticket_id = await hub.report(category="C0501", location=shifted(lon, lat))
    for n in (1, 2):
        assert await hub.report(category="C0501", location=shifted(lon, lat, n * 10)) == ticket_id
    ticket = await hub.ticket(ticket_id, desk)
    assert (ticket["report_count"], ticket["owner_tier"], ticket["owner_code"]) == (
        3, "district", "500103",
    )  # fmt: skip
    assert ticket["timeline"][-1]["data"]["rerouted_to"] == "district:500103"


async def test_redelivered_events_change_nothing(hub: Hub) -> None:
    lon, lat = hub.point(hub.streets()[6])
    event = await hub.post_event(category="E0101", location=shifted(lon, lat))
    ticket_id = await hub.ticket_of(event["id"])
    runtime = hub.runtime
    async with runtime.sessions() as session:
        stored = await session.get(Event, uuid.UUID(event["id"]))
        assert stored is not None
        msg = ingested_message(stored)
    again = await open_tickets(runtime, [msg, msg])  # redelivered, twice in one batch
    assert {str(t) for t in again.values()} == {ticket_id}
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Ticket)) == 1
        assert await session.scalar(select(func.count()).select_from(TicketEvent)) == 1
        assert await session.scalar(select(func.count()).select_from(Timer)) == 4


async def test_events_of_one_batch_merge_with_each_other(hub: Hub) -> None:
    lon, lat = hub.point(hub.streets()[7])
    events = [
        await hub.post_event(category="E0103", location=shifted(lon, lat, n * 20)) for n in range(4)
    ]
    tickets = {await hub.ticket_of(e["id"]) for e in events}
    assert len(tickets) == 1


async def test_a_sensor_keeps_joining_the_citizen_ticket_its_first_alarm_joined(hub: Hub) -> None:
    lon, lat = hub.point(hub.streets()[6])
    citizen = await hub.report(category="E0501", location=shifted(lon, lat))  # 道路积水, 12345
    alarm = await hub.report(
        source="sensor", source_ref="WL-9:water_level_cm>30:1", category="S0101",
        location=shifted(lon, lat, east_m=20),
    )  # fmt: skip
    later = await hub.report(  # a later batch, and beyond the merge distance: still that ticket
        source="sensor", source_ref="WL-9:water_level_cm>30:2", category="S0101",
        location=shifted(lon, lat, east_m=800),
    )  # fmt: skip
    assert alarm == citizen and later == citizen
    assert (await hub.ticket(citizen, hub.users["city-desk"]))["report_count"] == 3
