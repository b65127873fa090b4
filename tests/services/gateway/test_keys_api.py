"""`/api/v1/keys`: admins create keys (shown once), list them (never the key) and delete them; a
deleted key fails at once over HTTP and on the embedded MQTT broker, and on another gateway
within a second."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.gateway.app import create_app as create_gateway_app
from shared.settings import Settings
from tests.services.gateway.sign_in import Hub, bearer, hub_with_users
from tests.support.apps import login, serving
from tests.support.sensors import SensorHub, sensor_hub
from tests.support.waiting import wait_for

SWITCH_OFF_WITHIN_S = 5.0  # caches hold 1 s; the rest is slack for a loaded machine


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with hub_with_users(embedded_settings) as running:
        yield running


@pytest.fixture
async def admin(hub: Hub) -> dict[str, str]:
    return bearer(await hub.sign_in("root"))


async def test_a_key_is_shown_once_at_creation(hub: Hub, admin: dict[str, str]) -> None:
    created = await hub.client.post("/api/v1/keys", json={"name": "acme"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("chk_") and body["name"] == "acme" and body["revoked_at"] is None
    assert body["mqtt"] is True and body["role"] == "integrator"
    listed = await hub.client.get("/api/v1/keys", headers=admin)
    assert listed.status_code == 200
    assert [k["name"] for k in listed.json()] == ["acme", "crm"]
    assert key not in listed.text and all("key" not in k for k in listed.json())
    # The key works at once.
    events = await hub.client.get("/api/v1/dead-letters", headers={"X-API-Key": key})
    assert events.status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "crm"}, 409),  # a key has the name
        ({"name": "ana"}, 409),  # a user has the name
        ({"name": "has:colon"}, 422),  # Mosquitto's files could not hold it
        ({"name": ""}, 422),
        ({"name": "x" * 101}, 422),
        ({}, 422),
        ({"name": "acme", "scope": "street:1"}, 422),
    ],
)
async def test_new_keys_are_checked(
    hub: Hub, admin: dict[str, str], body: dict[str, str], status: int
) -> None:
    reply = await hub.client.post("/api/v1/keys", json=body, headers=admin)
    assert reply.status_code == status, reply.text


async def test_a_deleted_key_fails_at_once(hub: Hub, admin: dict[str, str]) -> None:
    crm = {"X-API-Key": hub.crm_key}
    assert (await hub.client.get("/api/v1/dead-letters", headers=crm)).status_code == 200  # cached
    deleted = await hub.client.delete("/api/v1/keys/crm", headers=admin)
    assert deleted.status_code == 204
    assert (await hub.client.get("/api/v1/dead-letters", headers=crm)).status_code == 401
    listed = (await hub.client.get("/api/v1/keys", headers=admin)).json()
    assert listed[0]["name"] == "crm" and listed[0]["revoked_at"] is not None
    # Deleting again changes nothing; the name stays taken (its events carry it).
    assert (await hub.client.delete("/api/v1/keys/crm", headers=admin)).status_code == 204
    again = await hub.client.post("/api/v1/keys", json={"name": "crm"}, headers=admin)
    assert again.status_code == 409
    assert (await hub.client.delete("/api/v1/keys/nobody", headers=admin)).status_code == 404


@pytest.fixture
async def mqtt_hub(tmp_path: Path) -> AsyncIterator[SensorHub]:
    async with sensor_hub("embedded", tmp_path, None) as running:
        yield running


async def test_a_deleted_keys_mqtt_connection_is_closed_at_its_next_publish(
    mqtt_hub: SensorHub,
) -> None:
    await mqtt_hub.put_sensor("acme-1")
    async with mqtt_hub.publisher("acme") as acme:
        hot = json.dumps({"values": {"water_level_cm": 50}})
        await acme.publish(mqtt_hub.topic("acme-1"), hot)
        await mqtt_hub.wait_alarms("acme-1", lambda alarms: len(alarms) == 1)
        # Acknowledged, so the broker's check of the key was just cached as valid (for 1 s):
        # the publish after the delete is refused anyway, since the delete dropped that entry.
        await acme.publish(mqtt_hub.topic("acme-1"), hot)
        deleted = await mqtt_hub.client.delete("/api/v1/keys/acme", headers=mqtt_hub.admin)
        assert deleted.status_code == 204
        info = acme.client.publish(mqtt_hub.topic("acme-1"), hot, qos=1)

        async def dropped() -> bool:
            return not acme.client.is_connected()

        await wait_for(dropped, within=SWITCH_OFF_WITHIN_S)
        assert not info.is_published()  # never acknowledged


async def test_a_key_deleted_on_one_gateway_fails_on_another_within_a_second(
    production_settings: Settings,
) -> None:
    async with hub_with_users(production_settings) as hub:
        replica = create_gateway_app(production_settings)
        async with serving(replica) as other:
            crm = {"X-API-Key": hub.crm_key}
            # A route the gateway serves itself (areas), so the replica's own check answers.
            assert (await other.get("/api/v1/areas", headers=crm)).status_code == 200
            admin = await login(hub.client, "root")
            assert (await hub.client.delete("/api/v1/keys/crm", headers=admin)).status_code == 204

            async def refused() -> bool:
                return (await other.get("/api/v1/areas", headers=crm)).status_code == 401

            await wait_for(refused, within=SWITCH_OFF_WITHIN_S, interval=0.1)
