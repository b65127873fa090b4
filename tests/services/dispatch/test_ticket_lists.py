"""GET /tickets (filters, cursor pages, scope) and GET /tasks/mine."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from shared.db.models import Ticket
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted

DISTRICT = "500103"


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        yield running


async def test_unlocated_events_wait_flagged_in_the_city_queue(hub: Hub) -> None:
    city = await hub.user("city", "dispatcher", "city")
    lon, lat = hub.point(hub.streets()[0])
    located = await hub.report(category="E0101", location={"lon": lon, "lat": lat})
    lost = await hub.report(category="E0101", address="某个说不清的地方")  # no point, no match
    flagged = (
        await hub.client.get("/api/v1/tickets", params={"located": "false"}, headers=city)
    ).json()["items"]
    assert [t["id"] for t in flagged] == [lost]
    assert flagged[0]["status"] == "new" and flagged[0]["owner_tier"] == "city"
    placed = (
        await hub.client.get("/api/v1/tickets", params={"located": "true"}, headers=city)
    ).json()["items"]
    assert [t["id"] for t in placed] == [located]


async def test_filters_pages_and_scope(hub: Hub) -> None:
    city = await hub.user("city", "dispatcher", "city")
    one, two = hub.streets()[0], hub.streets()[1]
    elsewhere = hub.streets("500104")[0]
    street_desk = await hub.user("s1", "dispatcher", f"street:{one.code}")
    made: list[str] = []
    for n in range(5):
        lon, lat = hub.point(one)
        made.append(await hub.report(category="E0101", location=shifted(lon, lat, 300 * n - 600)))
    lon, lat = hub.point(two)
    made.append(await hub.report(category="C0501", location=shifted(lon, lat), source="grid"))
    lon, lat = hub.point(elsewhere)
    made.append(await hub.report(category="E0501", location=shifted(lon, lat)))

    async def page(headers: dict[str, str], **params: Any) -> dict[str, object]:
        reply = await hub.client.get("/api/v1/tickets", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        body: dict[str, object] = reply.json()
        return body

    everything = await page(city, limit=200)
    items = everything["items"]
    assert isinstance(items, list) and len(items) == 7
    assert [t["id"] for t in items] == list(reversed(made))  # newest first
    assert everything["next_cursor"] is None

    seen: list[str] = []
    cursor: object = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = await page(city, **params)
        got = body["items"]
        assert isinstance(got, list) and len(got) <= 3
        seen += [t["id"] for t in got]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))

    async def ids(headers: dict[str, str], **params: Any) -> set[str]:
        items = (await page(headers, **params))["items"]
        assert isinstance(items, list)
        return {t["id"] for t in items}

    assert await ids(city, district="500104") == {made[6]}
    assert await ids(city, tier="district") == {made[6]}
    assert await ids(city, source="grid", category="C0501", status="new") == {made[5]}
    assert await ids(city, department=f"cgj@{DISTRICT}") == set(made[:5])
    assert await ids(city, status=["new", "dispatched"]) == set(made)
    assert await ids(city, priority="urgent") == {made[6]}
    assert await ids(city, overdue=True) == set()
    assert await ids(city, centre=two.code) == {made[5]}
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await ids(city, created_from=later) == set()
    assert await ids(city, created_to=later) == set(made)
    street_view = await ids(street_desk)
    assert (
        street_view <= set(made[:5]) and made[5] not in street_view and made[6] not in street_view
    )
    assert await ids(street_desk, district="500104") == set()  # filters never widen the scope

    bad = await hub.client.get("/api/v1/tickets", params={"cursor": "nonsense"}, headers=city)
    assert bad.status_code == 422
    too_many = await hub.client.get("/api/v1/tickets", params={"limit": 201}, headers=city)
    assert too_many.status_code == 422


async def test_tasks_mine_lists_the_department_open_work_first(hub: Hub) -> None:
    street = hub.streets()[2]
    crew = await hub.user("crew", "field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}")
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    first = await hub.report(category="E0101", location=shifted(lon, lat))
    second = await hub.report(category="C0201", location=shifted(lon, lat, 500))  # cgj too
    other = await hub.report(category="C0501", location=shifted(lon, lat, -500))  # 属地
    await hub.ok(first, crew, "accept")
    await hub.ok(first, crew, "resolve", note="done")
    await hub.ok(first, desk, "verify", passed=True)
    reply = await hub.client.get("/api/v1/tasks/mine", headers=crew)
    assert reply.status_code == 200, reply.text
    tasks = [t["id"] for t in reply.json()]
    assert tasks == [second, first]  # open first, finished after
    assert other not in tasks
    refused = await hub.client.get("/api/v1/tasks/mine", headers=desk)
    assert refused.status_code == 403


def due_of(ticket: dict[str, Any]) -> str | None:
    """The deadline `sort=deadline` orders by: accepting while new or dispatched, else handling."""
    due: str | None = ticket[
        "accept_due_at" if ticket["status"] in ("new", "dispatched") else "handle_due_at"
    ]
    return due


async def test_deadline_order_pages_and_returned_filter(hub: Hub) -> None:
    street = hub.streets()[3]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    crew = await hub.user("crew", "field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}")
    lon, lat = hub.point(street)
    made = [
        await hub.report(category=category, location=shifted(lon, lat, 400 * n - 800))
        for n, category in enumerate(["E0101", "C0501", "E0101", "C0201", "E0501"])
    ]
    await hub.ok(made[0], desk, "return", reason="not ours")  # new again, returned
    await hub.ok(made[2], crew, "accept")  # now its handling deadline counts
    far = (datetime.now(UTC) + timedelta(days=80)).replace(microsecond=0).isoformat()
    await hub.ok(made[2], desk, "defer", until=far)  # ...and it is the latest of all

    async def listing(**params: Any) -> dict[str, Any]:
        reply = await hub.client.get("/api/v1/tickets", params=params, headers=desk)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    everything = (await listing(sort="deadline", limit=200))["items"]
    dues = [datetime.fromisoformat(d) for d in map(due_of, everything) if d is not None]
    assert len(dues) == len(everything) == 5
    assert dues == sorted(dues) and everything[-1]["id"] == made[2]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        body = await listing(sort="deadline", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [t["id"] for t in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [t["id"] for t in everything]

    created_cursor = (await listing(limit=1))["next_cursor"]
    mixed = await hub.client.get(
        "/api/v1/tickets", params={"sort": "deadline", "cursor": created_cursor}, headers=desk
    )
    assert mixed.status_code == 422 and "same sort" in mixed.json()["detail"]

    returned = (await listing(returned="true"))["items"]
    assert [t["id"] for t in returned] == [made[0]]
    rest = {t["id"] for t in (await listing(returned="false"))["items"]}
    assert rest == set(made[1:])


async def test_deadline_order_puts_tickets_without_a_deadline_last(hub: Hub) -> None:
    street = hub.streets()[4]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    made = [
        await hub.report(category="C0501", location=shifted(lon, lat, 400 * n - 600))
        for n in range(4)
    ]
    undated = sorted(made[1:3])  # ties on "no deadline" go by id
    async with hub.runtime.sessions() as session, session.begin():
        await session.execute(
            update(Ticket).where(Ticket.id.in_([uuid.UUID(t) for t in undated]))
            .values(accept_due_at=None)
        )  # fmt: skip
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"sort": "deadline", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        reply = await hub.client.get("/api/v1/tickets", params=params, headers=desk)
        assert reply.status_code == 200, reply.text
        seen += [t["id"] for t in reply.json()["items"]]
        cursor = reply.json()["next_cursor"]
        if cursor is None:
            break
    assert seen[2:] == undated and set(seen[:2]) == {made[0], made[3]}
