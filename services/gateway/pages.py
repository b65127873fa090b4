"""The screens: the operations wall at `/`, the dispatcher's desk at `/desk`, the field page at
`/field`, and their assets under `/static/` — all from files in the package (no CDN, no Node.js
at run time; `make ui` refreshes the vendored libraries, docs/decisions/0017-screens.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {"/": "wall.html", "/desk": "desk.html", "/field": "field.html"}
# The page shells are tiny and name their assets: browsers re-check them on every load, so a new
# release shows at once; assets are revalidated with their ETag.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/")
async def wall() -> FileResponse:
    """The operations wall (after sign-in)."""
    return _page(PAGES["/"])


@router.get("/desk")
async def desk() -> FileResponse:
    """The dispatcher's desk."""
    return _page(PAGES["/desk"])


@router.get("/field")
async def field() -> FileResponse:
    """The field page for street staff on their phones."""
    return _page(PAGES["/field"])


def static_app() -> FastAPI:
    """`/static`: the pages' scripts, styles and vendored libraries, gzip-compressed, with ETags
    (StaticFiles answers 304 to a matching If-None-Match)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=1_000)
    app.mount("/", StaticFiles(directory=STATIC_DIR))
    return app
