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


def upstream_for(path: str) -> ServiceName | None:
    """The service whose routes include `path`."""
    if path.startswith("/api/v1/categories/") and path.endswith("/deadlines"):
        return "dispatch"  # the gateway serves the catalogue, dispatch its deadlines
    matches = [(p, s) for p, s in ROUTES if path == p or path.startswith(p + "/")]
    return max(matches, key=lambda m: len(m[0]))[1] if matches else None


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def forward(path: str, request: Request) -> Response:
    """Forward a request to the service that owns its path."""
    service = upstream_for(request.url.path)
    if service is None:
        raise NotFoundError(f"no route for {request.url.path}")
    runtime: Runtime = request.app.state.runtime
    client: httpx.AsyncClient = runtime.extras[CLIENT_KEY]
    url = runtime.settings.service_url(service) + request.url.path
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    # Tell the service how the client reached us (Open311 discovery names its own URL).
    headers.setdefault("x-forwarded-host", request.headers.get("host", ""))
    headers.setdefault("x-forwarded-proto", request.url.scheme)
    # Plain bodies on the local hop: the gateway's own middleware compresses for the client.
    headers["accept-encoding"] = "identity"
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
    return Response(upstream.content, upstream.status_code, out_headers)
