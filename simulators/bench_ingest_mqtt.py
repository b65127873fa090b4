"""Benchmark MQTT sensor intake against a real Mosquitto, next to a bare paho loop, in one run.

1. Bare: a paho publisher process → Mosquitto → a paho subscriber (QoS 1, `loop_start`, auto-ack).
2. Ingest: the same publisher → Mosquitto → the ingest component (parse, registry lookup, rules,
   manual ack; the ~1 % of readings that cross a threshold raise an alarm, stored with its event on
   PostgreSQL and relayed to Redis, and the next reading of that sensor clears it), with N
   sensors registered.
Both subscribers use MQTT 5 with the same receive maximum; the publisher keeps at most WINDOW
readings ahead of what the subscriber processed (so Mosquitto never drops), which makes the rate a
sustained one. The ratio ingest/bare is the figure. Then the resident memory of a real
`cityhub serve ingest` process with N sensors registered, after one reading from every sensor.

Run: python -m simulators.bench_ingest_mqtt [--sensors 100000] [--messages 60000] [--repeat 3]
Needs: Mosquitto, PostgreSQL and Redis (defaults: the local ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import uvloop
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr
from sqlalchemy import func, select

from services.gateway.identity import create_api_key
from services.ingest.app import component
from services.ingest.mqtt_intake import RECEIVE_MAXIMUM, MqttIntake
from services.ingest.sensors import store
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from shared.catalogue.store import ensure_catalogue
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import SensorAlarm
from shared.migrations.runner import upgrade
from shared.runtime import Runtime, ensure_hierarchy
from shared.service import build_app, tune_gc
from shared.settings import Settings

WINDOW = 500  # readings the publisher may be ahead of the subscriber (Mosquitto queues 1000)
ACTIVE_SENSORS = 9_973  # sensors the runs send to (prime: a raise is followed by a clear)
ALARM_EVERY = 100  # every 100th reading crosses the threshold: 1 % raise (and ~1 % clear)
THRESHOLD = 30.0
INSERT_CHUNK = 5_000
RULES = [
    {
        "metric": "water_level_cm",
        "op": ">",
        "value": THRESHOLD,
        "hysteresis": 5.0,
        "for_s": 0.0,
        "category": "S0101",
    }
]


def _sensor_id(i: int) -> str:
    return f"wl-{i:06d}"


def _payload(i: int) -> bytes:
    value = 40.0 if i % ALARM_EVERY == 0 else 10.0 + (i % 7) * 0.5
    return json.dumps(
        {"ts": round(time.time() * 1000), "values": {"water_level_cm": value, "battery_v": 3.61}}
    ).encode()


def _v5_connect_properties() -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    return properties


def publisher(
    host: str,
    port: int,
    root: str,
    count: int,
    sensors: int,
    processed: Synchronized[int],
    ready: Any,
) -> None:
    """Publish `count` QoS 1 readings round-robin over `sensors`, at most WINDOW ahead."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    ready.wait()
    info = None
    for i in range(count):
        while i - processed.value > WINDOW:
            time.sleep(0.0002)  # the subscriber is behind: wait for it
        sensor = _sensor_id(i % sensors)
        info = client.publish(f"{root}/sensors/{sensor}/readings", _payload(i), qos=1)
    if info is not None:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


@contextmanager
def publishing(
    host: str, port: int, root: str, count: int, sensors: int
) -> Iterator[tuple[Synchronized[int], Callable[[], None]]]:
    """A publisher process; yields the shared processed counter and a start signal."""
    ctx = mp.get_context("spawn")
    processed: Synchronized[int] = ctx.Value("q", 0, lock=False)
    ready = ctx.Event()
    proc = ctx.Process(
        target=publisher, args=(host, port, root, count, sensors, processed, ready), daemon=True
    )
    proc.start()
    try:
        yield processed, ready.set
    finally:
        proc.join(120)
        if proc.is_alive():
            proc.kill()


