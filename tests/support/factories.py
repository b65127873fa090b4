"""Tickets and timers written straight to the database, for tests that need them without the
tickets API (which builds them through routing, merging and the outbox)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.dispatch.calendar import WorkCalendar
from services.dispatch.deadlines import Deadlines, plan
from shared.catalogue import Catalogue
from shared.db.engine import create_engine, create_sessionmaker, is_postgres
from shared.db.models import Base, Ticket, Timer
from shared.settings import Settings
from tests.support.first_start import SQLITE_TEMPLATE

CITY, DISTRICT, STREET = "500000", "500103", "500103001"  # 重庆市 / 渝中区 / 七星岗街道


@dataclass
class Db:
    """A migrated database for one test."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def row_locks(self) -> bool:
        """True on PostgreSQL."""
        return is_postgres(self.engine)


async def open_db(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Db:
    """A migrated SQLite file, or the session's PostgreSQL database emptied (`clean_pg`); both
    hold what a hub's first start stores (areas, catalogue)."""
    if backend == "sqlite":
        SQLITE_TEMPLATE.copy_into(tmp_path)
        engine = create_engine(Settings(data_dir=tmp_path))
    else:
        url = request.getfixturevalue("clean_pg")
        engine = create_engine(Settings(data_dir=tmp_path, database_url=url))
    return Db(engine, create_sessionmaker(engine))


def ticket_row(created_at: datetime, **fields: Any) -> dict[str, Any]:
    """Column values of an ordinary located ticket owned by its street centre."""
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "category": "E0403", "priority": "normal", "status": "dispatched",
        "owner_tier": "street", "owner_code": STREET, "description": "", "lon": 106.577,
        "lat": 29.557, "street_code": STREET, "district_code": DISTRICT, "city_code": CITY,
        "geotag_method": "point", "report_count": 1, "created_at": created_at,
        "updated_at": created_at, "source": "hotline", "department": f"gaj@{DISTRICT}",
        "overdue": False, "rework_count": 0,
    }  # fmt: skip
    row.update(fields)
    return row


async def add_ticket(
    session: AsyncSession,
    catalogue: Catalogue,
    calendar: WorkCalendar,
    created_at: datetime,
    *,
    factor: float = 1.0,
    **fields: Any,
) -> tuple[Ticket, Deadlines]:
    """A ticket with its deadlines planned from `created_at` and its four timers pending."""
    row = ticket_row(created_at, **fields)
    category = catalogue.get(row["category"])
    assert category is not None, row["category"]
    deadlines = plan(category, row["priority"] or category.priority, calendar, created_at,
                     factor=factor)  # fmt: skip
    row.setdefault("accept_due_at", deadlines.accept_due)
    row.setdefault("handle_due_at", deadlines.handle_due)
    ticket = Ticket(**row)
    session.add(ticket)
    await session.flush()
    session.add_all(Timer(ticket_id=ticket.id, kind=k, due_at=due) for k, due in deadlines.timers())
    await session.flush()
    return ticket, deadlines


async def add_timers_in_bulk(
    session: AsyncSession, tickets: list[dict[str, Any]], timers: list[dict[str, Any]]
) -> None:
    """Insert many tickets and timers with one statement each."""
    await session.execute(insert(Ticket), tickets)
    await session.execute(insert(Timer), timers)


async def count(session: AsyncSession, model: type[Base], *where: Any) -> int:
    """How many rows of a table match."""
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)
