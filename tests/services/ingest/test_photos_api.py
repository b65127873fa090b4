"""`POST /api/v1/photos`: one photo stored content-addressed for an action to name (a crew's
resolve), served back under /files/; the same bytes twice are one file; limits and roles."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.proxy import upstream_for
from services.hub import create_hub_app
from services.ingest.photos import MAX_PHOTO_BYTES
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, serving
from tests.support.images import png

Hub = tuple[httpx.AsyncClient, dict[str, dict[str, str]], Settings]


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        await add_user(app, "crew", "field_staff", "district:500103", department="cgj@500103")
        await add_user(app, "boss", "manager", "city")
        headers = {
            "crew": await login(client, "crew"),
            "boss": await login(client, "boss"),
            "key": {"X-API-Key": await add_key(app, "crm")},
        }
        yield client, headers, embedded_settings


async def test_a_photo_is_stored_once_and_served(hub: Hub) -> None:
    client, h, settings = hub
    photo = png(3)
    first = await client.post(
        "/api/v1/photos", files={"photo": ("site.png", photo, "image/png")}, headers=h["crew"]
    )
    assert first.status_code == 201, first.text
    path = f"/files/{hashlib.sha256(photo).hexdigest()}.png"
    assert first.json() == {"path": path, "media_type": "image/png", "size": len(photo)}
    assert first.headers["location"] == path
    # Retried after a lost answer (or sent by an integrator): the same path, one file.
    again = await client.post(
        "/api/v1/photos", files={"photo": ("x.jpg", photo, "image/jpeg")}, headers=h["key"]
    )
    assert again.status_code == 201 and again.json()["path"] == path
    assert len(list((settings.data_dir / "files").rglob("*.png"))) == 1
    served = await client.get(path)
    assert served.status_code == 200 and served.content == photo
    assert upstream_for("/api/v1/photos") == upstream_for(path) == "ingest"  # same data dir


async def test_photo_limits_and_roles(hub: Hub) -> None:
    client, h, _ = hub
    gif = await client.post(
        "/api/v1/photos", files={"photo": ("x.gif", b"GIF89a....", "image/gif")}, headers=h["crew"]
    )
    assert gif.status_code == 415, gif.text
    huge = b"\x89PNG\r\n\x1a\n" + b"0" * MAX_PHOTO_BYTES
    too_big = await client.post(
        "/api/v1/photos", files={"photo": ("x.png", huge, "image/png")}, headers=h["crew"]
    )
    assert too_big.status_code == 413, too_big.text
    missing = await client.post("/api/v1/photos", data={"x": "1"}, headers=h["crew"])
    assert missing.status_code == 422, missing.text
    photo = {"photo": ("site.png", png(4), "image/png")}
    assert (await client.post("/api/v1/photos", files=photo)).status_code == 401
    assert (await client.post("/api/v1/photos", files=photo, headers=h["boss"])).status_code == 403
