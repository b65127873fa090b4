"""The operations wall at `/` in Chromium: the city's 41 districts on the map and in the ranking,
drill-down to a district's streets and back, new tickets in the feed and on the map within 2 s of
their event, a street manager confined to its street, and the first load's time and bytes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, Request
from sqlalchemy import func, select

from shared.areas import Area
from shared.db.models import Ticket
from tests.screens.conftest import Screen, ScreenHub
from tests.support.apps import PASSWORD, runtime_of
from tests.support.images import png
from tests.support.waiting import wait_for

CITY = "500000"
YUZHONG = "500103"  # 渝中区
QIXINGGANG = "500103001"  # 七星岗街道, in 渝中区
JIEFANGBEI = "500103003"  # 解放碑街道, in 渝中区
WANZHOU_DISTRICT = "500101"  # 万州区
LIVE_WITHIN_MS = 2_000  # a posted event's ticket must show in the feed and on the map within
LOAD_MS = 15_000  # generous waits for loads on a busy 2-core CI machine
FIRST_RENDER_BOUND_MS = 5_000  # asserted; the target (≤ 2 s) is reported with -s
FIRST_LOAD_BOUND_BYTES = 1_500_000
SHOTS = Path("var/screenshots")

OpenScreen = Callable[..., Screen]


def point_in(hub: ScreenHub, code: str) -> tuple[float, float]:
    """A point inside an area of the hub's hierarchy."""
    area = runtime_of(hub.server.app).hierarchy.get(code)
    assert area is not None, code
    point = area.geometry.representative_point()
    return point.x, point.y


def child_names(hub: ScreenHub, code: str) -> set[str]:
    """Names of an area's children."""
    hierarchy = runtime_of(hub.server.app).hierarchy
    return {a.name for a in hierarchy if a.parent == code}


def post_grid_report(hub: ScreenHub, street: str) -> None:
    """A grid worker's report with a photo, inside `street`."""
    lon, lat = point_in(hub, street)
    reply = hub.http.post(
        "/api/v1/grid-reports",
        data={"category": "暴露垃圾", "lon": str(lon), "lat": str(lat)},
        files=[("photos", ("spot.png", png(7), "image/png"))],
        headers={"X-API-Key": hub.key},
    )
    assert reply.status_code == 201, reply.text


def wait_ready(page: Page, scope: str) -> None:
    """Wait until the wall drew a view (map and ranking) for `scope`."""
    page.wait_for_selector(f"body[data-view='{scope}'][data-ready='true']", timeout=LOAD_MS)


def wait_text(page: Page, selector: str, text: str) -> None:
    """Wait until an element shows exactly `text` (live updates land within seconds)."""
    page.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent === text",
        arg=[selector, text],
        timeout=LOAD_MS,
    )


def ranking_names(page: Page) -> list[str]:
    return page.locator("table.ranking tbody td.col-name").all_inner_texts()


def area_codes(page: Page) -> set[str]:
    codes = page.eval_on_selector_all("path.area", "paths => paths.map(p => p.dataset.area)")
    return set(codes)


def post_and_see(page: Page, hub: ScreenHub, street: str) -> str:
    """Post an event inside `street`; within 2 s of posting, a live feed entry and a map dot
    of its ticket must show. Returns the ticket's id."""
    lon, lat = point_in(hub, street)
    started = time.monotonic()
    hub.post_event(lon, lat, "井盖缺失")
    spent_ms = (time.monotonic() - started) * 1000
    handle = page.wait_for_function(
        """street => {
          const entry = document.querySelector(`li.feed-entry.live[data-street="${street}"]`);
          if (!entry) return null;
          const id = entry.dataset.ticket;
          return document.querySelector(`path.ticket-marker[data-ticket="${id}"]`) ? id : null;
        }""",
        arg=street,
        timeout=max(1.0, LIVE_WITHIN_MS - spent_ms),
    )
    seen_ms = (time.monotonic() - started) * 1000
    print(f"\nwall: ticket in {street} in the feed and on the map {seen_ms:.0f} ms after posting")
    assert seen_ms <= LIVE_WITHIN_MS
    ticket_id = handle.json_value()
    assert isinstance(ticket_id, str)
    return ticket_id


