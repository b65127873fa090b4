"""The routing_rules table: every SQL query about routing rules."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch.routing import RoutingRule
from shared.db.models import RoutingRuleRow

SEED_LOCK = 0x636974796875_01  # advisory lock key: one replica seeds the table at a time


async def load_rules(session: AsyncSession) -> list[RoutingRule]:
    """The stored rules, in table order."""
    rows = await session.scalars(select(RoutingRuleRow).order_by(RoutingRuleRow.position))
    return [
        RoutingRule(
            category=r.category,
            district=r.district,
            priority=r.priority,  # validated when stored
            source=r.source,
            department=r.department,
        )
        for r in rows
    ]


async def replace_rules(session: AsyncSession, rules: list[RoutingRule]) -> None:
    """Replace the whole list in the caller's transaction."""
    await session.execute(delete(RoutingRuleRow))
    if rules:
        await session.execute(
            insert(RoutingRuleRow),
            [{"position": n, **r.model_dump()} for n, r in enumerate(rules)],
        )


async def ensure_rules(
    sessions: async_sessionmaker[AsyncSession], seed: list[RoutingRule], *, row_locks: bool
) -> list[RoutingRule]:
    """The stored rules; an empty table gets the seed (one replica at a time on PostgreSQL)."""
    async with sessions() as session, session.begin():
        if row_locks:
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEED_LOCK})
        if not await session.scalar(select(func.count()).select_from(RoutingRuleRow)):
            await replace_rules(session, seed)
            return seed
        return await load_rules(session)
