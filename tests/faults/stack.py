"""The production stack as local processes, for fault tests: kill, restart and drive it.

`production_stack()` starts `cityhub serve ingest|dispatch|metrics|gateway` (any of them with N
replicas, named `ingest-1`, `dispatch-2`, ...) on given PostgreSQL / Redis / Mosquitto endpoints,
in a throwaway database (migrated, demo map, catalogue, users `admin` and `boss`, an integrator's
API key) under a fresh Redis key prefix and MQTT topic root, and removes all of it afterwards (the
processes' logs are kept, and their path printed, when the test failed).

    async with production_stack(endpoints, replicas={"gateway": 2}) as stack:
        hotline = HotlineLoad(stack)            # HTTP events through the gateways
        sensors = await SensorLoad.start(stack)  # MQTT QoS 1 readings that raise alarms
        watcher = await LiveWatcher.start(stack, stack.token("boss"))  # /ws/live with `since`
        async with hotline.running(), sensors.running():
            stack.kill("gateway-1")              # SIGKILL
            await stack.restart("gateway-1")     # same port, waits until /healthz says 200
        ...then the invariants of tests/faults/checks.py.

Replica `SERVICE-1` is the one the gateways forward that service's routes to (the gateway's
`CITYHUB_*_URL`); further replicas share the bus work (consumer groups), the timers (row locks)
and the MQTT topics (`$share/...`). A replica keeps its port across restarts. Recovery timings
are shortened for tests (`RECOVERY_ENV`); pass `env` to override any setting of every process.

The load drivers record what the hub *accepted* — the ids of events answered 201/200, the
readings the broker PUBACKed, every live seq a websocket client got — so the checks can hold
the hub to exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import websockets
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from shared.areas import Hierarchy
from shared.catalogue import Catalogue
from shared.settings import SERVICE_NAMES, ServiceName
from simulators.live_stack import (
    Proc,
    clear_redis,
    free_port,
    login,
    prepare_database,
    started,
    throwaway_database,
)
from simulators.sensor_fleet import URBAN_BOX
from tests.support.mqtt import clear_session

HEALTHY_TIMEOUT_S = 90.0  # for a (re)started replica to answer /healthz with 200
HTTP_TIMEOUT_S = 15.0  # one load request (a gateway forwards to a busy ingest)
USERS = {"admin": ("admin", "city"), "boss": ("manager", "city")}
# Recovery on the scale of a test: a delivery a dead dispatch replica held is re-claimed after
# 5 s (30 s in production), and events whose bus message was lost are swept up after 5 s.
RECOVERY_ENV = {
    "CITYHUB_DISPATCH__CLAIM_IDLE_S": "5",
    "CITYHUB_DISPATCH__SWEEP_GRACE_S": "5",
    "CITYHUB_DISPATCH__SWEEP_EVERY_S": "2",
}
# Start order: what the others forward to first, the gateway last.
START_ORDER: tuple[ServiceName, ...] = ("metrics", "dispatch", "ingest", "gateway")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the servers are: PostgreSQL's maintenance database URL (test databases are created
    next to it), Redis, and the MQTT broker."""

    postgres_url: str
    redis_url: str
    mqtt_host: str
    mqtt_port: int

    @property
    def mqtt_url(self) -> str:
        """The broker as `CITYHUB_MQTT_URL` names it."""
        return f"mqtt://{self.mqtt_host}:{self.mqtt_port}"


@dataclass
class Replica:
    """One `cityhub serve SERVICE` process slot: a port and an environment kept across restarts."""

    name: str  # SERVICE-N
    service: ServiceName
    port: int
    env: dict[str, str]
    proc: Proc | None = None
    starts: int = 0
    ready: bool = False  # answered /healthz 200 since its last start (a balancer's readiness)
    _exit: ExitStack = field(default_factory=ExitStack)

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """True while its process runs."""
        return self.proc is not None and self.proc.popen.poll() is None


