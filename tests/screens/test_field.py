"""The field page at `/field` on a phone-sized screen (360 × 740): a street crew accepts, starts
and resolves a task with a note and a photo while the wall shows it live; actions taken offline
wait in the outbox, reach the hub once when the connection returns (a lost answer is retried with
the same key and replayed, not done twice); a problem report with the phone's position and a
photo; the crew stays signed in across reloads; no request leaves the hub."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import FilePayload, Page, Route, expect
from sqlalchemy import select

from shared.db.models import Event, TicketEvent
from tests.screens.conftest import Screen, ScreenHub
from tests.support.apps import PASSWORD, runtime_of
from tests.support.images import png
from tests.support.waiting import wait_for

STREET = "500103001"  # 七星岗街道, 渝中区
OFFICE = f"office@{STREET}"
CATEGORY = "E0402"  # 店外经营: no routing rule, so the street office handles it (属地)
OTHER_CATEGORY = "E0203"  # 占道宣传咨询: no rule either
WAIT_MS = 20_000  # dispatch's consumer opens the ticket, then the live relay carries it
PHONE = {"width": 360, "height": 740}
SHOTS = Path("var/screenshots")

OpenScreen = Callable[..., Screen]
# Age the page's stored access token (api.js Session): its next use needs the refresh token.
EXPIRE_ACCESS_TOKEN = """() => {
  const state = JSON.parse(localStorage.getItem("cityhub.session"));
  state.expires = 0;
  localStorage.setItem("cityhub.session", JSON.stringify(state));
}"""


def bearer(hub: ScreenHub, user: str) -> dict[str, str]:
    """An Authorization header for `user`."""
    reply = hub.http.post("/auth/token", data={"username": user, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def street_point(hub: ScreenHub) -> tuple[float, float]:
    """A point inside the crew's street."""
    area = runtime_of(hub.server.app).hierarchy.get(STREET)
    assert area is not None
    point = area.geometry.representative_point()
    return point.x, point.y


def crew_and_desk(hub: ScreenHub) -> tuple[str, dict[str, str]]:
    """The street office's crew (its name) and the street centre's desk (its header)."""
    crew = hub.user("crew-qxg", "field_staff", f"street:{STREET}", OFFICE)
    desk = hub.user("desk-qxg", "dispatcher", f"street:{STREET}")
    return crew, bearer(hub, desk)


