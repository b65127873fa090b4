"""`cityhub bench e2e` (issue 10): the production stack end to end, driven by the simulators.

Events go in where a city's senders put them — Open311 hotline requests and grid reports with
photos through the gateway, sensor readings to Mosquitto — and come out as `tickets` frames on
`/ws/live` screens (`simulators.e2e_watch`, a process of its own). Figures:

- intake: events per second accepted (HTTP 201/200; sensor alarms stored as events), readings;
- latency event → ticket → websocket frame (p50/p99/max): from just before the event was POSTed
  (or the reading published) to the first `tickets` frame a screen received that shows the
  ticket the event opened or joined with the event counted (its `report_count`); which ticket
  each event went to is read from the `ticket_events` links in the database after the fact, so
  the hub needs no change to be measured; also event → ticket (the link's `linked_at`);
- timer lag of deadline timers (`fired_at − due_at` in the `timers` table, p50/p99/max);
- CPU (% of one core) and resident memory of every process: each service replica, Redis, the
  PostgreSQL backends of the bench's database, Mosquitto, and the bench's own driver and screens.

Profiles (docs/benchmarks.md, "End to end", says why each choice):
- `chongqing`: a day of Chongqing compressed `--speed` (100) times: 12,000 tickets a day of
  hotline and grid events (a share of them repeat a recent report, so they merge) and 10,000
  sensors reporting every 60 s with 0.5 % of readings over a threshold. The readings flow at the
  real rate (`--sensor-speed 1`: 167 a second) while their alarms, the tickets and the deadlines
  are compressed `--speed` times.
- `capacity`: hotline events at rising rates (`--steps`), each for `--step-seconds`, through
  `POST /api/v1/events/batch` (or one POST each with `--intake single`), until the p99 of event
  → frame passes `--p99-limit-ms`; the figure is the highest rate held (when not even the
  first step holds, the rate is halved until one does).

Run: python -m simulators.bench_e2e --profile chongqing [--replicas 2] [--duration 300]
     [--json PATH]; or against a running stack: --gateway URL [--gateway URL2] --username U
     --password P --api-key K --database-url URL [--mqtt URL --topic-root ROOT]
Needs (local stack): PostgreSQL, Redis and Mosquitto (defaults: the local ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import numpy as np
import uvloop

from simulators import sensor_fleet
from simulators.city import Street, pick_street, point_in
from simulators.e2e_stack import E2EStack, local_stack, remote_stack
from simulators.e2e_watch import Screens
from simulators.grid import photo
from simulators.hotline import request_form
from simulators.live_stack import redis_pid
from simulators.proc_stats import SAMPLE_S, Sampler, machine_facts
from simulators.texts import ATTRIBUTES, complaint

DAY_S = 86_400.0
TICK_S = 0.02  # the driver sends what fell due this often
BATCH_TICK_S = 0.1  # … and posts a batch this often (a CRM or gateway batching 100 ms)
MAX_IN_FLIGHT = 400  # HTTP requests the driver keeps open at once
HTTP_TIMEOUT_S = 30.0
RECENT = 500  # recent reports a repeated one is drawn from
REPEAT_OFFSET_DEG = 0.0002  # a repeat is this close to the original (about 20 m): it merges
EPISODE_MEAN = 4.0  # readings over the threshold per alarm episode (sensor_fleet: 2–6)
MAX_CROSSING_CHANCE = 0.9
DRAIN_POLL_S = 1.0
DRAIN_MAX_S = 60.0  # after the load stopped, for the last events to reach the screens
TARGETS = {"chongqing_p99_ms": 500.0, "timer_lag_p99_ms": 1_000.0, "capacity_per_s": 1_000.0}
DEFAULT_STEPS = "100,200,400,700,1000,1400,2000,2800"
MIN_STEP_RATE = 5.0  # events/s: when the first step fails, halving stops here


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- load --------------------------------------------------------------------------------------


@dataclass
class Sent:
    """What the driver sent and how the hub answered."""

    at: dict[str, float] = field(default_factory=dict)  # token → when it was sent (POSIX s)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)  # channel → answers
    accepted: set[str] = field(default_factory=set)  # tokens answered 201 or 200
    answer_s: list[float] = field(default_factory=list)  # how long each request took

    def answer(self, channel: str, token: str, status: str) -> None:
        """Count an answer."""
        self.statuses.setdefault(channel, Counter())[status] += 1
        if status in ("200", "201"):
            self.accepted.add(token)


class Intake:
    """Posts events through the gateways (round-robin), on keep-alive connections."""

    def __init__(
        self, stack: E2EStack, run: str, seed: int, repeat_share: float, first: int = 0
    ) -> None:
        limits = httpx.Limits(
            max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
        )
        self.clients = [
            httpx.AsyncClient(base_url=g, timeout=HTTP_TIMEOUT_S, limits=limits)
            for g in stack.gateways
        ]
        self.key, self.run = stack.api_key, run
        self.streets = stack.streets
        self.rng = random.Random(seed)
        self.repeat_share = repeat_share
        self.recent: deque[tuple[str, float, float]] = deque(maxlen=RECENT)
        self.serial = first  # tokens stay unique across the capacity steps
        self.sent = Sent()
        self.gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()

    def _client(self) -> httpx.AsyncClient:
        return self.clients[self.serial % len(self.clients)]

    def _token(self, channel: str) -> str:
        self.serial += 1
        return f"e2e{self.run}{channel[0]}{self.serial}"

    def _what(self) -> tuple[str, str, float, float, Street]:
        """Category, text and point of the next report: a repeat of a recent one (a second
        caller about the same problem) or a new one."""
        street = pick_street(self.streets, self.rng)
        code, text = complaint(street.name, self.rng)
        if self.recent and self.rng.random() < self.repeat_share:
            code, lon, lat = self.rng.choice(self.recent)
            lon += self.rng.uniform(-REPEAT_OFFSET_DEG, REPEAT_OFFSET_DEG)
            lat += self.rng.uniform(-REPEAT_OFFSET_DEG, REPEAT_OFFSET_DEG)
            return code, text, round(lon, 6), round(lat, 6), street
        lon, lat = point_in(street.polygon, self.rng)
        self.recent.append((code, lon, lat))
        return code, text, lon, lat, street

    async def _send(
        self, channel: str, tokens: list[str], request: Callable[[], Awaitable[httpx.Response]]
    ) -> None:
        began = time.monotonic()
        try:
            reply = await request()
            self.sent.answer_s.append(time.monotonic() - began)
        except httpx.HTTPError as exc:
            for token in tokens:
                self.sent.answer(channel, token, type(exc).__name__)
        else:
            if channel == "batch":
                body = reply.json() if reply.status_code == 200 else {"results": []}
                answered = {r["index"]: str(r["status"]) for r in body["results"]}
                for i, token in enumerate(tokens):
                    self.sent.answer("api", token, answered.get(i, str(reply.status_code)))
            else:
                for token in tokens:
                    self.sent.answer(channel, token, str(reply.status_code))
        finally:
            self.gate.release()

    async def _spawn(
        self, channel: str, tokens: list[str], request: Callable[[], Awaitable[httpx.Response]]
    ) -> None:
        await self.gate.acquire()
        now = time.time()
        for token in tokens:
            self.sent.at[token] = now
        task = asyncio.create_task(self._send(channel, tokens, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def hotline(self) -> None:
        """One 12345 call as the CRM sends it: Open311 `POST requests`."""
        code, text, lon, lat, street = self._what()
        token = self._token("hotline")
        form = request_form(street, self.rng, self.key, self.serial)
        form.update(service_code=code, description=text, lat=f"{lat:.6f}", long=f"{lon:.6f}")
        form["external_id"] = token
        form = {k: v for k, v in form.items() if not k.startswith("attribute[")}
        for attr, value in ATTRIBUTES.get(code, {}).items():
            form[f"attribute[{attr}]"] = value
        post = functools.partial(self._client().post, "/open311/v2/requests.json", data=form)
        await self._spawn("hotline", [token], post)

    async def grid(self) -> None:
        """One grid worker's report with 1–3 photos."""
        code, text, lon, lat, _street = self._what()
        token = self._token("grid")
        data = {"category": code, "description": text, "lon": str(lon), "lat": str(lat),
                "worker_id": f"gw-{self.serial % 2000:04d}", "source_ref": token}  # fmt: skip
        files = [
            ("photos", (f"{n}.png", photo(self.rng), "image/png"))
            for n in range(self.rng.randint(1, 3))
        ]
        post = functools.partial(
            self._client().post, "/api/v1/grid-reports", data=data, files=files,
            headers={"X-API-Key": self.key},
        )  # fmt: skip
        await self._spawn("grid", [token], post)

    def _event(self, token: str) -> dict[str, Any]:
        code, text, lon, lat, _street = self._what()
        return {"source": "hotline", "source_ref": token, "category": code,
                "description": text, "location": {"lon": lon, "lat": lat}}  # fmt: skip

    async def api(self, count: int) -> None:
        """`count` events by the project's JSON API, one POST each."""
        for _ in range(count):
            token = self._token("api")
            body = self._event(token)
            post = functools.partial(
                self._client().post, "/api/v1/events", json=body, headers={"X-API-Key": self.key}
            )
            await self._spawn("api", [token], post)

    async def batch(self, count: int) -> None:
        """`count` events in one `POST /api/v1/events/batch` (at most 1,000 each)."""
        while count > 0:
            n = min(count, 1_000)
            count -= n
            tokens = [self._token("api") for _ in range(n)]
            body = {"events": [self._event(t) for t in tokens]}
            post = functools.partial(
                self._client().post, "/api/v1/events/batch", json=body,
                headers={"X-API-Key": self.key},
            )  # fmt: skip
            await self._spawn("batch", tokens, post)

    async def finish(self) -> None:
        """Wait for every answer."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks))

    async def close(self) -> None:
        """Release the connections."""
        await self.finish()
        for client in self.clients:
            await client.aclose()


async def pace(
    rate: float, seconds: float, send: Callable[[int], Awaitable[None]], tick: float = TICK_S
) -> float:
    """Call `send(n)` every `tick` with what fell due at `rate` a second for `seconds`; how far
    the driver fell behind its schedule at worst (s)."""
    began = time.monotonic()
    sent, behind = 0, 0.0
    while (elapsed := time.monotonic() - began) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            behind = max(behind, due / rate - tick) if rate else 0.0
            await send(due)
            sent += due
        await asyncio.sleep(tick)
    if (rest := round(seconds * rate) - sent) > 0:  # the last tick's share: exactly rate × seconds
        await send(rest)
    return max(behind, 0.0)


def mix(rng: random.Random, shares: dict[str, float]) -> Callable[[], str]:
    """Draw a channel by its share."""
    names, weights = list(shares), list(shares.values())
    return lambda: rng.choices(names, weights=weights, k=1)[0]


# --- the sensors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorPlan:
    """How the fleet plays the compressed day."""

    sensors: int
    readings_per_s: float
    crossing_chance: float  # sensor_fleet's chance per reading to start an alarm episode
    alarms_per_s_asked: float  # alarm episodes a second the compressed day asks for
    alarms_per_s_planned: float  # … and what the crossing chance can give at this reading rate

    @classmethod
    def of(cls, args: argparse.Namespace) -> SensorPlan:
        """Readings at `--sensor-speed`, alarm episodes at `--speed`."""
        real_rate = args.sensors / args.sensor_interval  # readings a second in real time
        rate = real_rate * args.sensor_speed
        asked = real_rate * args.alarm_share / EPISODE_MEAN * args.speed
        per_reading = asked / rate if rate else 0.0
        if per_reading * EPISODE_MEAN < 1:
            chance = min(per_reading / (1 - per_reading * EPISODE_MEAN), MAX_CROSSING_CHANCE)
        else:
            chance = MAX_CROSSING_CHANCE
        planned = rate * chance / (1 + chance * EPISODE_MEAN)
        return cls(args.sensors, rate, chance, asked, planned)


# --- what the screens saw ----------------------------------------------------------------------


def _stats_ms(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float | int]:
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr):
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "samples": 0}
    p50, p99, top = np.percentile(arr, [50, 99, 100]) * 1000
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1),
            "max": round(float(top), 1), "samples": len(arr)}  # fmt: skip


@dataclass
class Outcome:
    """What happened to the events of one window."""

    accepted: int
    stored: dict[str, int]  # events stored, by source
    linked: int  # … of which linked to a ticket
    shown: int  # … and shown on every screen
    tickets: int  # tickets these events opened or joined
    opened: int  # tickets whose first event is one of these
    latency: dict[str, list[float]]  # by source: event → frame (s), one sample per screen
    to_ticket: list[float]  # event → ticket link (s)
    stages: dict[str, list[float]]  # event → on the bus, → in the live history (s)

    @property
    def missing(self) -> int:
        """Accepted (or stored) events not shown on every screen."""
        return sum(self.stored.values()) - self.shown

    def figures(self) -> dict[str, Any]:
        """JSON-ready figures."""
        every = [x for v in self.latency.values() for x in v]
        return {
            "events_stored": self.stored,
            "events_linked": self.linked,
            "events_shown": self.shown,
            "events_missing": self.missing,
            "tickets_touched": self.tickets,
            "tickets_opened": self.opened,
            "latency_ms": _stats_ms(every),
            "latency_ms_by_source": {k: _stats_ms(v) for k, v in sorted(self.latency.items())},
            "to_ticket_ms": _stats_ms(self.to_ticket),
            **{f"to_{k}_ms": _stats_ms(v) for k, v in self.stages.items()},
        }


class Judge:
    """Matches events to the frames that showed them, through the database's links."""

    def __init__(self, pg: asyncpg.Connection, screens: Screens, run: str) -> None:
        self.pg, self.screens, self.run = pg, screens, run

    async def outcome(self, sent: Sent, since: datetime, until: float | None) -> Outcome:
        """The events of this run received since `since` (HTTP ones sent by `sent`, sensor
        alarms whose reading was published before `until`)."""
        rows = await self.pg.fetch(
            """SELECT e.id, e.source, e.source_ref, te.ticket_id, te.linked_at
               FROM events e LEFT JOIN ticket_events te ON te.event_id = e.id
               WHERE e.received_at >= $1 AND e.source_ref LIKE $2""",
            since, f"%e2e{self.run}%",
        )  # fmt: skip
        mine: list[tuple[str, str, float, Any, Any]] = []  # (id, source, sent, ticket, linked)
        for r in rows:
            tail = r["source_ref"].rsplit(":", 1)[-1]
            if r["source"] == "sensor":
                at = int(tail) / 1000  # the reading's timestamp: when it was published
                if until is not None and at >= until:
                    continue
            else:
                found = sent.at.get(tail)
                if found is None:
                    continue
                at = found
            mine.append((str(r["id"]), r["source"], at, r["ticket_id"], r["linked_at"]))
        tickets = list({m[3] for m in mine if m[3] is not None})
        order = await self.pg.fetch(
            """SELECT te.ticket_id, te.event_id FROM ticket_events te
               JOIN events e ON e.id = te.event_id
               WHERE te.ticket_id = ANY($1::uuid[])
               ORDER BY te.ticket_id, te.linked_at, e.received_at, e.id""",
            tickets,
        )
        ordinal: dict[str, int] = {}
        last, k = None, 0
        for r in order:
            k = k + 1 if r["ticket_id"] == last else 1
            last = r["ticket_id"]
            ordinal[str(r["event_id"])] = k
        linked = [m for m in mine if m[3] is not None]
        seen, reached = await self.screens.lookup(
            [(str(m[3]), ordinal.get(m[0], 1)) for m in linked]
        )
        latency: dict[str, list[float]] = {}
        stages: dict[str, list[float]] = {k: [] for k in reached}
        shown = 0
        for i, (_id, source, at, _ticket, _linked) in enumerate(linked):
            times = [per_screen[i] for per_screen in seen]
            if all(t is not None for t in times):
                shown += 1
            latency.setdefault(source, []).extend(t - at for t in times if t is not None)
            for stage, times_there in reached.items():
                if (there := times_there[i]) is not None:
                    stages[stage].append(there - at)
        return Outcome(
            accepted=len(sent.accepted),
            stored=dict(Counter(m[1] for m in mine)),
            linked=len(linked),
            shown=shown,
            tickets=len(tickets),
            opened=sum(1 for m in linked if ordinal.get(m[0]) == 1),
            latency=latency,
            to_ticket=[m[4].timestamp() - m[2] for m in linked],
            stages=stages,
        )

    async def settled(
        self, sent: Sent, since: datetime, until: float | None, expected_http: int
    ) -> Outcome:
        """The outcome once every event is on the screens (or `DRAIN_MAX_S` passed)."""
        deadline = time.monotonic() + DRAIN_MAX_S
        while True:
            out = await self.outcome(sent, since, until)
            stored_http = sum(v for k, v in out.stored.items() if k != "sensor")
            if (out.missing == 0 and stored_http >= expected_http) or time.monotonic() > deadline:
                return out
            await asyncio.sleep(DRAIN_POLL_S)

    async def timer_lag(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Lag of the deadline timers of this run's tickets that fell due in [start, end)."""
        rows = await self.pg.fetch(
            """SELECT t.kind, EXTRACT(EPOCH FROM t.fired_at - t.due_at) AS lag,
                      EXTRACT(EPOCH FROM now() - t.due_at) AS waiting
               FROM timers t
               WHERE t.due_at >= $1 AND t.due_at < $2 AND t.ticket_id IN (
                   SELECT te.ticket_id FROM ticket_events te JOIN events e ON e.id = te.event_id
                   WHERE e.received_at >= $1 AND e.source_ref LIKE $3)""",
            start, end, f"%e2e{self.run}%",
        )  # fmt: skip
        fired = [float(r["lag"]) for r in rows if r["lag"] is not None]
        unfired = [float(r["waiting"]) for r in rows if r["lag"] is None]
        return {
            **_stats_ms(fired),
            "fired": len(fired),
            "unfired_past_due": len(unfired),
            "unfired_oldest_s": round(max(unfired), 1) if unfired else 0.0,
            "by_kind": dict(Counter(r["kind"] for r in rows if r["lag"] is not None)),
        }


# --- resources ---------------------------------------------------------------------------------


def listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port (read from /proc; None when not visible)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "ADDR:PORT" in hex; state 0A is LISTEN
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(entry.name)
    return None


@asynccontextmanager
async def resources(stack: E2EStack, screens: Screens) -> AsyncIterator[Callable[[], Sampler]]:
    """A factory of samplers over every process of the run (PostgreSQL: the backends of the
    bench's database, followed while they come and go)."""
    database = stack.db_url.rsplit("/", 1)[1].split("?")[0]
    backends: list[int] = []
    redis = await redis_pid(stack.redis_url) if stack.redis_url else None
    mosquitto = listener_pid(stack.mqtt[1]) if stack.mqtt[0] in ("127.0.0.1", "localhost") else None

    watch = await asyncpg.connect(stack.db_url)  # its own: the judge's queries use `pg`

    async def follow() -> None:
        while True:
            rows = await watch.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
            )
            backends[:] = [r["pid"] for r in rows]
            await asyncio.sleep(SAMPLE_S / 2)

    following = asyncio.create_task(follow())
    groups: dict[str, Callable[[], Sequence[int]]] = {
        name: functools.partial(list, (proc.pid,)) for name, proc in stack.procs.items()
    }
    groups |= {
        "postgres": lambda: list(backends),
        "driver": lambda: [os.getpid()],
        "screens": lambda: [screens.pid] if screens.pid else [],
    }
    if redis:
        groups["redis"] = functools.partial(list, (redis,))
    if mosquitto:
        groups["mosquitto"] = functools.partial(list, (mosquitto,))

    def sampler() -> Sampler:
        return Sampler(groups, no_rss=frozenset({"postgres"}))  # shared buffers

    try:
        yield sampler
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await watch.close()