class Stack:
    """The running replicas, the throwaway storage they share, and how to hurt them."""

    def __init__(
        self,
        endpoints: Endpoints,
        db_url: str,
        prefix: str,
        topic_root: str,
        logs: Path,
        replicas: dict[str, Replica],
    ) -> None:
        self.endpoints = endpoints
        self.db_url = db_url
        self.prefix = prefix  # the Redis key prefix (CITYHUB_BUS_PREFIX)
        self.topic_root = topic_root  # CITYHUB_MQTT_TOPIC_ROOT
        self.logs = logs
        self.replicas = replicas
        self.hierarchy: Hierarchy | None = None
        self.catalogue: Catalogue | None = None
        self.api_key = ""  # an integrator's key (X-API-Key)
        self.tokens: dict[str, str] = {}  # access token per user of USERS
        self.started_in = 0.0  # seconds from the database's creation to every replica healthy

    @property
    def live_key(self) -> str:
        """The live history's Redis stream (shared/live/redis_log.py)."""
        return f"{self.prefix}live:stream"

    def token(self, user: str = "boss") -> str:
        """An access token of one of USERS (signed in at start)."""
        return self.tokens[user]

    def names(self, service: ServiceName) -> list[str]:
        """The replicas of a service, in order."""
        return [r.name for r in self.replicas.values() if r.service == service]

    def url(self, name: str) -> str:
        """A replica's base URL (also while it is down: it keeps its port)."""
        return self.replicas[name].url

    def gateway_urls(self) -> list[str]:
        """Base URLs of the gateways that run and were healthy since they started (where a load
        balancer with a readiness probe would send requests)."""
        return [
            r.url for r in self.replicas.values() if r.service == "gateway" and r.alive and r.ready
        ]

    def alive(self, name: str) -> bool:
        """True while the replica's process runs."""
        return self.replicas[name].alive

    def pid(self, name: str) -> int:
        """The replica's process id (of its current run)."""
        proc = self.replicas[name].proc
        assert proc is not None, f"{name} never started"
        return proc.pid

    def log(self, name: str, lines: int = 40) -> str:
        """The end of the replica's current log."""
        proc = self.replicas[name].proc
        return proc.tail(lines) if proc is not None else ""

    def start(self, name: str) -> None:
        """Start the replica's process (not waiting: see `wait_healthy`)."""
        replica = self.replicas[name]
        assert not replica.alive, f"{name} is running"
        replica._exit.close()
        replica.starts += 1
        replica.ready = False
        cmd = [sys.executable, "-m", "services", "serve", replica.service]
        replica.proc = replica._exit.enter_context(
            started(f"{name}.{replica.starts}", cmd, replica.env, self.logs)
        )

    def kill(self, name: str) -> None:
        """`kill -9` the replica and reap it."""
        replica = self.replicas[name]
        assert replica.proc is not None and replica.alive, f"{name} is not running"
        replica.proc.popen.send_signal(signal.SIGKILL)
        replica.proc.popen.wait()

    def pause(self, name: str) -> None:
        """Freeze the replica (SIGSTOP): it holds its connections and does nothing."""
        self.replicas[name].proc.popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]

    def resume(self, name: str) -> None:
        """Let a paused replica go on (SIGCONT)."""
        self.replicas[name].proc.popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]

    async def stop(self, name: str, within: float = 30.0) -> int:
        """SIGTERM the replica and wait for it to end; its exit code."""
        replica = self.replicas[name]
        assert replica.proc is not None
        replica.proc.popen.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(replica.proc.popen.wait, within)

    async def restart(self, name: str) -> None:
        """Start a replica that was killed or stopped, and wait until it is healthy."""
        self.start(name)
        await self.wait_healthy(name)

    async def wait_healthy(self, name: str, within: float = HEALTHY_TIMEOUT_S) -> None:
        """Wait until the replica's `/healthz` answers 200 (fails if its process ends)."""
        replica = self.replicas[name]
        deadline = time.monotonic() + within
        last = "no answer"
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                if not replica.alive:
                    raise AssertionError(f"{name} exited:\n{self.log(name)}")
                with contextlib.suppress(httpx.HTTPError):
                    reply = await client.get(f"{replica.url}/healthz")
                    if reply.status_code == 200:
                        replica.ready = True
                        return
                    last = f"{reply.status_code} {reply.text[:300]}"
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not healthy in {within:.0f} s: {last}")
                await asyncio.sleep(0.2)  # poll interval of a health probe

    async def pending(
        self, stream: str = "events.ingested", group: str = "dispatch"
    ) -> dict[int, int]:
        """Bus deliveries read but not acknowledged, per process id of the consumer holding them
        (shared/bus/consumer.py names consumers `<host>-<pid>-<random>`)."""
        redis = Redis.from_url(self.endpoints.redis_url)
        try:
            summary = await redis.xpending(self.prefix + stream, group)
        finally:
            await redis.aclose()
        held: dict[int, int] = {}
        for consumer in summary.get("consumers") or []:
            pid = int(consumer["name"].decode().rsplit("-", 2)[1])
            held[pid] = held.get(pid, 0) + int(consumer["pending"])
        return held

    async def bring_timers_due(self, tickets: int, within_s: float) -> list[int]:
        """Make the accept deadline timers (warning and breach) of up to `tickets` tickets still
        waiting for acceptance fall due at random moments in the next `within_s` seconds (the
        tickets' own deadlines stay, so a warning still applies); their ids. Each of them must
        then fire once and write one timeline entry."""
        conn = await asyncpg.connect(self.db_url)
        try:
            rows = await conn.fetch(
                """UPDATE timers SET due_at = now() + random() * $2 * interval '1 second'
                    WHERE fired_at IS NULL AND kind IN ('accept_warn', 'accept_due')
                      AND ticket_id IN (
                        SELECT id FROM tickets WHERE status IN ('new', 'dispatched')
                         ORDER BY created_at LIMIT $1)
                RETURNING id""",
                tickets,
                within_s,
            )
        finally:
            await conn.close()
        return [int(r["id"]) for r in rows]

    def close(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL after a while)."""
        for replica in self.replicas.values():
            if replica.alive:
                self.resume(replica.name)  # a paused process would not see its SIGTERM
            replica._exit.close()


def _replicas(
    counts: Mapping[ServiceName, int],
    endpoints: Endpoints,
    db_url: str,
    prefix: str,
    topic_root: str,
    logs: Path,
    env: Mapping[str, str],
) -> dict[str, Replica]:
    unique = prefix.rstrip(":").rsplit("-", 1)[-1]
    ports = {
        f"{service}-{i}": free_port()
        for service in SERVICE_NAMES
        for i in range(1, counts[service] + 1)
    }
    common = {
        "CITYHUB_DATABASE_URL": db_url,
        "CITYHUB_REDIS_URL": endpoints.redis_url,
        "CITYHUB_BUS_PREFIX": prefix,
        "CITYHUB_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "CITYHUB_MQTT_URL": endpoints.mqtt_url,
        "CITYHUB_MQTT_TOPIC_ROOT": topic_root,
        "CITYHUB_INGEST_URL": f"http://127.0.0.1:{ports['ingest-1']}",
        "CITYHUB_DISPATCH_URL": f"http://127.0.0.1:{ports['dispatch-1']}",
        "CITYHUB_METRICS_URL": f"http://127.0.0.1:{ports['metrics-1']}",
        "CITYHUB_LOG_LEVEL": "WARNING",
        "CITYHUB_ACCESS_LOG": "false",
        "CITYHUB_DATA_DIR": str(logs / "data"),
        **RECOVERY_ENV,
    }
    if counts["ingest"] > 1:
        common["CITYHUB_MQTT_SHARED_GROUP"] = f"fault-{unique}"
    replicas = {}
    for name, port in ports.items():
        service: ServiceName = name.rsplit("-", 1)[0]  # type: ignore[assignment]  # from SERVICE_NAMES
        own = {"CITYHUB_HTTP_PORT": str(port), "CITYHUB_MQTT_CLIENT_ID": f"fault-{unique}-{name}"}
        replicas[name] = Replica(name, service, port, {**common, **own, **env})
    return replicas


@asynccontextmanager
async def production_stack(
    endpoints: Endpoints,
    *,
    replicas: Mapping[ServiceName, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """Start the four services (`replicas`: how many of each, default one) on a throwaway
    database, Redis prefix and MQTT topic root; yields once every replica is healthy and the
    users are signed in; stops and removes everything afterwards."""
    counts: dict[ServiceName, int] = {s: 1 for s in SERVICE_NAMES} | dict(replicas or {})
    unique = uuid.uuid4().hex[:8]
    prefix = f"fault-{unique}:"
    topic_root = f"fault/{unique}"
    logs = Path(tempfile.mkdtemp(prefix="cityhub-faults-"))
    (logs / "data").mkdir()
    stack: Stack | None = None
    began = time.monotonic()
    try:
        async with throwaway_database(endpoints.postgres_url) as db_url:
            hierarchy, catalogue, key = await prepare_database(db_url, USERS)
            stack = Stack(
                endpoints, db_url, prefix, topic_root, logs,
                _replicas(counts, endpoints, db_url, prefix, topic_root, logs, env or {}),
            )  # fmt: skip
            stack.hierarchy, stack.catalogue, stack.api_key = hierarchy, catalogue, key
            try:
                for service in START_ORDER:
                    for name in stack.names(service):
                        stack.start(name)
                await asyncio.gather(*(stack.wait_healthy(n) for n in stack.replicas))
                stack.started_in = time.monotonic() - began
                stack.tokens = await login(stack.url("gateway-1"), list(USERS))
                yield stack
            finally:
                stack.close()
    except BaseException:
        print(f"\nthe fault stack's logs are kept in {logs}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        await clear_redis(endpoints.redis_url, prefix)
        if stack is not None:
            for replica in stack.replicas.values():
                if replica.service == "ingest":
                    await asyncio.to_thread(
                        _clear_mqtt_session, endpoints, replica.env["CITYHUB_MQTT_CLIENT_ID"]
                    )


def _clear_mqtt_session(endpoints: Endpoints, client_id: str) -> None:
    with contextlib.suppress(OSError):  # a broker a test left down has no session to clear
        clear_session(endpoints.mqtt_host, endpoints.mqtt_port, client_id)


# --- Load -------------------------------------------------------------------------------------


class _Driver:
    """A background task that runs until stopped (`running()` bounds it to a block)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        """Start the task."""
        assert self._task is None, "already running"
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def end(self) -> None:
        """Stop the task and wait for what it has in flight."""
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run for the duration of the block."""
        self.begin()
        try:
            yield
        finally:
            await self.end()


class HotlineLoad(_Driver):
    """Hotline events posted through the gateways at a steady rate, each with its own
    `source_ref`; an unanswered or refused request is retried with the same `source_ref` (as a
    CRM does: the hub answers a repeat with the original). `accepted` maps every `source_ref`
    answered 201/200 to its event id."""

    def __init__(
        self,
        stack: Stack,
        *,
        rate_per_s: float = 20.0,
        concurrency: int = 16,
        attempts: int = 5,
        seed: int = 10,
    ) -> None:
        super().__init__()
        self.stack = stack
        self.rate_per_s = rate_per_s
        self.attempts = attempts
        self.accepted: dict[str, str] = {}
        self.answers: Counter[str] = Counter()  # status code or error name, per attempt
        self.given_up: list[str] = []  # source_refs never accepted
        self.refusals: list[str] = []  # answers of requests refused for good (4xx)
        self._gate = asyncio.Semaphore(concurrency)
        self._rng = random.Random(seed)
        assert stack.catalogue is not None
        # Component and event categories that need no attributes (sensors raise their own).
        self._categories = sorted(
            c.code
            for c in stack.catalogue
            if c.group != "sensor" and not any(a.required for a in c.attributes)
        )
        self._serial = itertools.count(1)
        self._turn = itertools.count()

    def _body(self, ref: str) -> dict[str, Any]:
        lon = self._rng.uniform(URBAN_BOX[0], URBAN_BOX[2])
        lat = self._rng.uniform(URBAN_BOX[1], URBAN_BOX[3])
        return {
            "category": self._rng.choice(self._categories),
            "location": {"lon": round(lon, 6), "lat": round(lat, 6)},
            "description": f"fault test call {ref}",
            "source_ref": ref,
        }

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            gap = 1.0 / self.rate_per_s
            next_at = time.monotonic()
            while not self._stop.is_set():
                next_at += gap
                ref = f"fault-{next(self._serial)}"
                task = asyncio.create_task(self._post(client, ref, self._body(ref)))
                pending.add(task)
                task.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), max(next_at - time.monotonic(), 0))
            if pending:
                await asyncio.gather(*pending)

    async def _post(self, client: httpx.AsyncClient, ref: str, body: dict[str, Any]) -> None:
        headers = {"X-API-Key": self.stack.api_key}
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(0.5 * attempt)  # back-off before a retry, as a CRM would
            urls = self.stack.gateway_urls()
            if not urls:
                self.answers["no gateway"] += 1
                continue
            url = urls[next(self._turn) % len(urls)]
            async with self._gate:
                try:
                    reply = await client.post(f"{url}/api/v1/events", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    self.answers[type(exc).__name__] += 1
                    continue
            self.answers[str(reply.status_code)] += 1
            if reply.status_code in (200, 201):
                self.accepted[ref] = str(reply.json()["id"])
                return
            if reply.status_code < 500 and reply.status_code != 429:
                self.refusals.append(f"{reply.status_code} {reply.text[:200]}")
                break  # refused for good: a bug in the driver or the hub
        self.given_up.append(ref)

    def line(self) -> str:
        """What it did, for the test output."""
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        first = f"; first refusal: {self.refusals[0]}" if self.refusals else ""
        return (
            f"hotline: {len(self.accepted)} accepted, {len(self.given_up)} given up "
            f"({answers}){first}"
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """One published reading and whether the broker acknowledged it (PUBACK)."""

    sensor_id: str
    ts_ms: int
    high: bool  # over the alarm threshold
    info: mqtt.MQTTMessageInfo

    @property
    def acked(self) -> bool:
        """True once the broker sent its PUBACK (False for a publish paho queued while
        disconnected: `is_published()` raises for those, even once delivered)."""
        try:
            return self.info.is_published()
        except (RuntimeError, ValueError):
            return False


# The sensors' type and rule: over 30 cm raises an alarm, under 25 cm clears it (sensor_fleet.py).
SENSOR_TYPE = "water_level"
SENSOR_METRIC = "water_level_cm"
HIGH_VALUE, LOW_VALUE = 45.0, 5.0


class SensorLoad(_Driver):
    """A few sensors publishing QoS 1 readings that alternate over and under their threshold, so
    every second reading raises an alarm (an event, hence a ticket or a report on one) and the
    next clears it. One persistent MQTT session (paho re-sends what the broker did not
    acknowledge after a reconnect); `readings` records every publish and its PUBACK."""

    def __init__(
        self, stack: Stack, client: mqtt.Client, client_id: str, sensor_ids: list[str],
        period_s: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stack = stack
        self.client = client
        self.client_id = client_id
        self.sensor_ids = sensor_ids
        self.period_s = period_s
        self.readings: list[Reading] = []
        self.refused = 0  # publish() calls paho refused (its queue full)
        self._high = dict.fromkeys(sensor_ids, False)

    @classmethod
    async def start(
        cls, stack: Stack, *, sensors: int = 4, period_s: float = 0.5, prefix: str = "fault-s"
    ) -> SensorLoad:
        """Register `sensors` sensors through the gateway and connect to the broker; each will
        publish one reading per `period_s` once running."""
        ids = [f"{prefix}{i}" for i in range(1, sensors + 1)]
        rng = random.Random(7)
        async with httpx.AsyncClient(base_url=stack.url("gateway-1"), timeout=30) as client:
            for sensor_id in ids:
                reply = await client.put(
                    f"/api/v1/sensors/{sensor_id}",
                    json=_sensor_body(sensor_id, rng),
                    headers={"X-API-Key": stack.api_key},
                )
                assert reply.status_code in (200, 201), reply.text
        client_id = f"fault-pub-{uuid.uuid4().hex[:8]}"
        mqtt_client = await asyncio.to_thread(_connect, stack.endpoints, client_id)
        return cls(stack, mqtt_client, client_id, ids, period_s)

    def topic(self, sensor_id: str) -> str:
        """Where a sensor publishes its readings."""
        return f"{self.stack.topic_root}/sensors/{sensor_id}/readings"

    def publish_round(self) -> None:
        """One reading from every sensor (the opposite side of the threshold from its last)."""
        for sensor_id in self.sensor_ids:
            high = not self._high[sensor_id]
            self._high[sensor_id] = high
            ts_ms = round(time.time() * 1000)
            values = {SENSOR_METRIC: HIGH_VALUE if high else LOW_VALUE}
            payload = json.dumps({"ts": ts_ms, "values": values})  # epoch ms
            info = self.client.publish(self.topic(sensor_id), payload, qos=1)
            if (
                info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS
                and info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN
            ):
                self.refused += 1
                self._high[sensor_id] = not high
                continue
            self.readings.append(Reading(sensor_id, ts_ms, high, info))

    async def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.publish_round()
            next_at += self.period_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(next_at - time.monotonic(), 0))

    async def wait_acked(self, within: float = 60.0) -> int:
        """Wait until the broker acknowledged every reading (paho re-sends after a reconnect);
        returns how many are still unacknowledged when `within` ran out."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(r.acked for r in self.readings):
                return 0
            await asyncio.sleep(0.1)  # poll interval for PUBACKs
        return sum(not r.acked for r in self.readings)

    async def close(self) -> None:
        """Disconnect from the broker and remove the session it kept there."""
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
        await asyncio.to_thread(_clear_mqtt_session, self.stack.endpoints, self.client_id)

    def line(self) -> str:
        """What it did, for the test output."""
        acked = sum(r.acked for r in self.readings)
        highs = sum(r.high and r.acked for r in self.readings)
        return (
            f"sensors: {len(self.readings)} readings published, {acked} acknowledged "
            f"({highs} over the threshold), {self.refused} refused by the client"
        )


