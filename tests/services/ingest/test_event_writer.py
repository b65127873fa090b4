"""The group-commit writer: a 2xx means stored, and a message lost after the commit is recovered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.dispatch.consumers import sweep_once
from services.hub import create_hub_app
from services.ingest.logic import normalise
from services.ingest.schemas import EventCreate, Location
from services.ingest.writer import EventWriter
from services.metrics.store import KPI_EVENTS
from shared.bus.redis_streams import RedisBus
from shared.db.models import Event, TicketEvent
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.apps import runtime_of, serving
from tests.support.servers import free_port
from tests.support.waiting import wait_for


@pytest.fixture(params=["embedded", "production"])
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """A started hub (dispatch included) on SQLite + in-process bus or PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = create_hub_app(settings)
    async with serving(app):
        yield runtime_of(app)


async def test_an_event_whose_publish_failed_is_stored_and_swept_into_a_ticket(
    runtime: Runtime,
) -> None:
    unreachable = RedisBus.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    writer = EventWriter(runtime.sessions, unreachable, runtime.engine.dialect.name)
    task = asyncio.create_task(writer.run())
    try:
        payload = EventCreate(category="E0101", location=Location(lon=106.5516, lat=29.5630))
        category = runtime.catalogue.get("E0101")
        assert category is not None
        event, message = normalise(payload, category, runtime.geotagger, "tester")
        assert await writer.store(event, message)  # answered: committed, though not published
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await unreachable.close()

    async with runtime.sessions() as session:
        assert await session.get(Event, event.id) is not None
        assert await session.scalar(select(TicketEvent).filter_by(event_id=event.id)) is None

    later = datetime.now(UTC) + timedelta(seconds=runtime.settings.dispatch.sweep_grace_s + 1)
    assert await sweep_once(runtime, now=later) == 1
    async with runtime.sessions() as session:
        link = await session.scalar(select(TicketEvent).filter_by(event_id=event.id))
    assert link is not None

    # ...and announced with its ticket: the KPI consumers, which never got the lost message,
    # count the event too.
    async def counted() -> bool:
        async with runtime.sessions() as session:
            found = select(KPI_EVENTS.c.event_id).where(KPI_EVENTS.c.event_id == event.id)
            return await session.scalar(found) is not None

    await wait_for(counted, within=30)
