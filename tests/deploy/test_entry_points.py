"""The image's entry points as plain processes (no container engine here): every command the
Dockerfile, compose and Kubernetes run parses, and compose's stack starts from its own commands
and environment on the test servers: migration, broker logins, the four services until
/healthz, and Mosquitto on deploy's configuration with the exported logins."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from services.cli import app
from tests.deploy.files import (
    DEPLOY,
    base_resource_files,
    cityhub_services,
    compose,
    dockerfile,
    environment,
    manifests,
    pod_specs,
)
from tests.support.processes import service
from tests.support.servers import Servers, free_port, port_open
from tests.support.sync import run_sync

COMMAND_TIMEOUT_S = 120
MQTT_START_TIMEOUT_S = 30.0
NOT_AUTHORIZED = 135  # MQTT 5 reason code
STACK_TIMEOUT_S = 480  # a fresh database's first start and four services, on a loaded machine


def _cityhub() -> list[str]:
    """The `cityhub` console script the image installs (the module when it is not there)."""
    script = Path(sys.executable).with_name("cityhub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "services"]


def _commands() -> dict[str, list[str]]:
    """Every command deploy/ runs in the cityhub image, by where it comes from."""
    parsed = dockerfile()
    # Exec form only: the service must be PID 1 to get the SIGTERM it drains on.
    assert parsed.cmd is not None and parsed.cmd.startswith("["), parsed.cmd
    assert not any(i["instruction"] == "ENTRYPOINT" for i in parsed.structure)
    found = {"Dockerfile CMD": json.loads(parsed.cmd)}
    for name, svc in cityhub_services(compose()).items():
        found[f"compose {name}"] = svc["command"]
    for path in base_resource_files():
        for name, spec in pod_specs(manifests(path)):
            for container in spec["containers"]:
                if container.get("command", [""])[0] == "cityhub":
                    found[f"kubernetes {name}"] = container["command"]
    return found


def test_every_command_is_a_cityhub_command_that_parses() -> None:
    """Each command's words and options exist (`--help` after them parses everything first).
    In process, for speed: the console script itself runs in the test below."""
    commands = _commands()
    assert len(commands) >= 13
    for cmd in {tuple(cmd) for cmd in commands.values()}:
        assert cmd[0] == "cityhub", cmd
        result = CliRunner().invoke(app, [*cmd[1:], "--help"])
        assert result.exit_code == 0, f"{' '.join(cmd)} --help: {result.output}"
        assert "Usage:" in result.output
    wrong = CliRunner().invoke(app, ["serve", "gateway", "--workers", "2", "--help"])
    assert wrong.exit_code != 0


def test_the_image_command_runs_as_a_process() -> None:
    """The Dockerfile's CMD through the installed console script, as the container runs it."""
    cmd = _commands()["Dockerfile CMD"]
    run = subprocess.run(
        [*_cityhub(), *cmd[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "Run one service in production mode" in run.stdout


@pytest.fixture
def fresh_database(pg_server_url: str) -> Iterator[str]:
    """An empty PostgreSQL database (the migration job's first run), dropped afterwards."""
    name = f"cityhub_deploy_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_sync(lambda: admin(f'CREATE DATABASE "{name}"'))
    yield pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    run_sync(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _mosquitto_on_deploy_conf(auth_dir: Path, workdir: Path) -> tuple[Path, int]:
    """deploy/mosquitto/mosquitto.conf with its port and paths moved into `workdir`."""
    port = free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/auth/", f"{auth_dir}/")
    conf = conf.replace("/mosquitto/data/", f"{workdir}/")
    conf = conf.replace("log_dest stdout", f"log_dest file {workdir}/mosquitto.log\nlog_type all")
    assert f"password_file {auth_dir}/passwd" in conf
    if os.geteuid() == 0:
        # As root Mosquitto drops to its own user, who cannot enter pytest's private temporary
        # directory (the image instead writes the files as Mosquitto's uid: deploy/compose.yaml).
        conf += "user root\n"
    path = workdir / "mosquitto.conf"
    path.write_text(conf)
    return path, port


@contextmanager
def _publisher(port: int, username: str, password: str) -> Iterator[Callable[[str], int]]:
    """An MQTT 5 client logged in as `username`; the callable publishes one QoS 1 message and
    answers the broker's PUBACK reason code (0: accepted, 135: not authorised)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"deploy-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    acks: dict[int, int] = {}
    client.on_publish = lambda _c, _u, mid, reason, _p: acks.__setitem__(mid, reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()

    def publish(topic: str) -> int:
        info = client.publish(topic, b'{"water_level_cm": 10}', qos=1)
        deadline = time.monotonic() + MQTT_START_TIMEOUT_S
        while info.mid not in acks:
            assert time.monotonic() < deadline, f"no PUBACK for {topic}"
            time.sleep(0.02)  # poll interval while paho's thread receives the PUBACK
        return acks[info.mid]

    try:
        yield publish
    finally:
        client.disconnect()
        client.loop_stop()


def _connect_code(port: int, username: str, password: str) -> int:
    """The broker's CONNACK reason code for this login (0: accepted)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"deploy-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(username, password)
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    client.connect("127.0.0.1", port)
    try:
        deadline = time.monotonic() + MQTT_START_TIMEOUT_S
        while not codes:
            assert time.monotonic() < deadline, "no CONNACK"
            client.loop(timeout=1.0)
    finally:
        client.disconnect()
    return codes[0]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_compose_stack_starts_from_its_own_commands(
    fresh_database: str,
    redis_url: str,
    bus_prefix: str,
    redis_cleanup: None,
    servers: Servers,
    tmp_path: Path,
) -> None:
    doc = compose()
    services = doc["services"]
    ports = {name: free_port() for name in ("ingest", "dispatch", "metrics", "gateway")}
    unique = uuid.uuid4().hex[:10]
    auth_dir = tmp_path / "mqtt-auth"
    auth_dir.mkdir()

    def env_of(name: str) -> dict[str, str]:
        """The service's compose environment with the hosts moved to the test servers."""
        env = environment(services[name])
        replaced = {
            "CITYHUB_DATABASE_URL": fresh_database,
            "CITYHUB_REDIS_URL": redis_url,
            "CITYHUB_MQTT_URL": f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
            "CITYHUB_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
            "CITYHUB_DISPATCH_URL": f"http://127.0.0.1:{ports['dispatch']}",
            "CITYHUB_METRICS_URL": f"http://127.0.0.1:{ports['metrics']}",
        }
        assert replaced.keys() <= env.keys(), name  # compose names every backend itself
        local = {
            "CITYHUB_HTTP_HOST": "127.0.0.1",
            "CITYHUB_HTTP_PORT": str(ports.get(name, 0)),
            "CITYHUB_DATA_DIR": str(tmp_path / "data"),
            "CITYHUB_BUS_PREFIX": bus_prefix,
            "CITYHUB_MQTT_TOPIC_ROOT": f"test/{unique}",
            "CITYHUB_JWT_SECRET": secrets.token_hex(32),  # the example's is refused on purpose
        }
        if "CITYHUB_MQTT_CLIENT_ID" in env:
            local["CITYHUB_MQTT_CLIENT_ID"] = f"deploy-{unique}"
        cleaned = {k: v for k, v in os.environ.items() if not k.startswith("CITYHUB_")}
        return {**cleaned, **env, **replaced, **local}

    def run(name: str, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_cityhub(), *command[1:]],
            env=env_of(name),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    migrated = run("migrate", services["migrate"]["command"])
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout

    # Two integrators, each with one sensor, made as an operator would with the image
    # (`docker compose run --rm migrate cityhub keys add ...`): the exported ACL keeps them apart.
    keys = {}
    for integrator in ("north", "south"):
        added = run("migrate", ["cityhub", "keys", "add", integrator])
        assert added.returncode == 0, added.stderr
        keys[integrator] = added.stdout.strip()
    sensors = tmp_path / "sensors.csv"
    sensors.write_text(
        "id,type,lon,lat,integrator,interval_s\n"
        "n-1,water_level,106.58,29.56,north,60\n"
        "s-1,water_level,106.59,29.57,south,60\n"
    )
    imported = run("migrate", ["cityhub", "sensors", "import", str(sensors)])
    assert imported.returncode == 0, imported.stderr

    export = services["mqtt-auth"]["command"]
    export = [a.replace("/var/lib/cityhub/mqtt-auth", str(auth_dir)) for a in export]
    exported = run("mqtt-auth", export)
    assert exported.returncode == 0, exported.stderr
    assert (auth_dir / "passwd").read_text().startswith("ingest:$7$")
    assert "user ingest" in (auth_dir / "acl").read_text()

    conf, broker_port = _mosquitto_on_deploy_conf(auth_dir, tmp_path)
    root = f"test/{unique}/sensors"
    with ExitStack() as stack:
        stack.enter_context(_mosquitto(conf, broker_port))
        password = environment(services["ingest"])["CITYHUB_MQTT_PASSWORD"]
        assert _connect_code(broker_port, "ingest", password) == 0
        assert _connect_code(broker_port, "ingest", password + "x") != 0
        assert _connect_code(broker_port, "nobody", "anything") != 0

        # The four services from compose's commands, started together (the gateway's /healthz
        # waits for the others); ingest on the broker configured as deploy/ configures it.
        envs = {name: env_of(name) for name in ("ingest", "dispatch", "metrics", "gateway")}
        envs["ingest"]["CITYHUB_MQTT_URL"] = f"mqtt://127.0.0.1:{broker_port}"
        lock = threading.Lock()

        def start(name: str) -> None:
            started = service(
                envs[name], *services[name]["command"][1:], health_url=_health(ports[name])
            )
            started.__enter__()
            with lock:
                stack.push(started.__exit__)

        with ThreadPoolExecutor(len(envs)) as pool:
            list(pool.map(start, envs))

        # ingest logged in with the exported password and subscribed (Mosquitto's log says so)
        log = tmp_path / "mosquitto.log"
        deadline = time.monotonic() + MQTT_START_TIMEOUT_S
        while f"as deploy-{unique}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)  # poll interval while ingest connects
        assert f"deploy-{unique} 1 $share/ingest/{root}/" in log.read_text()

        # An integrator publishes to its own sensor (delivered: ingest's shared subscription
        # matches), never to another integrator's or an unknown one's.
        north = stack.enter_context(_publisher(broker_port, "north", keys["north"]))
        assert north(f"{root}/n-1/reading") == 0
        assert north(f"{root}/s-1/reading") == NOT_AUTHORIZED
        assert north(f"{root}/x-1/reading") == NOT_AUTHORIZED


def _health(port: int) -> str:
    return f"http://127.0.0.1:{port}/healthz"


@contextmanager
def _mosquitto(conf: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Mosquitto on `conf`, once it listens; stopped afterwards."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + MQTT_START_TIMEOUT_S
        while not port_open("127.0.0.1", port) and proc.poll() is None:
            assert time.monotonic() < deadline, f"mosquitto not listening on {port}"
            time.sleep(0.05)  # poll interval while the broker starts
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=MQTT_START_TIMEOUT_S)
