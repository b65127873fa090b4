"""Lifecycle actions through the API: the closed loop, timers, timeline, 409s, who may act, merge
and split by hand, and what is published."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from shared.db.models import Timer
from shared.messages import (
    NOTIFICATIONS_REQUESTED,
    TICKETS_CHANGED,
    ReportersToNotifyV1,
    TicketChangedV2,
    decode,
)
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted
from tests.support.waiting import wait_for

DISTRICT = "500103"  # 渝中区


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        yield running


@pytest.fixture
async def embedded_hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    """The hub on SQLite only (rules that do not depend on the backend)."""
    async with running_hub(embedded_settings) as running:
        yield running


async def pending_timers(hub: Hub, ticket_id: str) -> list[str]:
    """Kinds of the ticket's unfired timers, sorted."""
    async with hub.runtime.sessions() as session:
        rows = await session.scalars(
            select(Timer.kind).where(
                Timer.ticket_id == uuid.UUID(ticket_id), Timer.fired_at.is_(None)
            )
        )
        return sorted(rows)


async def test_the_closed_loop_with_rework(hub: Hub) -> None:
    street = hub.streets()[0]
    desk = await hub.user("street-desk", "dispatcher", f"street:{street.code}")
    crew = await hub.user("cgj-crew", "field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}")
    await hub.runtime.bus.create_group(TICKETS_CHANGED, "probe")
    await hub.runtime.bus.create_group(NOTIFICATIONS_REQUESTED, "probe")
    lon, lat = hub.point(street)
    ticket_id = await hub.report(
        source="hotline", category="E0101", location=shifted(lon, lat), description="暴露垃圾",
        reporter={"name": "张三", "phone": "13800000000"},
    )  # fmt: skip
    created = await hub.ticket(ticket_id, desk)
    assert (created["status"], created["department"]) == ("dispatched", f"cgj@{DISTRICT}")
    assert await pending_timers(hub, ticket_id) == [
        "accept_due", "accept_warn", "handle_due", "handle_warn",
    ]  # fmt: skip

    assert (await hub.ok(ticket_id, crew, "accept"))["accepted_at"]
    assert await pending_timers(hub, ticket_id) == ["handle_due", "handle_warn"]
    assert (await hub.ok(ticket_id, crew, "start"))["status"] == "in_progress"
    resolved = await hub.ok(
        ticket_id, crew, "resolve", note="已清运", photos=["/files/" + "a" * 64 + ".jpg"]
    )
    assert resolved["status"] == "resolved"
    assert await pending_timers(hub, ticket_id) == []

    reworked = await hub.ok(ticket_id, desk, "verify", passed=False, note="仍有垃圾")
    assert (reworked["status"], reworked["rework_count"]) == ("dispatched", 1)
    assert len(await pending_timers(hub, ticket_id)) == 4
    await hub.ok(ticket_id, crew, "accept")
    await hub.ok(ticket_id, crew, "resolve", note="已彻底清运")
    closed = await hub.ok(ticket_id, desk, "verify", passed=True)
    assert closed["status"] == "closed" and closed["closed_at"] and closed["colour"] == "green"
    assert await pending_timers(hub, ticket_id) == []
    rated = await hub.ok(ticket_id, desk, "callback", score=5, note="满意")
    assert rated["satisfaction"] == 5

    timeline = rated["timeline"]
    assert [(e["action"], e["actor"]) for e in timeline] == [
        ("create", "system"), ("dispatch", "system"), ("accept", "cgj-crew"),
        ("start", "cgj-crew"), ("resolve", "cgj-crew"), ("verify", "street-desk"),
        ("accept", "cgj-crew"), ("resolve", "cgj-crew"), ("verify", "street-desk"),
        ("callback", "street-desk"),
    ]  # fmt: skip
    assert [e["seq"] for e in timeline] == list(range(1, 11))
    assert timeline[4]["data"]["photos"] == ["/files/" + "a" * 64 + ".jpg"]
    assert (timeline[5]["from_status"], timeline[5]["to_status"]) == ("resolved", "dispatched")

    illegal = await hub.act(ticket_id, crew, "accept")
    assert illegal.status_code == 409
    assert illegal.json()["detail"] == (
        "cannot accept a ticket that is closed; allowed now: comment, callback"
    )

    async def published() -> list[Any]:
        got = await hub.runtime.bus.read(TICKETS_CHANGED, "probe", "t", count=100, block_ms=10)
        return [decode(d.data) for d in got]

    changes: list[TicketChangedV2] = []

    async def all_changes() -> bool:
        changes.extend(m for m in await published() if isinstance(m, TicketChangedV2))
        return len([c for c in changes if str(c.ticket.id) == ticket_id]) >= 9

    await wait_for(all_changes)
    mine = [c for c in changes if str(c.ticket.id) == ticket_id]
    assert mine[0].change == "created" and mine[0].transition is not None
    assert mine[-1].change == "callback" and mine[-1].ticket.satisfaction == 5
    assert mine[-1].transition is not None and mine[-1].transition.actor == "street-desk"

    async def notice() -> list[Any]:
        got = await hub.runtime.bus.read(
            NOTIFICATIONS_REQUESTED, "probe", "t", count=10, block_ms=10
        )
        return [decode(d.data) for d in got]

    [message] = await wait_for(notice)
    assert isinstance(message, ReportersToNotifyV1)
    assert (str(message.ticket_id), message.outcome) == (ticket_id, "closed")
    assert [str(e) for e in message.event_ids] == created["event_ids"]


