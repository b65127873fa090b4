"""What the sign-in tests share: a hub with an admin and a dispatcher, and token helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from services.hub import create_hub_app
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.apps import PASSWORD, add_key, add_user, runtime_of, serving

PROTECTED = "/api/v1/tickets"  # a route any signed-in user (not an integrator) may read


@dataclass
class Hub:
    """A served hub: `root` (admin), `ana` (dispatcher) and the key `crm` exist."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    crm_key: str

    @property
    def runtime(self) -> Runtime:
        """The hub's runtime."""
        return runtime_of(self.app)

    async def sign_in(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        """Sign in; the token answer (asserted 200)."""
        reply = await self.client.post(
            "/auth/token", data={"username": username, "password": password}
        )
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    async def refresh(self, refresh_token: str, *, as_json: bool = False) -> httpx.Response:
        """`POST /auth/refresh` with a form (or a JSON body)."""
        if as_json:
            return await self.client.post("/auth/refresh", json={"refresh_token": refresh_token})
        return await self.client.post("/auth/refresh", data={"refresh_token": refresh_token})

    async def status(self, tokens: dict[str, Any], path: str = PROTECTED) -> int:
        """The status of a GET with the access token of `tokens`."""
        return (await self.client.get(path, headers=bearer(tokens))).status_code


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    """The Authorization header for a token answer."""
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@asynccontextmanager
async def hub_with_users(settings: Settings) -> AsyncIterator[Hub]:
    """A hub on `settings` with an admin, a dispatcher and an integrator key."""
    app = create_hub_app(settings)
    async with serving(app) as client:
        await add_user(app, "root", "admin", "city")
        await add_user(app, "ana", "dispatcher", "district:500103")
        yield Hub(app, client, settings, await add_key(app, "crm"))
