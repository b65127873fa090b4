"""A request body over the limit is 413 however it is sent: with a Content-Length, or chunked
(no length up front) through a real HTTP server, where FastAPI used to turn it into a 400."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from services.hub import create_hub_app
from shared.limits import DEFAULT_BODY_LIMIT
from shared.settings import Settings
from tests.support.apps import add_key
from tests.support.http_server import ServedApp, served

CHUNK = 64 * 1024  # bytes per chunk sent
TOO_LARGE = f"request body larger than {DEFAULT_BODY_LIMIT} bytes"


@pytest.fixture(params=["embedded", "production"])
def hub(request: pytest.FixtureRequest) -> Iterator[tuple[ServedApp, str]]:
    """The all-in-one app served over HTTP, and an integrator key."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = create_hub_app(settings)
    with served(app) as server:
        yield server, server.run(add_key(app, "crm"))


def chunks(body: bytes) -> Iterator[bytes]:
    """`body` as a stream: httpx sends it chunked, without a Content-Length."""
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


def event(description_bytes: int) -> bytes:
    """A valid event whose description makes the body about this size."""
    body = {
        "source": "hotline",
        "category": "井盖缺失",
        "description": "x" * description_bytes,
        "location": {"lon": 106.5516, "lat": 29.5630},
    }
    return json.dumps(body).encode()


def test_a_chunked_body_over_the_limit_is_413(hub: tuple[ServedApp, str]) -> None:
    server, key = hub
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        big = event(2 * DEFAULT_BODY_LIMIT)
        reply = client.post("/api/v1/events", content=chunks(big), headers=headers)
        assert reply.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in reply.request.headers
        assert reply.status_code == 413, reply.text
        assert reply.json() == {"detail": TOO_LARGE}

        form = (
            b"api_key="
            + key.encode()
            + b"&service_code=C0104&description="
            + b"x" * (DEFAULT_BODY_LIMIT + CHUNK)
        )
        reply = client.post(
            "/open311/v2/requests.json",
            content=chunks(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert reply.status_code == 413, reply.text
        assert reply.json() == {"detail": TOO_LARGE}

        small = client.post("/api/v1/events", content=chunks(event(1000)), headers=headers)
        assert small.status_code == 201, small.text
