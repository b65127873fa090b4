"""The categories table: the live, editable copy of the catalogue."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.catalogue import Catalogue, Category, default_categories
from shared.db.models import CategoryRow, utcnow


async def load_catalogue(session: AsyncSession) -> Catalogue:
    """The stored catalogue (empty when never seeded)."""
    rows = (await session.scalars(select(CategoryRow).order_by(CategoryRow.code))).all()
    return Catalogue(Category.model_validate(r.definition) for r in rows)


async def ensure_catalogue(sessions: async_sessionmaker[AsyncSession]) -> Catalogue:
    """The stored catalogue; an empty table is seeded with the shipped one."""
    async with sessions() as session:
        catalogue = await load_catalogue(session)
    if len(catalogue):
        return catalogue
    try:
        async with sessions() as session, session.begin():
            for category in default_categories():
                await save_category(session, category)
    except IntegrityError:
        pass  # another process seeded it first
    async with sessions() as session:
        return await load_catalogue(session)


async def save_category(session: AsyncSession, category: Category) -> None:
    """Insert or replace one category in the caller's transaction."""
    row = await session.get(CategoryRow, category.code)
    definition = category.model_dump(mode="json")
    if row is None:
        session.add(CategoryRow(code=category.code, definition=definition))
    else:
        row.definition = definition
        row.updated_at = utcnow()
    await session.flush()
