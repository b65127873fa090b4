"""The gateway as a component and as a stand-alone app."""

from __future__ import annotations

import aiohttp
from fastapi import FastAPI

from services.gateway import (
    areas_api,
    auth_api,
    categories_api,
    keys_api,
    live_ws,
    pages,
    proxy,
    users_api,
)
from services.gateway.live_hub import HUB_KEY, live_hub
from services.gateway.rate_limits import LIMITER_KEY, RateLimitMiddleware, rate_limiter
from services.gateway.sessions import sign_in_upkeep
from services.ingest import grid_api, photos_api
from shared.runtime import Runtime
from shared.service import Component, build_app
from shared.settings import Settings


def component(*, forward: bool) -> Component:
    """Auth and areas; with `forward`, also the routes of the other services' processes."""
    if not forward:
        return Component(
            "gateway",
            routers=[
                auth_api.router, areas_api.router, categories_api.router, pages.router,
                live_ws.router, users_api.router, keys_api.router,
            ],
            workers=[sign_in_upkeep],
            resources={HUB_KEY: live_hub, LIMITER_KEY: rate_limiter},
            mounts={"/static": pages.static_app},
            middleware=[RateLimitMiddleware],
        )  # fmt: skip

    async def upstreams_ok(runtime: Runtime) -> bool:
        client: aiohttp.ClientSession = runtime.extras[proxy.CLIENT_KEY]
        for service in ("ingest", "dispatch", "metrics"):
            try:
                async with client.get(runtime.settings.service_url(service) + "/healthz") as reply:
                    if reply.status != 200:
                        return False
            except (aiohttp.ClientError, TimeoutError):
                return False
        return True

    return Component(
        "gateway",
        routers=[
            auth_api.router,
            areas_api.router,
            categories_api.router,
            pages.router,
            live_ws.router,
            users_api.router,
            keys_api.router,
            proxy.router,
        ],
        workers=[sign_in_upkeep],
        checks={"upstreams": upstreams_ok},
        resources={
            proxy.CLIENT_KEY: proxy.proxy_client,
            HUB_KEY: live_hub,
            LIMITER_KEY: rate_limiter,
        },
        mounts={"/static": pages.static_app},
        middleware=[RateLimitMiddleware],
        # What ingest accepts, the gateway forwards: grid reports and photos exceed 1 MiB.
        body_limits={
            "/api/v1/grid-reports": grid_api.GRID_BODY_LIMIT,
            "/api/v1/photos": photos_api.PHOTO_BODY_LIMIT,
        },
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway alone (production mode), forwarding to the other services."""
    return build_app(
        settings or Settings(), [component(forward=True)], migrate=False, title="cityhub gateway"
    )
