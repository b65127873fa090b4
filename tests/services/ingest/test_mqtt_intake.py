"""MQTT sensor intake end to end, on the embedded broker and on a real Mosquitto: readings raise
alarms once, repeats update them, returns clear them; device alarms, last wills, silence; bad
messages become dead letters and never stop the consumer."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.ingest.app import create_app
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from shared.db.models import Event
from shared.settings import Settings
from tests.support.apps import add_key, runtime_of, serving
from tests.support.mqtt import clear_session, publisher
from tests.support.sensors import WATER_LEVEL, SensorHub, sensor_hub
from tests.support.servers import Servers
from tests.support.waiting import wait_for

BROKERS = ["embedded", pytest.param("mosquitto", marks=pytest.mark.mqtt)]


@pytest.fixture(params=BROKERS)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SensorHub]:
    servers = request.getfixturevalue("servers") if request.param == "mosquitto" else None
    async with sensor_hub(request.param, tmp_path, servers) as running:
        yield running


def reading(value: float, ts_ms: int | None = None, metric: str = "water_level_cm") -> str:
    """A reading payload."""
    return json.dumps({"ts": ts_ms or round(time.time() * 1000), "values": {metric: value}})


async def sensor_events(hub: SensorHub) -> int:
    """How many events sensors raised."""
    async with runtime_of(hub.app).sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Event).where(Event.source == "sensor")
        )
    return int(count or 0)


async def test_reading_raises_once_repeats_update_and_return_clears(hub: SensorHub) -> None:
    await hub.put_sensor("wl-1", name="Jiefangbei underpass")
    async with hub.publisher() as pub:
        for value in (12.0, 35.2, 36.0, 41.5):
            await pub.publish(hub.topic("wl-1"), reading(value))
        raised = await hub.wait_alarms("wl-1", lambda a: len(a) == 1 and a[0]["count"] == 3)
        alarm = raised[0]
        assert alarm["state"] == "raised"
        assert (alarm["value"], alarm["last_value"], alarm["kind"]) == (35.2, 41.5, "threshold")
        assert (alarm["rule_key"], alarm["category"]) == ("water_level_cm>30", "S0101")

        event = (
            await hub.client.get(f"/api/v1/events/{alarm['event_id']}", headers=hub.headers())
        ).json()
        assert (event["source"], event["category"]) == ("sensor", "S0101")
        assert event["location"] == {"lon": 106.58, "lat": 29.56}
        assert "Jiefangbei underpass" in event["description"]
        assert event["geotag"]["method"] in ("point", "nearest")

        await pub.publish(hub.topic("wl-1"), reading(27.0))  # inside the band (25..30): holds
        await hub.sync(pub, "wl-1")
        assert (await hub.alarms("wl-1"))[0]["state"] == "raised"

        await pub.publish(hub.topic("wl-1"), reading(24.0))  # beyond the band: clears
        cleared = await hub.wait_alarms("wl-1", lambda a: a[0]["state"] == "cleared")
    assert len(cleared) == 1
    assert (cleared[0]["clear_value"], cleared[0]["clear_reason"]) == (24.0, "value")
    assert cleared[0]["count"] == 3
    assert await sensor_events(hub) == 1  # one event for the whole episode: no storm


async def test_minimum_duration_before_raising(hub: SensorHub) -> None:
    rule = {
        "metric": "tilt_deg",
        "op": "above",
        "value": 15,
        "hysteresis": 2,
        "for_s": 60,
        "category": "井盖位移",  # by name: stored as its code
    }
    body = await hub.put_sensor("mh-1", type="manhole", rules=[rule])
    assert body["rules"][0]["category"] == "S0102" and body["rules"][0]["op"] == ">"
    start = round(time.time() * 1000) - 120_000
    async with hub.publisher() as pub:
        for offset_s in (0, 30, 59):  # tilted, but not for a minute yet
            await pub.publish(hub.topic("mh-1"), reading(20, start + offset_s * 1000, "tilt_deg"))
        await hub.sync(pub, "mh-1")
        assert await hub.alarms("mh-1") == []
        await pub.publish(hub.topic("mh-1"), reading(21, start + 60_000, "tilt_deg"))
        alarms = await hub.wait_alarms("mh-1", lambda a: len(a) == 1)
    assert alarms[0]["raised_at"].startswith(
        time.strftime("%Y-%m-%dT%H:%M", time.gmtime((start + 60_000) / 1000))
    )
    assert alarms[0]["category"] == "S0102"


async def test_device_raised_alarms(hub: SensorHub) -> None:
    await hub.put_sensor("wl-2")
    alarm = {"type": "cabinet_open", "severity": "major", "message": "cabinet door forced"}
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-2", "alarms"), json.dumps(alarm))
        await pub.publish(hub.topic("wl-2", "alarms"), json.dumps(alarm))  # the same, repeated
        raised = await hub.wait_alarms("wl-2", lambda a: len(a) == 1 and a[0]["count"] == 2)
        assert (raised[0]["kind"], raised[0]["rule_key"]) == ("device", "device:cabinet_open")
        assert raised[0]["category"] == "S0101"  # the water-level sensor's own category
        assert raised[0]["message"] == "cabinet door forced"
        event = (
            await hub.client.get(f"/api/v1/events/{raised[0]['event_id']}", headers=hub.headers())
        ).json()
        assert event["priority"] == "urgent"  # severity major

        clear = {"type": "cabinet_open", "severity": "clear", "message": ""}
        await pub.publish(hub.topic("wl-2", "alarms"), json.dumps(clear))
        cleared = await hub.wait_alarms("wl-2", lambda a: a[0]["state"] == "cleared")
    assert cleared[0]["clear_reason"] == "device"


async def test_last_will_raises_offline_and_the_next_reading_clears_it(hub: SensorHub) -> None:
    await hub.put_sensor("wl-3")
    will = (hub.topic("wl-3", "status"), b"offline")
    async with hub.publisher(will=will) as device:
        await device.publish(hub.topic("wl-3", "status"), "online")
        await device.publish(hub.topic("wl-3"), reading(10))
        device.drop()  # the connection dies: the broker publishes the will
        offline = await hub.wait_alarms("wl-3", lambda a: len(a) == 1)
    assert (offline[0]["kind"], offline[0]["category"]) == ("offline", "S0108")
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-3"), reading(11))
        cleared = await hub.wait_alarms("wl-3", lambda a: a[0]["state"] == "cleared")
    assert cleared[0]["clear_reason"] == "reading"


async def test_silence_for_three_intervals_raises_device_offline_once(hub: SensorHub) -> None:
    await hub.put_sensor("wl-4", interval_s=1)
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-4"), reading(10))
        offline = await hub.wait_alarms("wl-4", lambda a: len(a) == 1, within=15)
        assert (offline[0]["kind"], offline[0]["state"]) == ("offline", "raised")
        assert (
            "silent for"
            in (
                await hub.client.get(
                    f"/api/v1/events/{offline[0]['event_id']}", headers=hub.headers()
                )
            ).json()["description"]
        )
        await pub.publish(hub.topic("wl-4"), reading(10))
        cleared = await hub.wait_alarms("wl-4", lambda a: a[0]["state"] == "cleared")
    assert len(cleared) == 1  # raised once, while silent; cleared by the reading


async def test_bad_messages_become_dead_letters_and_the_next_good_one_counts(
    hub: SensorHub,
) -> None:
    await hub.put_sensor("wl-5")
    await hub.put_sensor("other-1", owner="other")
    future_ms = round((time.time() + 3600) * 1000)
    bad: list[tuple[str, bytes, str]] = [
        ("readings", b"\xffnot json at all", "not_json"),
        ("readings", b'{"values": [1, 2]}', "bad_shape"),
        ("readings", b'{"values": {"water_level_cm": NaN}}', "bad_value"),
        ("readings", b'{"values": {"water_level_cm": Infinity}}', "bad_value"),
        ("readings", reading(35, future_ms).encode(), "future_timestamp"),
        ("readings", b'{"values": {"a": 1}, "x": "' + b"y" * 20_000 + b'"}', "oversize"),
        ("telemetry", reading(35).encode(), "bad_topic"),
        ("alarms", b'{"type": "leak", "severity": "doom"}', "bad_shape"),
    ]
    async with hub.publisher() as pub:
        for kind, payload, _reason in bad:
            await pub.publish(hub.topic("wl-5", kind), payload)
        if hub.kind == "mosquitto":  # anonymous-friendly broker: unknown sensors reach ingest
            await pub.publish(hub.topic("no-such-sensor"), reading(1))
        await pub.publish(hub.topic("wl-5"), reading(35))  # still consumed: raises
        await hub.wait_alarms("wl-5", lambda a: len(a) == 1)

    page = await hub.dead_letters()
    reasons = sorted(d["reason"] for d in page["items"])
    expected = sorted(r for _k, _p, r in bad)
    if hub.kind == "mosquitto":
        expected = sorted([*expected, "unknown_sensor"])
    assert reasons == expected
    counts: dict[str, int] = {}
    for reason in expected:
        counts[reason] = counts.get(reason, 0) + 1
    assert page["counts"] == counts
    assert dict(hub.intake.dead_letters) == counts  # the in-memory counter too

    by_reason = {d["reason"]: d for d in page["items"]}
    oversize = by_reason["oversize"]
    assert oversize["payload_bytes"] > 20_000 and len(oversize["payload"].encode()) <= 4096
    assert by_reason["not_json"]["payload"].startswith("\\xffnot json")
    assert by_reason["not_json"]["topic"] == hub.topic("wl-5")
    assert by_reason["future_timestamp"]["sensor_id"] == "wl-5"

    mine = await hub.dead_letters(hub.headers("acme"))  # integrators see their sensors' only
    assert len(mine["items"]) == len(bad)
    assert (await hub.dead_letters(hub.headers("other")))["items"] == []
    only = await hub.client.get(
        "/api/v1/dead-letters", params={"reason": "bad_value"}, headers=hub.admin
    )
    assert [d["reason"] for d in only.json()["items"]] == ["bad_value", "bad_value"]


async def test_stale_and_out_of_order_readings_do_not_flap(hub: SensorHub) -> None:
    await hub.put_sensor("wl-6")
    now = round(time.time() * 1000)
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-6"), reading(40, now))
        await pub.publish(hub.topic("wl-6"), reading(10, now - 60_000))  # older: not evaluated
        await hub.sync(pub, "wl-6")
    alarms = await hub.alarms("wl-6")
    assert [a["state"] for a in alarms] == ["raised"]
    assert math.isclose(hub.intake.stale, 1)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.mqtt
async def test_ingest_service_on_postgres_and_redis(
    production_settings: Settings, servers: Servers
) -> None:
    unique = uuid.uuid4().hex[:10]
    settings = production_settings.model_copy(
        update={
            "mqtt_url": f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
            "mqtt_topic_root": f"test/{unique}",
            "mqtt_client_id": f"test-ingest-{unique}",
        }
    )
    app = create_app(settings)
    try:
        async with serving(app) as client:
            runtime = runtime_of(app)
            key = await add_key(app, "acme")
            headers = {"X-API-Key": key}
            reply = await client.put("/api/v1/sensors/wl-1", json=WATER_LEVEL, headers=headers)
            assert reply.status_code == 201, reply.text

            async def subscribed() -> bool:
                return bool(runtime.extras["mqtt_intake"].is_subscribed)

            await wait_for(subscribed)
            topic = f"{settings.mqtt_topic_root}/sensors/wl-1/readings"
            async with publisher(servers.mqtt_host, servers.mqtt_port) as pub:
                for value in (35.0, 37.0, 20.0):
                    await pub.publish(topic, reading(value))

                async def cleared() -> list[dict[str, Any]]:
                    alarms = (
                        await client.get("/api/v1/sensors/wl-1/alarms", headers=headers)
                    ).json()
                    return alarms if alarms and alarms[0]["state"] == "cleared" else []

                alarms = await wait_for(cleared)
            assert (alarms[0]["count"], alarms[0]["clear_value"]) == (2, 20.0)
            intake: SensorIntake = runtime.extras[INTAKE_KEY]
            await intake.flush(last_seen=True)  # one UPDATE … FROM unnest() on PostgreSQL
            sensor = (await client.get("/api/v1/sensors/wl-1", headers=headers)).json()
            assert sensor["last_seen_at"] is not None
    finally:
        clear_session(servers.mqtt_host, servers.mqtt_port, settings.mqtt_client_id)


async def test_heartbeats_without_readings_still_go_offline(hub: SensorHub) -> None:
    await hub.put_sensor("wl-8", interval_s=1)
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-8"), reading(10))

        async def heartbeat() -> None:  # the link stays up, the sensor measures nothing
            while True:
                await pub.publish(hub.topic("wl-8", "status"), "online")
                await asyncio.sleep(0.5)

        beating = asyncio.create_task(heartbeat())
        try:
            offline = await hub.wait_alarms("wl-8", lambda a: len(a) == 1, within=15)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
    assert (offline[0]["kind"], offline[0]["state"]) == ("offline", "raised")


async def test_absurd_values_and_deep_json_are_dead_letters_without_effect(
    hub: SensorHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services")
    await hub.put_sensor("wl-9")
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-9"), reading(1.7976931348623157e308))  # the issue's
        await pub.publish(hub.topic("wl-9"), reading(-2000))  # finite, but no water level
        await pub.publish(hub.topic("wl-9"), b"[" * 5000 + b"]" * 5000)
        deep_value = b'{"values": {"water_level_cm": 50, "x": ' + b"[" * 9 + b"1" + b"]" * 9 + b"}}"
        await pub.publish(hub.topic("wl-9"), deep_value)
        await hub.sync(pub, "wl-9")
        page = await hub.dead_letters()
        refused = [d for d in page["items"] if d["reason"] != "not_json"]  # not the sync marker
        assert sorted(d["reason"] for d in refused) == [
            "bad_shape",
            "bad_shape",
            "implausible_value",
            "implausible_value",
        ]
        [absurd] = [d for d in refused if "e+308" in d["payload"]]
        assert (absurd["reason"], absurd["sensor_id"]) == ("implausible_value", "wl-9")
        assert absurd["detail"] == (
            "'water_level_cm' = 1.79769e+308 is outside the plausible range -100..5000 "
            "for a water_level sensor"
        )
        assert await hub.alarms("wl-9") == []  # no alarm, so no event and no ticket
        assert await sensor_events(hub) == 0
        sensor = hub.intake.registry.get("wl-9")
        assert sensor is not None and sensor.last_ts == 0.0  # no reading was evaluated
        # Refusals are the sender's mistakes: no error and no traceback in the hub's log.
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]

        await pub.publish(hub.topic("wl-9"), reading(35.2))  # a plausible crossing still raises
        await hub.wait_alarms("wl-9", lambda a: len(a) == 1)
    assert await wait_for(lambda: sensor_events(hub)) == 1
