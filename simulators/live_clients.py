"""Many `/ws/live` clients in one process, as lean as a websocket client can be: the instrument of
`cityhub bench live`, so it must cost less CPU than the servers it measures on the same cores.

Each client is an `asyncio.Protocol` that does the RFC 6455 handshake itself (and checks the
server's `Sec-WebSocket-Accept`), then reads server frames without copying them into messages: a
data frame costs one `find` for its `"at":"` and a dictionary lookup of that timestamp (every
client of the process receives the same frame). Pings are answered with pongs and a close frame is
answered and recorded, as a browser would. Measured on the 2-core development machine against a
bare `websockets` broadcast of ~1 KB frames: 2.3 µs of client CPU per frame, against 5 µs for
`websockets`' sans-I/O protocol driven the same way and 8 µs for its asyncio client with
`recv()` — and the bare server spends ~6 µs per delivery, so a library client would take as much
CPU as the server being measured.

A worker process (`run_worker`) holds a share of the clients and obeys commands from the bench
over a pipe (`Command` names them): connect these request targets, open a window, report. The
bench drives its workers through a `ClientPool`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import multiprocessing as mp
import os
import resource
import struct
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal, cast

import uvloop

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONNECT_CONCURRENCY = 25  # handshakes in flight per worker
CONNECT_ATTEMPTS = 3  # per client and `connect` command; every failed attempt is reported
RETRY_PAUSE_S = 0.5
HELLO_TIMEOUT_S = 30.0  # for every client of a `connect` command to be greeted
AT_CACHE_MAX = 50_000  # distinct `at` strings remembered before the cache is cleared

Command = Literal["connect", "window", "peek", "report", "close", "exit"]

_DATA = b'{"seq":'
_AT = b'"at":"'
_TICKETS = b'"stream":"tickets",'  # what precedes `"at":"` in a tickets frame
_HELLO = b'"type":"hello"'


@dataclass
class Tally:
    """What the clients of this process received for the current window `[start, end)`.

    Ticket frames count when their `at` (the change's time) falls inside the window, whenever they
    arrive, so a slow delivery is counted late rather than lost; other data frames (KPIs, alerts)
    count when they arrive inside the window."""

    start: float = 0.0
    end: float = 0.0
    tickets: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    other: int = 0
    frames: int = 0  # every data frame since the window was opened
    controls: Counter[str] = field(default_factory=Counter)  # resync, pong, …
    closes: Counter[int] = field(default_factory=Counter)  # close codes the servers sent
    errors: Counter[str] = field(default_factory=Counter)
    _at: dict[bytes, float] = field(default_factory=dict)

    def open(self, start: float, end: float) -> None:
        """Start counting a new window (what was counted so far is dropped)."""
        self.start, self.end = start, end
        self.tickets = self.other = self.frames = 0
        self.latencies = array("d")
        self.controls.clear()
        self.closes.clear()
        self.errors.clear()

    def at_of(self, raw: bytes) -> float:
        """The POSIX time of an ISO `at`, cached: every client here receives the same frames."""
        found = self._at.get(raw)
        if found is None:
            if len(self._at) >= AT_CACHE_MAX:
                self._at.clear()
            found = self._at[raw] = datetime.fromisoformat(raw.decode()).timestamp()
        return found

    def text(self, buf: bytes, start: int, end: int, now: float) -> bool:
        """Count one text frame `buf[start:end]`; True when it was the `hello`."""
        if buf.startswith(_DATA, start):
            self.frames += 1
            i = buf.find(_AT, start, end)
            if i < 0:
                self.errors["data frame without at"] += 1
                return False
            if buf.startswith(_TICKETS, i - len(_TICKETS)):
                at = self.at_of(buf[i + 6 : buf.find(b'"', i + 6, end)])
                if self.start <= at < self.end:
                    self.tickets += 1
                    self.latencies.append(now - at)
            elif self.start <= now < self.end:
                self.other += 1
            return False
        if buf.find(_HELLO, start, end) >= 0:
            return True
        kind = buf[start:end].partition(b'"type":"')[2].partition(b'"')[0]
        self.controls[kind.decode(errors="replace") or "?"] += 1
        return False


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask, RFC 6455 §5.3); only short control frames are sent."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


class LeanClient(asyncio.Protocol):
    """One websocket connection that counts what it receives into the process's `Tally`."""

    def __init__(self, host: str, target: str, tally: Tally) -> None:
        self.target, self.host, self.tally = target, host, tally
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16))
        self._buf = b""
        self._open = False
        loop = asyncio.get_running_loop()
        self.greeted: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport = self.transport
        transport.write(
            b"GET " + self.target.encode() + b" HTTP/1.1\r\nHost: " + self.host.encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + self._key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )  # fmt: skip

    def _fail(self, reason: str) -> None:
        self.tally.errors[reason] += 1
        if not self.greeted.done():
            self.greeted.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    def _handshake(self, buf: bytes) -> bytes | None:
        """The bytes after a valid 101 response; None while incomplete or when refused."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._buf = buf
            return None
        head = buf[:end].decode("latin-1").split("\r\n")
        accept = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if not head[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
            self._fail(f"handshake refused: {head[0][:60]}")
            return None
        self._open = True
        return buf[end + 4 :]

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        if not self._open:
            rest = self._handshake(buf)
            if rest is None:
                return
            buf = rest
        now = time.time()  # one receipt time for every frame of this read
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            end = pos + head + length
            if end > size:
                break
            first = buf[pos]
            opcode = first & 0x0F
            if opcode == 1 and first & 0x80:
                if self.tally.text(buf, pos + head, end, now) and not self.greeted.done():
                    self.greeted.set_result(None)
            elif opcode == 9:  # ping: answer, or the server drops us
                self._send(_masked(10, buf[pos + head : end]))
            elif opcode == 8:
                payload = buf[pos + head : end]
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.tally.closes[code] += 1
                self._send(_masked(8, payload[:2]))
                self._fail_greeting(payload[2:].decode(errors="replace"))
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode != 10:
                self.tally.errors[f"unexpected frame opcode {opcode} fin {first >> 7}"] += 1
            pos = end
        self._buf = buf[pos:]

    def _fail_greeting(self, reason: str) -> None:
        if not self.greeted.done():
            self.greeted.set_exception(ConnectionError(f"closed before hello: {reason}"))

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_greeting(str(exc) if exc else "connection lost")
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def is_open(self) -> bool:
        """True while the connection is up and greeted."""
        return self.greeted.done() and self.greeted.exception() is None and not self.lost.done()

    def close(self) -> None:
        """Say goodbye (1000) and close the socket."""
        self._send(_masked(8, (1000).to_bytes(2, "big")))
        if self.transport is not None:
            self.transport.close()


class Worker:
    """The clients of one process, by index in the bench's plan."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.clients: dict[int, LeanClient] = {}

    async def connect(self, host: str, port: int, targets: Sequence[str]) -> dict[str, Any]:
        """Open every client that is not open on its target; wait for each one's `hello`."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        failures: Counter[str] = Counter()
        hostname = f"{host}:{port}"

        async def one(index: int, target: str) -> None:
            known = self.clients.get(index)
            if known is not None and known.is_open and known.target == target:
                return
            if known is not None:
                known.close()
            for attempt in range(CONNECT_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(RETRY_PAUSE_S)
                async with limit:
                    try:
                        _, client = await loop.create_connection(
                            lambda: LeanClient(hostname, target, self.tally), host, port
                        )
                        self.clients[index] = client
                        await asyncio.wait_for(asyncio.shield(client.greeted), HELLO_TIMEOUT_S)
                        return
                    except (OSError, TimeoutError) as exc:
                        failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

        await asyncio.gather(*(one(i, t) for i, t in enumerate(targets)))
        return {"open": sum(c.is_open for c in self.clients.values()), "failures": dict(failures)}

    async def close(self) -> None:
        """Close every client and wait until the sockets are gone."""
        for client in self.clients.values():
            client.close()
        lost = [c.lost for c in self.clients.values()]
        if lost:
            await asyncio.wait(lost, timeout=10)
        self.clients.clear()

    def peek(self) -> dict[str, Any]:
        """Counts so far (cheap: for the bench to see when deliveries stopped)."""
        return {"tickets": self.tally.tickets, "frames": self.tally.frames}

    def report(self) -> dict[str, Any]:
        """Everything counted in the window; latencies as raw doubles (seconds)."""
        t = self.tally
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "tickets": t.tickets,
            "other": t.other,
            "frames": t.frames,
            "latencies": t.latencies.tobytes(),
            "controls": dict(t.controls),
            "closes": dict(t.closes),
            "errors": dict(t.errors),
            "open": sum(c.is_open for c in self.clients.values()),
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }


async def _serve(conn: Connection) -> None:
    worker = Worker()
    loop = asyncio.get_running_loop()
    # The pipe is read in a thread: the loop's own readers would make it non-blocking, and then a
    # large report fails to send.
    while True:
        name, *args = await loop.run_in_executor(None, conn.recv)
        reply: dict[str, Any] = {}
        if name == "connect":
            reply = await worker.connect(*args)
        elif name == "window":
            worker.tally.open(*args)
        elif name == "peek":
            reply = worker.peek()
        elif name == "report":
            reply = worker.report()
        elif name in ("close", "exit"):
            await worker.close()
        await loop.run_in_executor(None, conn.send, reply)
        if name == "exit":
            return


def run_worker(conn: Connection) -> None:
    """A client worker process's main: obey the bench's commands until `exit`."""
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(conn))


class ClientPool:
    """The bench's side: client worker processes, each holding every n-th client."""

    def __init__(self, workers: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for _ in range(workers):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=run_worker, args=(theirs,), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self.procs if p.pid is not None]

    async def call(self, *command: Any, per_worker: Sequence[Any] | None = None) -> list[Any]:
        """Send a command to every worker (each with its own last argument when `per_worker`
        is given) and gather the replies."""
        loop = asyncio.get_running_loop()
        for i, pipe in enumerate(self.pipes):
            pipe.send(command if per_worker is None else (*command, per_worker[i]))
        return list(await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in self.pipes)))

    async def connect(self, port: int, targets: Sequence[str]) -> dict[str, int]:
        """Open a client per request target on 127.0.0.1:`port` (client i on worker i mod n);
        exit unless every one is greeted, after retries; the failed attempts, by reason."""
        n = len(self.pipes)
        shares = [list(targets[i::n]) for i in range(n)]
        replies = await self.call("connect", "127.0.0.1", port, per_worker=shares)
        opened = sum(r["open"] for r in replies)
        failures: Counter[str] = Counter()
        for reply in replies:
            failures.update(reply["failures"])
        if opened < len(targets):
            raise SystemExit(f"only {opened} of {len(targets)} clients connected: {dict(failures)}")
        return dict(failures)

    async def close(self) -> None:
        """Close every connection."""
        await self.call("close")

    def stop(self) -> None:
        """End the workers."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
