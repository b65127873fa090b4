"""Batch intake, grid reports with photos, and the body/content-type limits."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, serving
from tests.support.images import png

GOOD: dict[str, Any] = {"category": "E0101", "location": {"lon": 106.5516, "lat": 29.5630}}
Hub = tuple[httpx.AsyncClient, dict[str, dict[str, str]], Settings]


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200 + b"\xff\xd9"


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        await add_user(app, "gw", "field_staff", "city", department="cgj")
        await add_user(app, "boss", "manager", "city")
        headers = {
            "key": {"X-API-Key": await add_key(app, "crm")},
            "gw": await login(client, "gw"),
            "boss": await login(client, "boss"),
        }
        yield client, headers, embedded_settings


async def test_batch_answers_each_event(hub: Hub) -> None:
    client, h, _ = hub
    events = [
        {**GOOD, "source": "hotline", "source_ref": "b-1"},
        {**GOOD, "location": {"lon": 999, "lat": 0}},
        {**GOOD, "category": "no-such-category"},
        {**GOOD, "source": "hotline", "source_ref": "b-1"},
        {**GOOD, "category": "暴露垃圾", "source": "hotline", "source_ref": "b-2"},
    ]
    reply = await client.post("/api/v1/events/batch", json={"events": events}, headers=h["key"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [r["status"] for r in body["results"]] == [201, 422, 422, 200, 201]
    assert (body["created"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    assert "location.lon" in body["results"][1]["error"]
    assert "no-such-category" in body["results"][2]["error"]
    assert body["results"][3]["event"]["id"] == body["results"][0]["event"]["id"]
    assert body["results"][4]["event"]["category"] == "E0101"


async def test_batch_size_limits(hub: Hub) -> None:
    client, h, _ = hub
    empty = await client.post("/api/v1/events/batch", json={"events": []}, headers=h["key"])
    assert empty.status_code == 422
    many = await client.post(
        "/api/v1/events/batch", json={"events": [GOOD] * 1001}, headers=h["key"]
    )
    assert many.status_code == 422


async def test_oversized_body_is_413_and_wrong_type_is_415(hub: Hub) -> None:
    client, h, _ = hub
    big = {**GOOD, "description": "x" * 100, "padding": "y" * (1024 * 1024)}
    too_big = await client.post("/api/v1/events", json=big, headers=h["key"])
    assert too_big.status_code == 413
    assert "larger than" in too_big.json()["detail"]
    form = await client.post("/api/v1/events", data={"category": "E0101"}, headers=h["key"])
    assert form.status_code == 415
    plain = await client.post(
        "/api/v1/events", content=b"hello", headers={**h["key"], "content-type": "text/plain"}
    )
    assert plain.status_code == 415


async def test_grid_report_with_photos(hub: Hub) -> None:
    client, h, settings = hub
    photo = png(7)
    reply = await client.post(
        "/api/v1/grid-reports",
        data={
            "category": "E0401",
            "lon": "106.5516",
            "lat": "29.5630",
            "description": "占道",
            "source_ref": "gw-1",
        },
        files=[
            ("photos", ("a.png", photo, "image/png")),
            ("photos", ("b.jpg", JPEG, "image/jpeg")),
        ],
        headers=h["gw"],
    )
    assert reply.status_code == 201, reply.text
    event = reply.json()
    assert event["source"] == "grid" and event["category"] == "E0401"
    assert event["geotag"]["method"] == "point"
    first, second = event["attachments"]
    assert first == f"/files/{hashlib.sha256(photo).hexdigest()}.png"
    assert second.endswith(".jpg")
    served = await client.get(first)
    assert served.status_code == 200
    assert served.content == photo and served.headers["content-type"] == "image/png"
    again = await client.post(
        "/api/v1/grid-reports",
        data={"category": "E0401", "lon": "106.5516", "lat": "29.5630", "source_ref": "gw-1"},
        files=[("photos", ("a.png", photo, "image/png"))],
        headers=h["gw"],
    )
    assert again.status_code == 200 and again.json()["id"] == event["id"]
    stored = list((settings.data_dir / "files").rglob("*.png"))
    assert len(stored) == 1  # same bytes, stored once


@pytest.mark.parametrize(
    ("files", "status"),
    [
        ([("photos", ("x.gif", b"GIF89a....", "image/gif"))], 415),
        (
            [("photos", ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * (5 * 1024 * 1024), "image/png"))],
            413,
        ),
        ([("photos", (f"{i}.png", png(i), "image/png")) for i in range(6)], 422),
    ],
)
async def test_grid_report_photo_limits(
    hub: Hub, files: list[tuple[str, tuple[str, bytes, str]]], status: int
) -> None:
    client, h, _ = hub
    reply = await client.post(
        "/api/v1/grid-reports",
        data={"category": "E0401", "lon": "106.55", "lat": "29.56"},
        files=files,
        headers=h["gw"],
    )
    assert reply.status_code == status, reply.text


async def test_grid_report_bad_fields(hub: Hub) -> None:
    client, h, _ = hub
    for data in (
        {"category": "E0401", "lon": "east", "lat": "29.56"},
        {"category": "E0401", "lon": "106.55"},
        {"category": "E0401", "lon": "106.55", "lat": "95"},
        {"category": "nope", "lon": "106.55", "lat": "29.56"},
    ):
        reply = await client.post("/api/v1/grid-reports", data=data, headers=h["gw"])
        assert reply.status_code == 422, (data, reply.text)
    managers_cannot = await client.post(
        "/api/v1/grid-reports",
        data={"category": "E0401", "lon": "106.55", "lat": "29.56"},
        headers=h["boss"],
    )
    assert managers_cannot.status_code == 403


async def test_unknown_file_is_404(hub: Hub) -> None:
    client, _, _ = hub
    assert (await client.get("/files/" + "0" * 64 + ".png")).status_code == 404
    assert (await client.get("/files/../../etc/passwd")).status_code == 404


async def test_a_locked_database_is_a_503_to_retry_not_a_500(embedded_settings: Settings) -> None:
    # The request waits SQLITE_BUSY_TIMEOUT_MS (10 s) for the lock, then gives up. (A shorter
    # timeout made the hub's background writers fail all through the test, which is not the
    # situation under test.)
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        headers = {"X-API-Key": await add_key(app, "crm")}
        holder = sqlite3.connect(
            embedded_settings.data_dir / "cityhub.sqlite3", timeout=30, check_same_thread=False
        )
        # In a thread: blocking the event loop while the hub's own writers hold the lock
        # mid-transaction would keep them from ever finishing (the test deadlocking itself).
        await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")  # another writer holds it
        try:
            reply = await client.post(
                "/api/v1/events/batch", json={"events": [GOOD]}, headers=headers
            )
        finally:
            holder.rollback()
            holder.close()
        assert reply.status_code == 503, reply.text
        assert reply.headers["Retry-After"] == "1"
        assert "try again" in reply.json()["detail"]
        again = await client.post("/api/v1/events/batch", json={"events": [GOOD]}, headers=headers)
        assert again.status_code == 200 and again.json()["created"] == 1


async def test_embedded_batches_wait_their_turn_instead_of_failing(hub: Hub) -> None:
    # Each batch reads (idempotency) before it writes while dispatch commits the tickets of the
    # previous ones: SQLite must queue the writers, not refuse the one whose snapshot went stale.
    client, h, _ = hub
    statuses = []
    for n in range(50):
        events = [{**GOOD, "source": "hotline", "source_ref": f"w-{n}-{i}"} for i in range(5)]
        reply = await client.post("/api/v1/events/batch", json={"events": events}, headers=h["key"])
        statuses.append(reply.status_code)
    assert statuses == [200] * 50
