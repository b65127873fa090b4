"""The production live path as local processes, for `cityhub bench live`: a throwaway PostgreSQL
database (migrated, demo map, catalogue, users, an API key), Redis under a throwaway bus prefix,
`cityhub serve metrics` and `cityhub serve gateway` (with `ingest` and `dispatch` too when real
tickets are to be made), and the bare `websockets` server; all removed afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets
from redis.asyncio import Redis

from services.gateway.identity import create_api_key, create_user
from shared.areas import Hierarchy
from shared.catalogue import Catalogue
from shared.catalogue.store import ensure_catalogue
from shared.db.engine import create_engine, create_sessionmaker
from shared.migrations.runner import upgrade
from shared.runtime import ensure_hierarchy
from shared.settings import Settings
from simulators.proc_stats import cpu_seconds

PASSWORD = "bench-live-password"  # of the users of a throwaway database
START_TIMEOUT_S = 90.0  # for a process to answer
STOP_TIMEOUT_S = 30.0  # for a process to end after its stop signal (then SIGKILL)
API_KEY_NAME = "bench-live"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A child process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def started(
    name: str, cmd: list[str], env: dict[str, str], logs: Path, stop: int = signal.SIGTERM
) -> Iterator[Proc]:
    """Start a process (output to a log file) and stop it (`stop`, then SIGKILL) afterwards."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield Proc(name, popen, log)
    finally:
        if popen.poll() is None:
            popen.send_signal(stop)
            try:
                popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


async def wait_answering(proc: Proc, url: str) -> None:
    """Wait until `url` answers at all: any HTTP status (a gateway whose upstreams are not
    running says 503), or a websocket handshake for a ws:// URL."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if proc.popen.poll() is not None:
                raise SystemExit(f"{proc.name} exited early:\n{proc.tail()}")
            try:
                if url.startswith("ws://"):
                    async with websockets.connect(url, open_timeout=2):
                        return
                await client.get(url)
                return
            except (httpx.HTTPError, OSError, TimeoutError, websockets.InvalidHandshake):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{proc.name} did not answer in {START_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def throwaway_database(server_url: str) -> AsyncIterator[str]:
    """A new database on the server (dropped afterwards); yields its URL."""
    name = f"cityhub_bench_live_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def prepare_database(
    url: str, users: dict[str, tuple[str, str]]
) -> tuple[Hierarchy, Catalogue, str]:
    """Migrate (as `cityhub migrate`), seed the demo map and the catalogue, add the users (as
    `cityhub users add`, here in-process: a CLI start-up per user would take longer than the
    rest) and an integrator's API key; the map, the catalogue and the key."""
    engine = create_engine(Settings(database_url=url))
    try:
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        hierarchy = await ensure_hierarchy(sessions)
        catalogue = await ensure_catalogue(sessions)
        async with sessions() as session, session.begin():
            for username, (role, scope) in users.items():
                await create_user(
                    session, hierarchy, username=username, password=PASSWORD, role=role,
                    scope=scope,
                )  # fmt: skip
            key = await create_api_key(session, API_KEY_NAME)
        return hierarchy, catalogue, key
    finally:
        await engine.dispose()


