"""Fault tests: Redis, Mosquitto and PostgreSQL restarted under steady load, then the invariants
of tests/faults/checks.py (their counts are printed; run with `-s` to see them).

The servers are this module's own (tests/faults/servers.py): the machine's shared ones cannot be
restarted. Each test runs the production stack (tests/faults/stack.py) on a throwaway database.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.messages import EVENTS_INGESTED, TICKETS_CHANGED
from tests.faults import checks
from tests.faults.servers import FaultServers, PrivateServer, private_servers
from tests.faults.stack import (
    Endpoints,
    HotlineLoad,
    LiveWatcher,
    SensorLoad,
    Stack,
    production_stack,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.mqtt]

TEST_TIMEOUT_S = 120  # each test, start of the stack and the checks included
REDIS_DOWN_S = 30.0  # the outage: Redis away for 30 s
MOSQUITTO_DOWN_S = 5.0  # long enough for both MQTT clients to lose and retry their connection
POSTGRES_DOWN_S = 15.0  # several of the sensor intake's retries, many 503s
WARM_UP_EVENTS = 20  # accepted before the fault, so it hits a pipeline in motion
RECOVERED_EVENTS = 20  # accepted after the server is back, so the flow visibly resumed
CHECK_WITHIN_S = 45.0  # for the pipeline to drain before each check gives its verdict


@pytest.fixture(scope="module")
def own_servers() -> Iterator[FaultServers]:
    """A PostgreSQL, Redis and Mosquitto this module may stop and start."""
    with private_servers() as servers:
        yield servers


@pytest.fixture
def endpoints(own_servers: FaultServers) -> Endpoints:
    """The module's servers, all running (a failed test may have left one down)."""
    for server in (own_servers.postgres, own_servers.redis, own_servers.mosquitto):
        server.start()
    return Endpoints(
        own_servers.postgres.url, own_servers.redis.url, "127.0.0.1", own_servers.mosquitto.port
    )


@asynccontextmanager
async def outage(server: PrivateServer, *, kill: bool = False) -> AsyncIterator[None]:
    """The server stopped for the block (SIGKILL with `kill`), started again after it, even when
    the block fails (the stack's clean-up needs it)."""
    await asyncio.to_thread(server.stop, kill=kill)
    try:
        yield
    finally:
        await asyncio.to_thread(server.start)


async def until(condition: Callable[[], object], what: str, within: float = 60.0) -> None:
    """Wait until `condition()` holds, or fail naming `what`."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.1)  # poll interval


async def accepted_more(load: HotlineLoad, count: int, within: float = 60.0) -> None:
    """Wait until the hotline had `count` more events accepted than now."""
    target = len(load.accepted) + count
    await until(lambda: len(load.accepted) >= target, f"{count} more events accepted", within)


@dataclass
class Answer:
    """One intake request's answer: where it went, its status (or error) and Retry-After."""

    target: str
    status: str
    retry_after: str | None
    during_outage: bool
    detail: str = ""  # the body of a refusal, to say why