def summary(sampler: Sampler) -> dict[str, dict[str, float]]:
    """Median/max CPU % and RSS per process, with the mean CPU % over the window."""
    out = sampler.summary()
    for name, values in sampler.cpu.items():
        out[name]["cpu_mean"] = round(sum(values) / len(values), 1)
    return out


# --- the profiles ------------------------------------------------------------------------------


@dataclass
class Run:
    """The run's shared parts."""

    args: argparse.Namespace
    stack: E2EStack
    run: str
    pg: asyncpg.Connection
    screens: Screens
    judge: Judge
    sampler: Callable[[], Sampler]


async def chongqing(r: Run, fleet: sensor_fleet.Fleet | None, plan: SensorPlan) -> dict[str, Any]:
    """The compressed day for `--duration` seconds."""
    args = r.args
    tickets_per_s = args.tickets_per_day * args.speed / DAY_S
    events_per_s = tickets_per_s / (1 - args.repeat_share)
    intake = Intake(r.stack, r.run, args.seed, args.repeat_share)
    draw = mix(random.Random(args.seed + 1), {"hotline": args.hotline_share,
                                              "grid": 1 - args.hotline_share})  # fmt: skip

    async def send(n: int) -> None:
        for _ in range(n):
            await (intake.hotline() if draw() == "hotline" else intake.grid())

    _log(f"chongqing: {events_per_s:.1f} hotline+grid events/s ({tickets_per_s:.1f} tickets/s "
         f"before sensors), {plan.readings_per_s:.0f} readings/s from {plan.sensors} sensors, "
         f"~{plan.alarms_per_s_planned:.1f} alarms/s, for {args.duration:g} s")  # fmt: skip
    since = datetime.now(UTC)
    start = time.time()
    sampler = r.sampler()
    sampling = asyncio.create_task(sampler.run(start, start + args.duration))
    stats = sensor_fleet.Stats()
    sensors: asyncio.Task[sensor_fleet.Stats] | None = None
    if fleet is not None and plan.readings_per_s > 0:
        sensors = asyncio.create_task(
            sensor_fleet.run(
                fleet, host=r.stack.mqtt[0], port=r.stack.mqtt[1], username=r.stack.integrator
                or "bench", password=r.stack.api_key, root=r.stack.topic_root,
                rate_per_s=plan.readings_per_s, duration_s=args.duration,
                crossing_chance=plan.crossing_chance, silent_share=0.0, seed=args.seed,
                progress=False, stats=stats,
            )
        )  # fmt: skip
    try:
        behind = await pace(events_per_s, args.duration, send)
        end = time.time()
        await intake.finish()
        if sensors is not None:
            await sensors
    finally:
        await intake.close()
    await sampling
    until = datetime.fromtimestamp(end, UTC)
    expected = len(intake.sent.accepted)
    out = await r.judge.settled(intake.sent, since, end, expected)
    lag = await r.judge.timer_lag(since, until)
    seconds = args.duration  # the rates are per second of load asked for
    accepted = expected + out.stored.get("sensor", 0)
    statuses = {k: dict(v) for k, v in intake.sent.statuses.items()}
    return {
        "profile": "chongqing",
        "seconds": round(seconds, 1),
        "seconds_taken": round(end - start, 1),
        "asked": {
            "events_per_s": round(events_per_s, 2), "tickets_per_s": round(tickets_per_s, 2),
            "readings_per_s": round(plan.readings_per_s, 1),
            "alarms_per_s": round(plan.alarms_per_s_asked, 2),
            "alarms_per_s_planned": round(plan.alarms_per_s_planned, 2),
        },
        "intake": {
            "accepted_per_s": round(accepted / seconds, 2),
            "http_accepted_per_s": round(expected / seconds, 2),
            "sensor_alarms_per_s": round(out.stored.get("sensor", 0) / seconds, 2),
            "readings_published": stats.counts["published"],
            "readings_per_s": round(stats.counts["published"] / seconds, 1),
            "readings_over_threshold": stats.counts["crossing"],
            "readings_refused_by_client": stats.counts["refused"],
            "answers": statuses,
            "answer_ms": _stats_ms(intake.sent.answer_s),
            "driver_behind_max_s": round(behind, 3),
        },
        **out.figures(),
        "timer_lag_ms": lag,
        "resources": summary(sampler),
    }  # fmt: skip