def bare_rate(host: str, port: int, count: int) -> float:
    """Readings/s through publisher → Mosquitto → a bare paho subscriber."""
    root = f"bench-bare/{uuid.uuid4().hex[:8]}"
    done = threading.Event()
    first = [0.0]
    with publishing(host, port, root, count, ACTIVE_SENSORS) as (processed, start):
        received = 0

        def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
            nonlocal received
            if received == 0:
                first[0] = time.perf_counter()
            received += 1
            processed.value = received
            if received == count:
                done.set()

        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.on_subscribe = lambda *_a: subscribed.set()
        client.connect(host, port, properties=_v5_connect_properties())
        client.subscribe(f"{root}/sensors/#", qos=1)
        client.loop_start()
        subscribed.wait(10)
        start()
        done.wait(600)
        elapsed = time.perf_counter() - first[0]
        client.disconnect()
        client.loop_stop()
    return count / elapsed


async def ingest_rate(settings: Settings, count: int) -> tuple[float, dict[str, int]]:
    """Readings/s through the ingest component (in this process), and what it stored."""
    host, port = settings.mqtt_endpoint
    app = build_app(settings, [component()], migrate=False, title="bench")
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        intake: SensorIntake = runtime.extras[INTAKE_KEY]
        tune_gc()  # as `cityhub serve` does once started
        # Polling: the benchmark watches counters the intake keeps, it has no events to wait on.
        while not (consumer := runtime.extras.get("mqtt_intake")) or not consumer.is_connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert isinstance(consumer, MqttIntake)
        raised, cleared = intake.raised, intake.cleared
        with publishing(host, port, settings.mqtt_topic_root, count, ACTIVE_SENSORS) as (
            processed,
            start,
        ):
            base = consumer.messages
            start()
            while consumer.messages == base:  # noqa: ASYNC110
                await asyncio.sleep(0.0005)
            began = time.perf_counter()
            base += 1
            while consumer.messages - base + 1 < count or consumer.unacked or intake.pending_writes:
                processed.value = consumer.messages - base + 1 - consumer.unacked
                await asyncio.sleep(0.005)  # the publisher's window is ~50 ms of readings
            elapsed = time.perf_counter() - began
        counts = {"raised": intake.raised - raised, "cleared": intake.cleared - cleared}
    return count / elapsed, counts


