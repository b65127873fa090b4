"""Every SQL query on the `alerts` table."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.alerts import Alert
from shared.auth import Scope
from shared.db.models import AlertRow
from shared.db.retention import delete_older

_ALERTS = cast(Table, AlertRow.__table__)


def _row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.title,
        "title_en": alert.title_en,
        "district": alert.district,
        "street": alert.street,
        "ticket_id": alert.ticket_id,
        "at": alert.at,
        "details": alert.details,
        "source_id": alert.source_id,
        "created_at": datetime.now(UTC),
        "streamed_at": None,
    }


async def insert_new(session: AsyncSession, alerts: Sequence[Alert]) -> set[uuid.UUID]:
    """Store the alerts not stored yet (their ids are unique); the ids stored now."""
    if not alerts:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_ALERTS).on_conflict_do_nothing(index_elements=["id"])
    result = await session.execute(statement.returning(_ALERTS.c.id), [_row(a) for a in alerts])
    return set(result.scalars())


async def unstreamed(session: AsyncSession, ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these alerts are stored but not yet appended to the live log."""
    if not ids:
        return set()
    query = select(AlertRow.id).where(AlertRow.id.in_(ids), AlertRow.streamed_at.is_(None))
    return set((await session.scalars(query)).all())


async def mark_streamed(session: AsyncSession, ids: Collection[uuid.UUID], at: datetime) -> None:
    """Record that these alerts are in the live log."""
    if ids:
        await session.execute(
            update(AlertRow)
            .where(AlertRow.id.in_(ids), AlertRow.streamed_at.is_(None))
            .values(streamed_at=at)
            .execution_options(synchronize_session=False)
        )


async def recent(
    session: AsyncSession,
    scope: Scope,
    *,
    since: datetime | None,
    kinds: Collection[str],
    limit: int,
) -> Sequence[AlertRow]:
    """The newest alerts located inside `scope` (city-wide ones only for the city's scope, the
    same rule `/ws/live` applies: `Scope.covers`), optionally from `since` and of some kinds."""
    query = select(AlertRow).order_by(AlertRow.at.desc(), AlertRow.id.desc()).limit(limit)
    if scope.level == "district":
        query = query.where(AlertRow.district == scope.code)
    elif scope.level == "street":
        query = query.where(AlertRow.street == scope.code)
    if since is not None:
        query = query.where(AlertRow.at >= since)
    if kinds:
        query = query.where(AlertRow.kind.in_(kinds))
    return (await session.scalars(query)).all()


async def delete_before(sessions: async_sessionmaker[AsyncSession], before: datetime) -> int:
    """Delete alerts that happened before `before`, in batches; how many."""
    return await delete_older(sessions, AlertRow.at, before)
