"""Deleting rows past their retention, in batches, so no transaction holds locks for long."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

PRUNE_BATCH = 5_000  # rows deleted per transaction


async def delete_older(
    sessions: async_sessionmaker[AsyncSession],
    moment: InstrumentedAttribute[Any],
    before: datetime,
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete the rows of `moment`'s table whose `moment` is before `before` (rows with no
    moment stay), one transaction per `batch`; how many went."""
    table = moment.class_
    deleted = 0
    while True:
        old = select(table.id).where(moment < before).limit(batch)
        async with sessions() as session, session.begin():
            result = await session.execute(
                delete(table)
                .where(table.id.in_(old.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch:
            return deleted
