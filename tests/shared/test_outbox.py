"""The outbox relay publishes committed messages in order, deletes them, and keeps them when the
bus is down."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisBus
from shared.db.engine import create_engine, create_sessionmaker, is_postgres
from shared.db.models import OutboxMessage
from shared.messages import TICKETS_CHANGED, TicketChangedV1, decode
from shared.migrations.runner import upgrade
from shared.outbox import OutboxRelay, add_to_outbox
from shared.settings import Settings
from tests.support.servers import free_port


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path)
    return Settings(data_dir=tmp_path, database_url=request.getfixturevalue("pg_url"))


async def _fresh(settings: Settings) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    await upgrade(engine)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        await session.execute(delete(OutboxMessage))
    return engine, sessions


def _message(n: int) -> TicketChangedV1:
    return TicketChangedV1(
        ticket_id=uuid.uuid4(),
        change=f"c{n}",
        status="new",
        category="E0101",
        owner_tier="street",
        owner_code="500103001",
    )


async def test_relay_publishes_in_order_and_deletes(settings: Settings) -> None:
    engine, sessions = await _fresh(settings)
    bus = MemoryBus()
    await bus.create_group(TICKETS_CHANGED, "g")
    async with sessions() as session, session.begin():
        for n in range(7):
            add_to_outbox(session, _message(n))
    relay = OutboxRelay(sessions, bus, row_locks=is_postgres(engine))
    assert await relay.relay_once() == 7
    assert await relay.relay_once() == 0
    got = await bus.read(TICKETS_CHANGED, "g", "c", count=10, block_ms=10)
    assert [decode(d.data).change for d in got] == [f"c{n}" for n in range(7)]  # type: ignore[union-attr]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    await engine.dispose()


async def test_relay_keeps_messages_while_the_bus_is_down(settings: Settings) -> None:
    engine, sessions = await _fresh(settings)
    async with sessions() as session, session.begin():
        add_to_outbox(session, _message(1))
    dead = RedisBus.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with pytest.raises(Exception, match=r"(?i)connect"):
        await OutboxRelay(sessions, dead, row_locks=is_postgres(engine)).relay_once()
    await dead.close()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    await engine.dispose()
