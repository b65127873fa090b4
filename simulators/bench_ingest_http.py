"""Benchmark HTTP intake: `POST /api/v1/events` through `cityhub serve ingest` (auth, validation,
geotag, PostgreSQL commit, outbox → Redis) next to a bare FastAPI endpoint validating the same
model, both on uvicorn with httptools, one worker, loaded by wrk with 50 connections.

Run: python -m simulators.bench_ingest_http [--seconds 15] [--repeat 3]
Needs: wrk (apt-get install wrk), PostgreSQL and Redis (defaults: the local ones).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from services.gateway.identity import create_api_key
from shared.db.engine import create_engine, create_sessionmaker
from shared.migrations.runner import upgrade
from shared.runtime import ensure_hierarchy
from shared.settings import Settings

LUA = """
counter = 0
request = function()
  counter = counter + 1
  local lon = 106.50 + math.random() * 0.10
  local lat = 29.50 + math.random() * 0.08
  local body = string.format(
    '{"source":"api","source_ref":"bench-%s-%d","category":"E0101",' ..
    '"description":"bench","location":{"lon":%.6f,"lat":%.6f}}', run_id, counter, lon, lat)
  return wrk.format("POST", "/api/v1/events",
    {["Content-Type"]="application/json", ["X-API-Key"]=key}, body)
end
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(20)


def wrk(port: int, key: str, seconds: int, run_id: str) -> tuple[float, float, float]:
    """Requests/s, p50 ms and p99 ms from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'key = "{key}"\nrun_id = "{run_id}"\n' + LUA)
    out = subprocess.run(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency", "-s", script.name,
         f"http://127.0.0.1:{port}/api/v1/events"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    Path(script.name).unlink()
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, _ms(out, "50%"), _ms(out, "99%")


def _ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def prepare(server_url: str) -> tuple[str, str]:
    """A fresh migrated database with the demo map and an API key."""
    name = f"cityhub_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(Settings(database_url=url))
    await upgrade(engine)
    sessions = create_sessionmaker(engine)
    await ensure_hierarchy(sessions)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, "bench")
    await engine.dispose()
    return url, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    db_url, key = asyncio.run(prepare(args.postgres))
    bare_port, hub_port = free_port(), free_port()
    bare_cmd = [
        *(sys.executable, "-m", "uvicorn", "simulators.bare_app:app", "--port", str(bare_port)),
        *("--http", "httptools", "--no-access-log", "--log-level", "warning"),
    ]
    hub_env = {
        "CITYHUB_DATABASE_URL": db_url,
        "CITYHUB_REDIS_URL": args.redis,
        "CITYHUB_BUS_PREFIX": f"bench-{uuid.uuid4().hex[:6]}:",
        "CITYHUB_JWT_SECRET": uuid.uuid4().hex * 2,
        "CITYHUB_HTTP_PORT": str(hub_port),
        "CITYHUB_ACCESS_LOG": "false",
        "CITYHUB_LOG_LEVEL": "WARNING",
        "CITYHUB_DATA_DIR": tempfile.mkdtemp(),
    }
    bare, hub = [], []
    with (
        server(bare_cmd, {}, bare_port),
        server([sys.executable, "-m", "services", "serve", "ingest"], hub_env, hub_port),
    ):
        wrk(bare_port, key, 3, "warm-bare")  # warm-up, not counted
        wrk(hub_port, key, 3, "warm-hub")
        for i in range(args.repeat):  # alternate, so drift hits both alike
            bare.append(wrk(bare_port, key, args.seconds, f"b{i}"))
            hub.append(wrk(hub_port, key, args.seconds, f"h{i}"))

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    print(f"machine: {os.cpu_count()} cores; wrk -t1 -c50 -d{args.seconds}s, "
          f"median of {args.repeat} alternating runs")  # fmt: skip
    print(f"  bare FastAPI (validate → 201)   {med(bare, 0):9,.0f} req/s  "
          f"p50 {med(bare, 1):6.2f} ms  p99 {med(bare, 2):6.2f} ms")  # fmt: skip
    print(f"  cityhub ingest (→ PostgreSQL)   {med(hub, 0):9,.0f} req/s  "
          f"p50 {med(hub, 1):6.2f} ms  p99 {med(hub, 2):6.2f} ms")  # fmt: skip
    print(f"  ratio {med(hub, 0) / med(bare, 0):.1%} (target ≥ 30 %, p99 ≤ 50 ms)")


if __name__ == "__main__":
    main()
