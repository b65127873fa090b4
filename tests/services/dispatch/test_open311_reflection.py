"""Open311 reads what dispatch did: agency once dispatched, expected time, closed and rejected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with running_hub(embedded_settings) as running:
        await running.user("desk", "dispatcher", "city")
        await running.user("crew", "field_staff", "district:500103", "cgj@500103")
        yield running


async def request_of(hub: Hub, event_id: str) -> dict[str, Any]:
    reply = await hub.client.get(f"/open311/v2/requests/{event_id}.json")
    assert reply.status_code == 200, reply.text
    [request] = reply.json()
    assert isinstance(request, dict)
    return request


async def test_open311_follows_the_ticket(hub: Hub) -> None:
    desk, crew = hub.users["desk"], hub.users["crew"]
    lon, lat = hub.point(hub.streets()[0])
    ruled = await hub.post_event(category="E0101", location=shifted(lon, lat))
    ticket_id = await hub.ticket_of(ruled["id"])
    ticket = await hub.ticket(ticket_id, desk)
    request = await request_of(hub, ruled["id"])
    assert (request["status"], request["agency_responsible"]) == ("open", "cgj@500103")
    expected = datetime.fromisoformat(request["expected_datetime"])
    assert abs((expected - datetime.fromisoformat(ticket["handle_due_at"])).total_seconds()) < 1
    await hub.ok(ticket_id, crew, "accept")
    await hub.ok(ticket_id, crew, "resolve", note="已清运")
    await hub.ok(ticket_id, desk, "verify", passed=True)
    closed = await request_of(hub, ruled["id"])
    assert (closed["status"], closed["status_notes"]) == ("closed", "已办结")

    waiting = await hub.post_event(category="C0501", location=shifted(lon, lat, 500))
    waiting_ticket = await hub.ticket_of(waiting["id"])
    queued = await request_of(hub, waiting["id"])
    assert (queued["status"], queued["agency_responsible"]) == ("open", None)  # not dispatched
    await hub.ok(waiting_ticket, desk, "reject", reason="不属于受理范围")
    rejected = await request_of(hub, waiting["id"])
    assert (rejected["status"], rejected["status_notes"]) == ("closed", "不予受理")