@dataclass
class IntakeProbe:
    """Posts single events, one attempt each, alternately through the gateway and straight to
    ingest, and records every answer (with `Retry-After`) and the events accepted."""

    stack: Stack
    period_s: float = 0.1
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # source_ref -> event id
    outage: bool = False  # set while the fault lasts: answers are marked with it
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Post until `stop()`."""
        targets = [("gateway", self.stack.url("gateway-1")), ("ingest", self.stack.url("ingest-1"))]
        category = _plain_category(self.stack)
        async with httpx.AsyncClient(timeout=15) as client:
            turn = 0
            while not self._stop.is_set():
                name, url = targets[turn % 2]
                turn += 1
                ref = f"probe-{uuid.uuid4().hex[:12]}"
                during = self.outage
                try:
                    reply = await client.post(
                        f"{url}/api/v1/events",
                        json={
                            "category": category,
                            "location": {"lon": 106.55, "lat": 29.56},
                            "description": "intake probe",
                            "source_ref": ref,
                        },
                        headers={"X-API-Key": self.stack.api_key},
                    )
                except httpx.HTTPError as exc:
                    self.answers.append(Answer(name, type(exc).__name__, None, during, str(exc)))
                else:
                    self._note(name, ref, reply, during)
                await asyncio.sleep(self.period_s)  # a steady trickle, not a flood

    def _note(self, target: str, ref: str, reply: httpx.Response, during: bool) -> None:
        status, retry = str(reply.status_code), reply.headers.get("retry-after")
        if reply.status_code in (200, 201):
            self.accepted[ref] = str(reply.json()["id"])
            self.answers.append(Answer(target, status, retry, during))
        else:
            self.answers.append(Answer(target, status, retry, during, reply.text[:200]))

    def stop(self) -> None:
        """Make `run()` return after its current request."""
        self._stop.set()

    def counts(self, *, during_outage: bool) -> Counter[str]:
        """Answers by target, status and Retry-After, in or out of the outage."""
        return Counter(
            f"{a.target} {a.status}" + (f" Retry-After {a.retry_after}" if a.retry_after else "")
            for a in self.answers
            if a.during_outage == during_outage
        )


def _plain_category(stack: Stack) -> str:
    assert stack.catalogue is not None
    return sorted(
        c.code
        for c in stack.catalogue
        if c.group != "sensor" and not any(a.required for a in c.attributes)
    )[0]


async def readings_stored(stack: Stack, sensors: SensorLoad, since_ms: int, until_ms: int) -> int:
    """How many of the alarms raised by readings published in [since_ms, until_ms) are stored
    (the `alarms_raised` check holds them all to account; this counts the outage's share)."""
    raises = {
        (r.sensor_id, r.ts_ms)
        for r in sensors.readings
        if r.high and since_ms <= r.ts_ms < until_ms
    }
    connection = await asyncpg.connect(stack.db_url)
    try:
        rows = await connection.fetch("SELECT sensor_id, ref FROM sensor_alarms")
    finally:
        await connection.close()
    stored = {(r["sensor_id"], int(r["ref"].rsplit(":", 1)[1])) for r in rows}
    return len(raises & stored)


def assert_all_alive(stack: Stack) -> None:
    """No service process ended during the fault (they wait for the server, never exit)."""
    ended = [name for name in stack.replicas if not stack.alive(name)]
    assert not ended, f"ended during the outage: {ended}\n{stack.log(ended[0])}"


async def invariants(
    stack: Stack, accepted: dict[str, str], sensors: SensorLoad, watcher: LiveWatcher
) -> list[checks.Check]:
    """Every check of checks.py, once the pipeline drained."""
    return [
        await checks.events_ticketed(stack, accepted, within=CHECK_WITHIN_S),
        await checks.no_duplicate_tickets(stack),
        await checks.alarms_raised(stack, sensors),
        await checks.timers_fired_once(stack, within=CHECK_WITHIN_S),
        await checks.kpis_agree(stack, within=CHECK_WITHIN_S),
        await checks.live_once(stack, watcher, within=CHECK_WITHIN_S),
    ]


@pytest.mark.timeout(TEST_TIMEOUT_S)
async def test_redis_down_30_s(own_servers: FaultServers, endpoints: Endpoints) -> None:
    """Redis killed and back after 30 s (its AOF kept): intake answers throughout, through the
    gateway and straight to ingest (events are stored in PostgreSQL), and afterwards every
    accepted event is in a ticket, KPIs agree and the live client resumed without a gap."""
    async with production_stack(endpoints) as stack:
        hotline = HotlineLoad(stack)
        probe = IntakeProbe(stack, period_s=0.25)
        sensors = await SensorLoad.start(stack)
        watcher = await LiveWatcher.start(stack, stack.token("boss"))
        probing = asyncio.create_task(probe.run(), name="intake-probe")
        try:
            async with hotline.running(), sensors.running():
                await accepted_more(hotline, WARM_UP_EVENTS)
                before = Counter(hotline.answers)
                accepted_before = len(hotline.accepted)
                probe.outage = True
                async with outage(own_servers.redis, kill=True):
                    await asyncio.sleep(REDIS_DOWN_S)  # the fault itself: Redis away this long
                probe.outage = False
                during = hotline.answers - before
                accepted_during = len(hotline.accepted) - accepted_before
                await accepted_more(hotline, RECOVERED_EVENTS)
        finally:
            probe.stop()
            await probing
        assert_all_alive(stack)
        assert await sensors.wait_acked() == 0, "the broker did not acknowledge every reading"
        await sensors.close()
        results = await invariants(stack, {**hotline.accepted, **probe.accepted}, sensors, watcher)
        await watcher.stop()
        during_line = ", ".join(f"{k}: {v}" for k, v in sorted(during.items()))
        probe_line = dict(sorted(probe.counts(during_outage=True).items()))
        checks.report(
            f"Redis down {REDIS_DOWN_S:.0f} s",
            [
                hotline.line(),
                f"hotline answers while Redis was down: {during_line}; {accepted_during} accepted",
                f"intake probe while Redis was down: {probe_line}",
                sensors.line(),
            ],
            results,
        )
        refused = [a for a in probe.answers if a.during_outage and a.status not in ("200", "201")]
        assert not refused, f"intake refused while Redis was down: {refused[:3]}"
        assert {a.target for a in probe.answers if a.during_outage} == {"gateway", "ingest"}
        assert accepted_during > 0, "the hotline had nothing accepted while Redis was down"
        assert "500" not in hotline.answers, f"the hotline saw a 500: {hotline.line()}"


async def groups(stack: Stack) -> dict[str, dict[str, tuple[int, int | None]]]:
    """The consumer groups of both bus streams: stream -> group -> (pending, lag)."""
    redis = Redis.from_url(stack.endpoints.redis_url)
    found: dict[str, dict[str, tuple[int, int | None]]] = {}
    try:
        for stream in (EVENTS_INGESTED, TICKETS_CHANGED):
            try:
                infos = await redis.xinfo_groups(stack.prefix + stream)
            except ResponseError:  # no such stream (yet)
                infos = []
            found[stream] = {
                info["name"].decode(): (int(info["pending"]), info["lag"]) for info in infos
            }
    finally:
        await redis.aclose()
    return found


@pytest.mark.timeout(TEST_TIMEOUT_S)
async def test_redis_restarted_empty(own_servers: FaultServers, endpoints: Endpoints) -> None:
    """Redis killed and started again without its data (as a Redis without persistence would):
    the consumers create their groups again and go on; events whose message was lost get their
    tickets from the sweep. (The live history and KPI facts of lost ticket changes are gone
    with it: clients resync, `cityhub kpis recompute` repairs KPIs; see decision 0021.)"""
    async with production_stack(endpoints) as stack:
        hotline = HotlineLoad(stack, rate_per_s=10)
        sensors = await SensorLoad.start(stack)
        async with hotline.running(), sensors.running():
            await accepted_more(hotline, WARM_UP_EVENTS)
            before = await groups(stack)
            async with outage(own_servers.redis, kill=True):
                await asyncio.to_thread(own_servers.redis.forget)
            await accepted_more(hotline, RECOVERED_EVENTS)
        assert_all_alive(stack)
        assert await sensors.wait_acked() == 0, "the broker did not acknowledge every reading"
        await sensors.close()
        results = [
            await checks.events_ticketed(stack, hotline.accepted, within=CHECK_WITHIN_S),
            await checks.no_duplicate_tickets(stack),
            await checks.alarms_raised(stack, sensors),
        ]
        drained = {s: {g: (0, 0) for g in found} for s, found in before.items()}

        async def back_and_drained() -> bool:
            return await groups(stack) == drained

        await until_async(back_and_drained, "every group back, nothing pending or unread")
        checks.report(
            "Redis restarted empty",
            [hotline.line(), sensors.line(), f"consumer groups before the restart: {before}"],
            results,
        )
        assert all(before.values()), f"no consumer groups before the restart: {before}"


async def until_async(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = CHECK_WITHIN_S
) -> None:
    """Wait until the coroutine `condition()` returns true, or fail naming `what`."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.25)  # poll interval


@pytest.mark.timeout(TEST_TIMEOUT_S)
async def test_mosquitto_restarted(own_servers: FaultServers, endpoints: Endpoints) -> None:
    """Mosquitto stopped and started again: ingest reconnects to its persistent session, the
    sensors' QoS 1 readings flow again, and no acknowledged reading is lost."""
    async with production_stack(endpoints) as stack:
        hotline = HotlineLoad(stack, rate_per_s=10)
        sensors = await SensorLoad.start(stack)
        watcher = await LiveWatcher.start(stack, stack.token("boss"))
        async with hotline.running():
            async with sensors.running():
                await accepted_more(hotline, WARM_UP_EVENTS)
                await until(lambda: any(r.acked for r in sensors.readings), "a reading acked")
            # The sensors pause while the broker is away: a reading paho queues while
            # disconnected cannot be told acknowledged later (`Reading.acked` raises for it).
            async with outage(own_servers.mosquitto):
                await asyncio.sleep(MOSQUITTO_DOWN_S)  # the fault itself
            await until(sensors.client.is_connected, "the sensors' client reconnected")
            back_ms = round(time.time() * 1000)
            async with sensors.running():
                # Readings published after the restart reach ingest and raise their alarms.
                await until(
                    lambda: sum(r.acked and r.ts_ms > back_ms for r in sensors.readings) >= 8,
                    "readings acknowledged after the restart",
                )
        assert_all_alive(stack)
        assert await sensors.wait_acked() == 0, "the broker did not acknowledge every reading"
        await sensors.close()
        now_ms = round(time.time() * 1000) + 1
        after = sum(r.high and r.ts_ms > back_ms for r in sensors.readings)
        await until_alarms(stack, sensors, back_ms, now_ms, after)
        results = await invariants(stack, hotline.accepted, sensors, watcher)
        await watcher.stop()
        checks.report(
            f"Mosquitto down {MOSQUITTO_DOWN_S:.0f} s",
            [
                hotline.line(),
                sensors.line(),
                f"over-threshold readings after the restart: {after}, alarms stored "
                f"{await readings_stored(stack, sensors, back_ms, now_ms)}",
            ],
            results,
        )


async def until_alarms(
    stack: Stack, sensors: SensorLoad, since_ms: int, until_ms: int, count: int
) -> None:
    """Wait until `count` alarms of the readings published in the window are stored."""
    deadline = time.monotonic() + CHECK_WITHIN_S
    while (stored := await readings_stored(stack, sensors, since_ms, until_ms)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{stored} of {count} alarms stored in {CHECK_WITHIN_S:.0f} s")
        await asyncio.sleep(0.25)  # poll interval


@pytest.mark.timeout(TEST_TIMEOUT_S)
async def test_postgres_restarted(own_servers: FaultServers, endpoints: Endpoints) -> None:
    """PostgreSQL stopped for a while: intake (through the gateway and straight to ingest)
    answers only 201/200 or 503 with Retry-After, never a 500; MQTT readings wait in the broker
    and their alarms are stored once it is back; then every invariant holds."""
    async with production_stack(endpoints) as stack:
        hotline = HotlineLoad(stack, rate_per_s=10)
        probe = IntakeProbe(stack)
        sensors = await SensorLoad.start(stack)
        watcher = await LiveWatcher.start(stack, stack.token("boss"))
        probing = asyncio.create_task(probe.run(), name="intake-probe")
        try:
            async with hotline.running(), sensors.running():
                await accepted_more(hotline, WARM_UP_EVENTS)
                probe.outage = True
                down_ms = round(time.time() * 1000)
                async with outage(own_servers.postgres):
                    await asyncio.sleep(POSTGRES_DOWN_S)  # the fault itself
                    healthz = await _healthz(stack)
                back_ms = round(time.time() * 1000)
                await accepted_more(hotline, RECOVERED_EVENTS)
                probe.outage = False
                await until(
                    lambda: (
                        sum(a.status == "201" and not a.during_outage for a in probe.answers) >= 4
                    ),
                    "the probe's events accepted again on both paths",
                )
        finally:
            probe.stop()
            await probing
        assert_all_alive(stack)
        assert await sensors.wait_acked() == 0, "the broker did not acknowledge every reading"
        await sensors.close()
        during_outage = sum(r.high for r in sensors.readings if down_ms <= r.ts_ms < back_ms)
        await until_alarms(stack, sensors, down_ms, back_ms, during_outage)
        results = await invariants(stack, {**hotline.accepted, **probe.accepted}, sensors, watcher)
        await watcher.stop()
        outage_answers = probe.counts(during_outage=True)
        other_answers = probe.counts(during_outage=False)
        checks.report(
            f"PostgreSQL down {POSTGRES_DOWN_S:.0f} s",
            [
                hotline.line(),
                f"intake probe during the outage: {dict(sorted(outage_answers.items()))}",
                f"intake probe otherwise: {dict(sorted(other_answers.items()))}",
                f"/healthz during the outage: {healthz}",
                sensors.line(),
                f"over-threshold readings during the outage: {during_outage}, their alarms stored "
                f"after it: {await readings_stored(stack, sensors, down_ms, back_ms)}",
            ],
            results,
        )
        bad = [a for a in probe.answers if not _fine(a)]
        # Known and not yet found (docs/faults.md): now and then one request through the gateway
        # gets a plain 500 as PostgreSQL goes down (2 of 6 runs on 2026-11-30). The rest of this
        # test stays strict; that one case ends it as an expected failure, never a pass.
        known = [a for a in bad if (a.target, a.status) == ("gateway", "500") and a.during_outage]
        assert bad == known, f"intake answers other than 201/200 or 503 with Retry-After: {bad[:5]}"
        refused = [a for a in probe.answers if a.during_outage and a.status == "503"]
        assert {a.target for a in refused} == {"gateway", "ingest"}, "no 503 seen on both paths"
        assert "500" not in hotline.answers, f"the hotline saw a 500: {hotline.line()}"
        assert set(healthz.values()) == {503}, f"/healthz while the database was down: {healthz}"
        if known:
            pytest.xfail(f"known: a 500 through the gateway while PostgreSQL was down: {known[:3]}")


def _fine(answer: Answer) -> bool:
    if answer.status in ("200", "201"):
        return True
    return answer.status == "503" and answer.retry_after is not None


async def _healthz(stack: Stack) -> dict[str, int]:
    """Every replica's `/healthz` status."""
    async with httpx.AsyncClient(timeout=10) as client:
        return {
            name: (await client.get(f"{stack.url(name)}/healthz")).status_code
            for name in stack.replicas
        }
