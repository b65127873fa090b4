"""One error hierarchy, rendered as JSON by one handler; domain code never raises HTTPException."""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import Match

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # what every 503 asks the caller to wait before trying again (seconds)
# Raised while the database is down, restarting or dropping connections: the statement was fine,
# the server was not there. asyncpg's connect raises plain OSErrors (refused, reset, timed out,
# unknown host) that SQLAlchemy passes on unwrapped; its server errors of SQLSTATE class 08
# (connection), 57 (shutting down, starting up, cancelled) and 53 (too many connections, disk
# full) arrive as a bare `DBAPIError` (only a few classes are translated to `OperationalError`).
UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
)


class HubError(Exception):
    """An expected failure with the HTTP status it maps to."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class NotFoundError(HubError):
    """The thing does not exist, or lies outside the caller's scope (never say which)."""

    def __init__(self, message: str = "not found") -> None:
        super().__init__(message, 404)


class ConflictError(HubError):
    """The request clashes with the current state."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


class ConfigError(HubError):
    """The process cannot start as configured; the message says which variable to change."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 500)


async def _render(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif exc.status_code == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or dropped the connection (down,
    restarting, busy), not that the statement itself was refused."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError, *UNAVAILABLE)):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc.orig, UNAVAILABLE)
    return False


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The database is down, restarting, or (SQLite) busy with another writer: nothing was
    # stored, so the caller may simply try again.
    if not database_unavailable(exc):
        raise exc  # some other DBAPIError (a bug): the usual 500
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return JSONResponse(
        {"detail": "the database is busy or unavailable; nothing was stored, try again"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route of `app` fully answers at `path`."""
    allowed: set[str] = set()
    for method in PROBED_METHODS:
        # A fresh scope per probe: matching may note things in the scope it is given.
        probe = {"type": "http", "path": path, "root_path": "", "method": method, "headers": []}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.add(method)
    return allowed


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        # Starlette names only the first route whose path matched: GET and PUT of one path are
        # two routes, so its `Allow` would leave one of them out.
        allowed = allowed_methods(request.app, request.scope["path"])
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, exc)


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float spelled as text (JSON has no Infinity or NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes the refused input, and a refused `Infinity` or `NaN` (which
    # Python's JSON parser reads) made rendering the 422 itself fail with a 500.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Render every `HubError` as `{"detail": message}` with its status (a 503 with
    `Retry-After`), a database that cannot be reached or locked as 503 with `Retry-After` instead
    of a 500, and a 405 with every allowed method."""
    app.add_exception_handler(HubError, _render)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # One handler for every DBAPIError: OperationalError and InterfaceError are always 503, a
    # bare DBAPIError only when its driver error says "unreachable" (else re-raised: a 500).
    app.add_exception_handler(DBAPIError, _database_unavailable)
    # Embedded mode: every pooled connection waiting for SQLite's write lock (a burst).
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_unavailable)
