"""A `/ws/live` client for tests: connect, read JSON messages with timeouts, wait for one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

Message = dict[str, Any]


class LiveClient:
    """One open `/ws/live` connection and everything it received so far."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.received: list[Message] = []

    async def next(self, within: float = 10.0) -> Message:
        """The next message (fails the test when none comes within `within` seconds)."""
        raw = await asyncio.wait_for(self.connection.recv(), within)
        message: Message = json.loads(raw)
        self.received.append(message)
        return message

    async def until(self, match: Callable[[Message], bool], within: float = 10.0) -> Message:
        """Read until a message matches; fail after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            message = await self.next(max(deadline - time.monotonic(), 0.001))
            if match(message):
                return message

    async def closed(self, within: float = 10.0) -> tuple[int | None, str]:
        """Read until the server closes; its close code and reason."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.next(within)
        except websockets.ConnectionClosed as closed:
            frame = closed.rcvd
            return (frame.code, frame.reason) if frame else (None, "")

    def data(self, stream: str) -> list[Message]:
        """The data messages of one stream received so far."""
        return [m for m in self.received if m.get("stream") == stream]


def live_url(base: str, **params: str | int) -> str:
    """The `/ws/live` URL of an HTTP base URL with query parameters."""
    query = urlencode({k: str(v) for k, v in params.items()})
    return base.replace("http", "ws", 1) + "/ws/live" + (f"?{query}" if query else "")


@asynccontextmanager
async def live(base: str, **params: str | int) -> AsyncIterator[LiveClient]:
    """Connect to `/ws/live` at `base` (an http:// URL) with these query parameters."""
    async with websockets.connect(live_url(base, **params), open_timeout=10) as connection:
        yield LiveClient(connection)


def is_ticket(message: Message, **fields: Any) -> bool:
    """True for a `tickets` message whose data has these field values."""
    if message.get("stream") != "tickets":
        return False
    data = message["data"]
    return all(data.get(k) == v for k, v in fields.items())
