"""A crash loses nothing: `cityhub serve ingest` keeps a persistent session on Mosquitto, so a
QoS 1 reading published while it is dead (SIGKILL) is processed once it is back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.settings import Settings
from tests.support.mqtt import clear_session
from tests.support.processes import cli, service
from tests.support.sensors import WATER_LEVEL
from tests.support.servers import Servers, free_port

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres, pytest.mark.redis]


def publish(host: str, port: int, topic: str, payload: str) -> None:
    """Publish with QoS 1 and return once the broker has it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(host, port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def poll(probe: Any, within: float = 30.0) -> Any:
    """Call `probe` until it returns something truthy (processes, so no event loop here)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {within} s (last {value!r})"
        time.sleep(0.1)  # polling another process over HTTP


def test_reading_published_while_ingest_is_dead_is_processed_after_restart(
    production_settings: Settings, servers: Servers, tmp_path: Path
) -> None:
    settings = production_settings
    assert settings.database_url and settings.redis_url and settings.jwt_secret
    unique = uuid.uuid4().hex[:10]
    root, client_id, http_port = f"test/{unique}", f"test-ingest-{unique}", free_port()
    env = {
        "CITYHUB_DATABASE_URL": settings.database_url,
        "CITYHUB_REDIS_URL": settings.redis_url,
        "CITYHUB_BUS_PREFIX": settings.bus_prefix,
        "CITYHUB_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "CITYHUB_DATA_DIR": str(tmp_path),
        "CITYHUB_MQTT_URL": f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
        "CITYHUB_MQTT_TOPIC_ROOT": root,
        "CITYHUB_MQTT_CLIENT_ID": client_id,
        "CITYHUB_HTTP_PORT": str(http_port),
    }
    key = cli(env, "keys", "add", "acme").stdout.strip()
    rules = json.dumps(WATER_LEVEL["rules"]).replace('"', '""')
    (tmp_path / "sensors.csv").write_text(
        f'id,type,lon,lat,integrator,interval_s,rules\nwl-1,water_level,106.58,29.56,acme,60,"{rules}"\n'
    )
    imported = cli(env, "sensors", "import", str(tmp_path / "sensors.csv"))
    assert imported.returncode == 0, imported.stderr
    base, headers = f"http://127.0.0.1:{http_port}", {"X-API-Key": key}
    topic = f"{root}/sensors/wl-1/readings"
    health = f"{base}/healthz"
    try:
        with service(env, "serve", "ingest", health_url=health) as first:

            def subscribed() -> bool:
                # A message that is not JSON, until its dead letter shows ingest is consuming.
                publish(servers.mqtt_host, servers.mqtt_port, topic, "probe")
                page = httpx.get(f"{base}/api/v1/dead-letters", headers=headers).json()
                return bool(page["items"])

            poll(subscribed)
            first.kill()  # SIGKILL: no clean shutdown, no DISCONNECT
            first.wait(10)

            reading = {"ts": round(time.time() * 1000), "values": {"water_level_cm": 42.0}}
            publish(servers.mqtt_host, servers.mqtt_port, topic, json.dumps(reading))

        with service(env, "serve", "ingest", health_url=health):

            def alarms() -> list[dict[str, Any]]:
                reply = httpx.get(f"{base}/api/v1/sensors/wl-1/alarms", headers=headers)
                found: list[dict[str, Any]] = reply.json()
                return found

            raised = poll(alarms)
            assert len(raised) == 1
            assert (raised[0]["state"], raised[0]["value"]) == ("raised", 42.0)
            event = httpx.get(f"{base}/api/v1/events/{raised[0]['event_id']}", headers=headers)
            assert event.status_code == 200
            assert (event.json()["source"], event.json()["category"]) == ("sensor", "S0101")
    finally:
        clear_session(servers.mqtt_host, servers.mqtt_port, client_id)
