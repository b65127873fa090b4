"""CPU per event of `POST /api/v1/events/batch` on `cityhub serve ingest` (PostgreSQL + Redis).

Starts one ingest process on a fresh migrated database (as `bench_ingest_http` does), sends
`--events` events in batches of `--batch` with `--in-flight` requests at once, and reports the
ingest process's CPU (user + system) and the database backends' CPU per event, with the rate and
the request latencies. The ingest process runs the code of the current directory, so the same
script measures another copy of the tree when run from there.

Run: python -m simulators.bench_ingest_batch [--events 20000] [--batch 100] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx

from simulators.bench_ingest_http import free_port, prepare
from simulators.proc_stats import cpu_seconds


def event(run: str, n: int) -> dict[str, Any]:
    """A hotline-like event with its own reference, spread over the demo map."""
    return {
        "source": "api",
        "source_ref": f"{run}-{n}",
        "category": "E0101",
        "description": "bench",
        "location": {"lon": 106.50 + (n % 1000) / 10_000, "lat": 29.50 + (n % 800) / 10_000},
    }


async def backends_cpu(db_url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to the bench's database."""
    conn = await asyncpg.connect(db_url)
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return sum(cpu_seconds(r["pid"]) or 0.0 for r in pids)


async def drive(
    url: str, key: str, run: str, events: int, batch: int, in_flight: int
) -> list[float]:
    """Send the events; the latency of each request in ms. Every item must be created."""
    latencies: list[float] = []
    starts = list(range(0, events, batch))
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:

        async def sender() -> None:
            while starts:
                first = starts.pop(0)
                items = [event(run, n) for n in range(first, min(first + batch, events))]
                began = time.perf_counter()
                reply = await client.post("/api/v1/events/batch", json={"events": items})
                latencies.append((time.perf_counter() - began) * 1000)
                if reply.status_code != 200 or reply.json()["created"] != len(items):
                    raise SystemExit(f"unexpected answer: {reply.status_code} {reply.text[:300]}")

        await asyncio.gather(*(sender() for _ in range(in_flight)))
    return latencies


@contextmanager
def ingest(env: dict[str, str], port: int) -> Iterator[int]:
    """`cityhub serve ingest` until the block ends; yields its pid once it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "services", "serve", "ingest"], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("ingest did not start")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


async def measure(args: argparse.Namespace, url: str, key: str, db_url: str, pid: int) -> str:
    """Warm up, then send the events and say what they cost."""
    await drive(url, key, "warm", 2_000, args.batch, args.in_flight)
    load = os.getloadavg()
    ingest0, db0, began = cpu_seconds(pid) or 0.0, await backends_cpu(db_url), time.perf_counter()
    latencies = await drive(url, key, "run", args.events, args.batch, args.in_flight)
    wall = time.perf_counter() - began
    ingest_s = (cpu_seconds(pid) or 0.0) - ingest0
    db_s = await backends_cpu(db_url) - db0
    q = statistics.quantiles(latencies, n=100)
    return (
        f"{args.events:,} events in batches of {args.batch}, {args.in_flight} in flight; load "
        f"average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after\n"
        f"  {args.events / wall:,.0f} events/s; ingest CPU {ingest_s / args.events * 1000:.3f} ms"
        f" per event ({ingest_s / wall:.0%} of a core); PostgreSQL backends"
        f" {db_s / args.events * 1000:.3f} ms per event; request p50 {q[49]:.0f} ms,"
        f" p99 {q[98]:.0f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--in-flight", type=int, default=4)
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = p.parse_args()
    db_url, key = asyncio.run(prepare(args.postgres))
    port = free_port()
    env = {
        **os.environ,
        "CITYHUB_DATABASE_URL": db_url,
        "CITYHUB_REDIS_URL": args.redis,
        "CITYHUB_BUS_PREFIX": f"bench-{uuid.uuid4().hex[:6]}:",
        "CITYHUB_JWT_SECRET": uuid.uuid4().hex * 2,
        "CITYHUB_HTTP_PORT": str(port),
        "CITYHUB_ACCESS_LOG": "false",
        "CITYHUB_LOG_LEVEL": "WARNING",
        "CITYHUB_DATA_DIR": tempfile.mkdtemp(),
    }
    with ingest(env, port) as pid:
        print(asyncio.run(measure(args, f"http://127.0.0.1:{port}", key, db_url, pid)))


if __name__ == "__main__":
    main()