async def capacity(r: Run) -> dict[str, Any]:
    """Rising event rates until the p99 passes the limit."""
    args = r.args
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    rates = [float(s) for s in args.steps.split(",") if s.strip()]
    while rates:
        rate = rates.pop(0)
        intake = Intake(r.stack, r.run, args.seed + len(steps), 0.0, first=len(steps) * 10**8)
        send = intake.batch if args.intake == "batch" else intake.api
        since = datetime.now(UTC)
        start = time.time()
        sampler = r.sampler()
        sampling = asyncio.create_task(sampler.run(start, start + args.step_seconds))
        try:
            tick = BATCH_TICK_S if args.intake == "batch" else TICK_S
            behind = await pace(rate, args.step_seconds, send, tick)
            end = time.time()
            await intake.finish()
        finally:
            await intake.close()
        await sampling
        expected = len(intake.sent.accepted)
        out = await r.judge.settled(intake.sent, since, None, expected)
        seconds = args.step_seconds  # the rates are per second of load asked for
        figures = out.figures()
        p99 = figures["latency_ms"]["p99"]
        accepted_per_s = expected / seconds
        held = (
            accepted_per_s >= 0.95 * rate
            and out.missing == 0
            and not math.isnan(p99)
            and p99 <= args.p99_limit_ms
        )
        step = {
            "rate_asked": rate,
            "seconds": round(seconds, 1),
            "seconds_taken": round(end - start, 1),
            "accepted_per_s": round(accepted_per_s, 1),
            "answers": {k: dict(v) for k, v in intake.sent.statuses.items()},
            "answer_ms": _stats_ms(intake.sent.answer_s),
            "driver_behind_max_s": round(behind, 3),
            "held": held,
            **figures,
            "resources": summary(sampler),
        }
        steps.append(step)
        lat = figures["latency_ms"]
        said = "held" if held else "NOT held"
        _log(f"  capacity {rate:,.0f}/s: accepted {accepted_per_s:,.0f}/s, p50 {lat['p50']} ms,"
             f" p99 {lat['p99']} ms, missing {out.missing}: {said}")  # fmt: skip
        if held:
            best = step
        elif best is None and rate / 2 >= MIN_STEP_RATE:
            rates = [rate / 2]  # not even the first step: halve until one holds
        else:
            break
    return {
        "profile": "capacity",
        "intake_path": args.intake,
        "p99_limit_ms": args.p99_limit_ms,
        "best_rate_held": best["rate_asked"] if best else None,
        "best_accepted_per_s": best["accepted_per_s"] if best else None,
        "steps": steps,
    }


