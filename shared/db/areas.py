"""The areas table: the hierarchy every process loads at start (geometry stored as WKB)."""

from __future__ import annotations

import shapely
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.areas import Area, Hierarchy
from shared.db.models import AreaRow


async def load_hierarchy(session: AsyncSession) -> Hierarchy | None:
    """The stored hierarchy, or None when no areas were imported yet."""
    rows = (await session.scalars(select(AreaRow))).all()
    if not rows:
        return None
    geometries = shapely.from_wkb([r.geometry for r in rows])
    return Hierarchy(
        [
            Area(r.code, r.name, r.level, r.parent, geom)  # type: ignore[arg-type]
            for r, geom in zip(rows, geometries, strict=True)
        ]
    )


async def replace_hierarchy(session: AsyncSession, hierarchy: Hierarchy) -> None:
    """Swap the stored hierarchy for `hierarchy` inside the caller's transaction."""
    await session.execute(delete(AreaRow))
    areas = list(hierarchy)
    wkbs = shapely.to_wkb([a.geometry for a in areas])
    session.add_all(
        AreaRow(code=a.code, name=a.name, level=a.level, parent=a.parent, geometry=bytes(wkb))
        for a, wkb in zip(areas, wkbs, strict=True)
    )
    await session.flush()