def test_wall_lists_districts_drills_down_and_shows_new_tickets(
    screen_hub: ScreenHub, open_screen: OpenScreen
) -> None:
    boss = screen_hub.user("wall-boss", "manager", "city")
    for code in (QIXINGGANG, WANZHOU_DISTRICT + "001"):
        screen_hub.post_event(*point_in(screen_hub, code), "违章停车")
    post_grid_report(screen_hub, JIEFANGBEI)
    screen = open_screen("/", boss, width=1920, height=1080, name="wall-live")
    page = screen.page
    wait_ready(page, "city")

    districts = child_names(screen_hub, CITY)
    names = ranking_names(page)
    assert len(names) == 41 and set(names) == districts and "渝中区" in names
    assert len(area_codes(page)) == 41
    assert page.locator(".breadcrumb .crumb.current").inner_text() == "重庆市"
    assert page.locator(".live-state").get_attribute("data-state") == "live"
    assert page.locator(".live-state").inner_text() == "实时"
    wait_text(page, ".tile-intake .tile-value", "3")  # the KPI facts may trail the REST load
    # The trend's history is the REST answer's `hourly` (reread now that the facts count all 3),
    # not only what the page saw live: the 3 events came before it opened.
    page.evaluate("window.__wall.resync()")
    page.wait_for_function(
        "() => window.__wall.trend.intake.reduce((a, b) => a + b, 0) === 3", timeout=LOAD_MS
    )

    ticket_id = post_and_see(page, screen_hub, QIXINGGANG)

    # The drawer: category, place, channel, deadlines with time left, timeline.
    page.click(f"li.feed-entry[data-ticket='{ticket_id}']")
    drawer = page.locator("aside.drawer")
    drawer.locator("ol.timeline li").first.wait_for(timeout=LOAD_MS)
    assert drawer.locator(".drawer-category").inner_text() == "井盖缺失"
    assert "七星岗街道" in drawer.locator(".drawer-location .place").inner_text()
    assert "热线" in drawer.inner_text()
    assert "剩余" in drawer.locator(".drawer-deadlines").inner_text()
    page.screenshot(path=str(_shot("wall-drawer")))
    drawer.locator(".drawer-close").click()
    assert drawer.is_hidden()

    # From a dot on the map: the grid report's photo, served by the hub itself.
    page.locator(f"path.ticket-marker[data-street='{JIEFANGBEI}']").dispatch_event("click")
    photo = drawer.locator(".photos img")
    photo.wait_for(timeout=LOAD_MS)
    assert (photo.get_attribute("src") or "").startswith("/files/")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 1", arg=photo.element_handle()
    )
    assert "网格" in drawer.inner_text()
    page.keyboard.press("Escape")
    assert drawer.is_hidden()

    # Drill into 渝中区 from the list: its streets on the map and in the ranking.
    page.click(f"table.ranking tr[data-code='{YUZHONG}']")
    wait_ready(page, f"district:{YUZHONG}")
    streets = child_names(screen_hub, YUZHONG)
    assert set(ranking_names(page)) == streets and len(streets) == 11
    assert area_codes(page) == {a.code for a in _children(screen_hub, YUZHONG)}
    assert page.locator(".breadcrumb").inner_text().split() == ["重庆市", "›", "渝中区"]
    assert page.locator(f"path.ticket-marker[data-ticket='{ticket_id}']").count() == 1
    post_and_see(page, screen_hub, JIEFANGBEI)  # live over the re-subscribed stream too
    page.screenshot(path=str(_shot("wall-district")))

    # A street on the map drills one level further; the breadcrumb goes back up.
    page.click(f"path.area[data-area='{QIXINGGANG}']")
    wait_ready(page, f"street:{QIXINGGANG}")
    assert ranking_names(page) == ["七星岗街道"]
    page.click(".breadcrumb button.crumb:has-text('重庆市')")
    wait_ready(page, "city")
    assert len(ranking_names(page)) == 41

    # 平急转换: a dispatcher switches 渝中区 to emergency mode; the alert and the banner show.
    dispatcher = screen_hub.user("wall-dispatcher", "dispatcher", "city")
    token = screen_hub.http.post(
        "/auth/token", data={"username": dispatcher, "password": PASSWORD}
    ).json()["access_token"]
    started = screen_hub.http.post(
        "/api/v1/emergency",
        json={"area": YUZHONG, "incident": "防汛", "categories": ["C0104"], "deadline_factor": 0.5},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert started.status_code == 201, started.text
    page.wait_for_selector("ul.alerts li[data-kind='emergency_started']", timeout=LOAD_MS)
    banner = page.locator(".emergency-banner")
    assert banner.is_visible() and "渝中区" in banner.inner_text() and "防汛" in banner.inner_text()
    assert page.locator(".alert-summary [data-alert-kind='emergency'] b").inner_text() == "1"

    # English on request, Chinese by default.
    page.click(".lang-toggle")
    assert page.locator(".tile-intake .tile-label").inner_text() == "Intake today"
    page.click(".lang-toggle")
    assert page.locator(".tile-intake .tile-label").inner_text() == "今日受理"
    assert screen.foreign_hosts(screen_hub.url) == set()


def test_street_manager_sees_only_its_street(
    screen_hub: ScreenHub, open_screen: OpenScreen
) -> None:
    keeper = screen_hub.user("wall-street", "manager", f"street:{QIXINGGANG}")
    screen = open_screen("/", keeper, name="wall-street")
    page = screen.page
    wait_ready(page, f"street:{QIXINGGANG}")
    assert ranking_names(page) == ["七星岗街道"]
    assert area_codes(page) == {QIXINGGANG}

    # Elsewhere first (a neighbouring street, another district), then its own street: once its
    # own ticket shows, the others (processed earlier) would have shown by then.
    api_calls: list[str] = []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
    screen_hub.post_event(*point_in(screen_hub, JIEFANGBEI))
    screen_hub.post_event(*point_in(screen_hub, WANZHOU_DISTRICT + "001"))
    post_and_see(page, screen_hub, QIXINGGANG)
    shown = page.eval_on_selector_all(
        "li.feed-entry, path.ticket-marker", "nodes => nodes.map(n => n.dataset.street)"
    )
    assert shown and set(shown) == {QIXINGGANG}
    wait_text(page, ".tile-intake .tile-value", "1")
    wait_text(page, "table.ranking td.col-backlog", "1")  # the street's live `kpis` message
    assert api_calls == []  # after the first load, only /ws/live

    # A dropped connection shows as reconnecting, then live again (resumed with `since`).
    badge = page.locator(".live-state")
    page.evaluate("window.__wall.live.socket.close()")
    page.wait_for_selector(".live-state[data-state='reconnecting']:text-is('重连中')")
    page.wait_for_selector(".live-state[data-state='live']", timeout=LOAD_MS)
    assert badge.inner_text() == "实时"
    # A `resync` from the server: the badge says so and the view is read again over REST.
    with page.expect_request(lambda r: "/api/v1/kpis?scope=street" in r.url, timeout=LOAD_MS):
        page.evaluate("window.__wall.live.receive({type: 'resync', reason: 'test'})")
    assert badge.get_attribute("data-state") == "resynced" and badge.inner_text() == "已重新同步"
    page.wait_for_selector("li.feed-entry", timeout=LOAD_MS)
    assert screen.foreign_hosts(screen_hub.url) == set()


def test_wall_first_load_time_and_bytes(
    screen_hub: ScreenHub, open_screen: OpenScreen, browser: Browser
) -> None:
    """Time to first render and bytes over the wire of a cold load (empty HTTP cache, signed in)
    with 200 open tickets in the city, and of a district drill-down."""
    boss = screen_hub.user("wall-measure", "manager", "city")
    hierarchy = runtime_of(screen_hub.server.app).hierarchy
    streets = [a for a in hierarchy if a.level == "street"]
    events = []
    for i in range(200):
        point = streets[(i * 37) % len(streets)].geometry.representative_point()
        events.append({"source": "hotline", "category": "违章停车",
                       "location": {"lon": point.x, "lat": point.y}})  # fmt: skip
    reply = screen_hub.http.post(
        "/api/v1/events/batch", json={"events": events}, headers={"X-API-Key": screen_hub.key}
    )
    assert reply.status_code == 200 and reply.json()["created"] == 200
    screen_hub.server.run(wait_for(lambda: _tickets(screen_hub, 200), within=60))

    # Signs in through the form (its storage is reused below); the busier wall is the screenshot.
    signed_in = open_screen("/", boss, width=1920, height=1080, name="wall")
    wait_ready(signed_in.page, "city")
    state = signed_in.page.context.storage_state()

    context = browser.new_context(viewport={"width": 1920, "height": 1080}, storage_state=state)
    try:
        page = context.new_page()
        finished: list[Request] = []
        page.on("requestfinished", lambda request: finished.append(request))
        page.goto(screen_hub.url + "/")
        wait_ready(page, "city")
        first_render_ms = page.evaluate("window.__wallReady")
        first_bytes = _bytes(finished)
        first_requests = len(finished)
        assert page.locator("path.ticket-marker").count() == 200

        finished.clear()
        page.click(f"table.ranking tr[data-code='{YUZHONG}']")
        wait_ready(page, f"district:{YUZHONG}")
        loads = page.evaluate("window.__wallLoads")
        drill_ms = loads[-1]["ready"] - loads[-1]["started"]
        drill_bytes = _bytes(finished)
        drill_requests = len(finished)
    finally:
        context.close()
    print(
        f"\nwall first load (cold cache, 1 + 41 + 1031 areas, 200 open tickets): first render "
        f"{first_render_ms:.0f} ms after navigation start, {first_bytes:,} bytes in "
        f"{first_requests} requests"
        f"\nwall drill-down into 渝中区: {drill_ms:.0f} ms, {drill_bytes:,} bytes in "
        f"{drill_requests} requests"
    )
    assert first_render_ms < FIRST_RENDER_BOUND_MS
    assert first_bytes < FIRST_LOAD_BOUND_BYTES
    assert drill_bytes < first_bytes


def _children(hub: ScreenHub, code: str) -> list[Area]:
    return [a for a in runtime_of(hub.server.app).hierarchy if a.parent == code]


def _bytes(requests: list[Request]) -> int:
    """Bytes over the wire: headers and (compressed) bodies, both ways."""
    total = 0
    for request in requests:
        sizes = request.sizes()
        total += sum(sizes[k] for k in ("requestHeadersSize", "requestBodySize",
                                        "responseHeadersSize", "responseBodySize"))  # fmt: skip
    return total


async def _tickets(hub: ScreenHub, at_least: int) -> bool:
    async with runtime_of(hub.server.app).sessions() as session:
        found = await session.scalar(select(func.count()).select_from(Ticket))
    return (found or 0) >= at_least


def _shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"
