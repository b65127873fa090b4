"""Benchmark dispatch on PostgreSQL + Redis: the timer scheduler and events → tickets.

Run: python -m simulators.bench_dispatch [--repeat 3] [--open 10000 1000000] [--rate 1000]
     [--seconds 40] [--events 20000] [--only timers|events]

Timers: in a fresh database, `--open` timers are bulk-loaded (INSERT … SELECT generate_series)
due days ahead, then `--rate` timers per second are laid out over the next `--seconds` seconds,
each on its own open ticket (half warnings, half breaches that escalate, supervise and schedule a
follow-up). The real `Scheduler.run()` loop fires them, with an outbox relay publishing to Redis
in the same process, as in a dispatch replica. Reported: the idle tick (nothing due), busy ticks
(duration, timers per tick), and the lag fired_at − due_at (p50/p99/max) — for each open count,
to show the tick cost does not grow with the timers open.

Events: `cityhub serve dispatch` runs as its own process; `--events` `events.ingested` messages
(located in the demo map, about a fifth of them repeat reports within 30 m that merge) are
published to its Redis stream, and the time until every event is linked to a ticket gives events
→ tickets per second. The process's RSS (current and peak) is read from /proc afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import redis.asyncio

from services.dispatch.scheduler import Scheduler
from services.dispatch.work_calendar import load_calendar
from shared.areas import Geotagger
from shared.bus.redis_streams import RedisBus
from shared.catalogue import Catalogue, default_categories
from shared.db.engine import create_engine, create_sessionmaker
from shared.messages import EVENTS_INGESTED, EventIngestedV1, GeotagInfo, encode
from shared.migrations.runner import upgrade
from shared.outbox import OutboxRelay
from shared.runtime import ensure_hierarchy
from shared.settings import Settings

LEAD_S = 5.0  # seconds between loading and the first due timer (the idle ticks run meanwhile)
IDLE_TICKS = 50  # ticks timed with nothing due
DRAIN_GRACE_S = 60.0  # seconds allowed after the last due time before a run counts as stuck
PUBLISH_CHUNK = 2_000  # messages per pipelined XADD round trip
REPEAT_SHARE = 0.2  # share of events that repeat an earlier report nearby (merge lookups hit)

OPEN_TICKETS_SQL = """
INSERT INTO tickets (id, category, priority, status, owner_tier, owner_code, description,
    street_code, district_code, city_code, geotag_method, report_count, created_at, updated_at,
    source, overdue, rework_count, accept_due_at, handle_due_at)
SELECT gen_random_uuid(), 'E0101', 'normal', 'dispatched', 'street', '500103001', n::text,
    '500103001', '500103', '500000', 'point', 1, now(), now(), $2, false, 0,
    now() + interval '3 days', now() + interval '9 days'
FROM generate_series(0, $1 - 1) AS n
"""
OPEN_TIMERS_SQL = """
INSERT INTO timers (ticket_id, kind, due_at)
SELECT t.id, k.kind, now() + interval '1 day' + random() * interval '30 days'
FROM tickets t CROSS JOIN (VALUES ('accept_warn'), ('accept_due'), ('handle_warn'),
    ('handle_due')) AS k(kind)
WHERE t.source = 'bench-open'
"""
DUE_TIMERS_SQL = """
INSERT INTO timers (ticket_id, kind, due_at)
SELECT id, CASE WHEN description::int % 2 = 0 THEN 'handle_warn' ELSE 'handle_due' END,
    $1::timestamptz + (description::int / $2::float8) * interval '1 second'
FROM tickets WHERE source = 'bench-due'
"""
LAG_SQL = """
SELECT count(*) AS fired,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - due_at)) AS p50,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - due_at)) AS p99,
    max(extract(epoch FROM fired_at - due_at)) AS worst
