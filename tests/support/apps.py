"""Run apps in-process for tests: lifespan started, requests through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.gateway.identity import create_api_key, create_user
from shared.runtime import Runtime

PASSWORD = "correct-horse-battery"


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and yield a client talking to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


def runtime_of(app: FastAPI) -> Runtime:
    """The runtime a started app built."""
    runtime: Runtime = app.state.runtime
    return runtime


async def add_user(
    app: FastAPI, username: str, role: str, scope: str, department: str | None = None
) -> None:
    """Create a user through the same code the CLI uses."""
    runtime = runtime_of(app)
    async with runtime.sessions() as session, session.begin():
        await create_user(
            session,
            runtime.hierarchy,
            username=username,
            password=PASSWORD,
            role=role,
            scope=scope,
            department=department,
        )


async def add_key(app: FastAPI, name: str) -> str:
    """Create an integrator API key and return it."""
    runtime = runtime_of(app)
    async with runtime.sessions() as session, session.begin():
        return await create_api_key(session, name)


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Sign in and return the Authorization header."""
    reply = await client.post("/auth/token", data={"username": username, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}
