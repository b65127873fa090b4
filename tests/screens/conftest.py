"""The screens in a real browser: Debian's Chromium driven by Playwright's Python package, against
the embedded hub served over HTTP. Every page records the hosts it asked for: a screen must never
reach beyond the hub (closed government networks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import PASSWORD, add_key, add_user
from tests.support.http_server import ServedApp, served

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path("var/screenshots")


# Module scope, not session: Playwright's sync API runs an event loop in the main thread while it
# is open, and pytest-asyncio cannot start one for the async tests collected after tests/screens.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver for one test module."""
    if not CHROMIUM.exists():
        pytest.exit(f"{CHROMIUM} is missing: apt-get install chromium (make test does)", 3)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium per test module (each test gets its own context)."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    yield chromium
    chromium.close()


@dataclass
class ScreenHub:
    """The embedded hub served over HTTP, an integrator key, and helpers the screen tests share."""

    server: ServedApp
    key: str
    http: httpx.Client
    users: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.server.url

    def user(self, name: str, role: str, scope: str, department: str | None = None) -> str:
        """Create a user (password `PASSWORD`); its name."""
        self.server.run(add_user(self.server.app, name, role, scope, department))
        self.users.add(name)
        return name

    def post_event(
        self, lon: float, lat: float, category: str = "井盖缺失", **body: object
    ) -> dict[str, Any]:
        """Submit an event as the integrator; the stored event."""
        reply = self.http.post(
            "/api/v1/events",
            json={"source": "hotline", "category": category, "location": {"lon": lon, "lat": lat},
                  **body},
            headers={"X-API-Key": self.key},
        )  # fmt: skip
        assert reply.status_code in (200, 201), reply.text
        event: dict[str, Any] = reply.json()
        return event


@pytest.fixture
def screen_hub(embedded_settings: Settings) -> Iterator[ScreenHub]:
    """The embedded hub, served, with an integrator key."""
    app = create_hub_app(embedded_settings)
    with served(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield ScreenHub(server, server.run(add_key(app, "crm")), http)


@dataclass
class Screen:
    """A browser page on the hub, and every host it requested."""

    page: Page
    hosts: set[str]

    def foreign_hosts(self, hub_url: str) -> set[str]:
        """Hosts other than the hub's that the page asked for (must stay empty)."""
        return self.hosts - {urlsplit(hub_url).netloc}


@pytest.fixture
def open_screen(
    browser: Browser, screen_hub: ScreenHub, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Screen]]:
    """Open a page of the hub in a fresh browser context (own storage), signed in as `user` when
    given; a screenshot of each is saved under var/screenshots/ when the test ends."""
    opened: list[tuple[str, Screen]] = []

    def open_(path: str, user: str | None = None, *, width: int = 1600, height: int = 900,
              name: str | None = None) -> Screen:  # fmt: skip
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        hosts: set[str] = set()
        page.on("request", lambda req: hosts.add(urlsplit(req.url).netloc))
        page.goto(screen_hub.url + path)
        if user is not None:
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", PASSWORD)
            page.click("form.signin button[type=submit]")
        screen = Screen(page, hosts)
        opened.append((name or f"{request.node.name}-{len(opened)}", screen))
        return screen

    yield open_
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, screen in opened:
        try:
            screen.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        finally:
            screen.page.context.close()