async def clear_redis(url: str, prefix: str) -> None:
    """Delete every key under a prefix."""
    redis = Redis.from_url(url)
    try:
        keys = [k async for k in redis.scan_iter(match=prefix + "*", count=1_000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def redis_pid(url: str) -> int | None:
    """The Redis server's process id, when it runs on this machine (so /proc shows it)."""
    redis = Redis.from_url(url)
    try:
        info: dict[str, Any] = await redis.info("server")
    finally:
        await redis.aclose()
    pid = int(info.get("process_id", 0))
    return pid if cpu_seconds(pid) is not None else None


async def login(base: str, users: Sequence[str]) -> dict[str, str]:
    """An access token per user, from the gateway's `POST /auth/token`."""
    tokens = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for user in users:
            reply = await client.post("/auth/token", data={"username": user, "password": PASSWORD})
            if reply.status_code != 200:
                raise SystemExit(f"sign-in of {user} failed: {reply.status_code} {reply.text}")
            tokens[user] = reply.json()["access_token"]
    return tokens


@dataclass
class Stack:
    """The running processes and what the bench needs to drive them."""

    db_url: str
    redis_url: str
    prefix: str  # the bus prefix
    ports: dict[str, int]
    procs: dict[str, Proc]
    hierarchy: Hierarchy
    catalogue: Catalogue
    tokens: dict[str, str]  # access token per user
    api_key: str
    logs: Path

    def url(self, name: str) -> str:
        """The base URL of a process."""
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def live_key(self) -> str:
        """The live history's Redis stream (shared.live.redis_log)."""
        return f"{self.prefix}live:stream"


def _env(
    db_url: str, redis_url: str, prefix: str, ports: dict[str, int], logs: Path
) -> dict[str, str]:
    return {
        "CITYHUB_DATABASE_URL": db_url,
        "CITYHUB_REDIS_URL": redis_url,
        "CITYHUB_BUS_PREFIX": prefix,
        "CITYHUB_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "CITYHUB_MQTT_URL": "mqtt://127.0.0.1:1",  # no sensors here: never the embedded broker
        "CITYHUB_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
        "CITYHUB_DISPATCH_URL": f"http://127.0.0.1:{ports['dispatch']}",
        "CITYHUB_METRICS_URL": f"http://127.0.0.1:{ports['metrics']}",
        "CITYHUB_LOG_LEVEL": "WARNING",
        "CITYHUB_ACCESS_LOG": "false",
        "CITYHUB_DATA_DIR": str(logs),
    }


@asynccontextmanager
async def live_stack(
    *,
    postgres: str,
    redis_url: str,
    users: dict[str, tuple[str, str]],
    intake: bool,
    profile: Path | None = None,
    gateway_module: str = "services",
) -> AsyncIterator[Stack]:
    """Start everything (`intake`: ingest and dispatch too), sign the users in; stop and remove
    everything afterwards (the processes' logs are kept when something failed). With `profile`
    (an existing directory), the gateway and the bare server run under cProfile and write their
    stats there."""
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}:"
    ports = {n: free_port() for n in ("metrics", "gateway", "bare", "ingest", "dispatch")}
    logs = Path(tempfile.mkdtemp(prefix="cityhub-bench-live-"))
    python = [sys.executable]
    profiled = [sys.executable, "-m", "cProfile", "-o"]
    # A profiled process is stopped with SIGINT, as from a terminal: its profile is written as
    # the process returns from cProfile (the bare server ends on a SIGTERM without unwinding).
    stop = signal.SIGINT if profile else signal.SIGTERM
    try:
        async with throwaway_database(postgres) as db_url:
            hierarchy, catalogue, key = await prepare_database(db_url, users)
            env = _env(db_url, redis_url, prefix, ports, logs)
            commands: dict[str, list[str]] = {
                "metrics": [*python, "-m", "services", "serve", "metrics"],
                "gateway": [
                    *(python if profile is None else [*profiled, str(profile / "gateway.prof")]),
                    "-m", gateway_module, "serve", "gateway",
                ],
                "bare": [
                    *(python if profile is None else [*profiled, str(profile / "bare.prof")]),
                    "-m", "simulators.bare_ws", "--port", str(ports["bare"]),
                    "--redis", redis_url, "--prefix", prefix,
                ],
            }  # fmt: skip
            if intake:
                commands["ingest"] = [*python, "-m", "services", "serve", "ingest"]
                commands["dispatch"] = [*python, "-m", "services", "serve", "dispatch"]
            with ExitStack() as processes:
                procs = {
                    name: processes.enter_context(
                        started(
                            name, cmd, {**env, "CITYHUB_HTTP_PORT": str(ports[name])}, logs, stop
                        )
                    )
                    for name, cmd in commands.items()
                }
                for name, proc in procs.items():
                    base = f"127.0.0.1:{ports[name]}"
                    url = f"ws://{base}/" if name == "bare" else f"http://{base}/healthz"
                    await wait_answering(proc, url)
                tokens = await login(f"http://127.0.0.1:{ports['gateway']}", list(users))
                yield Stack(
                    db_url, redis_url, prefix, ports, procs, hierarchy, catalogue, tokens, key,
                    logs,
                )  # fmt: skip
    except BaseException:
        print(f"the processes' logs are kept in {logs}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        await clear_redis(redis_url, prefix)
