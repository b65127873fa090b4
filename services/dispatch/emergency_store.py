"""Every SQL query of emergency mode (平急转换)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import AreaRow, EmergencyMode


async def active_with_level(session: AsyncSession) -> list[tuple[EmergencyMode, str | None]]:
    """Active modes with their area's level (None when the area is not in the areas table)."""
    rows = await session.execute(
        select(EmergencyMode, AreaRow.level)
        .outerjoin(AreaRow, AreaRow.code == EmergencyMode.area)
        .where(EmergencyMode.ended_at.is_(None))
        .order_by(EmergencyMode.started_at)
    )
    return [(mode, level) for mode, level in rows]


async def active_in_area(session: AsyncSession, area: str) -> Sequence[EmergencyMode]:
    """Active modes of one area."""
    return (
        await session.scalars(
            select(EmergencyMode).where(
                EmergencyMode.area == area, EmergencyMode.ended_at.is_(None)
            )
        )
    ).all()


async def get_mode(session: AsyncSession, mode_id: uuid.UUID) -> EmergencyMode | None:
    """A mode by id, locked for update where the database has row locks."""
    return await session.get(EmergencyMode, mode_id, with_for_update=True)
