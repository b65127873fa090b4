"""Engine and session factories: one engine per process, built from settings, never at import.

On SQLite (embedded mode) a transaction opened with an explicit `session.begin()` declares that it
will write, and takes SQLite's one write lock at its start (`BEGIN IMMEDIATE`), waiting its turn
under the busy timeout. A transaction that reads first and writes later (`BEGIN DEFERRED`) would
instead fail at once with "database is locked" whenever another writer committed after its first
read: SQLite cannot upgrade a stale snapshot, and does not wait. Reads (autobegun sessions, and
requests marked read-only) stay deferred, so they never wait for writers (WAL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransactionOrigin

from shared.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for SQLite's single write lock
# Connections waiting for the write lock each hold a pool slot (and a thread): leave room for
# every background writer plus a burst of requests before the pool itself makes callers wait.
SQLITE_POOL_SIZE = 10
SQLITE_MAX_OVERFLOW = 30
# PostgreSQL: how long opening a connection may take before the caller is answered 503 (asyncpg
# waits 60 s by default, a request held that long by a database host that does not answer).
PG_CONNECT_TIMEOUT_S = 5.0
READ_ONLY = "cityhub_read_only"  # Session.info flag: this session's explicit transaction only reads
_BEGIN = "cityhub_sqlite_begin"  # execution option read by the SQLite begin hook
_WRITE_BIND = "cityhub_write_bind"  # Session.info: the engine variant that begins IMMEDIATE


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine for the configured database (SQLite file when embedded)."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_MAX_OVERFLOW,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # Pre-ping: a pooled connection the server dropped (a restart) is replaced before use, so
    # the first requests after the database is back succeed instead of failing once each.
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL lets readers work while one writer commits; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
    # The driver's own transaction handling only begins before DML (so reads ran outside any
    # transaction) and always DEFERRED: `_sqlite_begin` issues every BEGIN instead.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


class _WriteIntentSession(Session):
    """A session whose explicitly begun transactions take SQLite's write lock up front."""

    def get_bind(self, mapper: Any = None, **kw: Any) -> Engine | Connection:
        bind = super().get_bind(mapper, **kw)
        write_bind = self.info.get(_WRITE_BIND)
        root = self.get_transaction()
        if (
            write_bind is not None
            and bind is write_bind.base
            and root is not None
            and root.origin is SessionTransactionOrigin.BEGIN
            and not self.info.get(READ_ONLY)
        ):
            return write_bind.engine  # type: ignore[no-any-return]
        return bind


class _WriteBind:
    """The SQLite engine and its IMMEDIATE-beginning variant (same pool)."""

    def __init__(self, base: Engine) -> None:
        self.base = base
        self.engine = base.execution_options(**{_BEGIN: "IMMEDIATE"})


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (no implicit lazy loads under async)."""
    if engine.dialect.name != "sqlite":
        return async_sessionmaker(engine, expire_on_commit=False)
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        sync_session_class=_WriteIntentSession,
        info={_WRITE_BIND: _WriteBind(engine.sync_engine)},
    )


def is_postgres(engine: AsyncEngine) -> bool:
    """True on PostgreSQL, where row locks (FOR UPDATE SKIP LOCKED) are available."""
    return engine.dialect.name == "postgresql"
