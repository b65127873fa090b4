"""The production stack `cityhub bench e2e` drives: started here as local processes (a throwaway
PostgreSQL database, Redis under a throwaway bus prefix, Mosquitto under a throwaway topic root,
one metrics process and 1 or 2 replicas of ingest, dispatch and gateway), or one already running
that the bench is given by URL and credentials.

Replica i of the gateway forwards to replica i of ingest and dispatch (there is no load balancer
on one machine); ingest replicas share the sensor topics through a Mosquitto shared subscription
and dispatch replicas share the bus through their consumer group.

A compressed day compresses deadlines too: with `speed` > 1 the local stack's catalogue hours are
divided by `speed` and dispatch counts every hour of the week as working time, so that deadline
timers fall due while the bench runs (timer lag is measured on them).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from shapely.geometry import Polygon

from services.gateway.identity import create_api_key, create_user
from services.ingest.sensors.csv_import import import_sensors, parse_sensor_csv
from shared.areas import Hierarchy
from shared.catalogue import Category, revised
from shared.catalogue.store import ensure_catalogue, save_category
from shared.db.engine import create_engine, create_sessionmaker
from shared.migrations.runner import upgrade
from shared.runtime import ensure_hierarchy
from shared.settings import Settings
from simulators.city import Street, fetch_streets, street_weight
from simulators.live_stack import (
    PASSWORD,
    Proc,
    clear_redis,
    free_port,
    login,
    started,
    throwaway_database,
    wait_answering,
)
from simulators.sensor_fleet import Fleet

WATCHER = "bench-e2e-city"  # the city dispatcher whose screens measure the latency
API_KEY_NAME = "bench-e2e"  # the integrator that posts events and owns the sensors
# Every minute of the week is working time, so compressed deadlines stay compressed.
ALWAYS_OPEN = {
    "version": 1,
    "timezone": "Asia/Shanghai",
    "periods": [["00:00:00", "23:59:59.999999"]],
    "weekdays": [0, 1, 2, 3, 4, 5, 6],
}
# The gateway's per-user and per-key rate limits off (0; shared/settings.py RateLimitSettings):
# the bench measures the hub, not its limits.
NO_RATE_LIMITS = {"CITYHUB_RATE_LIMITS__PER_USER": "0", "CITYHUB_RATE_LIMITS__PER_KEY": "0"}


@dataclass
class E2EStack:
    """What the bench drives: the gateways, credentials, and (local) the processes."""

    gateways: list[str]  # base URLs, one per replica
    db_url: str  # for the event → ticket links and the timers (read only)
    api_key: str
    integrator: str
    watcher_token: str
    mqtt: tuple[str, int]
    topic_root: str
    streets: list[Street]
    procs: dict[str, Proc] = field(default_factory=dict)  # empty for a running stack
    redis_url: str | None = None
    prefix: str | None = None  # the hub's Redis key prefix (local stacks)
    logs: Path | None = None
    compressed_deadlines: bool = False


def streets_of(hierarchy: Hierarchy) -> list[Street]:
    """The simulators' view of the map's streets."""
    return [
        Street(a.code, a.name, a.parent or "", cast(Polygon, a.geometry), street_weight(a.name))
        for a in hierarchy.streets
    ]


def sensor_csv(fleet: Fleet, integrator: str) -> str:
    """The fleet as `cityhub sensors import` reads it."""
    lines = ["id,type,lon,lat,integrator,interval_s,rules"]
    for s in fleet.sensors:
        rules = json.dumps(s.body()["rules"]).replace('"', '""')
        lines.append(f'{s.id},{s.kind.type},{s.lon},{s.lat},{integrator},{s.interval_s},"{rules}"')
    return "\n".join(lines) + "\n"


async def prepare(url: str, *, speed: float, fleet: Fleet | None) -> tuple[Hierarchy, str]:
    """Migrate, seed the map and the catalogue (deadlines divided by `speed`), add the watching
    user, the integrator's key and its sensors; the map and the key."""
    engine = create_engine(Settings(database_url=url))
    try:
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        hierarchy = await ensure_hierarchy(sessions)
        catalogue = await ensure_catalogue(sessions)
        async with sessions() as session, session.begin():
            await create_user(
                session, hierarchy, username=WATCHER, password=PASSWORD, role="dispatcher",
                scope="city",
            )  # fmt: skip
            key = await create_api_key(session, API_KEY_NAME)
            if speed > 1:
                for category in catalogue:
                    await save_category(session, compressed(category, speed))
        if fleet is not None:
            now = datetime.now(UTC)
            rows = parse_sensor_csv(sensor_csv(fleet, API_KEY_NAME), catalogue, now)
            async with sessions() as session, session.begin():
                await import_sensors(session, rows, now)
        return hierarchy, key
    finally:
        await engine.dispose()


def compressed(category: Category, speed: float) -> Category:
    """A category whose deadlines are `speed` times shorter."""
    return revised(
        category,
        accept_hours=category.accept_hours / speed,
        handle_hours=category.handle_hours / speed,
        deadlines={
            p: {"accept_hours": d.accept_hours / speed, "handle_hours": d.handle_hours / speed}
            for p, d in category.deadlines.items()
        },
    )


def _forget_sessions(host: str, port: int, client_ids: Sequence[str]) -> None:
    """Ask the broker to drop the persistent sessions ingest replicas left (MQTT 5: a clean
    start that expires at once)."""
    for client_id in client_ids:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        with contextlib.suppress(OSError):
            client.connect(host, port, clean_start=True, properties=props)
            client.loop_start()
            client.disconnect()
            client.loop_stop()