# --- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; its figures."""
    run_id = uuid.uuid4().hex[:6]
    plan = SensorPlan.of(args)
    fleet = None
    if args.profile == "chongqing" and args.sensors > 0:
        fleet = sensor_fleet.Fleet.generate(
            args.sensors, prefix=f"e2e{run_id}-", rate_per_s=args.sensors / args.sensor_interval,
            seed=args.seed,
        )  # fmt: skip
    load_before, started_at = os.getloadavg(), datetime.now(UTC)
    if args.gateway:
        stack = await remote_stack(
            gateways=args.gateway, username=args.username, password=args.password,
            api_key=args.api_key, database_url=args.database_url, mqtt_url=args.mqtt,
            topic_root=args.topic_root,
        )  # fmt: skip
        if fleet is not None:
            async with httpx.AsyncClient(base_url=stack.gateways[0], timeout=60) as client:
                stack.integrator = await sensor_fleet.register(client, stack.api_key, fleet)
        figures = await measure(args, stack, run_id, fleet, plan)
    else:
        async with local_stack(
            postgres=args.postgres, redis_url=args.redis, mqtt_url=args.mqtt,
            replicas=args.replicas, speed=args.speed if args.profile == "chongqing" else 1.0,
            fleet=fleet,
        ) as stack:  # fmt: skip
            figures = await measure(args, stack, run_id, fleet, plan)
    figures["machine"] = machine_facts(load_before, started_at)
    figures["setup"] = {
        "profile": args.profile, "replicas": args.replicas if not args.gateway else None,
        "stack": "running (given)" if args.gateway else "local processes",
        "gateways": len(args.gateway) if args.gateway else args.replicas,
        "speed": args.speed, "duration_s": args.duration,
        "tickets_per_day": args.tickets_per_day, "repeat_share": args.repeat_share,
        "hotline_share": args.hotline_share, "sensors": args.sensors,
        "sensor_interval_s": args.sensor_interval, "sensor_speed": args.sensor_speed,
        "alarm_share": args.alarm_share, "crossing_chance": round(plan.crossing_chance, 4),
        "steps": args.steps, "step_seconds": args.step_seconds, "intake": args.intake,
        "screens": figures.pop("_screens"),
        "deadlines_compressed": figures.pop("_compressed"),
    }  # fmt: skip
    figures["verdict"] = verdict(figures)
    return figures


