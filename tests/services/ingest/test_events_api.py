"""POST/GET /api/v1/events: validation, idempotency, who may submit and read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, serving

GOOD: dict[str, Any] = {"category": "路灯不亮", "location": {"lon": 106.5516, "lat": 29.5630}}


@pytest.fixture(params=["embedded", "production"])
async def hub(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = create_hub_app(settings)
    async with serving(app) as client:
        await add_user(app, "boss", "manager", "city")
        headers = {
            "a": {"X-API-Key": await add_key(app, "integrator-a")},
            "b": {"X-API-Key": await add_key(app, "integrator-b")},
            "boss": await login(client, "boss"),
        }
        yield client, headers


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": None}, "category"),
        ({"location": {"lon": 200, "lat": 29}}, "lon"),
        ({"location": {"lon": 106, "lat": "north"}}, "lat"),
        ({"description": "长" * 4001}, "description"),
        ({"reported_at": "2026-01-01T08:00:00"}, "reported_at"),  # no time zone
        ({"reported_at": "0001-01-01T00:00:00Z"}, "reported_at"),  # overflowed merge windows
        ({"reported_at": "9999-12-31T23:59:59+14:00"}, "reported_at"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_events_are_422_naming_the_field(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]], change: dict[str, Any], field: str
) -> None:
    client, h = hub
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    reply = await client.post("/api/v1/events", json=body, headers=h["a"])
    assert reply.status_code == 422
    assert field in str(reply.json()["detail"])


async def test_malformed_json_is_422(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    reply = await client.post(
        "/api/v1/events",
        content=b"{not json",
        headers={**h["a"], "content-type": "application/json"},
    )
    assert reply.status_code == 422
    error = reply.json()["detail"][0]
    assert error["type"] == "json_invalid" and error["loc"] == ["body", 1]  # where it broke


async def test_missing_or_wrong_api_key_is_401(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, _h = hub
    missing = await client.post("/api/v1/events", json=GOOD)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = await client.post("/api/v1/events", json=GOOD, headers={"X-API-Key": "chk_nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"


async def test_managers_may_not_submit_and_integrators_may_not_read_tickets(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    assert (await client.post("/api/v1/events", json=GOOD, headers=h["boss"])).status_code == 403
    reply = await client.get(f"/api/v1/tickets/{uuid.uuid4()}", headers=h["a"])
    assert reply.status_code == 403


async def test_integrators_read_only_their_own_events(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    event_id = (await client.post("/api/v1/events", json=GOOD, headers=h["a"])).json()["id"]
    assert (await client.get(f"/api/v1/events/{event_id}", headers=h["a"])).status_code == 200
    assert (await client.get(f"/api/v1/events/{event_id}", headers=h["b"])).status_code == 404
    assert (await client.get(f"/api/v1/events/{event_id}", headers=h["boss"])).status_code == 200
    assert (await client.get(f"/api/v1/events/{uuid.uuid4()}", headers=h["a"])).status_code == 404


async def test_concurrent_duplicates_store_one_event(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    client, h = hub
    body = {**GOOD, "source": "hotline", "source_ref": "call-42"}
    replies = await asyncio.gather(
        *(client.post("/api/v1/events", json=body, headers=h["a"]) for _ in range(10))
    )
    assert sorted(r.status_code for r in replies) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in replies}) == 1
    other_source = await client.post(
        "/api/v1/events", json={**body, "source": "grid"}, headers=h["a"]
    )
    assert other_source.status_code == 201


async def test_a_reference_is_a_senders_own(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]],
) -> None:
    """Another integrator reusing a reference gets an event of its own, never the first one's."""
    client, h = hub
    body = {**GOOD, "source": "hotline", "source_ref": "ticket-1", "description": "A's secret"}
    first = await client.post("/api/v1/events", json=body, headers=h["a"])
    theirs = await client.post(
        "/api/v1/events", json={**body, "description": "B's"}, headers=h["b"]
    )
    assert (first.status_code, theirs.status_code) == (201, 201)
    assert theirs.json()["id"] != first.json()["id"]
    assert theirs.json()["description"] == "B's"
    batch = await client.post("/api/v1/events/batch", json={"events": [body]}, headers=h["b"])
    assert batch.json()["results"][0]["event"]["id"] == theirs.json()["id"]  # B's own original


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN"])
async def test_a_refused_non_finite_number_is_a_422_not_a_500(
    hub: tuple[httpx.AsyncClient, dict[str, dict[str, str]]], number: str
) -> None:
    # Python's JSON parser reads these; echoing them back in the 422 used to fail to render.
    client, h = hub
    body = '{"category": "E0101", "location": {"lon": NUMBER, "lat": 29.5}}'.replace(
        "NUMBER", number
    )
    headers = {**h["a"], "content-type": "application/json"}
    reply = await client.post("/api/v1/events", content=body, headers=headers)
    assert reply.status_code == 422, reply.text
    assert "lon" in str(reply.json()["detail"])
