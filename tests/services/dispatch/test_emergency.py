"""Emergency mode (平急转换) through the API on both backends: who may switch, what is listed to
whom, what is published, and what new tickets get while it is on and after switching back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.dispatch.app import component
from services.dispatch.context import context_of
from services.dispatch.emergency import active_for, cache_of
from services.dispatch.tickets import open_ticket
from shared.auth import Principal, Role, Scope, issue_token
from shared.db.models import Ticket, User
from shared.messages import (
    EMERGENCY_CHANGED,
    EmergencyChangedV1,
    EventIngestedV1,
    GeotagInfo,
    decode,
)
from shared.service import build_app
from shared.settings import Settings
from tests.support.apps import add_key, runtime_of, serving

CITY, DISTRICT, OTHER_DISTRICT = "500000", "500103", "500104"
STREET = "500103001"  # 七星岗街道, in 渝中区
FLOOD: dict[str, Any] = {
    "area": DISTRICT, "incident": "防汛", "categories": ["E0501", "S0101"], "deadline_factor": 0.5,
}  # fmt: skip


@dataclass
class Hub:
    app: FastAPI
    client: httpx.AsyncClient

    async def as_(self, role: Role, scope: str = "city") -> dict[str, str]:
        """Headers of a signed-in user with this role and scope (its row stored on first use:
        tokens of users who do not exist are refused)."""
        principal = Principal(f"{role}-{scope}", role, Scope.parse(scope))
        runtime = runtime_of(self.app)
        async with runtime.sessions() as session, session.begin():
            stored = select(User.id).where(User.username == principal.subject)
            if await session.scalar(stored) is None:
                session.add(User(username=principal.subject, password_hash="!", role=role,
                                 scope=scope))  # fmt: skip
        token = issue_token(principal, runtime.jwt_secret, 600)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = build_app(settings, [component()], migrate=True, title="dispatch under test")
    async with serving(app) as client:
        yield Hub(app, client)


async def test_switching_on_and_back_is_recorded_and_published(hub: Hub) -> None:
    city = await hub.as_("dispatcher")
    reply = await hub.client.post("/api/v1/emergency", json=FLOOD, headers=city)
    assert reply.status_code == 201, reply.text
    mode = reply.json()
    assert (mode["area"], mode["area_name"], mode["city_wide"]) == (DISTRICT, "渝中区", False)
    assert (mode["started_by"], mode["ended_at"]) == ("dispatcher-city", None)
    listed = await hub.client.get("/api/v1/emergency", headers=city)
    assert [m["id"] for m in listed.json()] == [mode["id"]]

    runtime = runtime_of(hub.app)
    async with runtime.sessions() as session:
        assert await active_for(session, DISTRICT, "E0501") == ("防汛", 0.5)
        assert await active_for(session, DISTRICT, "E0101") is None  # not a listed category
        assert await active_for(session, OTHER_DISTRICT, "E0501") is None
    assert await active_for(cache_of(runtime), DISTRICT, "S0101") == ("防汛", 0.5)

    reply = await hub.client.delete(f"/api/v1/emergency/{mode['id']}", headers=city)
    assert reply.status_code == 200 and reply.json()["ended_by"] == "dispatcher-city"
    assert (await hub.client.get("/api/v1/emergency", headers=city)).json() == []
    assert await active_for(cache_of(runtime), DISTRICT, "E0501") is None
    again = await hub.client.delete(f"/api/v1/emergency/{mode['id']}", headers=city)
    assert again.status_code == 409

    await runtime.outbox.relay_once()
    await runtime.bus.create_group(EMERGENCY_CHANGED, "test")
    deliveries = await runtime.bus.read(EMERGENCY_CHANGED, "test", "t", count=10, block_ms=100)
    messages = [decode(d.data) for d in deliveries]
    assert all(isinstance(m, EmergencyChangedV1) for m in messages)
    assert [(m.change, str(m.emergency_id), m.incident) for m in messages] == [  # type: ignore[union-attr]
        ("started", mode["id"], "防汛"), ("ended", mode["id"], "防汛")
    ]  # fmt: skip


async def test_a_city_wide_mode_covers_every_district_and_a_district_mode_wins(hub: Hub) -> None:
    city = await hub.as_("admin")
    whole = {**FLOOD, "area": CITY, "incident": "全市防汛", "deadline_factor": 0.8}
    assert (await hub.client.post("/api/v1/emergency", json=whole, headers=city)).status_code == 201
    runtime = runtime_of(hub.app)
    assert await active_for(cache_of(runtime), OTHER_DISTRICT, "E0501") == ("全市防汛", 0.8)
    assert (await hub.client.post("/api/v1/emergency", json=FLOOD, headers=city)).status_code == 201
    async with runtime.sessions() as session:
        assert await active_for(session, DISTRICT, "E0501") == ("防汛", 0.5)
        assert await active_for(session, OTHER_DISTRICT, "E0501") == ("全市防汛", 0.8)


@pytest.mark.parametrize(
    ("role", "scope"),
    [("dispatcher", f"district:{DISTRICT}"), ("dispatcher", f"street:{STREET}"),
     ("field_staff", "city"), ("manager", "city")],
)  # fmt: skip
async def test_only_admins_and_the_city_centre_switch(hub: Hub, role: Role, scope: str) -> None:
    reply = await hub.client.post(
        "/api/v1/emergency", json=FLOOD, headers=await hub.as_(role, scope)
    )
    assert reply.status_code == 403
    started = await hub.client.post("/api/v1/emergency", json=FLOOD, headers=await hub.as_("admin"))
    mode_id = started.json()["id"]
    ending = await hub.client.delete(
        f"/api/v1/emergency/{mode_id}", headers=await hub.as_(role, scope)
    )
    assert ending.status_code == 403


async def test_integrators_and_strangers_are_refused(hub: Hub) -> None:
    key = {"X-API-Key": await add_key(hub.app, "integrator")}
    assert (await hub.client.post("/api/v1/emergency", json=FLOOD, headers=key)).status_code == 403
    assert (await hub.client.get("/api/v1/emergency", headers=key)).status_code == 403
    assert (await hub.client.post("/api/v1/emergency", json=FLOOD)).status_code == 401
    assert (await hub.client.get("/api/v1/emergency")).status_code == 401


async def test_each_scope_lists_the_modes_that_concern_it(hub: Hub) -> None:
    admin = await hub.as_("admin")
    for area, incident, category in (
        (DISTRICT, "防汛", "E0501"), (OTHER_DISTRICT, "防火", "E0504"), (CITY, "保供", "S0101")
    ):  # fmt: skip
        body = {**FLOOD, "area": area, "incident": incident, "categories": [category]}
        reply = await hub.client.post("/api/v1/emergency", json=body, headers=admin)
        assert reply.status_code == 201

    async def listed(role: Role, scope: str) -> set[str]:
        reply = await hub.client.get("/api/v1/emergency", headers=await hub.as_(role, scope))
        assert reply.status_code == 200
        return {m["incident"] for m in reply.json()}

    assert await listed("manager", "city") == {"防汛", "防火", "保供"}
    assert await listed("dispatcher", f"district:{DISTRICT}") == {"防汛", "保供"}
    assert await listed("field_staff", f"street:{STREET}") == {"防汛", "保供"}
    assert await listed("dispatcher", f"district:{OTHER_DISTRICT}") == {"防火", "保供"}


@pytest.mark.parametrize(
    ("change", "status"),
    [({"area": STREET}, 422), ({"area": "999999"}, 422), ({"categories": ["NOPE"]}, 422),
     ({"categories": []}, 422), ({"deadline_factor": 0}, 422), ({"deadline_factor": 1.5}, 422),
     ({"incident": ""}, 422), ({"surprise": 1}, 422)],
)  # fmt: skip
async def test_bad_requests_are_422(hub: Hub, change: dict[str, Any], status: int) -> None:
    reply = await hub.client.post(
        "/api/v1/emergency", json={**FLOOD, **change}, headers=await hub.as_("admin")
    )
    assert reply.status_code == status, reply.text


async def test_overlapping_modes_conflict_and_unknown_ids_are_404(hub: Hub) -> None:
    admin = await hub.as_("admin")
    assert (
        await hub.client.post("/api/v1/emergency", json=FLOOD, headers=admin)
    ).status_code == 201
    overlap = {**FLOOD, "incident": "又一次", "categories": ["S0101", "E0502"]}
    reply = await hub.client.post("/api/v1/emergency", json=overlap, headers=admin)
    assert reply.status_code == 409 and "S0101" in reply.json()["detail"]
    other = {**FLOOD, "incident": "路面塌陷", "categories": ["E0502"]}
    assert (
        await hub.client.post("/api/v1/emergency", json=other, headers=admin)
    ).status_code == 201
    missing = await hub.client.delete(f"/api/v1/emergency/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404


def flood_event(lon: float, lat: float, category: str = "E0501") -> EventIngestedV1:
    return EventIngestedV1(
        event_id=uuid.uuid4(),
        source="hotline",
        category=category,
        description="积水",
        lon=lon,
        lat=lat,
        geotag=GeotagInfo(street=STREET, district=DISTRICT, city=CITY, method="point"),
        reported_at=datetime.now(UTC),
    )


async def new_ticket(hub: Hub, event: EventIngestedV1) -> Ticket:
    runtime = runtime_of(hub.app)
    ticket_id = await open_ticket(runtime, event)
    async with runtime.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
    assert ticket is not None
    return ticket


async def test_new_tickets_follow_emergency_rules_until_switched_back(hub: Hub) -> None:
    city = await hub.as_("dispatcher")
    # C0101 上水井盖 is ordinary: its street centre owns it, with 24 working hours to handle it.
    before = await new_ticket(hub, flood_event(106.5600, 29.5550, "C0101"))
    reply = await hub.client.post(
        "/api/v1/emergency", json={**FLOOD, "categories": ["C0101"]}, headers=city
    )
    during = await new_ticket(hub, flood_event(106.5700, 29.5600, "C0101"))
    other = await new_ticket(hub, flood_event(106.5800, 29.5650, "C0102"))  # not listed
    await hub.client.delete(f"/api/v1/emergency/{reply.json()['id']}", headers=city)
    after = await new_ticket(hub, flood_event(106.5900, 29.5700, "C0101"))

    assert (before.emergency, before.owner_tier) == (None, "street")
    assert (during.emergency, during.owner_tier, during.owner_code) == (
        "防汛",
        "district",
        DISTRICT,
    )
    assert (other.emergency, other.owner_tier) == (None, "street")
    assert (after.emergency, after.owner_tier) == (None, "street")
    # Halved under the emergency, in working time (wall-clock spans depend on when it runs).
    calendar = context_of(runtime_of(hub.app)).calendar
    allowed = [
        calendar.working_time_between(t.created_at, t.handle_due_at).total_seconds() / 3600
        for t in (before, during, after)
        if t.handle_due_at is not None
    ]
    assert allowed == pytest.approx([24, 12, 24], abs=0.01)
