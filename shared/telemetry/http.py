"""The HTTP middleware every service runs outermost: it makes the request id current (and
returns it), and times each request into `cityhub_http_request_duration_seconds` by route
template. Pure ASGI and a handful of dict operations per request: intake answers thousands a
second (the overhead measured is in docs/decisions/0018-observability.md)."""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.telemetry.metrics import HTTP_REQUEST_SECONDS
from shared.telemetry.request_id import HEADER as REQUEST_ID
from shared.telemetry.request_id import (
    bind_request_id,
    new_request_id,
    unbind_request_id,
    valid_request_id,
)

HEADER = REQUEST_ID.encode()  # ASGI header names are lower-case bytes
METRICS_PATH = "/metrics"  # not timed: a scrape would count itself
UNMATCHED = "<unmatched>"  # the one label of every path no route matched (404s, scans)
# Set by a handler that knows a better label than its route (the gateway's catch-all proxy).
ROUTE_LABEL_KEY = "cityhub.route_label"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# (route, method, status) → the histogram's child: skips prometheus-client's lock and label
# checks on every request; bounded like the labels themselves.
_children: dict[tuple[str, str, int], Any] = {}


def route_label(scope: Scope) -> str:
    """The route template that served a request (`/api/v1/tickets/{ticket_id}`), never the
    raw path; a mount's prefix followed by `/*`; `<unmatched>` when no route matched."""
    label = scope.get(ROUTE_LABEL_KEY)
    if label is not None:
        return str(label)
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return UNMATCHED
    if isinstance(route, Mount):
        return f"{path}/*"  # static files: their paths are not templates
    return str(path)


def observe(route: str, method: str, status: int, seconds: float) -> None:
    """Count one request and its duration."""
    key = (route, method, status)
    child = _children.get(key)
    if child is None:
        child = _children[key] = HTTP_REQUEST_SECONDS.labels(route, method, str(status))
    child.observe(seconds)


class TelemetryMiddleware:
    """Request id in (validated `X-Request-ID`, or a new one) and out; a timed observation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == HEADER:
                request_id = valid_request_id(value)
                break
        if request_id is None:
            request_id = new_request_id()
        echoed = (HEADER, request_id.encode())
        status = 500  # if the app raises, the server answers 500 without telling us
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind_request_id(token)
            method = scope["method"]
            observe(
                route_label(scope),
                method if method in METHODS else "other",
                status,
                time.perf_counter() - started,
            )
