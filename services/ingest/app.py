"""The ingest service as a component and as a stand-alone app."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from services.ingest import dead_letters_api, grid_api, open311, photos_api
from services.ingest.api import router
from services.ingest.mqtt_intake import mqtt_worker
from services.ingest.sensors import api as sensors_api
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake, open_sensor_intake
from services.ingest.writer import WRITER_KEY, event_writer
from shared.db.models import DeadLetter
from shared.db.retention import delete_older
from shared.runtime import Runtime
from shared.service import Component, build_app
from shared.settings import Settings

logger = logging.getLogger(__name__)


async def alarm_writer(runtime: Runtime) -> None:
    """Store the sensor intake's alarm transitions and dead letters in batches."""
    intake: SensorIntake = runtime.extras[INTAKE_KEY]
    await intake.write_loop()


async def sensor_upkeep(runtime: Runtime) -> None:
    """Offline detection and registry refresh for the sensor intake."""
    intake: SensorIntake = runtime.extras[INTAKE_KEY]
    await intake.upkeep_loop()


DEAD_LETTER_PRUNE_EVERY_S = 3600.0


async def prune_dead_letters(runtime: Runtime) -> int:
    """Delete dead letters older than the retention; how many."""
    retention = timedelta(hours=runtime.settings.dead_letter_retention_h)
    return await delete_older(
        runtime.sessions, DeadLetter.received_at, datetime.now(UTC) - retention
    )


async def dead_letter_upkeep(runtime: Runtime) -> None:
    """Prune old dead letters hourly (the table would grow for ever)."""
    while True:
        await asyncio.sleep(DEAD_LETTER_PRUNE_EVERY_S)  # not at start-up: it is busy enough
        try:
            await prune_dead_letters(runtime)
        except Exception:
            logger.exception("pruning dead letters failed; trying again later")


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
            photos_api.router,
        ],
        workers=[mqtt_worker, alarm_writer, sensor_upkeep, dead_letter_upkeep],
        body_limits={
            "/api/v1/grid-reports": grid_api.GRID_BODY_LIMIT,
            "/api/v1/photos": photos_api.PHOTO_BODY_LIMIT,
        },
        resources={WRITER_KEY: event_writer, INTAKE_KEY: open_sensor_intake},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ingest service alone (production mode)."""
    return build_app(settings or Settings(), [component()], migrate=False, title="cityhub ingest")
