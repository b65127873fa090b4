"""One error hierarchy, rendered as JSON by one handler; domain code never raises HTTPException."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

logger = logging.getLogger(__name__)


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
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The database is down, restarting, or (SQLite) busy with another writer: nothing was
    # stored, so the caller may simply try again.
    logger.warning("database unavailable: %s", exc)
    return JSONResponse(
        {"detail": "the database is busy or unavailable; nothing was stored, try again"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every `HubError` as `{"detail": message}` with its status, and a database that
    cannot be reached or locked as 503 instead of a 500."""
    app.add_exception_handler(HubError, _render)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
