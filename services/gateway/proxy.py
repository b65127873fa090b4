"""Production-mode routing: the gateway forwards each service's routes to that service's process.

In embedded mode every router is mounted in one app and this module is not used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, Request, Response

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
UPSTREAM_TIMEOUT_S = 30.0
CLIENT_KEY = "proxy_client"

router = APIRouter(include_in_schema=False)


@asynccontextmanager
async def proxy_client(_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """One pooled HTTP client for all forwarded requests."""
    async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT_S) as client:
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
    found = upstream_route(request.url.path)
    # Timed under the upstream's prefix, not the catch-all `/{path:path}` (bounded labels).
    request.scope[ROUTE_LABEL_KEY] = UNMATCHED if found is None else found[0]
    if found is None:
        raise NotFoundError(f"no route for {request.url.path}")
    service = found[1]
    runtime: Runtime = request.app.state.runtime
    client: httpx.AsyncClient = runtime.extras[CLIENT_KEY]
    url = runtime.settings.service_url(service) + request.url.path
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    # Tell the service how the client reached us (Open311 discovery names its own URL).
    headers.setdefault("x-forwarded-host", request.headers.get("host", ""))
    headers.setdefault("x-forwarded-proto", request.url.scheme)
    # Plain bodies on the local hop: the gateway's own middleware compresses for the client.
    headers["accept-encoding"] = "identity"
    # The id this gateway answers with (the client's when it was valid): the service logs it
    # and puts it on the bus messages the request causes.
    request_id = current_request_id()
    if request_id is not None:
        headers[REQUEST_ID] = request_id
    try:
        upstream = await client.request(
            request.method,
            url,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
    except httpx.HTTPError as exc:
        raise HubError(f"{service} service unavailable: {exc.__class__.__name__}", 503) from exc
    out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    out_headers.pop("content-encoding", None)  # httpx already decoded the body
    out_headers.pop(REQUEST_ID, None)  # the gateway's middleware adds its own (the same id)
    return Response(upstream.content, upstream.status_code, out_headers)
