"""`/docs` works on a closed network: Swagger UI comes from the package, not from a CDN."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.app import create_app as create_gateway_app
from services.hub import create_hub_app
from shared.settings import Settings

# Every URL the page makes the browser load: src/href attributes and Swagger UI's `url:`.
LOADED_URL = re.compile(r"""(?:src|href)="([^"]*)"|url:\s*'([^']*)'""")


def apps(settings: Settings) -> dict[str, FastAPI]:
    """The embedded hub, and the production gateway (which forwards every path it does not
    serve itself, so its docs must come before that)."""
    return {"hub": create_hub_app(settings), "gateway": create_gateway_app(settings)}


@pytest.mark.parametrize("which", ["hub", "gateway"])
async def test_docs_load_only_local_assets(embedded_settings: Settings, which: str) -> None:
    app = apps(embedded_settings)[which]
    # No lifespan: the page and its assets need neither the database nor the bus.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = [a or b for a, b in LOADED_URL.findall(page.text)]
        assert len(urls) >= 4, page.text  # stylesheet, icon, script, the OpenAPI document
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
        assert "cdn" not in page.text and "http://" not in page.text and "https://" not in page.text
        expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        for url in urls:
            reply = await client.get(url)
            assert reply.status_code == 200, url
            assert len(reply.content) > 100, url
            for suffix, media_type in expected.items():
                if url.endswith(suffix):
                    assert reply.headers["content-type"].startswith(media_type), url
        assert (await client.get("/docs/assets/swagger-ui-bundle.js.map")).status_code == 404
        assert (await client.get("/redoc")).status_code != 200  # no ReDoc: it needs a CDN
