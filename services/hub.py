"""Embedded mode: all four services, the bus and (unless one is configured) an MQTT broker in one
process, on SQLite unless a database is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.dispatch.app import component as dispatch
from services.gateway.app import component as gateway
from services.ingest.app import component as ingest
from services.ingest.mqtt_auth import IngestBrokerGate
from services.ingest.mqtt_handoff import HANDOFF_KEY, IntakeHandoff
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from services.metrics.app import component as metrics
from shared.mqtt_broker import embedded_broker
from shared.netutil import reachable
from shared.runtime import Runtime
from shared.service import Component, build_app
from shared.settings import Settings

BROKER_KEY = "mqtt_broker"


def broker_component(settings: Settings) -> Component:
    """The embedded MQTT broker (integrators log in with their API keys) handing every message to
    the sensor intake, as a process resource, with a health check."""

    @asynccontextmanager
    async def broker(runtime: Runtime) -> AsyncIterator[object]:
        host, port = settings.mqtt_endpoint
        intake: SensorIntake = runtime.extras[INTAKE_KEY]  # ingest's resources open first
        gate = IngestBrokerGate(runtime)
        handoff = runtime.extras[HANDOFF_KEY] = IntakeHandoff(intake, gate)
        async with embedded_broker(host, port, gate, handoff) as running:
            intake.connected()  # silence counts from now on (offline detection)
            try:
                yield running
            finally:
                intake.disconnected()

    async def broker_ok(runtime: Runtime) -> bool:
        return BROKER_KEY in runtime.extras

    return Component("mqtt-broker", resources={BROKER_KEY: broker}, checks={"mqtt": broker_ok})


def external_broker_component(settings: Settings) -> Component:
    """A health check on the configured external MQTT broker."""

    async def broker_ok(_runtime: Runtime) -> bool:
        return await reachable(*settings.mqtt_endpoint)

    return Component("mqtt-broker", checks={"mqtt": broker_ok})


def create_hub_app(settings: Settings | None = None) -> FastAPI:
    """All services in one app; migrations are applied on start."""
    settings = settings or Settings()
    components = [ingest(), dispatch(), metrics(), gateway(forward=False)]
    if settings.mqtt_url is None:
        components.append(broker_component(settings))
    else:
        components.append(external_broker_component(settings))
    return build_app(settings, components, migrate=True, title="cityhub")
