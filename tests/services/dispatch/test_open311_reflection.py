"""Open311 reads what dispatch did: agency once dispatched, expected time, closed and rejected,
and the latest public note (a reject reason, a resolve note) while it still holds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from shared.settings import Settings
from tests.support.tickets import Headers, Hub, running_hub, shifted


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with running_hub(embedded_settings) as running:
        await running.user("city", "dispatcher", "city")
        await running.user("crew", "field_staff", "district:500103", "cgj@500103")
        yield running


async def request_of(hub: Hub, event_id: str) -> dict[str, Any]:
    reply = await hub.client.get(f"/open311/v2/requests/{event_id}.json")
    assert reply.status_code == 200, reply.text
    [request] = reply.json()
    assert isinstance(request, dict)
    return request


async def owner_desk(hub: Hub, ticket_id: str) -> Headers:
    """A dispatcher of the centre that owns the ticket (only the owner acts on it)."""
    ticket = await hub.ticket(ticket_id, hub.users["city"])
    tier, code = ticket["owner_tier"], ticket["owner_code"]
    name = f"desk-{code}"
    if name not in hub.users:
        await hub.user(name, "dispatcher", "city" if tier == "city" else f"{tier}:{code}")
    return hub.users[name]


async def xml_requests(hub: Hub, *event_ids: str) -> dict[str, dict[str, str | None]]:
    """GET requests.xml for these ids (the page query), by service_request_id."""
    reply = await hub.client.get(
        "/open311/v2/requests.xml", params={"service_request_id": ",".join(event_ids)}
    )
    assert reply.status_code == 200, reply.text
    root = ET.fromstring(reply.content)
    items = [{field.tag: field.text for field in item} for item in root.iter("request")]
    return {str(item["service_request_id"]): item for item in items}


async def test_open311_follows_the_ticket(hub: Hub) -> None:
    crew = hub.users["crew"]
    lon, lat = hub.point(hub.streets()[0])
    ruled = await hub.post_event(category="E0101", location=shifted(lon, lat))
    ticket_id = await hub.ticket_of(ruled["id"])
    ticket = await hub.ticket(ticket_id, hub.users["city"])
    request = await request_of(hub, ruled["id"])
    # The department's name, not its code `cgj@500103`.
    assert (request["status"], request["agency_responsible"]) == ("open", "渝中区城市管理局")
    assert request["status_notes"] == "已派遣至处置部门"
    expected = datetime.fromisoformat(request["expected_datetime"])
    assert abs((expected - datetime.fromisoformat(ticket["handle_due_at"])).total_seconds()) < 1
    await hub.ok(ticket_id, crew, "accept")
    await hub.ok(ticket_id, crew, "resolve", note="已清运")
    resolved = await request_of(hub, ruled["id"])
    assert (resolved["status"], resolved["status_notes"]) == ("open", "已清运")
    desk = await owner_desk(hub, ticket_id)
    await hub.ok(ticket_id, desk, "verify", passed=True)  # no note: the resolve note stays
    closed = await request_of(hub, ruled["id"])
    assert (closed["status"], closed["status_notes"]) == ("closed", "已清运")
    assert closed["agency_responsible"] == "渝中区城市管理局"

    waiting = await hub.post_event(category="C0501", location=shifted(lon, lat, 500))
    waiting_ticket = await hub.ticket_of(waiting["id"])
    desk = await owner_desk(hub, waiting_ticket)
    queued = await request_of(hub, waiting["id"])
    assert (queued["status"], queued["agency_responsible"]) == ("open", None)  # not dispatched
    await hub.ok(waiting_ticket, desk, "comment", note="内部备注")  # internal: never shown
    assert (await request_of(hub, waiting["id"]))["status_notes"] == "已受理，待派遣"
    await hub.ok(waiting_ticket, desk, "reject", reason="不属于受理范围")
    rejected = await request_of(hub, waiting["id"])
    assert (rejected["status"], rejected["status_notes"]) == ("closed", "不属于受理范围")

    listed = await xml_requests(hub, ruled["id"], waiting["id"])
    assert (listed[ruled["id"]]["status_notes"], listed[ruled["id"]]["agency_responsible"]) == (
        "已清运", "渝中区城市管理局"
    )  # fmt: skip
    assert listed[waiting["id"]]["status_notes"] == "不属于受理范围"


async def test_a_note_from_an_earlier_state_gives_way(hub: Hub) -> None:
    lon, lat = hub.point(hub.streets()[0])
    event = await hub.post_event(category="E0101", location=shifted(lon, lat))
    ticket_id = await hub.ticket_of(event["id"])
    desk = await owner_desk(hub, ticket_id)
    await hub.ok(ticket_id, desk, "return", reason="非本部门职责")
    returned = await request_of(hub, event["id"])
    assert (returned["status_notes"], returned["agency_responsible"]) == ("非本部门职责", None)
    await hub.ok(ticket_id, desk, "dispatch", department="zjw@500103")
    dispatched = await request_of(hub, event["id"])
    assert dispatched["status_notes"] == "已派遣至处置部门"  # the return reason is out of date
    assert dispatched["agency_responsible"] == "渝中区住房和城乡建设委员会"