async def measure(
    args: argparse.Namespace,
    stack: E2EStack,
    run_id: str,
    fleet: sensor_fleet.Fleet | None,
    plan: SensorPlan,
) -> dict[str, Any]:
    """Connect the screens and run the profile."""
    redis = (stack.redis_url, stack.prefix) if stack.redis_url and stack.prefix else None
    screens = Screens(stack.gateways, stack.watcher_token, args.screens_per_gateway, redis)
    pg = await asyncpg.connect(stack.db_url)
    try:
        await screens.ready()
        async with resources(stack, screens) as sampler:
            r = Run(args, stack, run_id, pg, screens, Judge(pg, screens, run_id), sampler)
            if args.profile == "chongqing":
                figures = await chongqing(r, fleet, plan)
            else:
                figures = await capacity(r)
        figures["screens_status"] = await screens.status()
    finally:
        screens.stop()
        await pg.close()
    figures["_screens"] = screens.count
    figures["_compressed"] = stack.compressed_deadlines
    return figures


def verdict(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figure and whether it is met."""
    out: dict[str, Any] = {}
    if figures["profile"] == "chongqing":
        p99 = figures["latency_ms"]["p99"]
        t = TARGETS["chongqing_p99_ms"]
        out["p99_event_to_screen_ms"] = {"value": p99, "target": t, "met": p99 <= t}
        lag = figures["timer_lag_ms"]["p99"]
        t = TARGETS["timer_lag_p99_ms"]
        ok = figures["timer_lag_ms"]["fired"] > 0 and lag <= t and not figures["timer_lag_ms"][
            "unfired_past_due"]  # fmt: skip
        out["timer_lag_p99_ms"] = {"value": lag, "target": t, "met": ok}
        out["nothing_missing"] = {
            "value": figures["events_missing"], "target": 0,
            "met": figures["events_missing"] == 0,
        }  # fmt: skip
    else:
        best = figures["best_rate_held"] or 0.0
        t = TARGETS["capacity_per_s"]
        out["capacity_events_per_s"] = {"value": best, "target": t, "met": best >= t}
    return out


# --- output ------------------------------------------------------------------------------------


def _res_rows(res: dict[str, dict[str, float]], w: Callable[[str], None]) -> None:
    w(f"  {'process':12} {'CPU % mean':>10} {'median':>7} {'max':>6} {'RSS MB med':>10} {'max':>6}")
    for name, v in sorted(res.items()):
        w(f"  {name:12} {v.get('cpu_mean', math.nan):10.1f} {v['cpu_median']:7.1f} "
          f"{v['cpu_max']:6.1f} {v.get('rss_median_mb', math.nan):10.1f} "
          f"{v.get('rss_max_mb', math.nan):6.1f}")  # fmt: skip


def _lat(label: str, lat: dict[str, Any]) -> str:
    return (f"{label}: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
            f"({lat['samples']} samples)")  # fmt: skip


def table(figures: dict[str, Any], out: IO[str]) -> None:
    """The figures as plain text."""

    def w(line: str = "") -> None:
        print(line, file=out)

    m, s = figures["machine"], figures["setup"]
    w(f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['system']}, Python {m['python']};"
      f" load average {m['load_before'][0]} before, {m['load_after'][0]} after")  # fmt: skip
    replicas = (
        f" (replicas of ingest, dispatch, gateway: {s['replicas']}; metrics 1)"
        if s["replicas"] else ""
    )  # fmt: skip
    w(f"stack: {s['stack']}, {s['gateways']} gateway(s){replicas}; {s['screens']} screen(s) at "
      "city scope")  # fmt: skip
    if figures["profile"] == "chongqing":
        a, i = figures["asked"], figures["intake"]
        w(f"chongqing ×{s['speed']:g} for {figures['seconds']} s: asked {a['events_per_s']} "
          f"hotline+grid events/s, {a['readings_per_s']} readings/s, {a['alarms_per_s']} "
          f"alarms/s (planned {a['alarms_per_s_planned']})")  # fmt: skip
        w(f"intake: {i['accepted_per_s']} events/s accepted ({i['http_accepted_per_s']} HTTP, "
          f"{i['sensor_alarms_per_s']} sensor alarms), {i['readings_per_s']} readings/s; "
          f"answers {i['answers']}")  # fmt: skip
        w(f"events: {sum(figures['events_stored'].values())} stored, {figures['events_linked']}"
          f" linked, {figures['events_shown']} shown on every screen, "
          f"{figures['events_missing']} missing; tickets touched {figures['tickets_touched']},"
          f" opened {figures['tickets_opened']}")  # fmt: skip
        w(_lat("event → screen", figures["latency_ms"]))
        for source, lat in figures["latency_ms_by_source"].items():
            w(_lat(f"  {source}", lat))
        w(_lat("event → ticket (linked_at)", figures["to_ticket_ms"]))
        if "to_bus_ms" in figures:
            w(_lat("event → bus (tickets.changed)", figures["to_bus_ms"]))
            w(_lat("event → live history", figures["to_history_ms"]))
        w(_lat("HTTP answer", i["answer_ms"]))
        lag = figures["timer_lag_ms"]
        w(_lat("timer lag", lag) + f"; fired {lag['fired']} {lag['by_kind']}, unfired past due "
          f"{lag['unfired_past_due']}")  # fmt: skip
        _res_rows(figures["resources"], w)
    else:
        w(
            f"capacity through {figures['intake_path']} posts; a step holds when ≥ 95 % of its rate"
            f" is accepted, every event reaches every screen and p99 ≤ {figures['p99_limit_ms']} ms"
        )
        w(f"  {'asked/s':>8} {'accepted/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'missing':>7} {'ticket p99':>10} {'answer p99':>10} {'held':>5}  "
          "CPU % mean (busiest)")  # fmt: skip
        for st in figures["steps"]:
            lat = st["latency_ms"]
            busiest = sorted(
                ((v.get("cpu_mean", 0.0), k) for k, v in st["resources"].items()
                 if k != "machine"), reverse=True)[:4]  # fmt: skip
            w(f"  {st['rate_asked']:8,.0f} {st['accepted_per_s']:10,.1f} {lat['p50']:8} "
              f"{lat['p99']:8} {lat['max']:8} {st['events_missing']:7} "
              f"{st['to_ticket_ms']['p99']:10} {st['answer_ms']['p99']:10} "
              f"{'yes' if st['held'] else 'no':>5}  "
              + ", ".join(f"{k} {c:.0f}" for c, k in busiest))  # fmt: skip
        w(f"highest rate held: {figures['best_rate_held']}")
        if figures["steps"]:
            w("resources at the last step:")
            _res_rows(figures["steps"][-1]["resources"], w)
    for name, v in figures["verdict"].items():
        w(f"{name}: {v['value']} (target {v['target']}): {'met' if v['met'] else 'NOT met'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--profile", choices=("chongqing", "capacity"), default="chongqing")
    p.add_argument("--replicas", type=int, choices=(1, 2), default=1)
    p.add_argument("--duration", type=float, default=300.0, help="chongqing: seconds of load")
    p.add_argument("--speed", type=float, default=100.0, help="chongqing: day compression")
    p.add_argument("--tickets-per-day", type=float, default=12_000.0)
    p.add_argument(
        "--repeat-share",
        type=float,
        default=0.15,
        help="hotline/grid reports that repeat a recent one (they merge)",
    )
    p.add_argument("--hotline-share", type=float, default=0.7, help="of hotline+grid events")
    p.add_argument("--sensors", type=int, default=10_000)
    p.add_argument("--sensor-interval", type=float, default=60.0, help="s between readings")
    p.add_argument(
        "--sensor-speed",
        type=float,
        default=1.0,
        help="reading rate compression (alarms follow --speed)",
    )
    p.add_argument("--alarm-share", type=float, default=0.005, help="readings over a threshold")
    p.add_argument("--steps", default=DEFAULT_STEPS, help="capacity: events/s per step")
    p.add_argument("--step-seconds", type=float, default=20.0)
    p.add_argument("--p99-limit-ms", type=float, default=1_000.0)
    p.add_argument(
        "--intake",
        choices=("batch", "single"),
        default="batch",
        help="capacity: POST /api/v1/events/batch per tick, or one POST per event",
    )
    p.add_argument("--screens-per-gateway", type=int, default=1)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    g = p.add_argument_group("a running stack (instead of starting one)")
    g.add_argument("--gateway", action="append", help="a gateway's base URL (repeat per replica)")
    g.add_argument("--username", help="a city-scope user, for the screens")
    g.add_argument("--password")
    g.add_argument("--api-key", help="an integrator's key, to post events and own the sensors")
    g.add_argument("--database-url", help="read access, for event → ticket links and timers")
    g.add_argument("--topic-root", default="cityhub/v1")
    args = p.parse_args(argv)
    if args.gateway and not (args.username and args.password and args.api_key
                             and args.database_url):  # fmt: skip
        p.error("--gateway needs --username, --password, --api-key and --database-url")
    if args.duration <= 0 or args.speed <= 0 or args.step_seconds <= 0:
        p.error("--duration, --speed and --step-seconds must be positive")
    if not 0 <= args.repeat_share < 1 or not 0 <= args.hotline_share <= 1:
        p.error("--repeat-share must be in [0, 1) and --hotline-share in [0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table (and write its JSON); the figures."""
    args = parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(run(args))
    table(figures, sys.stdout)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(figures, ensure_ascii=False, indent=2))
    return figures


if __name__ == "__main__":
    main()