def _sensor_body(sensor_id: str, rng: random.Random) -> dict[str, Any]:
    return {
        "type": SENSOR_TYPE,
        "location": {
            "lon": round(rng.uniform(URBAN_BOX[0], URBAN_BOX[2]), 6),
            "lat": round(rng.uniform(URBAN_BOX[1], URBAN_BOX[3]), 6),
        },
        "interval_s": 3600,  # never offline during a test
        "name": f"fault test {sensor_id}",
        "rules": [
            {"metric": SENSOR_METRIC, "op": ">", "value": 30.0, "hysteresis": 5.0, "for_s": 0,
             "category": "S0101"}
        ],
    }  # fmt: skip


def _connect(endpoints: Endpoints, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,  # the broker and paho keep unacknowledged QoS 1 messages
    )
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(1, 2)  # seconds
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(endpoints.mqtt_host, endpoints.mqtt_port, keepalive=30)
    client.loop_start()  # paho's own thread; it reconnects by itself
    if not connected.wait(10):
        client.loop_stop()
        raise AssertionError("the MQTT broker did not answer the sensors' CONNECT")
    return client


class LiveWatcher:
    """A `/ws/live` client (city scope, `tickets` stream) that records every message it gets.

    When its connection ends (its gateway died, or `move_to`), it reconnects — to the gateway it
    was moved to, else to any running one — with `since` = the last seq it has and the epoch, as a
    screen does. `frames` holds every data message in arrival order; `baseline` is the seq its
    first `hello` named (it has every message up to there)."""

    def __init__(self, stack: Stack, token: str, url: str, streams: str) -> None:
        self.stack = stack
        self.token = token
        self.url = url
        self.streams = streams
        self.frames: list[dict[str, Any]] = []
        self.control: list[dict[str, Any]] = []  # hello, resync, ...
        self.connections = 0
        self.baseline = 0
        self.epoch = ""
        self._have = 0  # the seq to resume after
        self._connection: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, stack: Stack, token: str, *, url: str | None = None, streams: str = "tickets"
    ) -> LiveWatcher:
        """Connect (to `url`, default the first gateway) and wait for the first `hello`."""
        watcher = cls(stack, token, url or stack.url("gateway-1"), streams)
        watcher._task = asyncio.create_task(watcher._run(), name="live-watcher")
        await asyncio.wait_for(watcher._connected.wait(), 30)
        return watcher

    @property
    def last_seq(self) -> int:
        """The last seq it has."""
        return self._have

    def seqs(self, stream: str = "tickets") -> list[int]:
        """Seqs of the data messages of one stream, in arrival order."""
        return [f["seq"] for f in self.frames if f.get("stream") == stream]

    @property
    def resyncs(self) -> int:
        """`resync` messages received (each one a gap the hub admitted)."""
        return sum(m.get("type") == "resync" for m in self.control)

    async def move_to(self, url: str) -> None:
        """Leave the current gateway and resume on `url` with `since`."""
        self.url = url
        self._connected.clear()
        if self._connection is not None:
            await self._connection.close()
        await asyncio.wait_for(self._connected.wait(), 30)

    async def caught_up(self, seq: int, within: float = 60.0) -> None:
        """Wait until it has every message up to `seq`."""
        deadline = time.monotonic() + within
        while self._have < seq:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"live client at seq {self._have}, not {seq}, after {within} s"
                )
            await asyncio.sleep(0.1)  # poll interval

    async def stop(self) -> None:
        """Close the connection for good."""
        self._stop.set()
        if self._connection is not None:
            await self._connection.close()
        if self._task is not None:
            await self._task

    def _address(self) -> str:
        params = {"token": self.token, "scope": "city", "streams": self.streams}
        if self.connections:
            params |= {"since": str(self._have), "epoch": self.epoch}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return self.url.replace("http", "ws", 1) + f"/ws/live?{query}"

    def _targets(self) -> Iterable[str]:
        yield self.url
        yield from (u for u in self.stack.gateway_urls() if u != self.url)

    async def _run(self) -> None:
        while not self._stop.is_set():
            for url in self._targets():
                self.url = url
                try:
                    async with websockets.connect(self._address(), open_timeout=10) as connection:
                        self._connection = connection
                        await self._read(connection)
                except (OSError, TimeoutError, websockets.WebSocketException):
                    pass
                finally:
                    self._connection = None
                if self._stop.is_set():
                    return
            await asyncio.sleep(0.2)  # pause before trying the gateways again

    async def _read(self, connection: ClientConnection) -> None:
        async for raw in connection:
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") == "hello":
                if not self.connections:
                    self.baseline = self._have = int(message["seq"])
                    self.epoch = str(message["epoch"])
                self.connections += 1
                self.control.append(message)
                self._connected.set()
            elif "stream" in message and "seq" in message:
                self.frames.append(message)
                self._have = max(self._have, int(message["seq"]))
            else:
                self.control.append(message)
