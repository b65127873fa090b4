"""A database that cannot be reached answers 503 with Retry-After, whatever shape the driver's
error takes; a refused statement stays a 500; a 503 the code raises carries Retry-After too."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from shared.errors import HubError, database_unavailable, install_error_handlers


class _Orig(Exception):
    """Stands for the DBAPI exception SQLAlchemy wraps."""


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


UNREACHABLE: dict[str, Exception] = {
    # asyncpg's connect, unwrapped by SQLAlchemy: the server is down.
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "reset": ConnectionResetError(104, "Connection reset by peer"),
    "connect timeout": TimeoutError(),
    # PostgreSQL shutting down or starting up, wrapped as a bare DBAPIError.
    "starting up": _wrapped(asyncpg.CannotConnectNowError("the database system is starting up")),
    "shut down": _wrapped(asyncpg.AdminShutdownError("terminating connection")),
    "connection lost": _wrapped(asyncpg.ConnectionDoesNotExistError("connection was closed")),
    "too many connections": _wrapped(asyncpg.TooManyConnectionsError("too many clients")),
    "invalidated": _wrapped(_Orig("server closed the connection"), invalidated=True),
    "operational": OperationalError("SELECT 1", None, _Orig("database is locked")),
    "raw asyncpg": asyncpg.ConnectionDoesNotExistError("connection was closed"),
}


def _app(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/boom")
    async def boom() -> None:
        raise exc

    return app


async def _post(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        return await client.post("/boom")


@pytest.mark.parametrize("name", sorted(UNREACHABLE))
async def test_an_unreachable_database_is_a_503_with_retry_after(name: str) -> None:
    exc = UNREACHABLE[name]
    assert database_unavailable(exc)
    reply = await _post(_app(exc))
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "1"
    assert "try again" in reply.json()["detail"]


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", None, _Orig("duplicate key")),
        _wrapped(asyncpg.UniqueViolationError("duplicate key")),
        _wrapped(_Orig("division by zero")),
    ],
)
async def test_a_refused_statement_stays_a_500(exc: Exception) -> None:
    assert not database_unavailable(exc)
    reply = await _post(_app(exc))
    assert reply.status_code == 500


async def test_a_503_raised_by_the_code_carries_retry_after() -> None:
    reply = await _post(_app(HubError("could not store the event, try again", 503)))
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    other = await _post(_app(HubError("nope", 409)))
    assert other.status_code == 409 and "retry-after" not in other.headers
