"""SIGTERM stops a service gracefully: it takes no new work, finishes (and acknowledges) what it
holds or leaves it for another replica, closes live websockets with 1001, and exits 0 within
`CITYHUB_SHUTDOWN_GRACE_S` (decision 0019)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, insert, select

from services.dispatch.consumers import GROUP
from services.gateway.identity import create_user
from shared.areas import generate_demo
from shared.bus.base import Delivery
from shared.bus.consumer import Consumer, ConsumerConfig, stop_consumers
from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisBus
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import Event, Ticket, TicketEvent
from shared.events import NewEvent, ingested_message
from shared.messages import EVENTS_INGESTED, encode
from shared.settings import Settings
from tests.support.apps import PASSWORD
from tests.support.live import live
from tests.support.processes import CLI, production_env
from tests.support.servers import free_port
from tests.support.waiting import wait_for

GRACE_S = 20  # CITYHUB_SHUTDOWN_GRACE_S of the processes under test
EVENTS = 3_000  # a backlog several of dispatch's 500-message reads long


# -- the consumer loop itself ----------------------------------------------------------------


async def test_a_stopped_consumer_finishes_and_acks_the_batch_in_hand() -> None:
    bus = MemoryBus()
    for n in range(5):
        await bus.publish("s", str(n).encode())
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[bytes] = []

    async def one(delivery: Delivery) -> None:
        handled.append(delivery.data)

    async def batch(deliveries: list[Delivery]) -> None:
        started.set()
        await release.wait()
        handled.extend(d.data for d in deliveries)

    consumer = Consumer(bus, "s", "g", "c1", one, ConsumerConfig(batch=3), batch)
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(stop_consumers())  # what SIGTERM does, mid-batch
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the batch in hand
    release.set()
    assert await asyncio.wait_for(stopping, 10) >= 1
    await asyncio.wait_for(running, 10)  # `run` returned: no error, no cancel
    assert handled == [b"0", b"1", b"2"]  # the batch in hand, and no new read after the stop
    assert await bus.pending_count("s", "g") == 0  # …acknowledged


async def test_a_cancelled_consumer_leaves_its_batch_unacknowledged() -> None:
    bus = MemoryBus()
    for n in range(3):
        await bus.publish("s", str(n).encode())
    started = asyncio.Event()

    async def one(_delivery: Delivery) -> None:
        raise AssertionError("not called for a batch")

    async def stuck(_deliveries: list[Delivery]) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes

    consumer = Consumer(bus, "s", "g", "c1", one, ConsumerConfig(batch=3), stuck)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()  # the hard stop (past the grace): nothing acknowledged that was not done
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await bus.pending_count("s", "g") == 3  # left for another consumer to claim


# -- real processes ------------------------------------------------------------------------


async def _backlog(settings: Settings) -> list[str]:
    """EVENTS events stored and announced on the bus as ingest would (in one go: posting them
    one by one takes longer than dispatch needs to work them off); their ids. They lie at
    distinct places (streets × categories), so no two merge into one ticket."""
    demo = generate_demo()
    now = datetime.now(UTC)
    events = []
    for n in range(EVENTS):
        street = demo.streets[n % len(demo.streets)]
        point = street.geometry.representative_point()
        events.append(
            NewEvent(
                id=uuid.uuid4(), source="api", source_ref=f"backlog-{n}",
                category=("E0101", "C0201", "E0103")[n // len(demo.streets)], priority=None,
                description="", lon=point.x, lat=point.y, address=None, street_code=street.code,
                district_code=street.parent, city_code=demo.city.code, geotag_method="point",
                reported_at=now, received_at=now, submitted_by="crm", reporter=None,
                attachments=[], attributes={}, raw={},
            )
        )  # fmt: skip
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await session.execute(insert(Event), [e.row() for e in events])
    finally:
        await engine.dispose()
    assert settings.redis_url
    bus = RedisBus.from_url(settings.redis_url, settings.bus_prefix)
    try:
        await bus.publish_many([(EVENTS_INGESTED, encode(ingested_message(e))) for e in events])
    finally:
        await bus.close()
    return [str(e.id) for e in events]


@contextmanager
def _processes(
    env: dict[str, str], command: list[str], count: int, logs: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """`count` processes of `cityhub COMMAND` (output to files `<logs>/<n>.log`: a pipe nobody
    reads would stall a chatty process), each with its base URL; killed afterwards if running."""
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for n in range(count):
            port = free_port()
            with (logs / f"{n}.log").open("wb") as out:
                proc = subprocess.Popen(
                    [*CLI, *command],
                    env={**os.environ, **env, "CITYHUB_HTTP_PORT": str(port)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append((proc, f"http://127.0.0.1:{port}"))
        yield started
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def _started(proc: subprocess.Popen[bytes], base: str, path: str = "/healthz") -> bool:
    assert proc.poll() is None, f"exited early with {proc.returncode}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(base + path)).status_code == 200
    except httpx.HTTPError:
        return False


async def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM a process; its exit code and how long it took to exit (fails past the grace)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(proc.wait, GRACE_S + 10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {GRACE_S + 10} s after SIGTERM") from None
    return code, time.monotonic() - started


async def test_sigterm_dispatch_mid_backlog_hands_over_every_event_once(
    production_settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    settings = production_settings
    # Neither a claim of stale deliveries nor the sweep of unticketed events may step in within
    # the test: every event must reach a ticket through a clean hand-over alone.
    env = production_env(
        settings,
        CITYHUB_SHUTDOWN_GRACE_S=str(GRACE_S),
        CITYHUB_DISPATCH__CLAIM_IDLE_S="600",
        CITYHUB_DISPATCH__SWEEP_GRACE_S="600",
    )
    redis = aioredis.Redis.from_url(redis_url)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)

    async def linked() -> int:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(TicketEvent)) or 0)

    try:
        event_ids = await _backlog(settings)
        with _processes(env, ["serve", "dispatch"], 2, tmp_path) as replicas:
            (first, _), (second, _) = replicas
            for proc, base in replicas:
                await wait_for(partial(_started, proc, base), within=60, interval=0.2)
            await wait_for(linked, within=30)
            at_signal = await linked()
            code, took = await _stop(first)
            output = (tmp_path / "0.log").read_text()
            assert code == 0, output
            assert took < GRACE_S, output
            assert at_signal < EVENTS, "the backlog was done before the stop: this proves nothing"
            # What the stopped replica had read, it handled and acknowledged: nothing of its is
            # left pending for a claim.
            consumers: Any = await redis.xpending(settings.bus_prefix + EVENTS_INGESTED, GROUP)
            mine = [c for c in consumers["consumers"] if f"-{first.pid}-" in c["name"].decode()]
            assert all(int(c["pending"]) == 0 for c in mine), (mine, output)
            assert "bus consumers stopped: dispatch on events.ingested:" in output  # counts

            async def all_linked() -> bool:
                return await linked() >= EVENTS

            await wait_for(all_linked, within=45)
            assert (await _stop(second))[0] == 0
        async with sessions() as session:
            links = [str(e) for e in (await session.scalars(select(TicketEvent.event_id))).all()]
            counts = list((await session.scalars(select(Ticket.report_count))).all())
        assert sorted(links) == sorted(event_ids)  # every event, each in exactly one ticket
        assert sum(counts) == EVENTS  # and counted once
    finally:
        await redis.aclose()
        await engine.dispose()


@pytest.mark.parametrize("mode", ["serve gateway", "run"])
async def test_sigterm_closes_live_websockets_with_1001(
    mode: str, production_settings: Settings, embedded_settings: Settings, tmp_path: Path
) -> None:
    if mode == "run":  # embedded: SQLite in the data dir, in-process bus and broker
        settings = embedded_settings
        env = {
            "CITYHUB_DATA_DIR": str(settings.data_dir),
            "CITYHUB_MQTT_PORT": str(free_port()),
            "CITYHUB_DATABASE_URL": "",
            "CITYHUB_REDIS_URL": "",
            "CITYHUB_MQTT_URL": "",
            "CITYHUB_SHUTDOWN_GRACE_S": str(GRACE_S),
        }
    else:
        settings = production_settings
        env = production_env(settings, CITYHUB_SHUTDOWN_GRACE_S=str(GRACE_S))
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await create_user(
                session, generate_demo(), username="boss", password=PASSWORD, role="manager",
                scope="city",
            )  # fmt: skip
    finally:
        await engine.dispose()
    logs = tmp_path / "logs"
    logs.mkdir()
    with _processes(env, mode.split(), 1, logs) as [(hub, base)]:
        # A lone gateway's /healthz asks for the other services too: any answer is a start.
        await wait_for(partial(_started, hub, base, "/openapi.json"), within=60, interval=0.2)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            reply = await client.post(
                "/auth/token", data={"username": "boss", "password": PASSWORD}
            )
            assert reply.status_code == 200, reply.text
            token = reply.json()["access_token"]
        async with live(base, token=token) as watcher:
            assert (await watcher.next())["type"] == "hello"
            stopping = asyncio.create_task(_stop(hub))
            code, reason = await watcher.closed(within=GRACE_S)
            assert code == 1001, (code, reason)
        returncode, took = await stopping
        output = (logs / "0.log").read_text()
        assert returncode == 0, output
        assert took < GRACE_S, output


@pytest.mark.parametrize("service", ["ingest", "metrics"])
async def test_sigterm_stops_the_other_services_cleanly(
    service: str, production_settings: Settings, tmp_path: Path
) -> None:
    assert production_settings.mqtt_url
    env = production_env(
        production_settings,
        CITYHUB_SHUTDOWN_GRACE_S=str(GRACE_S),
        CITYHUB_MQTT_URL=production_settings.mqtt_url,  # ingest's MQTT intake is connected
        CITYHUB_MQTT_TOPIC_ROOT=production_settings.mqtt_topic_root,
        CITYHUB_MQTT_CLIENT_ID=production_settings.mqtt_client_id,
    )
    log = tmp_path / "0.log"

    async def intake_connected() -> bool:
        return "MQTT intake connected" in log.read_text()

    with _processes(env, ["serve", service], 1, tmp_path) as [(proc, base)]:
        await wait_for(partial(_started, proc, base), within=60, interval=0.2)
        if service == "ingest":  # stopped while its MQTT client is connected and subscribed
            await wait_for(intake_connected, within=30, interval=0.2)
        code, took = await _stop(proc)
        output = log.read_text()
        assert code == 0, output
        assert took < GRACE_S, output
        if service == "metrics":
            stopped = next(line for line in output.splitlines() if "bus consumers stopped" in line)
            assert "kpis on events.ingested:" in stopped and "live on tickets.changed:" in stopped
