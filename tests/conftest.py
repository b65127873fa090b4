"""Shared fixtures: real PostgreSQL, Redis and Mosquitto (found or started), isolated per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from shared.db.engine import create_engine
from shared.db.models import Base
from shared.migrations.runner import upgrade
from shared.settings import Settings
from tests.support.servers import Servers, ServerUnavailableError, free_port, running_servers

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop in a thread (safe inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """PostgreSQL, Redis and Mosquitto for this session (started only if a test needs them)."""
    try:
        with running_servers() as found:
            yield found
    except ServerUnavailableError as exc:
        pytest.exit(str(exc), returncode=3)


def _database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + f"/{name}"


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server_url(servers: Servers) -> str:
    """URL of the PostgreSQL server's maintenance database (for creating test databases)."""
    return servers.postgres_url


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    name = f"cityhub_test_{uuid.uuid4().hex[:10]}"
    run_sync(lambda: _admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    url = _database_url(pg_server_url, name)

    async def migrate() -> None:
        engine = create_engine(Settings(database_url=url))
        await upgrade(engine)
        await engine.dispose()

    run_sync(migrate)
    yield url
    run_sync(lambda: _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clean_pg(pg_url: str) -> str:
    """The session's PostgreSQL database with every table emptied before the test."""

    async def truncate() -> None:
        engine = create_engine(Settings(database_url=pg_url))
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        await engine.dispose()

    run_sync(truncate)
    return pg_url


@pytest.fixture
def redis_url(servers: Servers) -> str:
    """The Redis server; tests isolate themselves with a unique `bus_prefix`."""
    return servers.redis_url


@pytest.fixture
def bus_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Embedded mode in a private data dir, with the broker on a free port."""
    return Settings(data_dir=tmp_path, mqtt_port=free_port(), http_port=free_port())


@pytest.fixture
def production_settings(
    tmp_path: Path,
    clean_pg: str,
    redis_url: str,
    bus_prefix: str,
    redis_cleanup: None,
    servers: Servers,
) -> Settings:
    """Production mode: the session's PostgreSQL database, Redis and Mosquitto."""
    return Settings(
        data_dir=tmp_path,
        database_url=clean_pg,
        redis_url=redis_url,
        mqtt_url=f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
        bus_prefix=bus_prefix,
        jwt_secret=SecretStr("test-secret-" + uuid.uuid4().hex),
    )


@pytest.fixture
def redis_cleanup(redis_url: str, bus_prefix: str) -> Iterator[None]:
    """Delete the test's Redis keys afterwards."""
    yield
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=bus_prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
