"""The restore procedure of deploy/README.md ("Backups and restore"), step by step on the test
PostgreSQL server: pg_dump -Fc, pg_restore into a new database, `cityhub migrate`, `cityhub audit
verify`, and the hub's rows are all there (every table, row for row in count)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.processes import cli
from tests.support.sync import run_sync

DUMP_TIMEOUT_S = 120


def _admin(server_url: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_sync(go)


@pytest.fixture
def two_databases(pg_server_url: str) -> Iterator[tuple[str, str]]:
    """The hub's database and an empty one to restore into; both dropped afterwards."""
    names = [f"cityhub_{what}_{uuid.uuid4().hex[:8]}" for what in ("live", "restore")]
    for name in names:
        _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    base = pg_server_url.rsplit("/", 1)[0]
    yield base + f"/{names[0]}", base + f"/{names[1]}"
    for name in names:
        _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=DUMP_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(300)
def test_a_dump_restores_into_a_working_hub(two_databases: tuple[str, str], tmp_path: Path) -> None:
    live, restored = two_databases
    live_env = {"CITYHUB_DATABASE_URL": live, "CITYHUB_DATA_DIR": str(tmp_path)}
    assert cli(live_env, "migrate").returncode == 0
    assert cli(live_env, "keys", "add", "crm").returncode == 0
    added = cli(
        live_env, "users", "add", "chief", "--role", "dispatcher", "--scope", "city",
        "--password", "a-long-password",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    dump = tmp_path / "cityhub.dump"
    _run(_tool("pg_dump"), "-Fc", "-d", live, "-f", str(dump))
    _run(_tool("pg_restore"), "--no-owner", "-j", "2", "-d", restored, str(dump))

    env = {"CITYHUB_DATABASE_URL": restored, "CITYHUB_DATA_DIR": str(tmp_path)}
    migrated = cli(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    verified = cli(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    before, after = run_sync(lambda: _row_counts(live)), run_sync(lambda: _row_counts(restored))
    assert after == before
    assert before["api_keys"] == before["users"] == 1
    assert before["areas"] > 1000  # the demo hierarchy a first start stored


async def _row_counts(url: str) -> dict[str, int]:
    """Rows of every table of the hub's schema."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        return {
            t["tablename"]: await conn.fetchval(f'SELECT count(*) FROM "{t["tablename"]}"')
            for t in tables
        }
    finally:
        await conn.close()