@asynccontextmanager
async def local_stack(
    *,
    postgres: str,
    redis_url: str,
    mqtt_url: str,
    replicas: int,
    speed: float,
    fleet: Fleet | None,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[E2EStack]:
    """Start the stack as processes; stop it and remove everything afterwards (the logs are kept
    when something failed)."""
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-e2e-{run}:"
    root = f"bench-e2e-{run}/v1"
    parts = urlsplit(mqtt_url if "://" in mqtt_url else f"mqtt://{mqtt_url}")
    broker = (parts.hostname or "127.0.0.1", parts.port or 1883)
    names = ["metrics"] + [f"{s}-{i}" for s in ("ingest", "dispatch", "gateway") for i in
                           range(1, replicas + 1)]  # fmt: skip
    ports = {n: free_port() for n in names}
    logs = Path(tempfile.mkdtemp(prefix="cityhub-bench-e2e-"))
    client_ids = [f"cityhub-ingest-{run}-{i}" for i in range(1, replicas + 1)]
    try:
        async with throwaway_database(postgres) as db_url:
            hierarchy, key = await prepare(db_url, speed=speed, fleet=fleet)
            env = {
                "CITYHUB_DATABASE_URL": db_url,
                "CITYHUB_REDIS_URL": redis_url,
                "CITYHUB_BUS_PREFIX": prefix,
                "CITYHUB_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
                "CITYHUB_MQTT_URL": f"mqtt://{broker[0]}:{broker[1]}",
                "CITYHUB_MQTT_TOPIC_ROOT": root,
                "CITYHUB_METRICS_URL": f"http://127.0.0.1:{ports['metrics']}",
                "CITYHUB_LOG_LEVEL": "WARNING",
                "CITYHUB_ACCESS_LOG": "false",
                "CITYHUB_DATA_DIR": str(logs),
                **NO_RATE_LIMITS,
                **(extra_env or {}),
            }
            if speed > 1:
                calendar = logs / "always-open.json"
                calendar.write_text(json.dumps(ALWAYS_OPEN))
                env["CITYHUB_DISPATCH__CALENDAR_FILE"] = str(calendar)
            python = [sys.executable, "-m", "services", "serve"]
            with ExitStack() as processes:
                procs: dict[str, Proc] = {}
                for name in names:
                    service, _, index = name.partition("-")
                    own = {"CITYHUB_HTTP_PORT": str(ports[name])}
                    if index:
                        own["CITYHUB_INGEST_URL"] = f"http://127.0.0.1:{ports['ingest-' + index]}"
                        own["CITYHUB_DISPATCH_URL"] = (
                            f"http://127.0.0.1:{ports['dispatch-' + index]}"
                        )
                    else:  # metrics
                        own["CITYHUB_INGEST_URL"] = f"http://127.0.0.1:{ports['ingest-1']}"
                        own["CITYHUB_DISPATCH_URL"] = f"http://127.0.0.1:{ports['dispatch-1']}"
                    if service == "ingest":
                        own["CITYHUB_MQTT_CLIENT_ID"] = client_ids[int(index) - 1]
                        if replicas > 1:
                            own["CITYHUB_MQTT_SHARED_GROUP"] = f"bench-e2e-{run}"
                    procs[name] = processes.enter_context(
                        started(name, [*python, service], {**env, **own}, logs)
                    )
                for name, proc in procs.items():
                    await wait_answering(proc, f"http://127.0.0.1:{ports[name]}/healthz")
                gateways = [f"http://127.0.0.1:{ports[f'gateway-{i}']}" for i in
                            range(1, replicas + 1)]  # fmt: skip
                tokens = await login(gateways[0], [WATCHER])
                yield E2EStack(
                    gateways=gateways, db_url=db_url, api_key=key, integrator=API_KEY_NAME,
                    watcher_token=tokens[WATCHER], mqtt=broker, topic_root=root,
                    streets=streets_of(hierarchy), procs=procs, redis_url=redis_url,
                    prefix=prefix, logs=logs, compressed_deadlines=speed > 1,
                )  # fmt: skip
    except BaseException:
        print(f"the processes' logs are kept in {logs}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        await clear_redis(redis_url, prefix)
        _forget_sessions(*broker, client_ids)


async def remote_stack(
    *,
    gateways: Sequence[str],
    username: str,
    password: str,
    api_key: str,
    database_url: str,
    mqtt_url: str,
    topic_root: str,
) -> E2EStack:
    """A running stack: sign in, learn the integrator's name and the streets."""
    base = gateways[0].rstrip("/")
    headers = {"X-API-Key": api_key}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        reply = await client.post("/auth/token", data={"username": username, "password": password})
        if reply.status_code != 200:
            raise SystemExit(f"sign-in of {username} failed: {reply.status_code} {reply.text}")
        token = str(reply.json()["access_token"])
        streets = await fetch_streets(client, {"Authorization": f"Bearer {token}"})
        who = await client.get("/api/v1/sensors", params={"limit": 1}, headers=headers)
        if who.status_code != 200:
            raise SystemExit(f"the API key is refused: {who.status_code} {who.text}")
    parts = urlsplit(mqtt_url if "://" in mqtt_url else f"mqtt://{mqtt_url}")
    return E2EStack(
        gateways=[g.rstrip("/") for g in gateways], db_url=database_url, api_key=api_key,
        integrator="", watcher_token=token,
        mqtt=(parts.hostname or "127.0.0.1", parts.port or 1883), topic_root=topic_root,
        streets=streets,
    )  # fmt: skip
