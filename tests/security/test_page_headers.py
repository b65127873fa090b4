"""Security headers on the screens: every page and static file says Content-Security-Policy
(scripts only from the hub's own files, no inline script, no framing), nosniff and a referrer
policy; the page files hold no inline script a policy would block; and the wall, signed in, runs
in Chromium under that policy without one CSP violation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, sync_playwright

from services.gateway.pages import PAGES, STATIC_DIR
from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import PASSWORD, add_user, serving
from tests.support.http_server import ServedApp, served

CHROMIUM = Path("/usr/bin/chromium")
ASSETS = [
    "/static/app/wall.js",
    "/static/app/common.css",
    "/static/vendor/leaflet/leaflet.js",
    "/static/manifest.webmanifest",
    "/field-sw.js",
]


@pytest.fixture
async def client(embedded_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_hub_app(embedded_settings)) as running:
        yield running


def directives(policy: str) -> dict[str, list[str]]:
    """A CSP header as {directive: sources}."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name.lower()] = sources
    return parsed


def assert_secure(reply: httpx.Response, path: str) -> None:
    policy = reply.headers.get("content-security-policy")
    assert policy, f"{path}: no Content-Security-Policy"
    csp = directives(policy)
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts is not None, (path, policy)
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(
        scripts
    ), (path, policy)
    assert csp.get("frame-ancestors") in (["'none'"], ["'self'"]), (path, policy)
    assert csp.get("object-src") == ["'none'"], (path, policy)
    assert reply.headers.get("x-content-type-options") == "nosniff", path
    assert reply.headers.get("referrer-policy") in (
        "no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin",
    ), path  # fmt: skip


async def test_pages_and_static_files_carry_the_security_headers(
    client: httpx.AsyncClient,
) -> None:
    for path in [*PAGES, *ASSETS]:
        reply = await client.get(path)
        assert reply.status_code == 200, (path, reply.status_code)
        assert_secure(reply, path)
    # A conditional request answered 304 keeps them.
    first = await client.get("/static/app/wall.js")
    again = await client.get(
        "/static/app/wall.js", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert_secure(again, "/static/app/wall.js (304)")


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>\s*\S", re.IGNORECASE)
HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def test_page_files_have_no_inline_script() -> None:
    pages = sorted(STATIC_DIR.glob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        html = page.read_text()
        assert not INLINE_SCRIPT.search(html), f"{page.name}: inline <script> body"
        assert not HANDLER.search(html), f"{page.name}: on* handler attribute"
        assert not JS_URL.search(html), f"{page.name}: javascript: URL"
    # The scripts' HTML templates neither: the policy would silently drop such handlers.
    for script in sorted((STATIC_DIR / "app").glob("*.js")):
        code = script.read_text()
        assert not HANDLER.search(code), f"{script.name}: on* handler in an HTML template"
        assert "eval(" not in code and "new Function(" not in code, script.name


@pytest.fixture
def served_hub(embedded_settings: Settings) -> Iterator[ServedApp]:
    app = create_hub_app(embedded_settings)
    with served(app) as server:
        server.run(add_user(app, "chief", "manager", "city"))
        yield server


def test_the_wall_runs_under_the_policy_without_violations(served_hub: ServedApp) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make test installs it)")
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "content security policy" in message.text.lower():
            violations.append(message.text)

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.on("console", on_console)
            # Injected by the browser driver, so the policy does not apply to it.
            page.add_init_script(
                "window.cspViolations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(served_hub.url + "/")
            page.fill("input[name=username]", "chief")
            page.fill("input[name=password]", PASSWORD)
            page.click("form.signin button[type=submit]")
            # The signed-in wall: its map drew the districts, and the live feed connected.
            page.wait_for_function(
                "() => document.querySelectorAll('.leaflet-interactive').length >= 30",
                timeout=60_000,
            )
            violated = page.evaluate("() => window.cspViolations")
        finally:
            browser.close()
    assert not violations, violations
    assert violated == [], violated
