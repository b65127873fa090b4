"""A hub with the MQTT sensor intake running, on the embedded broker or on Mosquitto."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import FastAPI

from services.hub import create_hub_app
from services.ingest.mqtt_handoff import HANDOFF_KEY
from services.ingest.mqtt_intake import MqttIntake
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving
from tests.support.first_start import SQLITE_TEMPLATE
from tests.support.mqtt import Publisher, clear_session, publisher
from tests.support.servers import Servers, free_port
from tests.support.waiting import wait_for

BrokerKind = Literal["embedded", "mosquitto"]

# The registration body of the issue, exactly as written there.
WATER_LEVEL: dict[str, Any] = {
    "type": "water_level",
    "location": {"lon": 106.58, "lat": 29.56},
    "interval_s": 60,
    "rules": [
        {
            "metric": "water_level_cm",
            "op": ">",
            "value": 30,
            "hysteresis": 5,
            "for_s": 0,
            "category": "S0101",
        }
    ],
}


@dataclass
class SensorHub:
    """A running hub, its broker, two integrators (acme, other) and an admin."""

    app: FastAPI
    client: httpx.AsyncClient
    kind: BrokerKind
    host: str
    port: int
    root: str
    keys: dict[str, str]
    admin: dict[str, str]

    @property
    def intake(self) -> SensorIntake:
        """The process's sensor intake."""
        intake: SensorIntake = runtime_of(self.app).extras[INTAKE_KEY]
        return intake

    def topic(self, sensor_id: str, kind: str = "readings") -> str:
        """A sensor topic under this hub's root."""
        return f"{self.root}/sensors/{sensor_id}/{kind}"

    def headers(self, owner: str = "acme") -> dict[str, str]:
        """The integrator's API key header."""
        return {"X-API-Key": self.keys[owner]}

    async def put_sensor(
        self, sensor_id: str, owner: str = "acme", **changes: Any
    ) -> dict[str, Any]:
        """Register a sensor (the issue's water-level body, with changes)."""
        reply = await self.client.put(
            f"/api/v1/sensors/{sensor_id}",
            json={**WATER_LEVEL, **changes},
            headers=self.headers(owner),
        )
        assert reply.status_code in (200, 201), reply.text
        body: dict[str, Any] = reply.json()
        return body

    def publisher(
        self, owner: str = "acme", will: tuple[str, bytes] | None = None
    ) -> AbstractAsyncContextManager[Publisher]:
        """A client logged in as the integrator."""
        return publisher(self.host, self.port, owner, self.keys[owner], will)

    async def alarms(self, sensor_id: str, owner: str = "acme") -> list[dict[str, Any]]:
        """The sensor's alarms through the API, newest first."""
        reply = await self.client.get(
            f"/api/v1/sensors/{sensor_id}/alarms", headers=self.headers(owner)
        )
        assert reply.status_code == 200, reply.text
        alarms: list[dict[str, Any]] = reply.json()
        return alarms

    async def wait_alarms(
        self,
        sensor_id: str,
        condition: Callable[[list[dict[str, Any]]], bool],
        within: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Wait until the sensor's alarms satisfy `condition`."""

        async def probe() -> list[dict[str, Any]]:
            alarms = await self.alarms(sensor_id)
            return alarms if condition(alarms) else []

        return await wait_for(probe, within=within)

    async def dead_letters(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The dead-letter page (as admin unless other headers are given)."""
        reply = await self.client.get(
            "/api/v1/dead-letters", params={"limit": 500}, headers=headers or self.admin
        )
        assert reply.status_code == 200, reply.text
        page: dict[str, Any] = reply.json()
        return page

    async def sync(self, pub: Publisher, sensor_id: str) -> None:
        """Publish a message that is not JSON to the sensor and wait for its dead letter: the
        messages the publisher sent before it have then been evaluated, and what they caused
        is stored."""
        marker = f"sync-{uuid.uuid4().hex}"
        await pub.publish(self.topic(sensor_id), marker.encode())

        async def probe() -> bool:
            page = await self.dead_letters()
            return any(d["payload"] == marker for d in page["items"])

        await wait_for(probe)


@asynccontextmanager
async def sensor_hub(
    kind: BrokerKind, data_dir: Path, servers: Servers | None
) -> AsyncIterator[SensorHub]:
    """Embedded mode (SQLite, in-process bus) with the embedded broker or a real Mosquitto; a new
    data dir gets the database a first start leaves (`tests/support/first_start.py`)."""
    unique = uuid.uuid4().hex[:10]
    SQLITE_TEMPLATE.copy_into(data_dir)
    if kind == "embedded":
        settings = Settings(data_dir=data_dir, mqtt_port=free_port(), http_port=free_port())
    else:
        assert servers is not None
        settings = Settings(
            data_dir=data_dir,
            http_port=free_port(),
            mqtt_url=f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
            mqtt_topic_root=f"test/{unique}",
            mqtt_client_id=f"test-ingest-{unique}",
        )
    host, port = settings.mqtt_endpoint
    app = create_hub_app(settings)
    try:
        async with serving(app) as client:
            keys = {name: await add_key(app, name) for name in ("acme", "other")}
            await add_user(app, "root", "admin", "city")
            hub = SensorHub(
                app,
                client,
                kind,
                host,
                port,
                settings.mqtt_topic_root,
                keys,
                await login(client, "root"),
            )

            async def ready() -> bool:
                extras = runtime_of(app).extras
                if kind == "embedded":  # the broker hands messages to the intake itself
                    return HANDOFF_KEY in extras
                consumer: MqttIntake | None = extras.get("mqtt_intake")
                return consumer is not None and consumer.is_subscribed

            await wait_for(ready)
            yield hub
    finally:
        if kind == "mosquitto":
            clear_session(host, port, settings.mqtt_client_id)
