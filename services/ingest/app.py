"""The ingest service as a component and as a stand-alone app."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest import dead_letters_api, grid_api, open311
from services.ingest.api import router
from services.ingest.mqtt_intake import mqtt_worker
from services.ingest.sensors import api as sensors_api
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake, open_sensor_intake
from services.ingest.writer import WRITER_KEY, event_writer
from shared.runtime import Runtime
from shared.service import Component, build_app
from shared.settings import Settings


async def alarm_writer(runtime: Runtime) -> None:
    """Store the sensor intake's alarm transitions and dead letters in batches."""
    intake: SensorIntake = runtime.extras[INTAKE_KEY]
    await intake.write_loop()


async def sensor_upkeep(runtime: Runtime) -> None:
    """Offline detection and registry refresh for the sensor intake."""
    intake: SensorIntake = runtime.extras[INTAKE_KEY]
    await intake.upkeep_loop()


def component() -> Component:
    """Ingest's routes, its event writer and its MQTT sensor intake."""
    return Component(
        "ingest",
        routers=[
            router,
            grid_api.router,
            open311.router,
            sensors_api.router,
            dead_letters_api.router,
        ],
        workers=[mqtt_worker, alarm_writer, sensor_upkeep],
        body_limits={"/api/v1/grid-reports": grid_api.GRID_BODY_LIMIT},
        resources={WRITER_KEY: event_writer, INTAKE_KEY: open_sensor_intake},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ingest service alone (production mode)."""
    return build_app(settings or Settings(), [component()], migrate=False, title="cityhub ingest")