def dispatched_ticket(
    hub: ScreenHub, desk: dict[str, str], description: str, category: str = CATEGORY
) -> str:
    """A hotline complaint in the street, dispatched by the desk to the street office (one per
    category: complaints of one category close together join one ticket)."""
    event = hub.post_event(*street_point(hub), category, description=description)
    event_id = uuid.UUID(event["id"])
    runtime = runtime_of(hub.server.app)

    async def linked() -> uuid.UUID | None:
        async with runtime.sessions() as session:
            return await session.scalar(
                select(TicketEvent.ticket_id).where(TicketEvent.event_id == event_id)
            )

    ticket_id = hub.server.run(wait_for(linked, within=WAIT_MS / 1000))
    reply = hub.http.post(
        f"/api/v1/tickets/{ticket_id}/actions", json={"action": "dispatch"}, headers=desk
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["ticket"]["department"] == OFFICE
    return str(ticket_id)


def ticket(hub: ScreenHub, ticket_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """The ticket as the hub has it."""
    reply = hub.http.get(f"/api/v1/tickets/{ticket_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def actions_of(detail: dict[str, Any]) -> list[str]:
    """The actions of a ticket's timeline, in order."""
    return [entry["action"] for entry in detail["timeline"]]


def open_field(open_screen: OpenScreen, crew: str, name: str | None = None) -> Page:
    """The field page on a phone, signed in, live."""
    screen = open_screen("/field", crew, **PHONE, name=name)
    page = screen.page
    expect(page.locator(".live-state[data-state=live]")).to_be_visible(timeout=WAIT_MS)
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    return page


def open_task(page: Page, ticket_id: str) -> None:
    """Tap a task in the list; its card shows."""
    page.locator(f"#tasks li.task[data-ticket='{ticket_id}']").click(timeout=WAIT_MS)
    expect(page.locator(f"#view-card[data-ticket='{ticket_id}']")).to_be_visible()


def sent(page: Page, action: str) -> None:
    """Wait until the card's outbox shows `action` sent."""
    expect(
        page.locator(f".card-outbox .outbox-item[data-action={action}][data-state=sent]")
    ).to_be_visible(timeout=WAIT_MS)


def test_field_accepts_and_resolves_with_a_photo_while_the_wall_watches(
    screen_hub: ScreenHub, open_screen: OpenScreen
) -> None:
    crew, desk = crew_and_desk(screen_hub)
    boss = screen_hub.user("wall-boss", "manager", "city")
    ticket_id = dispatched_ticket(screen_hub, desk, "餐馆把桌子摆到店外人行道上")
    waiting = dispatched_ticket(screen_hub, desk, "轻轨站出口有人摆摊宣传", OTHER_CATEGORY)
    wall = open_screen("/", boss, width=1280, height=800, name="field-wall")
    wall.page.wait_for_selector("body[data-view='city'][data-ready='true']", timeout=WAIT_MS)
    screen = open_screen("/field", crew, **PHONE, name="field")
    page = screen.page
    expect(page.locator(".live-state[data-state=live]")).to_be_visible(timeout=WAIT_MS)

    # The list: the task with its colour, status and time left (a 2 h accept deadline).
    task = page.locator(f"#tasks li.task[data-ticket='{ticket_id}']")
    expect(task).to_be_visible(timeout=WAIT_MS)
    expect(task.locator(".task-category")).to_have_text("店外经营")
    expect(task.locator(".task-status")).to_have_text("已派遣")
    expect(task.locator(".time-left")).to_contain_text("剩")
    assert task.locator(".dot").get_attribute("class") != "dot"  # a warning colour
    assert page.viewport_size == {"width": 360, "height": 740}

    open_task(page, ticket_id)
    assert page.locator(".actions button").all_inner_texts() == ["签收"]
    page.click("button[data-action=accept]")
    sent(page, "accept")
    expect(page.locator(".card-status")).to_have_text("已签收", timeout=WAIT_MS)
    page.click("button[data-action=start]", timeout=WAIT_MS)
    sent(page, "start")
    expect(page.locator(".card-status")).to_have_text("处置中", timeout=WAIT_MS)

    # 处置完成 with a note and a photo from the camera input.
    photo = png(42)
    page.fill("textarea[name=note]", "已劝导商户收回桌椅，人行道已恢复通行")
    page.set_input_files(
        "input[name=photo]",
        files=[FilePayload(name="spot.png", mimeType="image/png", buffer=photo)],
    )
    expect(page.locator(".resolve-form .previews canvas")).to_have_count(1)
    page.click("button[data-action=resolve]")
    sent(page, "resolve")
    expect(page.locator(".card-status")).to_have_text("待核查", timeout=WAIT_MS)

    detail = ticket(screen_hub, ticket_id, desk)
    assert detail["status"] == "resolved"
    assert actions_of(detail) == ["create", "dispatch", "accept", "start", "resolve"]
    resolve = detail["timeline"][-1]
    assert resolve["actor"] == crew and resolve["note"] == "已劝导商户收回桌椅，人行道已恢复通行"
    (path,) = resolve["data"]["photos"]
    assert path.startswith("/files/") and path.endswith(".png")
    stored = screen_hub.http.get(path)
    assert stored.status_code == 200 and stored.content == photo
    # The card's history shows the photo, served by the hub.
    image = page.locator(f".timeline li[data-action=resolve] img[src='{path}']")
    expect(image).to_be_visible(timeout=WAIT_MS)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 1", arg=image.element_handle()
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "field-card.png"), full_page=True)

    # The wall saw it live: the resolve in its feed.
    wall.page.wait_for_function(
        """id => [...document.querySelectorAll(`li.feed-entry[data-ticket="${id}"]`)]
             .some(li => li.querySelector('.feed-action')?.textContent === '处置完成')""",
        arg=ticket_id,
        timeout=WAIT_MS,
    )
    # Back in the list, the task moved to the handled ones.
    page.click(".card .back")
    expect(page.locator(f"#done li.task[data-ticket='{ticket_id}']")).to_be_visible()
    expect(page.locator("#tasks li.task")).to_have_count(1)
    left = page.locator(f"#tasks li.task[data-ticket='{waiting}'] .time-left")
    expect(left).to_contain_text("剩")
    page.click("#lang")
    expect(page.locator(".tabs button[data-tab=tasks] span")).to_have_text("My tasks")
    expect(left).to_contain_text("left")
    page.click("#lang")
    assert screen.foreign_hosts(screen_hub.url) == set()
    assert wall.foreign_hosts(screen_hub.url) == set()


def test_offline_actions_reach_the_hub_once(screen_hub: ScreenHub, open_screen: OpenScreen) -> None:
    crew, desk = crew_and_desk(screen_hub)
    ticket_id = dispatched_ticket(screen_hub, desk, "店外经营占道")
    screen = open_screen("/field", crew, **PHONE, name="field-offline")
    page = screen.page
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)

    # Signed in once: a reload (or a closed browser) does not ask again.
    page.reload()
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    assert page.locator("form.signin").count() == 0
    expect(page.locator(".live-state[data-state=live]")).to_be_visible(timeout=WAIT_MS)
    open_task(page, ticket_id)
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=WAIT_MS)

    # Offline: accept and start wait in the outbox, in order; nothing reaches the hub.
    page.context.set_offline(True)
    expect(page.locator(".fbar .net")).to_be_visible()
    page.click("button[data-action=accept]")
    queued = page.locator(".card-outbox .outbox-item[data-action=accept]")
    expect(queued).to_have_attribute("data-state", "queued")
    expect(queued.locator(".state")).to_have_text("排队中")
    page.click("button[data-action=start]")  # offered: the queued accept would allow it
    expect(page.locator(".card-outbox .outbox-item[data-action=start]")).to_have_attribute(
        "data-state", "queued"
    )
    expect(page.locator("#n-outbox")).to_have_text("2")
    before = ticket(screen_hub, ticket_id, desk)
    assert before["status"] == "dispatched"
    assert actions_of(before) == ["create", "dispatch"]

    # Still offline, the page starts again from its service worker's cache, with the tasks as
    # last synced and the outbox as it was (IndexedDB) — its access token expired meanwhile.
    page.evaluate(EXPIRE_ACCESS_TOKEN)
    page.reload()
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    expect(page.locator(".banner")).to_contain_text("离线")
    expect(page.locator(".live-state")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#n-outbox")).to_have_text("2")
    expect(page.locator(f"#view-card[data-ticket='{ticket_id}'] .card-status")).to_have_text(
        "处置中"  # what the queued actions will make it
    )
    assert actions_of(ticket(screen_hub, ticket_id, desk)) == ["create", "dispatch"]

    # Online again: both go, once each, in order; the session refreshes, the stream resumes.
    page.context.set_offline(False)
    sent(page, "accept")
    sent(page, "start")
    expect(page.locator(".live-state[data-state=live]")).to_be_visible(timeout=WAIT_MS)
    assert page.locator("form.signin").count() == 0
    after = ticket(screen_hub, ticket_id, desk)
    assert after["status"] == "in_progress"
    assert actions_of(after) == ["create", "dispatch", "accept", "start"]

    # A lost answer: the hub resolves, the phone never hears back, and retries with the same
    # key; the hub answers the retry from what it stored instead of resolving again.
    keys: list[str] = []

    def drop_first_answer(route: Route) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        if len(keys) == 1:
            route.fetch()  # the hub acts and answers...
            route.abort("connectionreset")  # ...and the answer is lost on the way
        else:
            route.continue_()

    page.route("**/api/v1/tickets/*/actions", drop_first_answer)
    page.fill("textarea[name=note]", "已处理")
    page.click("button[data-action=resolve]")
    sent(page, "resolve")
    page.unroute("**/api/v1/tickets/*/actions")
    assert len(keys) == 2 and keys[0] == keys[1] and uuid.UUID(keys[0])
    resolved = ticket(screen_hub, ticket_id, desk)
    assert resolved["status"] == "resolved"
    assert actions_of(resolved) == ["create", "dispatch", "accept", "start", "resolve"]
    assert "2" in page.locator(".card-outbox .outbox-item[data-action=resolve]").inner_text()

    # A refused action is final, with the hub's reason: the desk returned the next task before
    # the phone (offline) accepted it.
    second = dispatched_ticket(screen_hub, desk, "店门口摆摊宣传", OTHER_CATEGORY)
    page.click(".card .back")
    open_task(page, second)  # arrived live
    page.context.set_offline(True)
    page.click("button[data-action=accept]")
    reply = screen_hub.http.post(
        f"/api/v1/tickets/{second}/actions",
        json={"action": "return", "reason": "不属于本街道"},
        headers=desk,
    )
    assert reply.status_code == 200, reply.text
    page.context.set_offline(False)
    failed = page.locator(".card-outbox .outbox-item[data-action=accept][data-state=failed]")
    expect(failed).to_be_visible(timeout=WAIT_MS)
    expect(failed.locator(".reason")).to_contain_text("not to your department office@")
    assert actions_of(ticket(screen_hub, second, desk))[-1] == "return"
    assert screen.foreign_hosts(screen_hub.url) == set()


def test_a_report_with_position_and_photo_is_stored_once(
    screen_hub: ScreenHub, open_screen: OpenScreen
) -> None:
    crew, _desk = crew_and_desk(screen_hub)
    screen = open_screen("/field", crew, **PHONE, name="field-report")
    page = screen.page
    lon, lat = street_point(screen_hub)
    page.context.grant_permissions(["geolocation"])
    page.context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 12})
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    page.click(".tabs button[data-tab=report]")
    expect(page.locator(".position[data-located=true]")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("select[name=category] option[value=C0104]")).to_have_count(1)
    page.select_option("select[name=category]", "C0104")
    page.fill("textarea[name=description]", "路口井盖缺失")
    page.set_input_files(
        "input[name=photos]",
        files=[FilePayload(name="cover.png", mimeType="image/png", buffer=png(9))],
    )
    expect(page.locator("form.report .previews canvas")).to_have_count(1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "field-report-form.png"))
    # Sent while offline: it waits, then goes once (its key is the report's source_ref).
    page.context.set_offline(True)
    page.click("form.report button[type=submit]")
    expect(page.locator(".report .message")).to_have_text("已加入发送队列")
    page.click(".tabs button[data-tab=outbox]")
    item = page.locator("#outbox .outbox-item[data-kind=report]")
    expect(item).to_have_attribute("data-state", "queued")
    page.context.set_offline(False)
    expect(item).to_have_attribute("data-state", "sent", timeout=WAIT_MS)
    key = item.get_attribute("data-key")
    assert key

    async def stored() -> list[Event]:
        runtime = runtime_of(screen_hub.server.app)
        async with runtime.sessions() as session:
            return list(await session.scalars(select(Event).where(Event.source_ref == key)))

    (event,) = screen_hub.server.run(stored())
    assert (event.source, event.category, event.street_code) == ("grid", "C0104", STREET)
    assert event.description == "路口井盖缺失" and len(event.attachments) == 1
    assert json.dumps(event.attachments).count("/files/") == 1
    assert screen.foreign_hosts(screen_hub.url) == set()


def test_the_page_is_installable(screen_hub: ScreenHub, open_screen: OpenScreen) -> None:
    crew, _desk = crew_and_desk(screen_hub)
    page = open_field(open_screen, crew, name="field-install")
    href = page.eval_on_selector("link[rel=manifest]", "link => link.href")
    manifest = screen_hub.http.get(href)
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    body = manifest.json()
    assert (body["start_url"], body["scope"], body["display"]) == ("/field", "/field", "standalone")
    sizes = {icon["sizes"] for icon in body["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in body["icons"]:
        reply = screen_hub.http.get(icon["src"])
        assert reply.status_code == 200 and reply.headers["content-type"] == icon["type"]
    # The service worker that lets it start offline controls the page.
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{screen_hub.url}/field"
    worker = screen_hub.http.get("/field-sw.js")
    assert worker.headers["content-type"].startswith("text/javascript")
