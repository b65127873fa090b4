"""The per-process runtime: database, bus, area hierarchy, geotagger and outbox relay.

Built once by a service's lifespan (never at import) and handed to its routes and workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.areas import Geotagger, Hierarchy, generate_demo
from shared.auth import Principal, resolve_jwt_secret
from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisBus
from shared.catalogue import Catalogue
from shared.catalogue.store import ensure_catalogue, load_catalogue
from shared.db.areas import load_hierarchy, replace_hierarchy
from shared.db.engine import create_engine, create_sessionmaker, is_postgres
from shared.errors import ConfigError
from shared.live import LiveLog
from shared.live.memory import MemoryLiveLog
from shared.live.redis_log import RedisLiveLog
from shared.migrations.runner import current_revision, head_revision, upgrade
from shared.outbox import OutboxRelay
from shared.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Clients and indexes one process shares between its routes and background workers."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: Bus
    hierarchy: Hierarchy
    geotagger: Geotagger
    catalogue: Catalogue  # replaced wholesale by `refresh_catalogue`, never mutated
    outbox: OutboxRelay
    jwt_secret: str
    live: LiveLog  # the history `/ws/live` streams (shared.live)
    # Objects components open for the process's lifetime (the MQTT broker, the proxy's client).
    extras: dict[str, Any] = field(default_factory=dict)
    # API key hash or "user:<name>" → (principal or None, monotonic expiry), re-read after
    # `shared.web.CREDENTIAL_CACHE_TTL_S`: keys and token holders are checked on every request.
    credential_cache: dict[str, tuple[Principal | None, float]] = field(default_factory=dict)

    async def database_ok(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            logger.warning("database health check failed", exc_info=True)
            return False


def create_live_log(settings: Settings) -> LiveLog:
    """The live history: a Redis stream when `CITYHUB_REDIS_URL` is set, else a ring in memory."""
    if settings.redis_url:
        return RedisLiveLog.from_url(settings.redis_url, settings.bus_prefix)
    return MemoryLiveLog()


def create_bus(settings: Settings) -> Bus:
    """Redis Streams when `CITYHUB_REDIS_URL` is set, else the in-process bus."""
    if settings.redis_url:
        return RedisBus.from_url(settings.redis_url, settings.bus_prefix)
    return MemoryBus()


async def ensure_schema(engine: AsyncEngine, *, migrate: bool) -> None:
    """Apply migrations, or (production services) refuse to run on an outdated schema."""
    if migrate:
        await upgrade(engine)
        return
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise ConfigError(
            f"database schema is at revision {current or 'none'}, this code needs {head}: "
            "run `cityhub migrate` first"
        )


async def ensure_hierarchy(sessions: async_sessionmaker[AsyncSession]) -> Hierarchy:
    """The stored hierarchy; a database without one gets the generated Chongqing demo."""
    async with sessions() as session:
        hierarchy = await load_hierarchy(session)
    if hierarchy is not None:
        return hierarchy
    logger.info("no areas stored yet: generating the Chongqing demo hierarchy")
    demo = await asyncio.to_thread(generate_demo)
    try:
        async with sessions() as session, session.begin():
            await replace_hierarchy(session, demo)
    except IntegrityError:
        logger.info("another process stored the hierarchy first; loading it")
        async with sessions() as session:
            stored = await load_hierarchy(session)
        assert stored is not None
        return stored
    return demo


@asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool) -> AsyncIterator[Runtime]:
    """Open every client a service needs; close them on exit."""
    secret = resolve_jwt_secret(settings)
    engine = create_engine(settings)
    bus = create_bus(settings)
    live = create_live_log(settings)
    try:
        await ensure_schema(engine, migrate=migrate)
        sessions = create_sessionmaker(engine)
        hierarchy = await ensure_hierarchy(sessions)
        geotagger = await asyncio.to_thread(
            Geotagger, hierarchy, tolerance_m=settings.geotag_tolerance_m
        )
        catalogue = await ensure_catalogue(sessions)
        relay = OutboxRelay(sessions, bus, row_locks=is_postgres(engine))
        yield Runtime(
            settings, engine, sessions, bus, hierarchy, geotagger, catalogue, relay, secret, live
        )
    finally:
        await live.close()
        await bus.close()
        await engine.dispose()


CATALOGUE_REFRESH_S = 30.0  # how soon an admin's category edit in one process reaches the others


async def refresh_catalogue(runtime: Runtime) -> None:
    """Reload the catalogue periodically so edits made through another process apply here too."""
    while True:
        await asyncio.sleep(CATALOGUE_REFRESH_S)
        try:
            async with runtime.sessions() as session:
                runtime.catalogue = await load_catalogue(session)
        except Exception:
            logger.exception("catalogue refresh failed; keeping the loaded one")
