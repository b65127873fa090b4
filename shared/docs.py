"""Interactive API documentation (Swagger UI) from assets shipped in the package.

FastAPI's default `/docs` page loads Swagger UI from a CDN, so it stays blank on a closed
network; the project allows no CDN at run time. The files and their origin are listed in
`shared/static/swagger/README.md`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from shared.errors import NotFoundError

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(__file__).parent / "static" / "swagger"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
ASSET_MAX_AGE_S = 3600  # browsers may keep an asset this long


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `/docs` and its assets under `/docs/assets/` (call before adding
    catch-all routes, such as the production gateway's)."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI over this process's OpenAPI document."""
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # No badge fetched from the public validator.swagger.io either.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        """One of the vendored Swagger UI files."""
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            raise NotFoundError(f"no asset {name!r}")
        return FileResponse(
            ASSETS_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}"},
        )
