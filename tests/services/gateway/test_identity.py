"""Who a caller is: integrators only with their API keys, each reading only what it submitted and
owns; users and keys switched off by the CLI (another process) are refused within a second; user
departments are checked against the directory and the user's scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.identity import check_department
from services.hub import create_hub_app
from services.ingest.dead_letters import dead_letter_row, store_dead_letters
from shared.areas import Hierarchy, generate_demo
from shared.auth import Principal, Scope, hash_password, issue_token
from shared.db.models import User
from shared.errors import HubError
from shared.settings import Settings
from tests.support.apps import PASSWORD, add_key, add_user, login, runtime_of, serving
from tests.support.processes import cli
from tests.support.sensors import WATER_LEVEL
from tests.support.waiting import wait_for

EVENT: dict[str, Any] = {"category": "路灯不亮", "location": {"lon": 106.5516, "lat": 29.5630}}
SWITCH_OFF_WITHIN_S = 5.0  # the caches hold 1 s; the rest is slack for a loaded machine


@dataclass
class Hub:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    keys: dict[str, dict[str, str]]

    def cli_env(self) -> dict[str, str]:
        """The environment a `cityhub` command needs to manage this hub's database."""
        return {
            "CITYHUB_DATA_DIR": str(self.settings.data_dir),
            "CITYHUB_DATABASE_URL": self.settings.database_url or "",
            "CITYHUB_REDIS_URL": "",
            "CITYHUB_MQTT_URL": "",
        }

    async def cityhub(self, *args: str) -> None:
        """Run a `cityhub` command in its own process against this hub's database."""
        done = await asyncio.to_thread(cli, self.cli_env(), *args)
        assert done.returncode == 0, done.stderr


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = create_hub_app(settings)
    async with serving(app) as client:
        keys = {name: {"X-API-Key": await add_key(app, name)} for name in ("acme", "other")}
        yield Hub(app, client, settings, keys)


async def _integrator_user(app: FastAPI, name: str) -> None:
    """An integrator who signs in with a password, as `users add --role integrator` made them
    before integrators lost password sign-in."""
    runtime = runtime_of(app)
    async with runtime.sessions() as session, session.begin():
        session.add(
            User(
                username=name,
                password_hash=hash_password(PASSWORD),
                role="integrator",
                scope="city",
            )
        )


async def _one_of_each(hub: Hub, owner: str) -> tuple[str, str]:
    """An event and a sensor (with a dead letter) of this integrator: (event id, sensor id)."""
    posted = await hub.client.post(
        "/api/v1/events", json={**EVENT, "source_ref": f"{owner}-1"}, headers=hub.keys[owner]
    )
    assert posted.status_code == 201, posted.text
    sensor_id = f"{owner}-wl"
    put = await hub.client.put(
        f"/api/v1/sensors/{sensor_id}", json=WATER_LEVEL, headers=hub.keys[owner]
    )
    assert put.status_code == 201, put.text
    runtime = runtime_of(hub.app)
    row = dead_letter_row(channel="mqtt", topic=f"cityhub/v1/sensors/{sensor_id}/readings",
                          payload=b"{", reason="not_json", detail="", sensor_id=sensor_id,
                          integrator=owner, received_at=datetime.now(UTC))  # fmt: skip
    async with runtime.sessions() as session, session.begin():
        await store_dead_letters(session, [row])
    return str(posted.json()["id"]), sensor_id


async def _reads(hub: Hub, headers: dict[str, str], event_id: str, sensor_id: str) -> list[int]:
    """Status of every integrator read of one event and one sensor."""
    sensor = f"/api/v1/sensors/{sensor_id}"
    paths = [f"/api/v1/events/{event_id}", sensor, f"{sensor}/alarms", "/api/v1/sensors",
             "/api/v1/dead-letters"]  # fmt: skip
    return [(await hub.client.get(path, headers=headers)).status_code for path in paths]


async def test_an_integrator_user_cannot_sign_in_or_use_a_token(hub: Hub) -> None:
    other_event, other_sensor = await _one_of_each(hub, "other")
    await _integrator_user(hub.app, "acme-user")
    signed_in = await hub.client.post(
        "/auth/token", data={"username": "acme-user", "password": PASSWORD}
    )
    assert signed_in.status_code == 403 and "API key" in signed_in.json()["detail"]
    # A token issued before the change (or forged with the secret) gets nowhere either.
    token = issue_token(
        Principal("acme-user", "integrator", Scope.parse("city")),
        runtime_of(hub.app).jwt_secret,
        600,
    )
    bearer = {"Authorization": f"Bearer {token}"}
    assert await _reads(hub, bearer, other_event, other_sensor) == [401] * 5
    post = await hub.client.post("/api/v1/events", json=EVENT, headers=bearer)
    assert post.status_code == 401


