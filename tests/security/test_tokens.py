"""Forged and stale bearer tokens are refused alike on REST (401) and on `/ws/live` (close code
4401): expired, tampered (payload changed, signature kept), signed with another secret, and
`alg=none`; a well-formed token of the same sign-in passes, so each refusal is the forgery's."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from services.hub import create_hub_app
from shared.auth import JWT_ALGORITHM
from shared.settings import Settings
from tests.support.apps import PASSWORD, add_user, runtime_of
from tests.support.first_start import SQLITE_TEMPLATE
from tests.support.http_server import ServedApp, served
from tests.support.live import live
from tests.support.servers import free_port

STREET = "500103001"  # 七星岗街道, in 渝中区
PROBE = "/api/v1/tickets"  # any /api/v1 read takes the same authentication


@dataclass
class TokenHub:
    """A served hub, a street dispatcher's real token and its claims, and the signing secret."""

    server: ServedApp
    token: str
    claims: dict[str, Any]
    secret: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenHub]:
    data_dir: Path = tmp_path_factory.mktemp("hub")
    SQLITE_TEMPLATE.copy_into(data_dir)
    app = create_hub_app(Settings(data_dir=data_dir, mqtt_port=free_port()))
    with served(app) as server:
        server.run(add_user(app, "desk", "dispatcher", f"street:{STREET}"))
        reply = httpx.post(
            f"{server.url}/auth/token", data={"username": "desk", "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        token = reply.json()["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        yield TokenHub(server, token, claims, runtime_of(app).jwt_secret)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forged(hub: TokenHub, kind: str) -> str:
    """A token of the hub's sign-in, broken in one way."""
    now = datetime.now(UTC)
    if kind == "valid":  # the control: re-signed by us, accepted
        return jwt.encode({**hub.claims, "exp": now + timedelta(minutes=5)}, hub.secret)
    if kind == "expired":
        claims = {**hub.claims, "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
        return jwt.encode(claims, hub.secret, algorithm=JWT_ALGORITHM)
    header, _payload, signature = hub.token.split(".")
    if kind == "tampered":  # widen the scope, keep the original signature
        return ".".join((header, _b64({**hub.claims, "scope": "city", "role": "admin"}), signature))
    if kind == "wrong_signature":
        return jwt.encode(hub.claims, "another-secret-" + "x" * 32, algorithm=JWT_ALGORITHM)
    if kind == "alg_none":
        return ".".join((_b64({"alg": "none", "typ": "JWT"}), _b64(hub.claims), ""))
    if kind == "alg_none_signed":  # `none` in the header, the real signature kept
        return ".".join((_b64({"alg": "none", "typ": "JWT"}), _b64(hub.claims), signature))
    if kind == "hs512":  # a different algorithm with the right secret is still not ours
        return jwt.encode(hub.claims, hub.secret, algorithm="HS512")
    raise AssertionError(kind)


FORGERIES = ["expired", "tampered", "wrong_signature", "alg_none", "alg_none_signed", "hs512"]


async def test_a_well_formed_token_is_accepted(hub: TokenHub) -> None:
    token = forged(hub, "valid")
    async with httpx.AsyncClient(base_url=hub.server.url) as client:
        reply = await client.get(PROBE, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    async with live(hub.server.url, token=token, scope=f"street:{STREET}") as ws:
        assert (await ws.next(within=30))["type"] == "hello"


@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_tokens_are_401_on_rest(hub: TokenHub, kind: str) -> None:
    token = forged(hub, kind)
    async with httpx.AsyncClient(base_url=hub.server.url) as client:
        for path in (PROBE, f"/api/v1/areas/{STREET}", "/api/v1/tasks/mine"):
            reply = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert reply.status_code == 401, (kind, path, reply.text)
            assert reply.headers.get("www-authenticate", "").lower().startswith("bearer")
        posted = await client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert posted.status_code == 401, (kind, posted.text)


@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_tokens_close_the_websocket_with_4401(hub: TokenHub, kind: str) -> None:
    token = forged(hub, kind)
    async with live(hub.server.url, token=token, scope=f"street:{STREET}") as ws:
        code, reason = await ws.closed(within=30)
    assert code == 4401 and reason, (kind, code, reason)
    async with live(hub.server.url, scope=f"street:{STREET}") as ws:  # token as first message
        await ws.connection.send(json.dumps({"type": "auth", "token": token}))
        code, reason = await ws.closed(within=30)
    assert code == 4401 and reason, (kind, code, reason)
