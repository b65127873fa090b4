"""The sensor registry API: who may register what, and what a registration must contain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import add_user, login
from tests.support.sensors import WATER_LEVEL, SensorHub, sensor_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[SensorHub]:
    async with sensor_hub("embedded", tmp_path, None) as running:
        yield running


async def test_the_issue_body_works_as_written(hub: SensorHub) -> None:
    created = await hub.client.put(
        "/api/v1/sensors/WL-001", json=WATER_LEVEL, headers=hub.headers()
    )
    assert created.status_code == 201, created.text
    sensor = created.json()
    assert (sensor["integrator"], sensor["alarm_category"], sensor["interval_s"]) == (
        "acme",
        "S0101",
        60,
    )
    assert sensor["rules"] == [
        {
            "metric": "water_level_cm",
            "op": ">",
            "value": 30.0,
            "hysteresis": 5.0,
            "for_s": 0.0,
            "category": "S0101",
        }
    ]
    again = await hub.client.put("/api/v1/sensors/WL-001", json=WATER_LEVEL, headers=hub.headers())
    assert again.status_code == 200
    assert (await hub.client.get("/api/v1/sensors/WL-001", headers=hub.headers())).json()[
        "id"
    ] == "WL-001"
    assert hub.intake.registry.owner_of("WL-001") == "acme"  # evaluated with it at once


async def test_other_integrators_cannot_see_or_take_a_sensor(hub: SensorHub) -> None:
    await hub.put_sensor("wl-1")
    theirs = hub.headers("other")
    taken = await hub.client.put("/api/v1/sensors/wl-1", json=WATER_LEVEL, headers=theirs)
    assert taken.status_code == 404
    assert (await hub.client.get("/api/v1/sensors/wl-1", headers=theirs)).status_code == 404
    assert (await hub.client.get("/api/v1/sensors/wl-1/alarms", headers=theirs)).status_code == 404
    named = await hub.client.put(
        "/api/v1/sensors/wl-2", json={**WATER_LEVEL, "integrator": "acme"}, headers=theirs
    )
    assert named.status_code == 403
    listed = await hub.client.get("/api/v1/sensors", headers=theirs)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("rule_change", "words"),
    [
        ({"op": "=="}, "op"),
        ({"category": "S9999"}, "unknown category"),
        ({"category": "路灯不亮"}, "not a sensor alarm category"),
        ({"hysteresis": -1}, "hysteresis"),
        ({"value": "high"}, "value"),
        ({"metric": "water level"}, "metric"),
    ],
)
async def test_bad_rules_are_422(hub: SensorHub, rule_change: dict[str, Any], words: str) -> None:
    body = {**WATER_LEVEL, "rules": [{**WATER_LEVEL["rules"][0], **rule_change}]}
    reply = await hub.client.put("/api/v1/sensors/wl-9", json=body, headers=hub.headers())
    assert reply.status_code == 422, reply.text
    assert words in str(reply.json()["detail"])


async def test_other_bad_registrations_are_422(hub: SensorHub) -> None:
    twice = {**WATER_LEVEL, "rules": WATER_LEVEL["rules"] * 2}
    for body in (
        twice,
        {**WATER_LEVEL, "interval_s": 0},
        {**WATER_LEVEL, "location": {"lon": 200, "lat": 29}},
        {**WATER_LEVEL, "type": "mystery", "rules": []},  # no category for its own alarms
        {**WATER_LEVEL, "surprise": True},
    ):
        reply = await hub.client.put("/api/v1/sensors/wl-9", json=body, headers=hub.headers())
        assert reply.status_code == 422, body
    bad_id = await hub.client.put("/api/v1/sensors/a%2Fb", json=WATER_LEVEL, headers=hub.headers())
    assert bad_id.status_code in (404, 422)


async def test_admins_register_for_a_named_integrator(hub: SensorHub) -> None:
    for_acme = {**WATER_LEVEL, "integrator": "acme"}
    made = await hub.client.put("/api/v1/sensors/wl-7", json=for_acme, headers=hub.admin)
    assert made.status_code == 201 and made.json()["integrator"] == "acme"
    unnamed = await hub.client.put("/api/v1/sensors/wl-8", json=WATER_LEVEL, headers=hub.admin)
    assert unnamed.status_code == 422
    unknown = {**WATER_LEVEL, "integrator": "nobody"}
    assert (
        await hub.client.put("/api/v1/sensors/wl-8", json=unknown, headers=hub.admin)
    ).status_code == 422
    moved = {**WATER_LEVEL, "integrator": "other"}
    assert (
        await hub.client.put("/api/v1/sensors/wl-7", json=moved, headers=hub.admin)
    ).status_code == 200
    assert hub.intake.registry.owner_of("wl-7") == "other"
    assert len((await hub.client.get("/api/v1/sensors", headers=hub.admin)).json()["items"]) == 1


async def test_dispatchers_do_not_manage_sensors(hub: SensorHub) -> None:
    await add_user(hub.app, "desk", "dispatcher", "city")
    desk = await login(hub.client, "desk")
    assert (
        await hub.client.put("/api/v1/sensors/wl-1", json=WATER_LEVEL, headers=desk)
    ).status_code == 403
    assert (await hub.client.get("/api/v1/dead-letters", headers=desk)).status_code == 403


async def test_removing_a_rule_clears_its_open_alarm(hub: SensorHub) -> None:
    await hub.put_sensor("wl-1")
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-1"), '{"values": {"water_level_cm": 40}}')
        await hub.wait_alarms("wl-1", lambda a: len(a) == 1)
    await hub.put_sensor("wl-1", rules=[])
    alarms = await hub.alarms("wl-1")
    assert (alarms[0]["state"], alarms[0]["clear_reason"]) == ("cleared", "rule_removed")
    sensor = hub.intake.registry.get("wl-1")
    assert sensor is not None and sensor.alarms is None and sensor.rules == ()
