"""The screens of `cityhub bench e2e`: `/ws/live` clients at city scope on the `tickets` stream,
in a process of their own, so that the load the bench generates never delays when a frame is
seen to arrive; with them, optionally, followers of the bus's `tickets.changed` stream and of
the live history in Redis, to split the latency into its stages.

Each client notes, per ticket, when it first received a frame showing each higher report count:
the event that made a ticket's k-th report is on the screens at the first frame of that ticket
whose `report_count` is k or more (an escalation later repeats the count; it is not a new
arrival). The bench asks for those moments by (ticket id, k) once it knows from the database
which ticket each event went to.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from urllib.parse import urlencode

import orjson
import uvloop
import websockets
from redis.asyncio import Redis

from shared.bus.redis_streams import DATA_FIELD as BUS_DATA
from shared.messages import TICKETS_CHANGED

HELLO_TIMEOUT_S = 30.0
LIVE_STREAM = "live:stream"  # the live history's key after the prefix (shared.live.redis_log)


class Arrivals:
    """The first arrival of each report count of each ticket, at one observer."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # ticket id → report counts seen, ascending
        self.times: dict[str, list[float]] = {}  # … and when each was first seen
        self.frames = 0
        self.controls: Counter[str] = Counter()
        self.closed: str | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Observe until cancelled."""
        raise NotImplementedError

    def note(self, frame: dict[str, Any], now: float) -> None:
        """Count a data frame."""
        self.frames += 1
        data = frame.get("data") or {}
        ticket, count = data.get("id"), data.get("report_count")
        if frame.get("stream") != "tickets" or ticket is None or count is None:
            return
        seen = self.counts.setdefault(ticket, [])
        if not seen or count > seen[-1]:
            seen.append(count)
            self.times.setdefault(ticket, []).append(now)

    def first(self, ticket: str, count: int) -> float | None:
        """When `ticket` was first seen here with at least `count` reports."""
        seen = self.counts.get(ticket)
        if not seen:
            return None
        i = bisect_left(seen, count)
        return self.times[ticket][i] if i < len(seen) else None


class Stream(Arrivals):
    """A Redis stream of the hub followed from now (XREAD), for when each ticket change reached
    it: the bus's `tickets.changed` (dispatch's outbox relay publishes there) or the live
    history (the metrics relay appends there; the gateways read it)."""

    def __init__(self, redis_url: str, key: str, kind: str) -> None:
        super().__init__()
        self.redis_url, self.key, self.kind = redis_url, key, kind

    def frame(self, fields: dict[bytes, bytes]) -> dict[str, Any] | None:
        """The entry as a live frame (the bus's messages carry the ticket as `ticket`)."""
        if self.kind == "history":
            return orjson.loads(fields[b"f"]) if fields.get(b"k") == b"tickets" else None
        message = orjson.loads(fields[BUS_DATA])
        ticket = message.get("ticket")
        return {"stream": "tickets", "data": ticket} if isinstance(ticket, dict) else None

    async def run(self) -> None:
        """Follow until cancelled."""
        redis = Redis.from_url(self.redis_url)
        last: bytes | str = "$"
        self.ready.set()
        try:
            while True:
                reply: Any = await redis.xread({self.key: last}, count=1_000, block=1_000)
                now = time.time()
                for _key, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        frame = self.frame(fields)
                        if frame is not None:
                            self.note(frame, now)
        finally:
            await redis.aclose()


class Screen(Arrivals):
    """One `/ws/live` connection."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    async def run(self) -> None:
        """Receive until cancelled (a lost connection is recorded, not retried: the bench
        reports it)."""
        try:
            async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
                async for raw in ws:
                    now = time.time()
                    frame = orjson.loads(raw)
                    if "stream" not in frame:  # hello, resync, …
                        self.controls[str(frame.get("type"))] += 1
                        self.ready.set()
                    else:
                        self.note(frame, now)
        except websockets.ConnectionClosed as exc:
            self.closed = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            self.closed = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()


async def _serve(conn: Connection, urls: Sequence[str], redis: tuple[str, str] | None) -> None:
    screens = [Screen(u) for u in urls]
    observers: list[Arrivals] = list(screens)
    if redis is not None:
        url, prefix = redis
        observers.append(Stream(url, prefix + TICKETS_CHANGED, "bus"))
        observers.append(Stream(url, prefix + LIVE_STREAM, "history"))
    tasks = [asyncio.create_task(o.run()) for o in observers]
    await asyncio.wait_for(asyncio.gather(*(o.ready.wait() for o in observers)), HELLO_TIMEOUT_S)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.send, [s.closed for s in screens])
    try:
        while True:
            name, *args = await loop.run_in_executor(None, conn.recv)
            reply: Any = None
            if name == "lookup":
                reply = [[o.first(t, k) for t, k in args[0]] for o in observers]
            elif name == "status":
                reply = [
                    {"frames": s.frames, "controls": dict(s.controls), "closed": s.closed}
                    for s in screens
                ]
            await loop.run_in_executor(None, conn.send, reply)
            if name == "exit":
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _main(conn: Connection, urls: Sequence[str], redis: tuple[str, str] | None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(conn, urls, redis))


class Screens:
    """The bench's side of the screens process."""

    def __init__(
        self,
        gateways: Sequence[str],
        token: str,
        per_gateway: int = 1,
        redis: tuple[str, str] | None = None,
    ) -> None:
        """Screens on every gateway; with `redis` (URL, the hub's key prefix), the bus's ticket
        changes and the live history are followed too."""
        query = urlencode({"token": token, "scope": "city", "streams": "tickets"})
        urls = [
            g.replace("http://", "ws://").replace("https://", "wss://") + "/ws/live?" + query
            for g in gateways
            for _ in range(per_gateway)
        ]
        ctx = mp.get_context("spawn")
        self.pipe, theirs = ctx.Pipe()
        self.proc: BaseProcess = ctx.Process(target=_main, args=(theirs, urls, redis), daemon=True)
        self.proc.start()
        theirs.close()
        self.count = len(urls)
        self.stages = redis is not None

    @property
    def pid(self) -> int | None:
        """The screens process's id."""
        return self.proc.pid

    async def _call(self, *command: Any) -> Any:
        loop = asyncio.get_running_loop()
        self.pipe.send(command)
        return await loop.run_in_executor(None, self.pipe.recv)

    async def ready(self) -> None:
        """Wait until every screen is greeted; exit when one could not connect."""
        loop = asyncio.get_running_loop()
        failures = await loop.run_in_executor(None, self.pipe.recv)
        if any(failures):
            raise SystemExit(f"screens could not connect: {failures}")

    async def lookup(
        self, wanted: Sequence[tuple[str, int]]
    ) -> tuple[list[list[float | None]], dict[str, list[float | None]]]:
        """Per screen, when it first showed each (ticket, report count), None: not yet; and
        when each reached the bus and the live history (when followed)."""
        result: list[list[float | None]] = await self._call("lookup", list(wanted))
        if self.stages:
            return result[:-2], {"bus": result[-2], "history": result[-1]}
        return result, {}

    async def status(self) -> list[dict[str, Any]]:
        """Per screen: frames received, control messages, whether it was closed."""
        result: list[dict[str, Any]] = await self._call("status")
        return result

    def stop(self) -> None:
        """End the process."""
        with contextlib.suppress(OSError, EOFError):
            self.pipe.send(("exit",))
            if self.pipe.poll(10):
                self.pipe.recv()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
