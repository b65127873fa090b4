"""Rate limits per signed-in user and per API key, applied where requests enter the hub.

An ASGI middleware in front of the gateway (production) or the embedded hub: a request carrying
credentials is authenticated as the route itself will (`shared.web.authenticate`; the route then
reuses that principal), and its caller's budget is taken: a user's by user name, an integrator's
by key name, never by anything the caller merely claims. Over budget: 429 with `Retry-After`,
before routing, body limits or forwarding cost anything. Requests without valid credentials pass
untouched: their route answers 401, and sign-in has its own limits (login_limits.py). Budgets
live in Redis in production (shared by the gateway replicas; fail open when Redis is down) and
in the process when embedded (shared/rate_limits.py; decision 0019).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import Principal
from shared.rate_limits import Limit, MemoryRateStore, RateStore, RedisRateStore
from shared.runtime import Runtime
from shared.settings import RateLimitSettings
from shared.web import ADMITTED_PRINCIPAL, authenticate

LIMITER_KEY = "rate_limiter"
CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key"})


class RateLimiter:
    """The budgets of one process: which limit applies to whom, and the store keeping them."""

    def __init__(self, settings: RateLimitSettings, store: RateStore) -> None:
        self.store = store
        self._user = Limit(settings.per_user, settings.per_user * settings.burst_s)
        self._key = Limit(settings.per_key, settings.per_key * settings.burst_s)
        self.limited = 0  # requests refused

    async def retry_after(self, principal: Principal) -> int | None:
        """Take one request from the caller's budget: None when admitted, else the whole seconds
        (at least 1) after which one would be."""
        if principal.via == "api_key":
            limit, key = self._key, "key:" + principal.subject
        else:
            limit, key = self._user, "user:" + principal.subject
        if limit.rate <= 0:
            return None  # this limit is off
        wait = await self.store.take(key, limit)
        if wait <= 0:
            return None
        self.limited += 1
        return max(1, math.ceil(wait))


@asynccontextmanager
async def rate_limiter(runtime: Runtime) -> AsyncIterator[RateLimiter | None]:
    """The process's limiter (None when both limits are off): Redis-backed when
    `CITYHUB_REDIS_URL` is set, so every gateway replica counts into one budget."""
    settings = runtime.settings
    limits = settings.rate_limits
    if limits.per_user <= 0 and limits.per_key <= 0:
        yield None
        return
    store: RateStore
    if settings.redis_url:
        store = RedisRateStore.from_url(settings.redis_url, settings.bus_prefix)
    else:
        store = MemoryRateStore()
    try:
        yield RateLimiter(limits, store)
    finally:
        await store.close()


def _too_many(retry_after_s: int, who: str) -> tuple[dict[str, object], bytes]:
    body = json.dumps(
        {"detail": f"too many requests from {who}: try again in {retry_after_s} s"},
        ensure_ascii=False,
    ).encode()
    start: dict[str, object] = {
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after_s).encode()),
        ],
    }
    return start, body


class RateLimitMiddleware:
    """Refuses requests over their caller's budget with 429 (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(
            name in CREDENTIAL_HEADERS for name, _ in scope["headers"]
        ):
            await self.app(scope, receive, send)
            return
        state = getattr(scope["app"].state, "runtime", None)
        limiter: RateLimiter | None = state.extras.get(LIMITER_KEY) if state else None
        if limiter is None:
            await self.app(scope, receive, send)
            return
        try:
            principal = await authenticate(Request(scope))
        except Exception:
            # Not a valid caller, or the database is down: the route authenticates again and
            # answers (401, 503) through the error handlers.
            await self.app(scope, receive, send)
            return
        scope[ADMITTED_PRINCIPAL] = principal
        retry_after_s = await limiter.retry_after(principal)
        if retry_after_s is None:
            await self.app(scope, receive, send)
            return
        kind = "API key" if principal.via == "api_key" else "user"
        start, body = _too_many(retry_after_s, f"{kind} {principal.subject!r}")
        await send(start)
        await send({"type": "http.response.body", "body": body})
