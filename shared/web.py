"""FastAPI plumbing every service shares: runtime access, sessions, authentication, scopes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import KEY_ONLY_ROLES, Principal, Role, Scope, hash_api_key, read_token
from shared.db.engine import READ_ONLY
from shared.db.models import ApiKey, User
from shared.errors import HubError
from shared.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """The process runtime the lifespan stored on the app (async: sync deps cost a thread hop)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """A session whose transaction the request owns: committed when the handler returns."""
    async with runtime.sessions() as session:
        if request.method in SAFE_METHODS:
            session.info[READ_ONLY] = True  # SQLite: never queue a read behind the writers
        async with session.begin():
            yield session
    runtime.outbox.wake()  # messages the request queued are committed: publish them now


# scope="function": commit before the response is sent, so a 2xx always means "stored".
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

# Security schemes as OpenAPI documents them (shared/service.py adds them to the schema); the
# headers are read directly in `authenticate`, since each nested dependency costs per request.
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "JWT from POST /auth/token"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "Integrator API key"},
}  # fmt: skip


async def authenticate(request: Request) -> Principal:
    """The caller, from a bearer JWT or an `X-API-Key`; 401 when neither is valid."""
    runtime: Runtime = request.app.state.runtime
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HubError("unsupported Authorization header: use Bearer <token>", 401)
        principal = read_token(token.strip(), runtime.jwt_secret)
        if await _current_user(runtime, principal.subject) is None:
            raise HubError(f"user {principal.subject!r} is disabled or no longer exists", 401)
        return principal
    api_key = request.headers.get("x-api-key")
    if api_key:
        return await principal_for_api_key(runtime, api_key)
    raise HubError("authentication required: send a bearer token or an X-API-Key header", 401)


# `cityhub keys revoke` and `cityhub users disable` run in another process: every process
# re-reads a key or user at most this long after it last did, so a revoked key or a disabled
# user's token is refused within about a second (decision 0011).
CREDENTIAL_CACHE_TTL_S = 1.0
CREDENTIAL_CACHE_MAX = 10_000  # entries; the cache is cleared when it grows past this
_USER = "user:"  # cache keys of users; API keys are cached under their hex digest


async def _cached(
    runtime: Runtime, cache_key: str, load: Callable[[], Awaitable[Principal | None]]
) -> Principal | None:
    cache = runtime.credential_cache
    cached = cache.get(cache_key)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    if cached is not None:
        # Requests arriving while this one re-reads keep the last answer: without this, every
        # request in flight when an entry expires queries at once and starves the pool.
        cache[cache_key] = (cached[0], time.monotonic() + CREDENTIAL_CACHE_TTL_S)
    principal = await load()
    if len(cache) >= CREDENTIAL_CACHE_MAX:
        cache.clear()
    cache[cache_key] = (principal, time.monotonic() + CREDENTIAL_CACHE_TTL_S)
    return principal


async def _current_user(runtime: Runtime, username: str) -> Principal | None:
    """The user as stored now; None when disabled, gone, or not one who may hold a token."""

    async def load() -> Principal | None:
        async with runtime.sessions() as session:
            user = await session.scalar(select(User).where(User.username == username))
        if user is None or user.disabled or user.role in KEY_ONLY_ROLES:
            return None
        return Principal(user.username, user.role, Scope.parse(user.scope), user.department)  # type: ignore[arg-type]

    return await _cached(runtime, _USER + username, load)


_KEY_NAME = "key-name:"  # cache keys of API keys looked up by name (MQTT logins)


async def _key_holder(runtime: Runtime, clause: ColumnElement[bool]) -> Principal | None:
    async with runtime.sessions() as session:
        row = await session.scalar(select(ApiKey).where(clause))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.name, row.role, Scope.parse(row.scope), via="api_key")  # type: ignore[arg-type]


async def principal_for_api_key(runtime: Runtime, key: str) -> Principal:
    """The integrator behind an API key; 401 when unknown or revoked (cached briefly)."""
    digest = hash_api_key(key)
    principal = await _cached(
        runtime, digest, lambda: _key_holder(runtime, ApiKey.key_hash == digest)
    )
    if principal is None:
        raise HubError("invalid API key", 401)
    return principal


async def key_still_valid(runtime: Runtime, name: str) -> bool:
    """True while the API key named `name` exists unrevoked (re-read as `principal_for_api_key`
    does: an MQTT client logged in with it is cut off within about a second of a revoke)."""
    holder = await _cached(
        runtime, _KEY_NAME + name, lambda: _key_holder(runtime, ApiKey.name == name)
    )
    return holder is not None


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only callers with one of `roles` (403 otherwise)."""

    async def _check(request: Request) -> Principal:
        principal = await authenticate(request)  # called, not depended on: one dependency less
        if principal.role not in roles:
            raise HubError(f"role {principal.role!r} may not do this", 403)
        return principal

    return _check


JSON_TYPES = ("application/json", "application/merge-patch+json")


async def require_json(request: Request) -> None:
    """Refuse a body that is not JSON with 415 (instead of a confusing validation error)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise HubError(f"unsupported content type {content_type or 'none'!r}: send JSON", 415)
