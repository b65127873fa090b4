"""The prepared first start and the start caches hand every test what a real first start would,
and nothing a previous test left."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete, text

from shared.catalogue import default_categories
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import CategoryRow, User
from shared.migrations.runner import head_revision
from shared.runtime import open_runtime
from shared.settings import Settings
from tests.support.first_start import SQLITE_TEMPLATE, PostgresReset, database_file

AREAS = 1 + 41 + 1031  # the demo city, its districts and streets


def _sqlite_counts(path: Path) -> tuple[str, int, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        (areas,) = db.execute("SELECT count(*) FROM areas").fetchone()
        (categories,) = db.execute("SELECT count(*) FROM categories").fetchone()
    return revision, areas, categories


def test_a_data_dir_holds_what_a_first_start_stores(embedded_settings: Settings) -> None:
    assert _sqlite_counts(database_file(embedded_settings.data_dir)) == (
        head_revision(),
        AREAS,
        len(default_categories()),
    )
    assert not database_file(embedded_settings.data_dir).with_suffix(".sqlite3-wal").exists()


@pytest.mark.first_start
def test_a_first_start_test_gets_an_empty_data_dir(embedded_settings: Settings) -> None:
    assert not database_file(embedded_settings.data_dir).exists()


def test_an_existing_database_is_never_replaced(tmp_path: Path) -> None:
    target = database_file(tmp_path)
    target.write_bytes(b"not a template")
    SQLITE_TEMPLATE.copy_into(tmp_path)
    assert target.read_bytes() == b"not a template"


async def _pg_state(url: str) -> tuple[int, int, int, str | None]:
    conn = await asyncpg.connect(url)
    try:
        areas = await conn.fetchval("SELECT count(*) FROM areas")
        categories = await conn.fetchval("SELECT count(*) FROM categories")
        users = await conn.fetchval("SELECT count(*) FROM users")
        name = await conn.fetchval("SELECT name FROM areas WHERE code = '500103'")
    finally:
        await conn.close()
    return areas, categories, users, name


async def test_postgres_keeps_the_first_start_rows_and_restores_changed_ones(
    clean_pg: str, _pg_reset: PostgresReset
) -> None:
    seeded = (AREAS, len(default_categories()), 0, "渝中区")
    assert await _pg_state(clean_pg) == seeded
    engine = create_engine(Settings(database_url=clean_pg))
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await session.execute(text("UPDATE areas SET name = 'renamed' WHERE code = '500103'"))
            await session.execute(delete(CategoryRow).where(CategoryRow.code == "E0101"))
            session.add(User(username="left-over", password_hash="-", role="admin", scope="city"))
    finally:
        await engine.dispose()
    assert await _pg_state(clean_pg) == (AREAS, len(default_categories()) - 1, 1, "renamed")
    await _pg_reset.reset(first_start=False)
    assert await _pg_state(clean_pg) == seeded
    await _pg_reset.reset(first_start=True)
    assert await _pg_state(clean_pg) == (0, 0, 0, None)
    await _pg_reset.reset(first_start=False)
    assert await _pg_state(clean_pg) == seeded


async def test_equal_areas_share_one_hierarchy_and_geotagger(tmp_path: Path) -> None:
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    for data_dir in dirs:
        SQLITE_TEMPLATE.copy_into(data_dir)
    with contextlib.closing(sqlite3.connect(database_file(dirs[2]))) as db, db:
        db.execute("UPDATE areas SET name = 'renamed' WHERE code = '500103'")
    runtimes = []
    for data_dir in dirs:
        async with open_runtime(Settings(data_dir=data_dir), migrate=True) as runtime:
            runtimes.append((runtime.hierarchy, runtime.geotagger))
    (first, first_tagger), (second, second_tagger), (changed, changed_tagger) = runtimes
    assert second is first and second_tagger is first_tagger
    assert first_tagger.hierarchy is first
    district = changed.get("500103")
    assert district is not None and district.name == "renamed"
    assert changed_tagger is not first_tagger and changed_tagger.hierarchy is changed
