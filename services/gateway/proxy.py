"""Production-mode routing: the gateway forwards each service's routes to that service's process.

In embedded mode every router is mounted in one app and this module is not used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import APIRouter, Request, Response
from yarl import URL

from shared.errors import HubError, NotFoundError
from shared.runtime import Runtime
from shared.settings import ServiceName
from shared.telemetry.http import ROUTE_LABEL_KEY, UNMATCHED
from shared.telemetry.request_id import HEADER as REQUEST_ID
from shared.telemetry.request_id import current_request_id

# Path prefix → the service that serves it; the longest matching prefix wins.
ROUTES: tuple[tuple[str, ServiceName], ...] = (
    ("/api/v1/events", "ingest"),
    ("/api/v1/grid-reports", "ingest"),
    ("/api/v1/photos", "ingest"),
    ("/api/v1/sensors", "ingest"),
    ("/api/v1/dead-letters", "ingest"),
    ("/files", "ingest"),
    ("/open311", "ingest"),
    ("/api/v1/tickets", "dispatch"),
    ("/api/v1/tasks", "dispatch"),
    ("/api/v1/routing-rules", "dispatch"),
    ("/api/v1/departments", "dispatch"),
    ("/api/v1/held-events", "dispatch"),
    ("/api/v1/kpis", "metrics"),
    ("/api/v1/alerts", "metrics"),
)
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length", "te"}
)
_REQUEST_ID = REQUEST_ID.encode()
# Request headers not passed on: hop-by-hop ones, and those the gateway sets itself.
_NOT_FORWARDED = frozenset(h.encode() for h in HOP_BY_HOP) | {b"accept-encoding", _REQUEST_ID}
# Response headers not passed back: hop-by-hop ones, and the request id, which the gateway's
# middleware adds itself (the same id).
_NOT_RETURNED = frozenset(h.encode() for h in HOP_BY_HOP) | {_REQUEST_ID}
UPSTREAM_TIMEOUT_S = 30.0
UPSTREAM_CONNECTIONS = 100  # to all upstreams together, each kept alive between requests
# Below the services' own keep-alive timeout (uvicorn closes an idle connection after 5 s): a
# connection reused just as the service closes it fails the request (a 503 here).
UPSTREAM_IDLE_S = 3.0
CLIENT_KEY = "proxy_client"

router = APIRouter(include_in_schema=False)


@asynccontextmanager
async def proxy_client(_runtime: Runtime) -> AsyncIterator[aiohttp.ClientSession]:
    """One pooled HTTP client for all forwarded requests.

    aiohttp, not httpx: per forwarded request httpx's connection pool cost the gateway about
    three times the CPU (its pool scans and polls every idle connection on each request; docs/
    benchmarks.md, "End to end"). Bodies pass through as they are: the local hop asks for no
    compression, and a body is never decoded on the way back.
    """
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=UPSTREAM_CONNECTIONS, keepalive_timeout=UPSTREAM_IDLE_S
        ),
        timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
        auto_decompress=False,
        # Only the client's headers: no Content-Type of aiohttp's own on a body without one.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    ) as client:
        yield client


DEADLINES = "/api/v1/categories/{code}/deadlines"  # the gateway serves the catalogue, dispatch this


def upstream_route(path: str) -> tuple[str, ServiceName] | None:
    """The prefix (as a metrics label: `/api/v1/tickets/*`) and the service whose routes
    include `path`."""
    if path.startswith("/api/v1/categories/") and path.endswith("/deadlines"):
        return DEADLINES, "dispatch"
    matches = [(p, s) for p, s in ROUTES if path == p or path.startswith(p + "/")]
    if not matches:
        return None
    prefix, service = max(matches, key=lambda m: len(m[0]))
    return f"{prefix}/*", service


def upstream_for(path: str) -> ServiceName | None:
    """The service whose routes include `path`."""
    found = upstream_route(path)
    return found[1] if found else None


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def forward(path: str, request: Request) -> Response:
    """Forward a request to the service that owns its path."""
    # The raw ASGI scope, not `request.url` and `request.headers`: parsing those on every
    # forwarded request cost more than the forwarding (docs/benchmarks.md, "End to end").
    scope = request.scope
    found = upstream_route(scope["path"])
    # Timed under the upstream's prefix, not the catch-all `/{path:path}` (bounded labels).
    scope[ROUTE_LABEL_KEY] = UNMATCHED if found is None else found[0]
    if found is None:
        raise NotFoundError(f"no route for {scope['path']}")
    service = found[1]
    runtime: Runtime = request.app.state.runtime
    client: aiohttp.ClientSession = runtime.extras[CLIENT_KEY]
    url = runtime.settings.service_url(service) + scope["path"]
    if scope["query_string"]:
        url += "?" + scope["query_string"].decode("latin-1")  # as the client sent it
    headers: list[tuple[str, str]] = []
    host = ""
    forwarded_host = forwarded_proto = False
    for name, value in scope["headers"]:  # lower-case names, repeated headers kept
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"x-forwarded-host":
            forwarded_host = True
        elif name == b"x-forwarded-proto":
            forwarded_proto = True
        if name not in _NOT_FORWARDED:
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    # Tell the service how the client reached us (Open311 discovery names its own URL).
    if not forwarded_host:
        headers.append(("x-forwarded-host", host))
    if not forwarded_proto:
        headers.append(("x-forwarded-proto", scope["scheme"]))
    # Plain bodies on the local hop: the gateway's own middleware compresses for the client.
    headers.append(("accept-encoding", "identity"))
    # The id this gateway answers with (the client's when it was valid): the service logs it
    # and puts it on the bus messages the request causes.
    request_id = current_request_id()
    if request_id is not None:
        headers.append((REQUEST_ID, request_id))
    try:
        async with client.request(
            request.method,
            URL(url, encoded=True),  # the path and query as the client encoded them
            headers=headers,
            data=await request.body() or None,
        ) as upstream:
            body = await upstream.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HubError(f"{service} service unavailable: {exc.__class__.__name__}", 503) from exc
    response = Response(status_code=upstream.status)
    response.raw_headers = [
        *((k.lower(), v) for k, v in upstream.raw_headers if k.lower() not in _NOT_RETURNED),
        (b"content-length", str(len(body)).encode()),
    ]
    response.body = body
    return response