async def test_dispatch_return_reassign_defer_park(hub: Hub) -> None:
    street = hub.streets()[1]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="C0501", location=shifted(lon, lat))  # 属地: new
    missing = await hub.act(ticket_id, desk, "dispatch", department="dispatch@500000")
    assert missing.status_code == 422
    sent = await hub.ok(ticket_id, desk, "dispatch", department=f"zjw@{DISTRICT}")
    assert (sent["status"], sent["department"]) == ("dispatched", f"zjw@{DISTRICT}")
    back = await hub.ok(ticket_id, desk, "return", reason="不属于本部门")
    assert (back["status"], back["department"]) == ("new", f"dispatch@{street.code}")
    assert back["timeline"][-1]["note"] == "不属于本部门"
    assert await pending_timers(hub, ticket_id) == ["handle_due", "handle_warn"]
    await hub.ok(ticket_id, desk, "dispatch", department=f"office@{street.code}")
    moved = await hub.ok(ticket_id, desk, "reassign", department=f"cgj@{DISTRICT}")
    assert moved["department"] == f"cgj@{DISTRICT}"
    until = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)
    deferred = await hub.ok(ticket_id, desk, "defer", until=until.isoformat())
    assert datetime.fromisoformat(deferred["handle_due_at"]) == until
    assert (
        await hub.act(ticket_id, desk, "defer", until="2001-01-01T00:00:00Z")
    ).status_code == 422
    sooner = (until - timedelta(days=1)).isoformat()
    earlier = await hub.act(ticket_id, desk, "defer", until=sooner)
    assert earlier.status_code == 422 and "later than" in earlier.json()["detail"]
    parked = await hub.ok(ticket_id, desk, "park", reason="待专项整治")
    assert parked["status"] == "parked" and await pending_timers(hub, ticket_id) == []
    again = await hub.ok(ticket_id, desk, "dispatch")
    assert again["status"] == "dispatched" and len(await pending_timers(hub, ticket_id)) == 4
    assert (await hub.act(ticket_id, desk, "reject", reason="x")).status_code == 409