async def test_an_integrators_key_reads_only_what_it_submitted_and_owns(hub: Hub) -> None:
    own_event, own_sensor = await _one_of_each(hub, "acme")
    other_event, other_sensor = await _one_of_each(hub, "other")
    acme = hub.keys["acme"]
    assert await _reads(hub, acme, own_event, own_sensor) == [200] * 5
    assert await _reads(hub, acme, other_event, other_sensor) == [404, 404, 404, 200, 200]
    listed = (await hub.client.get("/api/v1/sensors", headers=acme)).json()["items"]
    assert [s["id"] for s in listed] == [own_sensor]
    letters = (await hub.client.get("/api/v1/dead-letters", headers=acme)).json()
    assert [d["sensor_id"] for d in letters["items"]] == [own_sensor]
    assert letters["counts"] == {"not_json": 1}
    await add_user(hub.app, "root", "admin", "city")  # an admin sees both
    admin = await login(hub.client, "root")
    everything = (await hub.client.get("/api/v1/dead-letters", headers=admin)).json()
    assert {d["sensor_id"] for d in everything["items"]} == {own_sensor, other_sensor}


async def test_a_revoked_key_is_refused_within_a_second(hub: Hub) -> None:
    acme = hub.keys["acme"]
    assert (await hub.client.get("/api/v1/sensors", headers=acme)).status_code == 200  # cached
    await hub.cityhub("keys", "revoke", "acme")

    async def refused() -> bool:
        reply = await hub.client.get("/api/v1/sensors", headers=acme)
        return reply.status_code == 401

    await wait_for(refused, within=SWITCH_OFF_WITHIN_S, interval=0.1)
    posted = await hub.client.post("/api/v1/events", json=EVENT, headers=acme)
    assert posted.status_code == 401
    assert (await hub.client.get("/api/v1/sensors", headers=hub.keys["other"])).status_code == 200


async def test_a_disabled_user_is_refused_within_a_second_and_enabled_again(hub: Hub) -> None:
    await add_user(hub.app, "ana", "dispatcher", "district:500103")
    token = await login(hub.client, "ana")
    assert (await hub.client.get("/api/v1/tickets", headers=token)).status_code == 200
    await hub.cityhub("users", "disable", "ana")

    async def refused() -> bool:
        reply = await hub.client.get("/api/v1/tickets", headers=token)
        return reply.status_code == 401

    await wait_for(refused, within=SWITCH_OFF_WITHIN_S, interval=0.1)
    again = await hub.client.post("/auth/token", data={"username": "ana", "password": PASSWORD})
    assert again.status_code == 401
    await hub.cityhub("users", "enable", "ana")
    # Enabled again, ana signs in afresh: disabling ended the sign-ins it had (decision 0014).
    fresh = await login(hub.client, "ana")
    assert (await hub.client.get("/api/v1/tickets", headers=fresh)).status_code == 200
    assert (await hub.client.get("/api/v1/tickets", headers=token)).status_code == 401


@pytest.fixture(scope="module")
def demo() -> Hierarchy:
    return generate_demo()


@pytest.mark.parametrize(
    ("department", "scope", "fits"),
    [
        ("cgj", "city", True),  # a city bureau works anywhere
        ("cgj", "street:500103001", True),
        ("cgj@500103", "district:500103", True),
        ("cgj@500103", "street:500103001", True),  # 七星岗街道 lies in 渝中区
        ("cgj@500105", "district:500103", False),  # 江北区's bureau, 渝中区's worker
        ("cgj@500103", "city", False),
        ("office@500103001", "street:500103001", True),
        ("office@500103001", "street:500103002", False),
        ("office@500103001", "district:500103", False),
    ],
)
def test_a_department_serves_scopes_inside_its_area(
    demo: Hierarchy, department: str, scope: str, fits: bool
) -> None:
    if fits:
        check_department(department, "field_staff", Scope.parse(scope), demo)
    else:
        with pytest.raises(HubError, match="serves"):
            check_department(department, "field_staff", Scope.parse(scope), demo)


@pytest.mark.parametrize(
    ("department", "role", "scope", "message"),
    [
        ("cgj@50013", "field_staff", "district:500103", "did you mean"),  # the issue's typo
        ("城管", "field_staff", "city", "no department"),
        ("cgj@500105", "field_staff", "district:500103", "use cgj@500103 or cgj"),
        ("office@500103001", "field_staff", "district:500103", "serves street 500103001 only"),
        ("dispatch@500103", "dispatcher", "district:500103", "no department"),  # a queue
        (None, "field_staff", "city", "need a department"),
    ],
)
def test_user_departments_are_checked(
    demo: Hierarchy, department: str | None, role: str, scope: str, message: str
) -> None:
    with pytest.raises(HubError, match=message) as refused:
        check_department(department, role, Scope.parse(scope), demo)
    assert refused.value.status_code == 422
