"""FastAPI plumbing every service shares: runtime access, sessions, authentication, scopes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import KEY_ONLY_ROLES, Principal, Role, Scope, hash_api_key, read_token
from shared.db.engine import READ_ONLY
from shared.db.models import ApiKey, Login, User
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


# Scope key under which the gateway's rate limits leave the caller they authenticated, so the
# route does not authenticate the same request twice (services/gateway/rate_limits.py).
ADMITTED_PRINCIPAL = "cityhub.principal"


async def authenticate(request: Request) -> Principal:
    """The caller, from a bearer JWT or an `X-API-Key`; 401 when neither is valid."""
    admitted: Principal | None = request.scope.get(ADMITTED_PRINCIPAL)
    if admitted is not None:
        return admitted
    runtime: Runtime = request.app.state.runtime
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HubError("unsupported Authorization header: use Bearer <token>", 401)
        return await principal_for_token(runtime, token.strip())
    api_key = request.headers.get("x-api-key")
    if api_key:
        return await principal_for_api_key(runtime, api_key)
    raise HubError("authentication required: send a bearer token or an X-API-Key header", 401)


# `cityhub keys revoke` and `cityhub users disable` run in another process: every process
# re-reads a key, user or sign-in at most this long after it last did, so a revoked key, a
# disabled user's token or a signed-out session is refused within about a second (decisions
# 0011, 0014). The process that made the change forgets its entries at once (`forget_*`).
CREDENTIAL_CACHE_TTL_S = 1.0
CREDENTIAL_CACHE_MAX = 10_000  # entries; the cache is cleared when it grows past this
_USER = "user:"  # cache keys of users; API keys are cached under their hex digest
_LOGIN = "login:"  # cache keys of sign-ins (a token's `sid`), holding the user as stored


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


def _token_holder(user: User | None, login: str | None = None) -> Principal | None:
    """A stored user as a token's principal; None when gone, disabled, or key-only."""
    if user is None or user.disabled or user.role in KEY_ONLY_ROLES:
        return None
    scope = Scope.parse(user.scope)
    return Principal(user.username, user.role, scope, user.department, login=login)  # type: ignore[arg-type]


async def _current_user(runtime: Runtime, username: str) -> Principal | None:
    """The user as stored now; None when disabled, gone, or not one who may hold a token."""

    async def load() -> Principal | None:
        async with runtime.sessions() as session:
            user = await session.scalar(select(User).where(User.username == username))
        return _token_holder(user)

    return await _cached(runtime, _USER + username, load)


async def _signed_in(runtime: Runtime, login: str) -> Principal | None:
    """The user of a sign-in as stored now; None when the sign-in is revoked or gone, or its user
    may no longer hold a token. One query (and one cache entry) covers both."""

    async def load() -> Principal | None:
        try:
            login_id = uuid.UUID(login)
        except ValueError:
            return None
        async with runtime.sessions() as session:
            row = (
                await session.execute(
                    select(User, Login.revoked_at)
                    .join(Login, Login.username == User.username)
                    .where(Login.id == login_id)
                )
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        return _token_holder(row.User, login)

    return await _cached(runtime, _LOGIN + login, load)


async def _still_holds(runtime: Runtime, claimed: Principal) -> Principal | None:
    """The holder of a token as stored now (its role, scope and department may have changed
    since the token was issued), or None when it may no longer use it."""
    if claimed.login is None:  # a token from before sign-in sessions (or a test's own)
        return await _current_user(runtime, claimed.subject)
    holder = await _signed_in(runtime, claimed.login)
    return holder if holder is not None and holder.subject == claimed.subject else None


async def principal_for_token(runtime: Runtime, token: str) -> Principal:
    """The user behind a bearer JWT, with role, scope and department as stored now; a 401
    `HubError` when the token is missing, invalid or expired, its user disabled or gone, or its
    sign-in revoked (checked against the database at most `CREDENTIAL_CACHE_TTL_S` ago)."""
    if not token:
        raise HubError("authentication required: send a bearer token", 401)
    claimed = read_token(token, runtime.jwt_secret)
    holder = await _still_holds(runtime, claimed)
    if holder is None:
        raise HubError(
            f"this token no longer holds: {claimed.subject!r} signed out, was disabled or is "
            "gone; sign in again",
            401,
        )
    return holder


async def still_signed_in(runtime: Runtime, principal: Principal) -> bool:
    """True while `principal` (as `authenticate` or `principal_for_token` returned it) may go on:
    its user enabled and its sign-in not revoked, or its API key unrevoked. Cheap: answered from
    the credential cache, re-read at most `CREDENTIAL_CACHE_TTL_S` after the last check. It does
    not look at the token's expiry (the caller knows when it accepted the token)."""
    if principal.via == "api_key":
        return await key_still_valid(runtime, principal.subject)
    return await _still_holds(runtime, principal) is not None


def forget_user(runtime: Runtime, username: str) -> None:
    """Drop this process's cached answers about a user and its sign-ins (after committing a
    change to them: the next request re-reads; other processes do within a second)."""
    cache = runtime.credential_cache
    cache.pop(_USER + username, None)
    for key, (holder, _expiry) in list(cache.items()):
        if key.startswith(_LOGIN) and holder is not None and holder.subject == username:
            del cache[key]


def forget_login(runtime: Runtime, login: str) -> None:
    """Drop this process's cached answer about one sign-in (after revoking it)."""
    runtime.credential_cache.pop(_LOGIN + login, None)


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


def forget_api_key(runtime: Runtime, name: str, key_hash: str) -> None:
    """Drop this process's cached answers about an API key (after revoking it): HTTP and the
    embedded MQTT broker refuse it from the next request or publish on."""
    runtime.credential_cache.pop(key_hash, None)
    runtime.credential_cache.pop(_KEY_NAME + name, None)


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
