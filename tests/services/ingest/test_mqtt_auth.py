"""Broker authentication: integrators log in with their API key and publish only under their own
sensors, on the embedded broker (our amqtt plugins) and on Mosquitto (the exported password file
and ACL, checked by a real `mosquitto`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from services.ingest.mqtt_auth import publisher_sensor
from shared.mqtt_passwords import mosquitto_hash, mosquitto_verify
from tests.support.mqtt import _connect, connack, publisher
from tests.support.processes import cli
from tests.support.sensors import WATER_LEVEL, SensorHub, sensor_hub
from tests.support.servers import free_port, port_open
from tests.support.waiting import wait_for


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[SensorHub]:
    async with sensor_hub("embedded", tmp_path, None) as running:
        yield running


async def test_embedded_broker_refuses_anonymous_and_wrong_keys(hub: SensorHub) -> None:
    anonymous = await connack(hub.host, hub.port)
    assert anonymous is None or anonymous.is_failure
    wrong = await connack(hub.host, hub.port, "acme", "chk_not-the-key")
    assert wrong is None or wrong.is_failure
    someone_elses = await connack(hub.host, hub.port, "acme", hub.keys["other"])
    assert someone_elses is None or someone_elses.is_failure
    right = await connack(hub.host, hub.port, "acme", hub.keys["acme"])
    assert right is not None and not right.is_failure


async def test_embedded_broker_refuses_a_key_revoked_by_the_cli(
    hub: SensorHub, tmp_path: Path
) -> None:
    before = await connack(hub.host, hub.port, "acme", hub.keys["acme"])
    assert before is not None and not before.is_failure
    env = {"CITYHUB_DATA_DIR": str(tmp_path), "CITYHUB_DATABASE_URL": "", "CITYHUB_REDIS_URL": ""}
    revoked = await asyncio.to_thread(cli, env, "keys", "revoke", "acme")
    assert revoked.returncode == 0, revoked.stderr
    refused = await connack(hub.host, hub.port, "acme", hub.keys["acme"])  # the next login
    assert refused is None or refused.is_failure
    still = await connack(hub.host, hub.port, "other", hub.keys["other"])
    assert still is not None and not still.is_failure


async def test_a_revoked_keys_open_connection_is_closed_at_its_next_publish(
    hub: SensorHub, tmp_path: Path
) -> None:
    await hub.put_sensor("acme-1")
    async with hub.publisher("acme") as acme:
        env = {"CITYHUB_DATA_DIR": str(tmp_path), "CITYHUB_DATABASE_URL": ""}
        revoked = await asyncio.to_thread(cli, env, "keys", "revoke", "acme")
        assert revoked.returncode == 0, revoked.stderr
        hot = json.dumps({"values": {"water_level_cm": 50}})
        info = acme.client.publish(hub.topic("acme-1"), hot, qos=1)

        async def dropped() -> bool:
            return not acme.client.is_connected()

        await wait_for(dropped, within=10)
        assert not info.is_published()  # never acknowledged
    reply = await hub.client.get("/api/v1/sensors/acme-1/alarms", headers=hub.admin)
    assert reply.status_code == 200 and reply.json() == []  # and it had no effect


async def test_integrators_publish_only_under_their_own_sensors(hub: SensorHub) -> None:
    await hub.put_sensor("acme-1")
    await hub.put_sensor("other-1", owner="other")
    async with hub.publisher("acme") as acme:
        hot = json.dumps({"values": {"water_level_cm": 50}})
        await acme.publish(hub.topic("other-1"), hot)  # not acme's: refused
        await acme.publish(hub.topic("unregistered"), hot)
        await acme.publish("elsewhere/entirely", hot)
        await acme.publish(hub.topic("acme-1"), hot)  # after the others, on the same connection
        await hub.wait_alarms("acme-1", lambda a: len(a) == 1)
    assert await hub.alarms("other-1", owner="other") == []
    # Refused, and kept with the reason (acknowledged once stored), for the admin and the sender;
    # worded alike whether the sensor is someone else's or nobody's, so acme learns neither.
    refused = (await hub.dead_letters())["items"]
    assert sorted((d["reason"], d["sensor_id"] or "", d["topic"]) for d in refused) == [
        ("forbidden_topic", "", "elsewhere/entirely"),
        ("forbidden_topic", "other-1", hub.topic("other-1")),
        ("forbidden_topic", "unregistered", hub.topic("unregistered")),
    ]
    assert len({d["detail"] for d in refused}) == 1 and "'acme'" in refused[0]["detail"]
    assert (await hub.dead_letters(hub.headers("acme")))["items"] == refused
    assert (await hub.dead_letters(hub.headers("other")))["items"] == []
    assert hub.intake.dead_letters["forbidden_topic"] == 3


async def connack_with_will(hub: SensorHub, owner: str, will_topic: str) -> ReasonCode | None:
    """The broker's answer to the integrator's login with an `offline` will on `will_topic`."""
    login = (hub.host, hub.port, owner, hub.keys[owner], (will_topic, b"offline"))
    client, reason = await asyncio.to_thread(_connect, *login)
    client.disconnect()
    await asyncio.to_thread(client.loop_stop)
    return reason


async def test_embedded_broker_refuses_a_will_on_someone_elses_sensor(hub: SensorHub) -> None:
    await hub.put_sensor("acme-1")
    await hub.put_sensor("other-1", owner="other")
    # amqtt publishes wills unchecked: accepted, this one would raise other-1's offline alarm.
    foreign = await connack_with_will(hub, "acme", hub.topic("other-1", "status"))
    assert foreign is None or foreign.is_failure
    unregistered = await connack_with_will(hub, "acme", hub.topic("unregistered", "status"))
    assert unregistered is None or unregistered.is_failure
    async with hub.publisher(will=(hub.topic("acme-1", "status"), b"offline")) as device:
        device.drop()  # its own sensor: the will is published
        await hub.wait_alarms("acme-1", lambda a: len(a) == 1)
    assert await hub.alarms("other-1", owner="other") == []


def test_sensor_topics_name_their_sensor() -> None:
    assert publisher_sensor("cityhub/v1/sensors/wl-1/readings", "cityhub/v1") == "wl-1"
    assert publisher_sensor("cityhub/v1/sensors/wl-1", "cityhub/v1") is None
    assert publisher_sensor("cityhub/v1/other/wl-1/readings", "cityhub/v1") is None


def test_mosquitto_hashes_round_trip_and_match_mosquitto_passwd(tmp_path: Path) -> None:
    stored = mosquitto_hash("chk_secret")
    assert stored.startswith("$7$101$")
    assert mosquitto_verify("chk_secret", stored) and not mosquitto_verify("chk_other", stored)
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    file = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(file), "someone", "chk_secret"], check=True)
    theirs = file.read_text().strip().split(":", 1)[1]
    assert mosquitto_verify("chk_secret", theirs)


@contextmanager
def private_mosquitto(conf_dir: Path, passwords: Path, acl: Path) -> Iterator[int]:
    """A Mosquitto on a free port that knows only the exported logins."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = conf_dir / "mosquitto.conf"
    # Started as root, Mosquitto drops to its own user, which cannot read our 0600 files.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n{user}"
        f"password_file {passwords}\nacl_file {acl}\n"
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)  # waiting for a child process to listen: nothing to await
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.mqtt
async def test_exported_password_file_and_acl_work_in_a_real_mosquitto(tmp_path: Path) -> None:
    ingest_password = uuid.uuid4().hex
    env = {
        "CITYHUB_DATA_DIR": str(tmp_path),
        "CITYHUB_DATABASE_URL": "",
        "CITYHUB_REDIS_URL": "",
        "CITYHUB_MQTT_URL": "",
        "CITYHUB_MQTT_USERNAME": "ingest",
        "CITYHUB_MQTT_PASSWORD": ingest_password,
    }
    assert (await asyncio.to_thread(cli, env, "migrate")).returncode == 0
    keys = {}
    for name in ("acme", "other", "gone"):
        made = await asyncio.to_thread(cli, env, "keys", "add", name)
        assert made.returncode == 0, made.stderr
        keys[name] = made.stdout.strip()
    revoked = await asyncio.to_thread(cli, env, "keys", "revoke", "gone")
    assert revoked.returncode == 0, revoked.stderr
    csv = tmp_path / "sensors.csv"
    rules = json.dumps(WATER_LEVEL["rules"]).replace('"', '""')
    csv.write_text(
        "id,type,lon,lat,integrator,interval_s,rules\n"
        f'acme-1,water_level,106.58,29.56,acme,60,"{rules}"\n'
        "other-1,water_level,106.59,29.57,other,60,\n"
    )
    imported = await asyncio.to_thread(cli, env, "sensors", "import", str(csv))
    assert imported.returncode == 0, imported.stderr
    passwords, acl = tmp_path / "passwd", tmp_path / "acl"
    exported = await asyncio.to_thread(
        cli, env, "mqtt", "export-auth", "--passwords", str(passwords), "--acl", str(acl)
    )
    assert exported.returncode == 0, exported.stderr
    assert "wrote 3 logins" in exported.stdout  # ingest, acme, other: never a revoked key
    assert "gone:" not in passwords.read_text() and "user gone" not in acl.read_text()
    assert passwords.stat().st_mode & 0o077 == 0  # secrets: owner only
    assert "topic write cityhub/v1/sensors/acme-1/#" in acl.read_text()

    with private_mosquitto(tmp_path, passwords, acl) as port:
        assert (await connack("127.0.0.1", port, "acme", keys["acme"])) is not None
        for user, password in (
            (None, None),
            ("acme", "wrong"),
            ("acme", keys["other"]),
            ("gone", keys["gone"]),
        ):
            refused = await connack("127.0.0.1", port, user, password)
            assert refused is None or refused.is_failure, (user, refused)

        received: list[str] = []
        subscribed = threading.Event()
        ingest = mqtt.Client(CallbackAPIVersion.VERSION2)
        ingest.username_pw_set("ingest", ingest_password)
        ingest.on_message = lambda _c, _u, m: received.append(m.topic)
        ingest.on_subscribe = lambda *_a: subscribed.set()
        ingest.connect("127.0.0.1", port)
        ingest.subscribe("cityhub/v1/sensors/#", qos=1)
        ingest.loop_start()
        try:
            assert await asyncio.to_thread(subscribed.wait, 10)
            async with publisher("127.0.0.1", port, "acme", keys["acme"]) as acme:
                await acme.publish("cityhub/v1/sensors/other-1/readings", "{}")  # denied
                await acme.publish("cityhub/v1/sensors/acme-1/readings", "{}")  # allowed

                async def own_arrived() -> bool:
                    return "cityhub/v1/sensors/acme-1/readings" in received

                await wait_for(own_arrived)
        finally:
            ingest.disconnect()
            ingest.loop_stop()
    assert received == ["cityhub/v1/sensors/acme-1/readings"]
