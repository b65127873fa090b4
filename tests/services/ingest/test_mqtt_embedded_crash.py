"""A crash of the embedded hub loses no acknowledged reading: its broker acknowledges a QoS 1
message only once what the message caused is committed, so a SIGKILL right after the last PUBACK
leaves every one of them accounted for after a restart on the same data directory."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.processes import cli, service
from tests.support.sensors import WATER_LEVEL
from tests.support.servers import free_port

SENSORS = 20
ROUNDS = 100  # readings per sensor: 2,000 in all
HIGH, LOW = 40.0, 10.0  # over the 30 cm threshold: raises; under its 25 cm band: clears
PUBACK_TIMEOUT_S = 90.0


def readings(now_ms: int) -> list[tuple[str, str]]:
    """Topic and payload of every reading, sensors interleaved: each raises or clears an alarm,
    so each one has a durable effect of its own."""
    out = []
    for k in range(ROUNDS):
        for j in range(SENSORS):
            value = HIGH if k % 2 == 0 else LOW
            ts = now_ms - 120_000 + k * 1000  # increasing per sensor, in the recent past
            payload = json.dumps({"ts": ts, "values": {"water_level_cm": value}})
            out.append((f"cityhub/v1/sensors/s-{j:03d}/readings", payload))
    return out


def publish_all(port: int, key: str, messages: list[tuple[str, str]]) -> int:
    """Publish every message with QoS 1; return once the broker acknowledged each (how many)."""
    acked = 0
    all_acked = threading.Event()
    lock = threading.Lock()

    def on_publish(*_args: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked == len(messages):
                all_acked.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-test-publisher")
    client.username_pw_set("acme", key)
    client.max_inflight_messages_set(100)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        assert all_acked.wait(PUBACK_TIMEOUT_S), f"only {acked} of {len(messages)} acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()
    return acked


def test_every_acknowledged_reading_survives_a_sigkill_of_the_embedded_hub(
    tmp_path: Path,
) -> None:
    http_port, mqtt_port = free_port(), free_port()
    env = {
        "CITYHUB_DATA_DIR": str(tmp_path),
        "CITYHUB_DATABASE_URL": "",
        "CITYHUB_REDIS_URL": "",
        "CITYHUB_MQTT_URL": "",
        "CITYHUB_HTTP_PORT": str(http_port),
        "CITYHUB_MQTT_PORT": str(mqtt_port),
        "CITYHUB_MQTT_TOPIC_ROOT": "cityhub/v1",
        "CITYHUB_LOG_LEVEL": "info",
        "CITYHUB_LOG_FORMAT": "json",
    }
    base = f"http://127.0.0.1:{http_port}"
    health = f"{base}/healthz"

    with service(env, "run", health_url=health) as hub:
        made = cli(env, "keys", "add", "acme")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        headers = {"X-API-Key": key}
        for j in range(SENSORS):
            body = {**WATER_LEVEL, "interval_s": 3600}  # no offline alarm meanwhile
            reply = httpx.put(f"{base}/api/v1/sensors/s-{j:03d}", json=body, headers=headers)
            assert reply.status_code == 201, reply.text
        messages = readings(round(time.time() * 1000))
        assert publish_all(mqtt_port, key, messages) == SENSORS * ROUNDS
        hub.kill()  # SIGKILL right after the last PUBACK: no flush, no clean shutdown
        hub.wait(10)
        output = hub.stdout.read() if hub.stdout else ""
    # The embedded broker's connection and state-machine chatter stays out of an INFO log.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    loggers = [str(line.get("logger", "")) for line in lines]
    assert loggers, output[-2000:]  # the hub did log (as JSON lines)
    chatty = [name for name in loggers if name.split(".")[0] in ("amqtt", "transitions")]
    assert not chatty, output[-2000:]

    with service(env, "run", health_url=health):
        raised = cleared = 0
        events: set[str] = set()
        for j in range(SENSORS):
            reply = httpx.get(
                f"{base}/api/v1/sensors/s-{j:03d}/alarms", params={"limit": 500}, headers=headers
            )
            assert reply.status_code == 200, reply.text
            alarms = reply.json()
            raised += sum(1 for a in alarms if a["value"] == HIGH)
            cleared += sum(1 for a in alarms if a["state"] == "cleared" and a["clear_value"] == LOW)
            events |= {a["event_id"] for a in alarms}
    # Every reading accounted for: each high one raised an alarm (with its event), each low one
    # cleared the alarm before it.
    assert (raised, cleared) == (SENSORS * ROUNDS // 2, SENSORS * ROUNDS // 2)
    assert len(events) == SENSORS * ROUNDS // 2
