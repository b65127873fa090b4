"""The dispatcher's desk in a real browser: tickets arrive live, a dispatcher dispatches from the
drawer with the department picker, a refused action (409) is explained in the form with the
server's words, quick filters and keyboard shortcuts work."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from tests.screens.conftest import Screen, ScreenHub
from tests.support.apps import PASSWORD

WAIT_MS = 20_000  # a ticket is opened by dispatch's consumer, then relayed to /ws/live
# Points far outside the demo city: the geotagger places them nowhere, so their tickets are
# unlocated, owned by the city centre and wait in its queue as `new` (no automatic dispatch).
BEIJING = (116.40, 39.90)
SHANGHAI = (121.47, 31.23)
GUANGZHOU = (113.26, 23.13)


def bearer(hub: ScreenHub, user: str) -> dict[str, str]:
    """An Authorization header for `user`, to change tickets behind the page's back."""
    reply = hub.http.post("/auth/token", data={"username": user, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def open_desk(open_screen: Callable[..., Screen], user: str, name: str | None = None) -> Screen:
    """The desk, signed in, its (empty) REST load done and its live connection up: every
    ticket the test opens afterwards reaches the page over /ws/live."""
    screen = open_screen("/desk", user, name=name)
    expect(screen.page.locator(".live-state[data-state=live]")).to_be_visible(timeout=WAIT_MS)
    expect(screen.page.locator(".count")).to_have_text("没有符合条件的工单", timeout=WAIT_MS)
    return screen


def row(page: Page, ticket_id: str) -> Locator:
    """The table row of a ticket."""
    return page.locator(f'tbody tr[data-id="{ticket_id}"]')


def test_dispatch_from_the_drawer_and_a_409_explained(
    screen_hub: ScreenHub, open_screen: Callable[..., Screen]
) -> None:
    hub = screen_hub
    disp = hub.user("disp", "dispatcher", "city")
    screen = open_desk(open_screen, disp, name="desk")
    page = screen.page

    hub.post_event(*BEIJING, source_ref="desk-1")
    expect(page.locator("tbody tr")).to_have_count(1, timeout=WAIT_MS)
    first = page.locator("tbody tr").first
    expect(first.locator("td.status")).to_have_text("待派遣")
    expect(first).to_contain_text("未定位")
    ticket_id = first.get_attribute("data-id") or ""
    first = row(page, ticket_id)

    first.click()
    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    allowed = hub.http.get(f"/api/v1/tickets/{ticket_id}", headers=bearer(hub, disp)).json()[
        "allowed_actions"
    ]
    buttons = drawer.locator(".actions button[data-action]")
    expect(buttons).to_have_count(len(allowed))
    assert buttons.evaluate_all("bs => bs.map(b => b.dataset.action)") == allowed

    drawer.locator('.actions button[data-action="dispatch"]').click()
    form = drawer.locator('form.action-form[data-action="dispatch"]')
    picker = form.locator("select[name=department]:not([data-loading])")
    expect(picker).to_be_visible()
    offered = picker.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert "cgj" in offered and not any("@" in code for code in offered)  # unlocated: city only
    picker.select_option("cgj")
    form.locator("textarea[name=note]").fill("派往城管局")
    form.locator("button[type=submit]").click()
    expect(first.locator("td.status")).to_have_text("已派遣", timeout=WAIT_MS)
    expect(drawer.locator(".title .status")).to_have_text("已派遣")
    expect(form).to_have_count(0)
    expect(drawer.locator(".timeline li").last).to_contain_text("派往城管局")
    expect(drawer.locator('.actions button[data-action="dispatch"]')).to_have_count(0)

    # A second ticket: the dispatcher opens its dispatch form, but someone dispatches it first.
    hub.post_event(*SHANGHAI, source_ref="desk-2")
    expect(page.locator("tbody tr")).to_have_count(2, timeout=WAIT_MS)
    second = page.locator('tbody tr[data-status="new"]')
    second_id = second.get_attribute("data-id", timeout=WAIT_MS) or ""
    second.click()
    expect(drawer).to_have_attribute("data-id", second_id)
    drawer.locator('.actions button[data-action="dispatch"]').click()
    form = drawer.locator('form.action-form[data-action="dispatch"]')
    form.locator("select[name=department]:not([data-loading])").select_option("cgj")
    meanwhile = hub.http.post(
        f"/api/v1/tickets/{second_id}/actions",
        json={"action": "dispatch", "department": "jtj"},
        headers=bearer(hub, disp),
    )
    assert meanwhile.status_code == 200, meanwhile.text
    form.locator("button[type=submit]").click()
    error = form.locator(".error")
    expect(error).to_contain_text("cannot dispatch a ticket that is dispatched", timeout=WAIT_MS)
    expect(error).to_contain_text("无法执行")
    expect(error).to_have_attribute("data-status", "409")
    expect(row(page, second_id).locator("td.status")).to_have_text("已派遣", timeout=WAIT_MS)
    assert screen.foreign_hosts(hub.url) == set()


def test_quick_filter_and_keyboard(
    screen_hub: ScreenHub, open_screen: Callable[..., Screen]
) -> None:
    hub = screen_hub
    disp = hub.user("disp", "dispatcher", "city")
    screen = open_desk(open_screen, disp)
    page = screen.page
    for n, point in enumerate((BEIJING, SHANGHAI, GUANGZHOU)):
        hub.post_event(*point, source_ref=f"keys-{n}")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    ids = [str(i) for i in rows.evaluate_all("trs => trs.map(tr => tr.dataset.id)")]
    sent = hub.http.post(
        f"/api/v1/tickets/{ids[0]}/actions",
        json={"action": "dispatch", "department": "cgj"},
        headers=bearer(hub, disp),
    )
    assert sent.status_code == 200, sent.text
    expect(row(page, ids[0]).locator("td.status")).to_have_text("已派遣", timeout=WAIT_MS)

    page.locator('.chip[data-quick="new"]').click()
    expect(rows).to_have_count(2)
    assert {str(i) for i in rows.evaluate_all("trs => trs.map(tr => tr.dataset.id)")} == set(
        ids[1:]
    )
    expect(page.locator("tbody tr[data-status=dispatched]")).to_have_count(0)

    page.locator("body").press("j")
    top = rows.first
    expect(top).to_have_class("selected")
    page.keyboard.press("ArrowDown")
    expect(rows.nth(1)).to_have_class("selected")
    page.keyboard.press("k")
    expect(top).to_have_class("selected")
    page.keyboard.press("Enter")
    drawer = page.locator("#drawer")
    expect(drawer).to_have_attribute("data-id", top.get_attribute("data-id") or "")
    page.keyboard.press("d")
    form = drawer.locator('form.action-form[data-action="dispatch"]')
    expect(form).to_be_visible()
    form.locator("textarea[name=note]").focus()
    page.keyboard.type("dvc")  # typing: no shortcut fires
    expect(form.locator("textarea[name=note]")).to_have_value("dvc")
    expect(drawer.locator("form.action-form")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(form).to_have_count(0)
    page.keyboard.press("v")  # a new ticket offers no verification
    expect(drawer.locator(".notice")).to_contain_text("核查")
    page.keyboard.press("c")
    expect(drawer.locator('form.action-form[data-action="comment"]')).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()

    # Live rows carry no dispatched_at: a return makes a row "returned" until it leaves `new`.
    returned = page.evaluate(
        """async () => {
          const m = await import("/static/app/desk_model.js");
          const f = m.defaultFilters();
          f.quick.add("returned");
          const scope = m.parseScope("city");
          const live = (action, status, previous) => m.fromLive({
            id: "t", status, owner_tier: "city", owner_code: "500000", street_code: null,
            updated_at: "2026-01-01T00:00:00Z", transition: { action },
          }, previous);
          const back = live("return", "new", undefined);
          const commented = live("comment", "new", back);
          const sent = live("dispatch", "dispatched", commented);
          return [back, commented, sent, live("comment", "new", undefined)]
            .map((row) => m.matches(row, f, scope));
        }"""
    )
    assert returned == [True, True, False, False]

    page.locator("#lang").click()
    expect(page.locator('.chip[data-quick="new"]')).to_have_text("New")
    expect(rows.first.locator("td.status")).to_have_text("new")
    assert screen.foreign_hosts(hub.url) == set()
