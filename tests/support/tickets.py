"""A running hub for dispatch tests: post events, wait for their tickets, act on them."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from services.hub import create_hub_app
from shared.areas import Area
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving
from tests.support.waiting import wait_for

Headers = dict[str, str]


def shifted(lon: float, lat: float, east_m: float = 0.0, north_m: float = 0.0) -> dict[str, float]:
    """A location `east_m` metres east and `north_m` north of a point."""
    return {
        "lon": lon + east_m / (111_320 * math.cos(math.radians(lat))),
        "lat": lat + north_m / 110_540,
    }


@dataclass
class Hub:
    """A started hub app with an integrator key and helpers for the dispatch API."""

    app: FastAPI
    client: httpx.AsyncClient
    key: Headers
    users: dict[str, Headers] = field(default_factory=dict)
    _refs: int = 0

    @property
    def runtime(self) -> Runtime:
        """The app's runtime."""
        return runtime_of(self.app)

    def streets(self, district: str = "500103") -> list[Area]:
        """The streets of a district (渝中区 by default)."""
        return self.runtime.hierarchy.children(district)

    def point(self, street: Area) -> tuple[float, float]:
        """A point well inside a street."""
        p = street.geometry.representative_point()
        return p.x, p.y

    async def user(
        self, name: str, role: str, scope: str, department: str | None = None
    ) -> Headers:
        """Create a user and return its Authorization header."""
        await add_user(self.app, name, role, scope, department)
        self.users[name] = await login(self.client, name)
        return self.users[name]

    async def post_event(self, **body: Any) -> dict[str, Any]:
        """Submit an event (a unique source_ref unless given) and return it."""
        self._refs += 1
        body.setdefault("source_ref", f"test-{self._refs}")
        reply = await self.client.post("/api/v1/events", json=body, headers=self.key)
        assert reply.status_code in (200, 201), reply.text
        event: dict[str, Any] = reply.json()
        return event

    async def ticket_of(self, event_id: str) -> str:
        """Wait until dispatch linked the event to a ticket; the ticket id."""

        async def probe() -> str:
            reply = await self.client.get(f"/api/v1/events/{event_id}", headers=self.key)
            assert reply.status_code == 200, reply.text
            ticket_id: str = reply.json()["ticket_id"] or ""
            return ticket_id

        return await wait_for(probe, within=20)

    async def report(self, **body: Any) -> str:
        """Submit an event and wait for its ticket."""
        return await self.ticket_of((await self.post_event(**body))["id"])

    async def ticket(self, ticket_id: str, headers: Headers) -> dict[str, Any]:
        """GET a ticket (200 expected)."""
        reply = await self.client.get(f"/api/v1/tickets/{ticket_id}", headers=headers)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    async def act(
        self, ticket_id: str, headers: Headers, action: str, **body: Any
    ) -> httpx.Response:
        """POST one action."""
        return await self.client.post(
            f"/api/v1/tickets/{ticket_id}/actions",
            json={"action": action, **body},
            headers=headers,
        )

    async def ok(
        self, ticket_id: str, headers: Headers, action: str, **body: Any
    ) -> dict[str, Any]:
        """POST one action that must succeed; the ticket after it."""
        reply = await self.act(ticket_id, headers, action, **body)
        assert reply.status_code == 200, reply.text
        ticket: dict[str, Any] = reply.json()["ticket"]
        return ticket


@asynccontextmanager
async def running_hub(settings: Settings, key_name: str = "crm") -> AsyncIterator[Hub]:
    """The all-in-one app on these settings, started, with a new integrator key."""
    app = create_hub_app(settings)
    async with serving(app) as client:
        key = await add_key(app, key_name)
        yield Hub(app, client, {"X-API-Key": key})
