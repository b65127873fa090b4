"""The screens: the operations wall at `/`, the dispatcher's desk at `/desk`, the field page at
`/field`, and their assets under `/static/` — all from files in the package (no CDN, no Node.js
at run time; `make ui` refreshes the vendored libraries, docs/decisions/0017-screens.md), each
with the security headers docs/security.md explains (a policy without inline script)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {"/": "wall.html", "/desk": "desk.html", "/field": "field.html"}
# Scripts only from our own files (no inline script, no eval): an injected <script> or on*
# attribute does nothing. Styles allow inline `style` attributes, which Leaflet and the pages'
# templates set (a style cannot run code). Photos are drawn from data: URLs; websockets and
# fetches go to the hub itself; no page may frame ours (clickjacking).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
    "Referrer-Policy": "same-origin",
}
# The page shells are tiny and name their assets: browsers re-check them on every load, so a new
# release shows at once; assets are revalidated with their ETag.
NO_CACHE = {"Cache-Control": "no-cache", **SECURITY_HEADERS}

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


class _WithSecurityHeaders:
    """An ASGI app that adds `SECURITY_HEADERS` to every answer of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def static_app() -> ASGIApp:
    """`/static`: the pages' scripts, styles and vendored libraries, with ETags (StaticFiles
    answers 304 to a matching If-None-Match) and the pages' security headers; the app's gzip
    middleware compresses them."""
    return _WithSecurityHeaders(StaticFiles(directory=STATIC_DIR))
