"""The screens: the operations wall at `/`, the dispatcher's desk at `/desk`, the field page at
`/field`, and their assets under `/static/` — all from files in the package (no CDN, no Node.js
at run time; `make ui` refreshes the vendored libraries, docs/decisions/0017-screens.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
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


@router.get("/field-sw.js")
async def field_service_worker() -> FileResponse:
    """The field page's service worker (offline start), served from the root: a worker's scope
    may not reach above its own path, and it controls `/field`."""
    return FileResponse(
        STATIC_DIR / "field-sw.js", media_type="text/javascript; charset=utf-8", headers=NO_CACHE
    )


def static_app() -> StaticFiles:
    """`/static`: the pages' scripts, styles and vendored libraries, with ETags (StaticFiles
    answers 304 to a matching If-None-Match); the app's gzip middleware compresses them."""
    return StaticFiles(directory=STATIC_DIR)