FROM timers JOIN tickets ON tickets.id = timers.ticket_id
WHERE tickets.source = 'bench-due' AND timers.due_at <= $1 AND timers.fired_at IS NOT NULL
"""
PENDING_SQL = "SELECT count(*) FROM timers WHERE fired_at IS NULL AND due_at <= $1"
# The claim's inner select with nothing due (as in scheduler_store.claim_due): pages it touches.
EXPLAIN_CLAIM_SQL = """
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT timers.id FROM timers JOIN tickets ON tickets.id = timers.ticket_id
WHERE timers.fired_at IS NULL AND timers.due_at <= now()
ORDER BY timers.due_at LIMIT 500 FOR UPDATE OF timers, tickets SKIP LOCKED
"""


@dataclass
class TimedScheduler(Scheduler):
    """The real scheduler, timing each tick."""

    ticks: list[tuple[float, int]] = field(default_factory=list)

    async def fire_due(self) -> int:
        """One tick, timed."""
        start = time.perf_counter()
        fired = await super().fire_due()
        self.ticks.append((time.perf_counter() - start, fired))
        return fired


@dataclass
class TimerRun:
    """One timer run's figures."""

    open_timers: int
    claim_pages: int  # buffers the idle claim touches (flat: it reads only what is due)
    idle_tick_ms: float
    busy_tick_ms: float
    timers_per_tick: float
    ms_per_timer: float
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    fired: int


async def new_database(server_url: str) -> tuple[str, str]:
    """A fresh, migrated database; returns (its URL, its name)."""
    name = f"cityhub_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(Settings(database_url=url))
    await upgrade(engine)
    await ensure_hierarchy(create_sessionmaker(engine))
    await engine.dispose()
    return url, name


async def drop_database(server_url: str, name: str) -> None:
    """Remove a benchmark database."""
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def load_timers(url: str, open_timers: int, due: int, rate: float) -> datetime:
    """Bulk-load the open timers and lay out the due ones; returns the first due time."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(OPEN_TICKETS_SQL, open_timers // 4, "bench-open")
        await conn.execute(OPEN_TIMERS_SQL)
        await conn.execute(OPEN_TICKETS_SQL, due, "bench-due")
        await conn.execute("UPDATE tickets SET handle_due_at = now() + interval '1 day'")
        await conn.execute("VACUUM ANALYZE")
        first_due = datetime.now(UTC) + timedelta(seconds=LEAD_S)
        await conn.execute(DUE_TIMERS_SQL, first_due, rate)
        await conn.execute("ANALYZE timers")
    finally:
        await conn.close()
    return first_due


async def idle_claim_pages(url: str) -> int:
    """Shared buffers (hit + read) of the claim's select when nothing is due."""
    conn = await asyncpg.connect(url)
    try:
        plan = json.loads(await conn.fetchval(EXPLAIN_CLAIM_SQL))[0]["Plan"]
    finally:
        await conn.close()
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


async def run_timers(args: argparse.Namespace, open_timers: int) -> TimerRun:
    """One timer run in a fresh database."""
    url, name = await new_database(args.postgres)
    due = int(args.rate * args.seconds)
    try:
        first_due = await load_timers(url, open_timers, due, args.rate)
        claim_pages = await idle_claim_pages(url)
        last_due = first_due + timedelta(seconds=(due - 1) / args.rate)
        engine = create_engine(Settings(database_url=url))
        sessions = create_sessionmaker(engine)
        prefix = f"bench-{uuid.uuid4().hex[:6]}:"
        bus = RedisBus.from_url(args.redis, prefix)
        relay = OutboxRelay(sessions, bus, row_locks=True)
        catalogue = Catalogue(default_categories())
        scheduler = TimedScheduler(
            sessions=sessions, catalogue=lambda: catalogue, calendar=load_calendar(None),
            city="500000", row_locks=True, on_commit=relay.wake,
        )  # fmt: skip
        for _ in range(IDLE_TICKS):
            await scheduler.fire_due()
        idle = [d for d, n in scheduler.ticks if n == 0]
        scheduler.ticks.clear()
        tasks = [asyncio.create_task(scheduler.run()), asyncio.create_task(relay.run())]
        conn = await asyncpg.connect(url)
        try:
            deadline = time.monotonic() + LEAD_S + args.seconds + DRAIN_GRACE_S
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if datetime.now(UTC) > last_due and not await conn.fetchval(PENDING_SQL, last_due):
                    break
            lag = await conn.fetchrow(LAG_SQL, last_due)
        finally:
            await conn.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bus.close()
            await clean_redis(args.redis, prefix)
            await engine.dispose()
    finally:
        await drop_database(args.postgres, name)
    busy = [(d, n) for d, n in scheduler.ticks if n > 0]
    fired = sum(n for _, n in busy)
    return TimerRun(
        open_timers=open_timers,
        claim_pages=claim_pages,
        idle_tick_ms=statistics.median(idle) * 1000,
        busy_tick_ms=statistics.median(d for d, _ in busy) * 1000,
        timers_per_tick=fired / len(busy),
        ms_per_timer=sum(d for d, _ in busy) * 1000 / fired,
        lag_p50_s=float(lag["p50"]),
        lag_p99_s=float(lag["p99"]),
        lag_max_s=float(lag["worst"]),
        fired=int(lag["fired"]),
    )


