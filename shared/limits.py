"""Request body size limits, enforced before a handler reads the body (413, never a 500)."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_BODY_LIMIT = 1 * 1024 * 1024  # bytes: 1 MiB covers any JSON event or batch we accept
# Bytes past the limit still read (and thrown away) before answering 413, so that a client
# still sending its body reads the answer instead of a reset connection; past this it is cut.
DRAIN_LIMIT = 16 * 1024 * 1024


class BodyTooLargeError(HTTPException):
    """Raised from `receive` when a streamed (chunked) body grows past the limit.

    An `HTTPException`, so that frameworks passing those on while they parse a body (FastAPI
    answers any other error there with 400) render it as 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit), headers={"Connection": "close"})


def too_large_message(limit: int) -> str:
    """The `detail` of a 413."""
    return f"request body larger than {limit} bytes"


class BodyLimitMiddleware:
    """Refuse bodies over a limit: by Content-Length up front, or while streaming."""

    def __init__(
        self,
        app: ASGIApp,
        default_limit: int = DEFAULT_BODY_LIMIT,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = limits or {}  # path prefix → limit in bytes

    def limit_for(self, path: str) -> int:
        """The limit of the longest matching prefix, else the default."""
        matches = [p for p in self.limits if path.startswith(p)]
        return self.limits[max(matches, key=len)] if matches else self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    await _drain(receive, message, limit + DRAIN_LIMIT - seen)
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await _too_large(send, limit)


async def _drain(receive: Receive, message: Message, budget: int) -> None:
    """Read the rest of a request body, up to `budget` bytes, and throw it away."""
    while message.get("more_body", False) and budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        budget -= len(message.get("body", b""))


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": too_large_message(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
