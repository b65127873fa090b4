"""The `cityhub` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

from tests.support.processes import cli, service
from tests.support.servers import free_port
from tests.support.waiting import wait_for


def _embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CITYHUB_DATA_DIR": str(tmp_path),
        "CITYHUB_HTTP_PORT": str(free_port()),
        "CITYHUB_MQTT_PORT": str(free_port()),
        "CITYHUB_DATABASE_URL": "",
        "CITYHUB_REDIS_URL": "",
        "CITYHUB_MQTT_URL": "",
        **extra,
    }


def test_run_starts_the_embedded_hub_and_prints_its_url(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    port = env["CITYHUB_HTTP_PORT"]
    with service(env, "run", health_url=f"http://127.0.0.1:{port}/healthz") as proc:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert f"cityhub is running: open http://127.0.0.1:{port}/" in output
    assert (tmp_path / "cityhub.sqlite3").exists()


async def test_run_simulate_feeds_the_hub_from_every_channel(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    port = env["CITYHUB_HTTP_PORT"]
    database = tmp_path / "cityhub.sqlite3"

    def seen() -> tuple[set[str], int, int]:
        with sqlite3.connect(database) as db:
            sources = {row[0] for row in db.execute("SELECT DISTINCT source FROM events")}
            tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
            reporting = db.execute(
                "SELECT count(*) FROM sensors WHERE id LIKE 'demo-%' AND last_seen_at IS NOT NULL"
            ).fetchone()[0]
        return sources, tickets, reporting

    async def fed() -> bool:
        sources, tickets, reporting = await asyncio.to_thread(seen)
        return {"hotline", "grid"} <= sources and tickets > 0 and reporting > 0

    with service(env, "run", "--simulate", health_url=f"http://127.0.0.1:{port}/healthz") as proc:
        await wait_for(fed, within=60, interval=0.5)  # sensors' last-seen is written every 15 s
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "MQTT sensors are feeding it" in output


def test_taken_mqtt_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _embedded_env(tmp_path, CITYHUB_MQTT_PORT=str(taken.getsockname()[1]))
        result = cli(env, "run")
    assert result.returncode == 2
    assert "CITYHUB_MQTT_PORT" in result.stderr and "CITYHUB_MQTT_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_taken_http_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _embedded_env(tmp_path, CITYHUB_HTTP_PORT=str(taken.getsockname()[1]))
        result = cli(env, "run")
    assert result.returncode == 2
    assert "CITYHUB_HTTP_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_embedded_settings(tmp_path: Path) -> None:
    result = cli(_embedded_env(tmp_path), "serve", "ingest")
    assert result.returncode == 2
    assert "CITYHUB_DATABASE_URL" in result.stderr


def test_users_and_keys(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    ok = cli(
        env,
        "users",
        "add",
        "ana",
        "--role",
        "dispatcher",
        "--scope",
        "district:500103",
        "--password",
        "correct-horse-battery",
    )
    assert ok.returncode == 0, ok.stderr
    bad_scope = cli(
        env,
        "users",
        "add",
        "bo",
        "--role",
        "dispatcher",
        "--scope",
        "district:999999",
        "--password",
        "correct-horse-battery",
    )
    assert bad_scope.returncode == 2 and "999999" in bad_scope.stderr
    no_dept = cli(
        env,
        "users",
        "add",
        "cy",
        "--role",
        "field_staff",
        "--scope",
        "city",
        "--password",
        "correct-horse-battery",
    )
    assert no_dept.returncode == 2 and "department" in no_dept.stderr
    listed = cli(env, "users", "list")
    assert listed.stdout.split() == ["ana", "dispatcher", "district:500103", "-"]
    key = cli(env, "keys", "add", "crm")
    assert key.returncode == 0 and key.stdout.strip().startswith("chk_")
    again = cli(env, "keys", "add", "crm")
    assert again.returncode == 2 and "exists" in again.stderr


def test_areas_generate_and_import(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    out = tmp_path / "demo.geojson"
    gen = cli(env, "areas", "generate", "-o", str(out))
    assert gen.returncode == 0, gen.stderr
    assert "1073 areas" in gen.stdout
    imp = cli(env, "areas", "import", str(out))
    assert imp.returncode == 0, imp.stderr
    broken = tmp_path / "broken.geojson"
    broken.write_text(out.read_text().replace('"parent": "500103"', '"parent": "NOPE"', 1))
    refused = cli(env, "areas", "import", str(broken))
    assert refused.returncode == 2
    assert "NOPE" in refused.stderr
    with sqlite3.connect(tmp_path / "cityhub.sqlite3") as db:  # the old hierarchy stays
        assert db.execute("select count(*) from areas").fetchone() == (1073,)
        assert db.execute("select count(*) from areas where parent = 'NOPE'").fetchone() == (0,)
