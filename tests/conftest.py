"""Shared fixtures: real PostgreSQL, Redis and Mosquitto (found or started), isolated per test."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from shared.db.engine import create_engine
from shared.migrations.runner import upgrade
from shared.settings import Settings
from tests.support import start_caches
from tests.support.first_start import FIRST_START_MARK, SQLITE_TEMPLATE, PostgresReset
from tests.support.memory import forget_app_callables
from tests.support.mqtt import clear_session
from tests.support.servers import Servers, ServerUnavailableError, free_port, running_servers
from tests.support.sync import run_sync

__all__ = ["run_sync"]  # tests import it from here


@pytest.fixture(scope="session", autouse=True)
def _start_caches() -> Iterator[None]:
    """Pure start-up work (demo areas, geotaggers) done once per process; cheap password hashes."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        start_caches.install(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def _free_apps() -> Iterator[None]:
    """The test's apps (and their runtimes) can be freed once it ends."""
    yield
    forget_app_callables()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Spare the interpreter's last full garbage collection over everything the session made (a
    minute and more of exit on a loaded machine): the process ends right after it anyway."""
    gc.freeze()


def _first_start(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker(FIRST_START_MARK) is not None


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


@pytest.fixture(scope="session")
def _pg_reset(pg_url: str) -> PostgresReset:
    """The session database with a first start's rows stored, and how to go back to them."""
    return run_sync(lambda: PostgresReset.prepare(pg_url))


@pytest.fixture
def clean_pg(request: pytest.FixtureRequest, _pg_reset: PostgresReset) -> str:
    """The session's PostgreSQL database emptied before the test, but for the areas and the
    catalogue a first start stores (none either under `@pytest.mark.first_start`)."""
    run_sync(lambda: _pg_reset.reset(first_start=_first_start(request)))
    return _pg_reset.url


@pytest.fixture
def redis_url(servers: Servers) -> str:
    """The Redis server; tests isolate themselves with a unique `bus_prefix`."""
    return servers.redis_url


@pytest.fixture
def bus_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def embedded_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Embedded mode in a private data dir, with the broker on a free port; the data dir holds a
    hub's database as its first start left it (an empty dir under `@pytest.mark.first_start`)."""
    if not _first_start(request):
        SQLITE_TEMPLATE.copy_into(tmp_path)
    return Settings(data_dir=tmp_path, mqtt_port=free_port(), http_port=free_port())


@pytest.fixture
def production_settings(
    tmp_path: Path,
    clean_pg: str,
    redis_url: str,
    bus_prefix: str,
    redis_cleanup: None,
    servers: Servers,
) -> Iterator[Settings]:
    """Production mode: the session's PostgreSQL database, Redis and Mosquitto; ingest's MQTT
    client id and topics are the test's own (one ingest never takes over another's session)."""
    unique = uuid.uuid4().hex[:10]
    settings = Settings(
        data_dir=tmp_path,
        database_url=clean_pg,
        redis_url=redis_url,
        mqtt_url=f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
        mqtt_topic_root=f"test/{unique}",
        mqtt_client_id=f"test-ingest-{unique}",
        bus_prefix=bus_prefix,
        jwt_secret=SecretStr("test-secret-" + uuid.uuid4().hex),
    )
    yield settings
    clear_session(servers.mqtt_host, servers.mqtt_port, settings.mqtt_client_id)


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
