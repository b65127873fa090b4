"""What a hub stores on its first start, prepared once per test session instead of once per test.

Every process's first start on an empty database applies the migrations, generates and stores the
demo hierarchy and seeds the catalogue (`shared.runtime.open_runtime`): about a second each time,
and most tests start a hub. So SQLite data dirs get a copy of a file prepared once
(`SqliteTemplate`), and the session's PostgreSQL database keeps its areas and categories between
tests (`PostgresReset`): the app then finds a current schema and stored rows, as on any later start.
A test about the first start itself is marked `@pytest.mark.first_start` and sees empty storage.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from shared.catalogue.store import ensure_catalogue
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import Base
from shared.runtime import ensure_hierarchy, ensure_schema
from shared.settings import Settings
from tests.support.sync import run_sync

FIRST_START_MARK = "first_start"
# The tables a first start fills and that few tests change (area imports, category edits).
KEPT_TABLES = ("areas", "categories")
SNAPSHOT_SCHEMA = "cityhub_test_first_start"  # copies of KEPT_TABLES, to restore changed ones
NOT_EMPTIED = ("alembic_version",)


async def store_first_start(settings: Settings) -> None:
    """Do to the configured database what a hub's first start does: schema, areas, catalogue."""
    engine = create_engine(settings)
    try:
        await ensure_schema(engine, migrate=True)
        sessions = create_sessionmaker(engine)
        await ensure_hierarchy(sessions)
        await ensure_catalogue(sessions)
    finally:
        await engine.dispose()


def database_file(data_dir: Path) -> Path:
    """The SQLite file an embedded hub on this data dir uses."""
    database = make_url(Settings(data_dir=data_dir).sqlalchemy_url).database
    assert database, "embedded settings without a SQLite file"
    return Path(database)


class SqliteTemplate:
    """A SQLite file as a hub leaves it after its first start, made on first use in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: Path | None = None

    def file(self) -> Path:
        """The prepared file (built now if this process has none yet)."""
        with self._lock:
            if self._file is None:
                folder = Path(tempfile.mkdtemp(prefix="cityhub-template-"))
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
                run_sync(lambda: store_first_start(Settings(data_dir=folder)))
                self._file = _checkpointed(database_file(folder))
            return self._file

    def copy_into(self, data_dir: Path) -> None:
        """Give a data dir that has no database yet the prepared one."""
        target = database_file(data_dir)
        if target.exists():
            return
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.file(), target)


def _checkpointed(path: Path) -> Path:
    # Everything must be in the main file: a copy without its -wal would lose the last commits.
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        assert not side.exists() or side.stat().st_size == 0, f"{side} still holds pages"
    return path


SQLITE_TEMPLATE = SqliteTemplate()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _digest_sql(table: str) -> str:
    # Rows in storage order (a sequential scan): the order the app loads them in counts too.
    return f"SELECT md5(string_agg(t::text, ',')) FROM {table} AS t"


@dataclass(frozen=True)
class PostgresReset:
    """Empties the session's PostgreSQL database between tests but for the first-start rows."""

    url: str  # plain postgresql:// URL (asyncpg)
    digests: dict[str, str]  # KEPT_TABLES as prepared

    @classmethod
    async def prepare(cls, url: str) -> PostgresReset:
        """Store the first-start rows in the migrated database `url` and keep a copy of them."""
        await store_first_start(Settings(database_url=url))
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute(f"CREATE SCHEMA {SNAPSHOT_SCHEMA}")
                for table in KEPT_TABLES:
                    await conn.execute(
                        f"CREATE TABLE {SNAPSHOT_SCHEMA}.{table} AS TABLE public.{table}"
                    )
            digests = {t: await conn.fetchval(_digest_sql(f"public.{t}")) for t in KEPT_TABLES}
        finally:
            await conn.close()
        return cls(url, digests)

    async def reset(self, *, first_start: bool) -> None:
        """Delete every row; restore the first-start rows unless `first_start` (then none)."""
        conn = await asyncpg.connect(self.url)
        try:
            tables = await self._tables(conn)
            emptied = [t for t in tables if first_start or t not in KEPT_TABLES]
            try:
                async with conn.transaction():
                    # DELETE, not TRUNCATE: a TRUNCATE of ~30 tables makes new files for every
                    # table and index (about 0.4 s); deleting what a test wrote takes milliseconds.
                    for table in emptied:
                        await conn.execute(f"DELETE FROM public.{_quoted(table)}")
            except asyncpg.ForeignKeyViolationError:  # references the models do not know
                await conn.execute(f"TRUNCATE {', '.join(map(_quoted, emptied))} CASCADE")
            if first_start:
                return
            async with conn.transaction():
                for table in KEPT_TABLES:
                    if await conn.fetchval(_digest_sql(f"public.{table}")) == self.digests[table]:
                        continue
                    # TRUNCATE: the copy's rows then lie in their prepared order again.
                    await conn.execute(f"TRUNCATE public.{table} CASCADE")
                    await conn.execute(
                        f"INSERT INTO public.{table} SELECT * FROM {SNAPSHOT_SCHEMA}.{table}"
                    )
        finally:
            await conn.close()

    @staticmethod
    async def _tables(conn: asyncpg.Connection) -> list[str]:
        """The public tables, those referencing others first (so each DELETE meets no reference);
        tables the models do not know (a migration ahead of them) come first of all."""
        present = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        known = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in present]
        unknown = sorted(present - set(known) - set(NOT_EMPTIED))
        return unknown + known
