"""Simulated field staff close the loop on a served embedded hub: crews accept, start and resolve
(with a photo) the tickets of their street, its centre dispatches new ones and verifies resolved
ones — a failed verification sends the ticket back (返工) and it comes round again — and crews
report what they find on patrol."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.hub import create_hub_app
from shared.db.models import Event, Ticket, TicketTransition, User
from shared.settings import Settings
from simulators import field_staff
from simulators.city import fetch_streets
from simulators.field_staff import Pace, enlist, roster
from simulators.runner import Tally
from tests.support.apps import add_key, runtime_of
from tests.support.http_server import ServedApp, served
from tests.support.waiting import wait_for

STREET = "500103001"  # 七星岗街道, 渝中区
DISTRICT = "500103"
PASSWORD = "sim-password-for-tests"
QUICK = Pace(
    accept_s=(0.05, 0.15), start_s=(0.05, 0.15), resolve_s=(0.05, 0.2), verify_s=(0.05, 0.15),
    dispatch_s=(0.05, 0.1), poll_s=1.0, start_jitter_s=0.2, report_every_s=0.0,
)  # fmt: skip


@pytest.fixture
def server(embedded_settings: Settings) -> Iterator[ServedApp]:
    """The embedded hub over real HTTP (the staff follow /ws/live)."""
    with served(create_hub_app(embedded_settings)) as running:
        yield running


def test_the_roster_covers_every_department_serving_the_street(server: ServedApp) -> None:
    hierarchy = runtime_of(server.app).hierarchy
    assert field_staff.demo_streets(hierarchy) == [
        "500103001",
        "500105001",
        "500106001",
        "500108001",
    ]
    team = roster(hierarchy, [STREET])
    departments = {department for (_street, department) in team.crews}
    assert f"office@{STREET}" in departments and f"cgj@{DISTRICT}" in departments
    assert len(departments) == 14  # the street office and the district's 13 bureaus
    assert all(a.scope == f"street:{STREET}" for a in team.crews.values())
    assert set(team.desks) == {STREET, DISTRICT} and team.beats[DISTRICT] == (STREET,)
    assert all(a.username.startswith("sim-") for a in team.accounts)


async def test_simulated_staff_close_the_loop(server: ServedApp) -> None:
    app = server.app
    runtime = runtime_of(app)
    team = roster(runtime.hierarchy, [STREET])

    async def setup() -> str:
        async with runtime.sessions() as session, session.begin():
            await enlist(session, runtime.hierarchy, team.accounts, "an-older-password")
        async with runtime.sessions() as session, session.begin():  # a second run refreshes
            await enlist(session, runtime.hierarchy, team.accounts, PASSWORD)
        return await add_key(app, "crm")

    key = await asyncio.to_thread(server.run, setup())

    async def query(statement: Any) -> list[Any]:
        async with runtime.sessions() as session:
            return list(await session.scalars(statement))

    def rows(statement: Any) -> Any:
        return asyncio.to_thread(server.run, query(statement))

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert len(await rows(select(User).where(User.username.like("sim-%")))) == 17
        streets = [s for s in await fetch_streets(client, {"X-API-Key": key}) if s.code == STREET]
        point = streets[0].polygon.representative_point()
        # One for a district bureau (dispatched at once), one for the street office (the desk
        # dispatches it: no routing rule, 属地).
        ids = []
        for category in ("E0101", "E0402"):
            reply = await client.post(
                "/api/v1/events",
                json={"source": "hotline", "category": category,
                      "location": {"lon": point.x, "lat": point.y}},
                headers={"X-API-Key": key},
            )  # fmt: skip
            assert reply.status_code == 201, reply.text
            ids.append(uuid.UUID(reply.json()["id"]))

        async def tickets() -> list[Ticket]:
            found: list[Ticket] = await rows(select(Ticket).where(Ticket.street_code == STREET))
            return found

        # Strict inspectors first: every verification fails, so the work comes back (返工).
        tally = Tally()
        strict = asyncio.create_task(
            field_staff.run(client, team, PASSWORD, streets, pace=_with(pass_rate=0.0), tally=tally)
        )

        async def reworked() -> bool:
            found = await tickets()
            return len(found) == 2 and all(t.rework_count >= 1 for t in found)

        try:
            await wait_for(reworked, within=60, interval=0.2)
        finally:
            strict.cancel()
            await asyncio.gather(strict, return_exceptions=True)
        assert tally.counts["verify:200"] >= 2 and tally.counts["accept:200"] >= 2
        assert tally.counts["live:connected"] == 1  # woken by /ws/live, not only by polling

        # Then the usual inspectors, and patrols reporting what they find.
        lenient = asyncio.create_task(
            field_staff.run(
                client, team, PASSWORD, streets, pace=_with(pass_rate=1.0, report_every_s=0.5),
                seed=2,
            )
        )  # fmt: skip

        async def closed() -> bool:
            mine = [t for t in await tickets() if t.source == "hotline"]
            return len(mine) == 2 and all(t.status == "closed" for t in mine)

        try:
            await wait_for(closed, within=60, interval=0.2)
            patrolled = await wait_for(
                lambda: rows(select(Event).where(Event.source == "grid")), within=30
            )
        finally:
            lenient.cancel()
            await asyncio.gather(lenient, return_exceptions=True)

    assert patrolled[0].street_code == STREET and patrolled[0].attachments
    for ticket in [t for t in await tickets() if t.source == "hotline"]:
        timeline = await rows(
            select(TicketTransition)
            .where(TicketTransition.ticket_id == ticket.id)
            .order_by(TicketTransition.seq)
        )
        actions = [entry.action for entry in timeline]
        assert actions[-4:] == ["accept", "start", "resolve", "verify"], actions
        assert "dispatch" in actions and actions.count("verify") >= 2
        resolve = timeline[-2]
        assert resolve.actor.startswith("sim-") and resolve.note
        (photo,) = resolve.data["photos"]
        assert (await client_get(server.url, photo)).status_code == 200
        assert timeline[-1].data["passed"] is True and timeline[-1].actor.startswith("sim-desk-")


async def client_get(base: str, path: str) -> httpx.Response:
    """GET a path of the hub."""
    async with httpx.AsyncClient(base_url=base) as client:
        return await client.get(path)


def _with(**changes: Any) -> Pace:
    return replace(QUICK, **changes)
