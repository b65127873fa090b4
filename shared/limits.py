"""Request body size limits, enforced before a handler reads the body (413, never a 500)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_BODY_LIMIT = 1 * 1024 * 1024  # bytes: 1 MiB covers any JSON event or batch we accept


class BodyTooLargeError(Exception):
    """Raised from `receive` when the body grows past the limit."""


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
                    raise BodyTooLargeError
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


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
