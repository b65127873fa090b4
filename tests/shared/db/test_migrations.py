"""Migrations apply cleanly on SQLite and PostgreSQL and match the models exactly."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from shared.db.engine import create_engine
from shared.db.models import Base
from shared.migrations.runner import current_revision, head_revision, upgrade
from shared.settings import Settings


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _check(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        await upgrade(engine)  # applying again is a no-op
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert set(Base.metadata.tables) <= tables
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_migrations_on_sqlite(tmp_path: Path) -> None:
    await _check(Settings(data_dir=tmp_path))


async def test_migrations_on_postgres(pg_server_url: str) -> None:
    name = f"cityhub_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await _check(Settings(database_url=pg_server_url.rsplit("/", 1)[0] + f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