async def prepare_database(url: str, sensors: int) -> str:
    """Migrate, seed areas and catalogue, register an integrator and `sensors` sensors."""
    engine = create_engine(Settings(database_url=url))
    try:
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        await ensure_hierarchy(sessions)
        await ensure_catalogue(sessions)
        async with sessions() as session, session.begin():
            await create_api_key(session, "bench-integrator")
        now = datetime.now(UTC)
        for start in range(0, sensors, INSERT_CHUNK):
            rows = [
                {
                    "id": _sensor_id(i),
                    "type": "water_level",
                    "integrator": "bench-integrator",
                    "name": None,
                    "lon": 106.45 + (i % 1000) * 0.0002,
                    "lat": 29.50 + (i // 1000) * 0.0015 % 0.15,
                    # Long enough that no sensor goes offline while the benchmark runs.
                    "interval_s": 3600,
                    "alarm_category": "S0101",
                    "rules": RULES,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(start + INSERT_CHUNK, sensors))
            ]
            async with sessions() as session, session.begin():
                await store.upsert_sensors(session, rows)
        return "bench-integrator"
    finally:
        await engine.dispose()


async def count_alarms(url: str) -> int:
    """Alarms stored so far."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with create_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(SensorAlarm)) or 0)
    finally:
        await engine.dispose()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def ingest_process_rss(
    env: dict[str, str], port: int, settings: Settings, sensors: int
) -> tuple[int, int]:
    """RSS of `cityhub serve ingest` after every registered sensor sent one reading."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", "ingest"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ingest did not start")
            time.sleep(0.2)
        time.sleep(2)  # let it subscribe
        host, mqtt_port = settings.mqtt_endpoint
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(200)
        client.connect(host, mqtt_port)
        client.loop_start()
        root = settings.mqtt_topic_root
        before = asyncio.run(count_alarms(settings.database_url or ""))
        for i in range(sensors):
            payload = json.dumps(
                {"ts": round(time.time() * 1000), "values": {"water_level_cm": 10.0}}
            )
            client.publish(f"{root}/sensors/{_sensor_id(i)}/readings", payload, qos=1)
            if i % 2000 == 1999:
                time.sleep(0.2)  # ~10k/s: well under what ingest sustains, so nothing is dropped
        # A last, alarm-raising reading: once its alarm is stored, everything before it was read.
        last = _sensor_id(sensors - 1)
        payload = json.dumps(
            {"ts": round(time.time() * 1000) + 1, "values": {"water_level_cm": 99}}
        )
        client.publish(f"{root}/sensors/{last}/readings", payload, qos=1).wait_for_publish(60)
        client.disconnect()
        client.loop_stop()
        deadline = time.monotonic() + 120
        while asyncio.run(count_alarms(settings.database_url or "")) <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("ingest never stored the last reading's alarm")
            time.sleep(0.2)
        return rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def clear_session(host: str, port: int, client_id: str) -> None:
    """Remove a persistent session the benchmark left in the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(host, port, clean_start=True)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sensors", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mqtt", default="127.0.0.1:1883")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    host, _, port_text = args.mqtt.partition(":")
    port = int(port_text or 1883)
    name = f"cityhub_bench_{uuid.uuid4().hex[:8]}"
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    client_ids: list[str] = []

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(args.pg)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        started = time.perf_counter()
        asyncio.run(prepare_database(url, args.sensors))
        print(f"registered {args.sensors} sensors in {time.perf_counter() - started:.1f} s")
        bare: list[float] = []
        through: list[float] = []
        for run in range(args.repeat):
            bare.append(bare_rate(host, port, args.messages))
            client_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
            client_ids.append(client_id)
            settings = Settings(
                data_dir=Path(tempfile.mkdtemp(prefix="cityhub-bench-")),
                database_url=url,
                redis_url=args.redis,
                bus_prefix=prefix,
                jwt_secret=SecretStr(secret),
                mqtt_url=f"mqtt://{host}:{port}",
                mqtt_topic_root=f"bench/{uuid.uuid4().hex[:8]}",
                mqtt_client_id=client_id,
                log_level="WARNING",
            )
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as served
                rate, counts = runner.run(ingest_rate(settings, args.messages))
            through.append(rate)
            print(
                f"run {run + 1}: bare paho {bare[-1]:,.0f} msg/s; through ingest {rate:,.0f} "
                f"msg/s ({counts['raised']} alarms raised, {counts['cleared']} cleared)"
            )
        client_id = f"bench-rss-{uuid.uuid4().hex[:8]}"
        client_ids.append(client_id)
        http_port = _free_port()
        rss_settings = Settings(
            database_url=url, mqtt_url=f"mqtt://{host}:{port}", mqtt_topic_root="bench/rss"
        )
        env = {
            "CITYHUB_DATABASE_URL": url,
            "CITYHUB_REDIS_URL": args.redis,
            "CITYHUB_BUS_PREFIX": prefix,
            "CITYHUB_JWT_SECRET": secret,
            "CITYHUB_MQTT_URL": f"mqtt://{host}:{port}",
            "CITYHUB_MQTT_TOPIC_ROOT": "bench/rss",
            "CITYHUB_MQTT_CLIENT_ID": client_id,
            "CITYHUB_HTTP_PORT": str(http_port),
            "CITYHUB_LOG_LEVEL": "WARNING",
            "CITYHUB_DATA_DIR": tempfile.mkdtemp(prefix="cityhub-bench-"),
        }
        rss, peak = ingest_process_rss(env, http_port, rss_settings, args.sensors)
        bare_median, ingest_median = statistics.median(bare), statistics.median(through)
        print()
        print(f"bare paho QoS 1 loop (median of {args.repeat}): {bare_median:,.0f} msg/s")
        print(f"through ingest (median of {args.repeat}):        {ingest_median:,.0f} msg/s")
        print(f"ratio: {ingest_median / bare_median:.2f} (target >= 0.75)")
        print(
            f"ingest process with {args.sensors:,} sensors: RSS {rss / 1024:.0f} MiB "
            f"(peak {peak / 1024:.0f} MiB; target < 300 MiB)"
        )
    finally:
        for client_id in client_ids:
            with suppress(OSError):
                clear_session(host, port, client_id)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        _clear_redis(args.redis, prefix)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clear_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    main()
