"""The baseline of `cityhub bench live`: a bare `websockets` server that follows the same live
history (the Redis stream the gateways read) and broadcasts each frame, as stored, to the
connections whose scope covers it — the same scope rule as the gateway, nothing else: no auth, no
replay, no per-client queue or slow-client handling, no re-checks. `websockets.broadcast` writes
each frame to every target's transport without awaiting anyone.

Run: python -m simulators.bare_ws --port 8765 [--redis redis://127.0.0.1:6379/0] [--prefix P]
Clients connect to `ws://host:port/?scope=city|district:<code>|street:<code>[&streams=a,b]`
(all streams by default) and are greeted with `{"type":"hello"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvloop
from redis.asyncio import Redis
from websockets.asyncio.server import ServerConnection, broadcast, serve

STREAMS = ("tickets", "kpis", "alerts")
FOLLOW_COUNT = 1_000  # entries per XREAD, as the gateway's follower reads
FOLLOW_BLOCK_MS = 1_000
PING_S = 20.0  # the gateway's protocol ping interval and timeout (services/cli.py WS_PING_S)


class Index:
    """Connections by scope: the city, each district, each street."""

    def __init__(self) -> None:
        self.city: set[ServerConnection] = set()
        self.districts: dict[str, set[ServerConnection]] = {}
        self.streets: dict[str, set[ServerConnection]] = {}

    def bucket(self, scope: str) -> set[ServerConnection]:
        """The set a connection of `scope` belongs in."""
        level, _, code = scope.partition(":")
        if level == "district":
            return self.districts.setdefault(code, set())
        if level == "street":
            return self.streets.setdefault(code, set())
        return self.city

    def targets(self, district: str, street: str) -> Iterator[ServerConnection]:
        """Every connection whose scope covers a message of this district and street."""
        return chain(
            self.city,
            self.districts.get(district, ()) if district else (),
            self.streets.get(street, ()) if street else (),
        )


async def follow(redis: Redis, key: str, indexes: dict[bytes, Index]) -> None:
    """Broadcast each new entry of the live stream to its targets, forever."""
    last = "$"
    while True:
        reply: Any = await redis.xread({key: last}, count=FOLLOW_COUNT, block=FOLLOW_BLOCK_MS)
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                index = indexes.get(fields[b"k"])
                if index is not None:
                    targets = index.targets(fields[b"d"].decode(), fields[b"s"].decode())
                    broadcast(targets, fields[b"f"].decode())
                last = entry_id


async def run(port: int, redis_url: str, prefix: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    indexes = {stream.encode(): Index() for stream in STREAMS}

    async def handler(connection: ServerConnection) -> None:
        query = parse_qs(urlsplit(connection.request.path if connection.request else "").query)
        scope = query.get("scope", ["city"])[0]
        streams = [s for s in query.get("streams", [""])[0].split(",") if s] or STREAMS
        buckets = [indexes[s.encode()].bucket(scope) for s in streams if s in STREAMS]
        for bucket in buckets:
            bucket.add(connection)
        try:
            await connection.send('{"type":"hello"}')
            await connection.wait_closed()
        finally:
            for bucket in buckets:
                bucket.discard(connection)

    redis = Redis.from_url(redis_url, decode_responses=False)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler, "127.0.0.1", port, compression=None, ping_interval=PING_S, ping_timeout=PING_S
    ):
        task = asyncio.create_task(follow(redis, f"{prefix}live:stream", indexes))
        await stop
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await redis.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="cityhub:", help="the hub's bus prefix")
    args = parser.parse_args(argv)
    uvloop.run(run(args.port, args.redis, args.prefix))


if __name__ == "__main__":
    main()
