"""One integrator cannot reach another's sensors through the broker, on the embedded broker and on
a Mosquitto run with the password file and ACL `cityhub mqtt export-auth` generates: publishing
to another's sensor topic (also one whose id only starts like its own), a last will on it, and
subscribing to read others' readings are all refused, while its own topics work. What
tests/services/ingest/test_mqtt_auth.py covers (logins, revoked keys, one foreign publish and a
foreign will on the embedded broker, the export itself) is not repeated here."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from services.ingest.mqtt_auth import mosquitto_auth
from tests.services.ingest.test_mqtt_auth import private_mosquitto
from tests.support.apps import runtime_of
from tests.support.mqtt import TIMEOUT_S, _connect, publisher
from tests.support.sensors import SensorHub, sensor_hub
from tests.support.waiting import wait_for

HOT = json.dumps({"values": {"water_level_cm": 50}})
# acme owns `pfx`; other owns ids that start like it (a prefix must not grant them to acme).
ACME_SENSORS = ("pfx", "acme-1")
OTHER_SENSORS = ("pfx.2", "pfx-3", "pfx:4", "other-1")


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[SensorHub]:
    async with sensor_hub("embedded", tmp_path, None) as running:
        for sensor in ACME_SENSORS:
            await running.put_sensor(sensor)
        for sensor in OTHER_SENSORS:
            await running.put_sensor(sensor, owner="other")
        yield running


class Listener:
    """A subscribed MQTT client that records the topics it receives."""

    def __init__(self, host: str, port: int, user: str, password: str, topic: str) -> None:
        self.received: list[str] = []
        self.granted: list[ReasonCode] = []
        subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex[:8]}"
        )
        client.username_pw_set(user, password)
        client.on_message = lambda _c, _u, m: self.received.append(m.topic)

        def on_subscribe(*args: object) -> None:
            self.granted.extend(args[3])  # type: ignore[arg-type]  # (client, userdata, mid, codes, props)
            subscribed.set()

        client.on_subscribe = on_subscribe
        client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        client.connect(host, port)
        client.loop_start()
        self.client = client
        self.subscribed = subscribed

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def listening(host: str, port: int, user: str, password: str, topic: str) -> Iterator[Listener]:
    listener = Listener(host, port, user, password, topic)
    try:
        yield listener
    finally:
        listener.close()


async def test_embedded_broker_refuses_prefix_sharing_topics_and_subscriptions(
    hub: SensorHub,
) -> None:
    async with hub.publisher("acme") as acme:
        for sensor in OTHER_SENSORS:
            await acme.publish(hub.topic(sensor), HOT)  # acknowledged, refused, dead-lettered
            await acme.publish(hub.topic(sensor, "alarms"), '{"type": "x", "severity": "major"}')
        await acme.publish(hub.topic("pfx"), HOT)  # its own, after the others
        await hub.wait_alarms("pfx", lambda a: len(a) == 1)
    for sensor in OTHER_SENSORS:
        assert await hub.alarms(sensor, owner="other") == [], sensor
    refused = (await hub.dead_letters())["items"]
    assert sorted(d["sensor_id"] for d in refused) == sorted(OTHER_SENSORS * 2)
    assert {d["reason"] for d in refused} == {"forbidden_topic"}

    # Nobody subscribes to the embedded broker: others' readings cannot be read through it.
    with listening(hub.host, hub.port, "acme", hub.keys["acme"], f"{hub.root}/sensors/#") as spy:
        assert await asyncio.to_thread(spy.subscribed.wait, TIMEOUT_S)
        assert all(code.is_failure for code in spy.granted), spy.granted
        async with hub.publisher("other") as other:
            await other.publish(hub.topic("other-1"), HOT)

        async def arrived() -> bool:  # it did arrive, at the intake
            return len(await hub.alarms("other-1", owner="other")) == 1

        await wait_for(arrived)
        # The spy's connection is still open: a delivery would have come before its own PUBACK.
        async with hub.publisher("acme") as acme:
            await acme.publish(hub.topic("acme-1"), HOT)
    assert spy.received == []


@pytest.mark.mqtt
async def test_mosquitto_with_the_generated_acl_keeps_integrators_apart(
    hub: SensorHub, tmp_path: Path
) -> None:
    root = hub.root
    ingest_password = uuid.uuid4().hex
    async with runtime_of(hub.app).sessions() as session:
        exported = await mosquitto_auth(session, root, ("ingest", ingest_password))
    passwords, acl = tmp_path / "passwd", tmp_path / "acl"
    passwords.write_text(exported.passwords)
    acl.write_text(exported.acl)
    passwords.chmod(0o600)
    assert exported.sensors == len(ACME_SENSORS) + len(OTHER_SENSORS)

    with (
        private_mosquitto(tmp_path, passwords, acl) as port,
        listening("127.0.0.1", port, "ingest", ingest_password, f"{root}/sensors/#") as ingest,
        listening("127.0.0.1", port, "acme", hub.keys["acme"], "#") as spy,
        listening("127.0.0.1", port, "acme", hub.keys["acme"], f"{root}/sensors/#") as spy2,
    ):
        for listener in (ingest, spy, spy2):
            assert await asyncio.to_thread(listener.subscribed.wait, TIMEOUT_S)
        # A will on another's sensor: Mosquitto must not publish it when acme's link dies.
        will = (f"{root}/sensors/other-1/status", b"offline")
        client, reason = await asyncio.to_thread(
            _connect, "127.0.0.1", port, "acme", hub.keys["acme"], will
        )
        if reason is not None and not reason.is_failure:
            sock = client.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)  # lost without DISCONNECT: the will is due
        await asyncio.to_thread(client.loop_stop)
        async with publisher("127.0.0.1", port, "acme", hub.keys["acme"]) as acme:
            for sensor in OTHER_SENSORS:
                await acme.publish(f"{root}/sensors/{sensor}/readings", HOT)
                await acme.publish(f"{root}/sensors/{sensor}/status", "offline")
            for sensor in ACME_SENSORS:
                await acme.publish(f"{root}/sensors/{sensor}/readings", HOT)
        async with publisher("127.0.0.1", port, "other", hub.keys["other"]) as other:
            await other.publish(f"{root}/sensors/other-1/readings", HOT)
        mine = {f"{root}/sensors/{s}/readings" for s in ACME_SENSORS}
        last = f"{root}/sensors/other-1/readings"

        async def arrived() -> bool:
            return mine <= set(ingest.received) and last in ingest.received

        await wait_for(arrived, within=20)
    # Ingest got acme's own and other's own; nothing acme sent under other's sensors, no will.
    assert sorted(ingest.received) == sorted([*mine, last]), ingest.received
    assert spy.received == [] and spy2.received == [], (spy.received, spy2.received)