def make_events(geotagger: Geotagger, catalogue: Catalogue, n: int, seed: int) -> list[bytes]:
    """`n` encoded events.ingested messages around the demo map's streets."""
    rng = random.Random(seed)
    streets = geotagger.hierarchy.streets
    codes = [c.code for c in catalogue if c.group != "sensor"]
    lons, lats = np.empty(n), np.empty(n)
    cats: list[str] = []
    for i in range(n):
        if i > 10 and rng.random() < REPEAT_SHARE:  # a repeat report near an earlier one
            j = rng.randrange(i)
            lons[i] = lons[j] + rng.uniform(-0.0002, 0.0002)
            lats[i] = lats[j] + rng.uniform(-0.0002, 0.0002)
            cats.append(cats[j])
            continue
        point = rng.choice(streets).geometry.representative_point()
        lons[i] = point.x + rng.uniform(-0.003, 0.003)
        lats[i] = point.y + rng.uniform(-0.003, 0.003)
        cats.append(rng.choice(codes))
    index, method = geotagger.locate_many(lons, lats)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        tag = geotagger.to_geotag(int(index[i]), int(method[i]))
        msg = EventIngestedV1(
            event_id=uuid.uuid4(), source="hotline", source_ref=f"bench-{seed}-{i}",
            category=cats[i], description="bench", lon=float(lons[i]), lat=float(lats[i]),
            geotag=GeotagInfo(**tag.codes(), method=tag.method), reported_at=now,
        )  # fmt: skip
        out.append(encode(msg))
    return out


