"""Two schedulers (separate engines, as two dispatch replicas would have) against one PostgreSQL
fire each of 10,000 due timers exactly once, and every side effect happens exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import and_, func, select

from services.dispatch.calendar import WorkCalendar
from services.dispatch.scheduler import Scheduler
from services.dispatch.timeline import verify_all
from shared.catalogue import Catalogue, default_categories
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import OutboxMessage, SupervisionOrder, TicketTransition, Timer
from shared.settings import Settings
from tests.support.clock import ManualClock
from tests.support.factories import CITY, Db, add_timers_in_bulk, count, open_db, ticket_row

pytestmark = pytest.mark.postgres

TIMERS = 10_000
CST = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 23, 9, 0, tzinfo=CST)


@pytest.fixture
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    opened = await open_db(request, tmp_path, "postgres")
    yield opened
    await opened.engine.dispose()


async def drain(scheduler: Scheduler) -> None:
    while await scheduler.fire_due():
        pass


@pytest.mark.timeout(300)
async def test_two_schedulers_fire_each_of_10000_timers_exactly_once(
    db: Db, tmp_path: Path
) -> None:
    # Even tickets get a warning timer (one timeline entry), odd ones a breach (three entries,
    # a supervision order and a follow-up timer at the district, due long after the clock).
    tickets: list[dict[str, Any]] = []
    timers: list[dict[str, Any]] = []
    for n in range(TIMERS):
        row = ticket_row(
            START,
            accept_due_at=START + timedelta(hours=1),
            handle_due_at=START + timedelta(hours=4),
        )
        tickets.append(row)
        kind = "handle_warn" if n % 2 == 0 else "handle_due"
        due = START + timedelta(hours=3, seconds=n % 600)
        timers.append({"ticket_id": row["id"], "kind": kind, "due_at": due})
    async with db.sessions() as session, session.begin():
        await add_timers_in_bulk(session, tickets, timers)

    clock = ManualClock(START + timedelta(hours=3, minutes=30))
    catalogue = Catalogue(default_categories())
    url = db.engine.url.render_as_string(hide_password=False)
    engines = [create_engine(Settings(data_dir=tmp_path, database_url=url)) for _ in range(2)]
    replicas = [
        Scheduler(
            sessions=create_sessionmaker(engine),
            catalogue=lambda: catalogue,
            calendar=WorkCalendar(),
            city=CITY,
            row_locks=True,
            clock=clock,
            name=f"replica-{i}-{uuid.uuid4().hex[:6]}",
            batch=200,
        )
        for i, engine in enumerate(engines)
    ]
    try:
        await asyncio.gather(*(drain(s) for s in replicas))
    finally:
        for engine in engines:
            await engine.dispose()

    assert sum(s.fired for s in replicas) == TIMERS
    assert all(s.fired > 0 for s in replicas), [s.fired for s in replicas]
    async with db.sessions() as session:
        original = and_(Timer.kind.in_(["handle_warn", "handle_due"]), Timer.due_at <= clock.now)
        by = dict(
            (
                await session.execute(
                    select(Timer.fired_by, func.count()).where(original).group_by(Timer.fired_by)
                )
            ).all()
        )
        assert by == {s.name: s.fired for s in replicas}
        assert await count(session, Timer, Timer.fired_at.is_(None), Timer.due_at <= clock.now) == 0
        per_ticket = dict(
            (
                await session.execute(
                    select(TicketTransition.ticket_id, func.count()).group_by(
                        TicketTransition.ticket_id
                    )
                )
            ).all()
        )
        expected = {row["id"]: 1 if n % 2 == 0 else 3 for n, row in enumerate(tickets)}
        assert per_ticket == expected
        assert await count(session, SupervisionOrder) == TIMERS // 2
        assert await count(session, OutboxMessage) == TIMERS // 2 + 3 * (TIMERS // 2)
        follow_ups = await count(session, Timer, Timer.fired_at.is_(None))
        assert follow_ups == TIMERS // 2
        assert list(await verify_all(session)) == []
