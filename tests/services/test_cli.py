"""The `cityhub` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path

import asyncpg
from typer.testing import CliRunner, Result

from services.cli import app, database_label
from shared.settings import Settings
from tests.conftest import run_sync
from tests.support.processes import CLI, cli, service
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
    # Quiet by default: no line per simulated call, per HTTP request or per MQTT client state.
    lines = output.splitlines()
    assert not [line for line in lines if "HTTP Request:" in line or '" 201' in line]
    assert not [line for line in lines if "amqtt" in line or "transitions" in line]
    assert len(lines) < 40, output


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
    assert cli(env, "migrate").returncode == 0
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
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["ana", "dispatcher", "district:500103", "-", "active"]
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
    assert cli(env, "migrate").returncode == 0  # areas are imported into an existing hub database
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


RUNNER = CliRunner()
ADD_ANA = [
    "users",
    "add",
    "ana",
    "--role",
    "dispatcher",
    "--scope",
    "city",
    "--password",
    "correct-horse-battery",
]


def _invoke(env: dict[str, str], *args: str) -> Result:
    """Run a `cityhub` command in this process (quicker than a child for many short ones)."""
    return RUNNER.invoke(app, list(args), env=env)


def _managing_commands(tmp_path: Path) -> list[list[str]]:
    sensors = tmp_path / "sensors.csv"
    sensors.write_text("id,type,lon,lat,integrator,interval_s\n")
    areas = tmp_path / "areas.geojson"
    assert _invoke({}, "areas", "generate", "-o", str(areas)).exit_code == 0
    return [
        ADD_ANA,
        ["users", "list"],
        ["users", "disable", "ana"],
        ["users", "enable", "ana"],
        ["keys", "add", "crm"],
        ["keys", "list"],
        ["keys", "revoke", "crm"],
        ["sensors", "import", str(sensors)],
        ["audit", "verify"],
        ["areas", "import", str(areas)],
        [
            "mqtt",
            "export-auth",
            "--passwords",
            str(tmp_path / "pw"),
            "--acl",
            str(tmp_path / "acl"),
        ],
    ]


def test_commands_that_manage_a_hub_refuse_a_data_dir_without_one(tmp_path: Path) -> None:
    empty = tmp_path / "not-the-hub"
    env = _embedded_env(empty)
    for command in _managing_commands(tmp_path):
        result = _invoke(env, *command)
        assert result.exit_code == 2, (command, result.output)
        said = result.stderr.splitlines()
        assert said[0] == f"database: sqlite:///{empty.resolve()}/cityhub.sqlite3", command
        assert f"no cityhub database in {empty.resolve()}" in said[1], command
        assert "CITYHUB_DATA_DIR" in said[1] and "cityhub migrate" in said[1], command
    assert not empty.exists()  # nothing was created there


def test_users_add_from_another_directory_creates_no_database(tmp_path: Path) -> None:
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYHUB_")}
    result = subprocess.run(
        [*CLI, *ADD_ANA], env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert f"no cityhub database in {elsewhere.resolve()}/var" in result.stderr
    assert "CITYHUB_DATA_DIR" in result.stderr and "Traceback" not in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_every_command_names_its_database(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    line = f"database: sqlite:///{tmp_path.resolve()}/cityhub.sqlite3"
    for command in (["migrate"], ["keys", "add", "crm"], ["keys", "list"], ["users", "list"]):
        result = _invoke(env, *command)
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines()[0] == line, command
    masked = database_label(Settings(database_url="postgresql://ana:s3cret@db.city:5432/hub"))
    assert masked == "postgresql://ana:***@db.city:5432/hub"


def test_an_unmigrated_postgresql_database_is_refused(pg_server_url: str) -> None:
    name = f"cityhub_empty_{uuid.uuid4().hex[:8]}"
    run_sync(lambda: _pg_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    try:
        url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
        result = _invoke({"CITYHUB_DATABASE_URL": url, "CITYHUB_REDIS_URL": ""}, "users", "list")
    finally:
        run_sync(lambda: _pg_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}"'))
    assert result.exit_code == 2, result.output
    assert f"no cityhub database at {url} (CITYHUB_DATABASE_URL)" in result.stderr


async def _pg_admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_integrators_get_keys_not_passwords(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    assert _invoke(env, "migrate").exit_code == 0
    result = _invoke(
        env,
        "users",
        "add",
        "crm",
        "--role",
        "integrator",
        "--scope",
        "city",
        "--password",
        "correct-horse-battery",
    )
    assert result.exit_code == 2
    assert "API key" in result.stderr and "cityhub keys add" in result.stderr
    assert _invoke(env, "keys", "add", "crm").exit_code == 0
    same_name = _invoke(
        env,
        "users",
        "add",
        "crm",
        "--role",
        "manager",
        "--scope",
        "city",
        "--password",
        "correct-horse-battery",
    )
    assert same_name.exit_code == 2 and "an API key is named 'crm'" in same_name.stderr


def test_user_departments_must_exist_and_serve_the_scope(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    assert _invoke(env, "migrate").exit_code == 0

    def add(name: str, scope: str, department: str) -> Result:
        return _invoke(
            env,
            "users",
            "add",
            name,
            "--role",
            "field_staff",
            "--scope",
            scope,
            "--department",
            department,
            "--password",
            "correct-horse-battery",
        )

    typo = add("crew", "district:500103", "cgj@50013")
    assert typo.exit_code == 2 and "no department 'cgj@50013'" in typo.stderr
    elsewhere = add("crew", "district:500103", "cgj@500105")
    assert elsewhere.exit_code == 2 and "use cgj@500103 or cgj" in elsewhere.stderr
    assert add("crew", "district:500103", "cgj@500103").exit_code == 0
    assert add("walker", "street:500103001", "office@500103001").exit_code == 0
    listed = _invoke(env, "users", "list").stdout.split()
    assert listed == [
        "crew",
        "field_staff",
        "district:500103",
        "cgj@500103",
        "active",
        "walker",
        "field_staff",
        "street:500103001",
        "office@500103001",
        "active",
    ]


def test_users_are_disabled_and_keys_revoked_by_name(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    assert _invoke(env, "migrate").exit_code == 0
    assert _invoke(env, *ADD_ANA).exit_code == 0
    assert _invoke(env, "keys", "add", "crm").exit_code == 0
    assert "user ana is disabled" in _invoke(env, "users", "disable", "ana").stdout
    assert _invoke(env, "users", "list").stdout.split()[-1] == "disabled"
    assert "already" in _invoke(env, "users", "disable", "ana").stdout
    assert "user ana is active" in _invoke(env, "users", "enable", "ana").stdout
    assert "revoked API key crm" in _invoke(env, "keys", "revoke", "crm").stdout
    assert "already revoked" in _invoke(env, "keys", "revoke", "crm").stdout
    name, role, _created, state = _invoke(env, "keys", "list").stdout.strip().split("\t")
    assert (name, role) == ("crm", "integrator") and state.startswith("revoked 20")
    for unknown in (["users", "disable", "nobody"], ["keys", "revoke", "nothing"]):
        refused = _invoke(env, *unknown)
        assert refused.exit_code == 2 and "no " in refused.stderr