@contextmanager
def dispatch_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`cityhub serve dispatch`, up and healthy."""
    cmd = [sys.executable, "-m", "services", "serve", "dispatch"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit("cityhub serve dispatch exited on start")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("cityhub serve dispatch did not become healthy in 60 s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MB."""
    fields = dict(
        line.split(":", 1)
        for line in open(f"/proc/{pid}/status", encoding="ascii")  # noqa: SIM115
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


async def run_events(args: argparse.Namespace, seed: int) -> tuple[float, int, float, float]:
    """events/s, tickets opened, RSS and peak RSS (MB) of one events run."""
    url, name = await new_database(args.postgres)
    prefix = f"bench-{uuid.uuid4().hex[:6]}:"
    port = _free_port()
    env = {
        "CITYHUB_DATABASE_URL": url, "CITYHUB_REDIS_URL": args.redis, "CITYHUB_BUS_PREFIX": prefix,
        "CITYHUB_JWT_SECRET": uuid.uuid4().hex * 2, "CITYHUB_HTTP_PORT": str(port),
        "CITYHUB_ACCESS_LOG": "false", "CITYHUB_LOG_LEVEL": "WARNING",
        "CITYHUB_DATA_DIR": tempfile.mkdtemp(),
    }  # fmt: skip
    engine = create_engine(Settings(database_url=url))
    hierarchy = await ensure_hierarchy(create_sessionmaker(engine))
    await engine.dispose()
    geotagger = await asyncio.to_thread(Geotagger, hierarchy)
    payloads = make_events(geotagger, Catalogue(default_categories()), args.events, seed)
    bus = RedisBus.from_url(args.redis, prefix)
    conn = await asyncpg.connect(url)
    try:
        with dispatch_process(env, port) as proc:
            start = time.perf_counter()
            for i in range(0, len(payloads), PUBLISH_CHUNK):
                chunk = payloads[i : i + PUBLISH_CHUNK]
                await bus.publish_many([(EVENTS_INGESTED, p) for p in chunk])
            while await conn.fetchval("SELECT count(*) FROM ticket_events") < args.events:
                if time.perf_counter() - start > 600:
                    raise SystemExit("events were not all ticketed within 10 minutes")
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            tickets = int(await conn.fetchval("SELECT count(*) FROM tickets"))
            rss, peak = rss_mb(proc.pid)
    finally:
        await conn.close()
        await bus.close()
        await clean_redis(args.redis, prefix)
        await drop_database(args.postgres, name)
    return args.events / elapsed, tickets, rss, peak


async def clean_redis(url: str, prefix: str) -> None:
    """Delete a run's streams."""
    client = redis.asyncio.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _med(values: list[float]) -> float:
    return statistics.median(values)


def report_timers(runs: dict[int, list[TimerRun]], args: argparse.Namespace) -> None:
    """Print the timer figures (medians over runs)."""
    print(f"timers: {args.rate:,.0f} due/s for {args.seconds} s (half warnings, half breaches), "
          f"median of {args.repeat}")  # fmt: skip
    print("  open timers | claim pages | idle tick | busy tick | timers/tick | ms/timer | lag p50 |"
          " lag p99 | lag max | fired")  # fmt: skip
    for open_timers, rs in runs.items():

        def m(attr: str, rs: list[TimerRun] = rs) -> float:
            return _med([getattr(r, attr) for r in rs])

        print(
            f"  {open_timers:>11,} | {m('claim_pages'):11.0f} | {m('idle_tick_ms'):6.2f} ms |"
            f" {m('busy_tick_ms'):6.1f} ms | {m('timers_per_tick'):11.0f} |"
            f" {m('ms_per_timer'):8.3f} | {m('lag_p50_s'):5.3f} s |"
            f" {m('lag_p99_s'):5.3f} s | {m('lag_max_s'):5.2f} s | {min(r.fired for r in rs):,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--open", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--rate", type=float, default=1000.0, help="timers falling due per second")
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--only", choices=["timers", "events"])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, PostgreSQL and Redis on 127.0.0.1, Python "
          f"{sys.version.split()[0]}")  # fmt: skip
    if args.only != "events":
        runs: dict[int, list[TimerRun]] = {n: [] for n in args.open}
        for i in range(args.repeat):  # alternate open counts, so drift hits both alike
            for n in args.open:
                run = asyncio.run(run_timers(args, n))
                print(f"  run {i + 1}: {run}", flush=True)
                runs[n].append(run)
        report_timers(runs, args)
    if args.only != "timers":
        results = []
        for i in range(args.repeat):
            result = asyncio.run(run_events(args, seed=i))
            print(f"  run {i + 1}: {result[0]:,.0f} events/s, {result[1]:,} tickets, "
                  f"RSS {result[2]:.0f} MB (peak {result[3]:.0f} MB)", flush=True)  # fmt: skip
            results.append(result)
        print(f"events → tickets: {args.events:,} events through `cityhub serve dispatch`, "
              f"median of {args.repeat}")  # fmt: skip
        rate, tickets = _med([r[0] for r in results]), _med([float(r[1]) for r in results])
        rss, peak = _med([r[2] for r in results]), _med([r[3] for r in results])
        print(f"  {rate:,.0f} events/s; tickets opened {tickets:,.0f} (the rest merged); "
              f"dispatch RSS {rss:.0f} MB, peak {peak:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
