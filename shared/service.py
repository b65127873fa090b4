"""Compose one FastAPI app from service components: one process runs one service (production)
or all four (embedded), with the same routers and background workers either way."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp

from shared.compression import NegotiatedGZipMiddleware
from shared.docs import install_docs
from shared.errors import install_error_handlers
from shared.limits import BodyLimitMiddleware
from shared.openapi import document_errors
from shared.runtime import Runtime, open_runtime, refresh_catalogue
from shared.settings import Settings
from shared.telemetry import scrape
from shared.telemetry.http import TelemetryMiddleware
from shared.web import SECURITY_SCHEMES

logger = logging.getLogger(__name__)

Worker = Callable[[Runtime], Coroutine[Any, Any, None]]
HealthCheck = Callable[[Runtime], Awaitable[bool]]
Resource = Callable[[Runtime], AbstractAsyncContextManager[object]]


@dataclass
class Component:
    """What a service contributes to a process: routes, background loops, health checks."""

    name: str
    routers: Sequence[APIRouter] = ()
    workers: Sequence[Worker] = ()
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    # Opened before the workers, closed after them, kept in `runtime.extras` under their key.
    resources: dict[str, Resource] = field(default_factory=dict)
    # Path prefix → largest accepted request body (bytes) where 1 MiB is not right.
    body_limits: dict[str, int] = field(default_factory=dict)
    # Path prefix → an ASGI app of its own (static files), mounted before the routers.
    mounts: dict[str, Callable[[], ASGIApp]] = field(default_factory=dict)
    # ASGI middleware classes (no arguments) wrapped around the whole app, inside the telemetry
    # middleware so that what they answer (a 429) is timed and carries the request id.
    middleware: Sequence[Callable[..., ASGIApp]] = ()
    # Readings taken when /metrics is scraped (gauges that need a query), besides the bus's
    # and the outbox's that every process reports.
    probes: Sequence[scrape.Probe] = ()


class Health(BaseModel):
    """`/healthz`: the process's services and the state of each dependency."""

    status: str
    services: list[str]
    mode: str
    checks: dict[str, str]


async def _bus_ok(runtime: Runtime) -> bool:
    return await runtime.bus.ping()


async def _database_ok(runtime: Runtime) -> bool:
    return await runtime.database_ok()


async def _run_outbox(runtime: Runtime) -> None:
    await runtime.outbox.run()


GZIP_MIN_BYTES = 1_400  # about one TCP segment: smaller answers gain nothing from gzip
GC_THRESHOLDS = (100_000, 50, 100)  # allocations before a young collection; then older ones


def tune_gc() -> None:
    """Once a served process has started: everything built so far (hierarchy, geotagger grid,
    catalogue) lives as long as the process, so keep it out of the cyclic GC's generations; and
    since each request allocates thousands of short-lived objects that rarely form cycles, collect
    far less often than the default threshold of 700 (+15 % requests/s on the intake benchmark)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_app(
    settings: Settings, components: Sequence[Component], *, migrate: bool, title: str
) -> FastAPI:
    """An app serving the components' routes and running their workers during its lifespan."""
    checks: dict[str, HealthCheck] = {"database": _database_ok, "bus": _bus_ok}
    for component in components:
        checks.update(component.checks)
    probes = [*scrape.DEFAULT_PROBES, *(p for c in components for p in c.probes)]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(open_runtime(settings, migrate=migrate))
            app.state.runtime = runtime
            for component in components:
                for key, resource in component.resources.items():
                    runtime.extras[key] = await stack.enter_async_context(resource(runtime))
            workers = [
                _run_outbox,
                refresh_catalogue,
                *(w for c in components for w in c.workers),
            ]
            tasks = [asyncio.create_task(w(runtime), name=w.__qualname__) for w in workers]
            app.state.tasks = tasks  # keep references: the loop only holds tasks weakly
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                # Let go of the runtime (hierarchy, geotagger, pools): FastAPI caches route
                # functions process-wide, and with them the app, so every app a process built
                # (tests build hundreds) would otherwise keep its runtime alive.
                del app.state.tasks, app.state.runtime

    # Swagger UI from the package, not FastAPI's CDN page; no ReDoc (it would need a CDN too).
    app = FastAPI(title=title, version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_docs(app)
    install_error_handlers(app)
    limits = {prefix: size for c in components for prefix, size in c.body_limits.items()}
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    # Lists and KPIs compress about 8:1 for screens on slow links; answers under the threshold
    # (an event's 201, most single reads) are sent as they are, so intake pays nothing.
    app.add_middleware(NegotiatedGZipMiddleware, minimum_size=GZIP_MIN_BYTES)
    for component in components:
        for middleware in component.middleware:
            app.add_middleware(middleware)
    # Outermost (added last): request id and timing cover the answers of the layers above too.
    app.add_middleware(TelemetryMiddleware)
    names = [c.name for c in components]

    @app.get(
        "/healthz",
        tags=["health"],
        response_model=Health,
        responses={503: {"model": Health, "description": "A dependency is down"}},
    )
    async def healthz() -> JSONResponse:
        """Liveness and the state of each dependency (503 when one is down)."""
        runtime: Runtime = app.state.runtime
        results = {name: "ok" if await check(runtime) else "down" for name, check in checks.items()}
        healthy = all(v == "ok" for v in results.values())
        body = {
            "status": "ok" if healthy else "degraded",
            "services": names,
            "mode": "embedded" if settings.embedded else "production",
            "checks": results,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this process (text exposition format); with
        `CITYHUB_METRICS_TOKEN` set, only for a bearer of that token."""
        if settings.metrics_token is not None:
            wanted = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, wanted):
                return JSONResponse(
                    {"detail": "metrics need the scraper's bearer token (CITYHUB_METRICS_TOKEN)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await scrape.render(app.state.runtime, probes)

    for component in components:
        for prefix, make in component.mounts.items():
            app.mount(prefix, make())
        for router in component.routers:
            app.include_router(router)
    _document(app)
    return app


def _document(app: FastAPI) -> None:
    """Declare bearer/API-key auth on every /api/v1 operation in the OpenAPI schema, and every
    error status each operation can answer (shared/openapi.py)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/api/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