async def test_who_may_act(embedded_hub: Hub) -> None:
    hub = embedded_hub
    street, other = hub.streets()[2], hub.streets()[3]
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="E0101", location=shifted(lon, lat))  # → cgj@500103
    mine = await hub.user("desk", "dispatcher", f"street:{street.code}")
    elsewhere = await hub.user("other-desk", "dispatcher", f"street:{other.code}")
    district = await hub.user("district-desk", "dispatcher", f"district:{DISTRICT}")
    wrong_crew = await hub.user("zjw-crew", "field_staff", f"district:{DISTRICT}", "zjw@500103")
    boss = await hub.user("boss", "manager", "city")

    refused = await hub.act(ticket_id, wrong_crew, "accept")
    assert refused.status_code == 403 and "not to your department" in refused.json()["detail"]
    assert (await hub.act(ticket_id, elsewhere, "comment", note="?")).status_code == 404
    assert (
        await hub.client.get(f"/api/v1/tickets/{ticket_id}", headers=elsewhere)
    ).status_code == 404
    assert (await hub.act(ticket_id, boss, "comment", note="加快")).status_code == 403
    assert (await hub.ticket(ticket_id, boss))["id"] == ticket_id

    escalated = await hub.ok(ticket_id, mine, "escalate", note="需区级协调")
    assert (escalated["owner_tier"], escalated["owner_code"]) == ("district", DISTRICT)
    assert escalated["timeline"][-1]["data"] == {
        "from": f"street:{street.code}", "to": f"district:{DISTRICT}",
    }  # fmt: skip
    read_only = await hub.act(ticket_id, mine, "comment", note="还在吗")
    assert read_only.status_code == 403 and "read-only" in read_only.json()["detail"]
    assert (await hub.ticket(ticket_id, mine))["owner_tier"] == "district"  # still visible
    assert (await hub.act(ticket_id, district, "comment", note="已接手")).status_code == 200
    await hub.ok(ticket_id, district, "escalate")
    top = await hub.act(ticket_id, await hub.user("city", "dispatcher", "city"), "escalate")
    assert top.status_code == 409 and "city centre" in top.json()["detail"]


async def test_merge_and_split_by_hand(hub: Hub) -> None:
    street = hub.streets()[4]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    a = await hub.report(category="C0501", location=shifted(lon, lat), source="hotline")
    b = await hub.report(category="C0501", location=shifted(lon, lat, 400), source="grid")
    assert a != b
    merged = await hub.ok(b, desk, "merge", into=a, note="同一处健身器材")
    assert (merged["status"], merged["merged_into"], merged["event_ids"]) == ("closed", a, [])
    survivor = await hub.ticket(a, desk)
    assert survivor["report_count"] == 2 and len(survivor["event_ids"]) == 2
    assert survivor["timeline"][-1]["action"] == "merge"
    assert survivor["timeline"][-1]["data"]["from_ticket"] == b
    assert (await hub.act(a, desk, "merge", into=b)).status_code == 409  # b is closed now
    assert (await hub.act(a, desk, "merge", into=a)).status_code == 422

    grid_event = next(e["id"] for e in survivor["events"] if e["source"] == "grid")
    both = [e["id"] for e in survivor["events"]]
    assert (await hub.act(a, desk, "split", event_ids=both)).status_code == 422  # none left
    stray = await hub.act(a, desk, "split", event_ids=[str(uuid.uuid4())])
    assert stray.status_code == 422 and "not linked" in stray.json()["detail"]
    assert "split" in survivor["allowed_actions"]
    reply = await hub.act(a, desk, "split", event_ids=[grid_event], note="其实是两处")
    assert reply.status_code == 200, reply.text
    new_id = reply.json()["new_ticket_id"]
    left = reply.json()["ticket"]
    assert (left["report_count"], len(left["event_ids"])) == (1, 1)
    split_off = await hub.ticket(new_id, desk)
    assert split_off["event_ids"] == [grid_event] and split_off["report_count"] == 1
    assert split_off["timeline"][0]["data"]["split_from"] == a
    assert split_off["timeline"][0]["actor"] == "desk"
    assert "split" not in left["allowed_actions"]  # one report left: nothing to split off
    everything = [e["id"] for e in left["events"]]
    single = await hub.act(a, desk, "split", event_ids=everything)
    assert single.status_code == 409 and "single report" in single.json()["detail"]


async def test_bad_action_bodies_are_422(embedded_hub: Hub) -> None:
    hub = embedded_hub
    street = hub.streets()[5]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="C0501", location=shifted(lon, lat))
    for body in (
        {"action": "fly"},
        {"action": "reject"},
        {"action": "reject", "reason": "   "},  # blank is no reason
        {"action": "return", "note": " "},
        {"action": "verify"},
        {"action": "callback", "score": 9},
        {"action": "comment"},
        {"action": "comment", "note": "x", "photos": ["ftp://x"]},
        {"action": "comment", "note": "x", "surprise": 1},
    ):
        reply = await hub.client.post(
            f"/api/v1/tickets/{ticket_id}/actions", json=body, headers=desk
        )
        assert reply.status_code == 422, body
