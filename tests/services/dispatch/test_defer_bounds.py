"""A deferral moves a handling deadline, it never switches it off: at most
CITYHUB_DISPATCH__MAX_DEFER_DAYS (90 by default) ahead, and only times datetime can hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.settings import DispatchSettings, Settings
from tests.support.tickets import Hub, running_hub, shifted


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        yield running


def ahead(days: float) -> str:
    """A time `days` from now, as ISO-8601 with a zone."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


async def test_a_deferral_is_bounded(hub: Hub) -> None:
    street = hub.streets()[6]
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="E0101", location=shifted(lon, lat))  # dispatched
    for until in (
        "9999-12-31T23:59:59+08:00",  # the deadline would never come
        ahead(91),
        "9999-12-31T23:59:59-14:00",  # beyond datetime's range once in UTC
        "0001-01-01T00:00:00+14:00",
    ):
        reply = await hub.act(ticket_id, desk, "defer", until=until)
        assert reply.status_code == 422, (until, reply.text)
    forever = await hub.act(ticket_id, desk, "defer", until="9999-12-31T23:59:59+08:00")
    detail = forever.json()["detail"]
    assert "at most 90 days ahead" in detail and "CITYHUB_DISPATCH__MAX_DEFER_DAYS" in detail
    assert (await hub.ticket(ticket_id, desk))["timeline"][-1]["action"] == "dispatch"

    until = ahead(89)
    deferred = await hub.ok(ticket_id, desk, "defer", until=until)
    assert datetime.fromisoformat(deferred["handle_due_at"]) == datetime.fromisoformat(until)


async def test_the_longest_deferral_is_a_setting(
    embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYHUB_DISPATCH__MAX_DEFER_DAYS", "7")
    assert Settings().dispatch.max_defer_days == 7
    settings = embedded_settings.model_copy(update={"dispatch": DispatchSettings(max_defer_days=7)})
    async with running_hub(settings) as hub:
        street = hub.streets()[6]
        desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
        lon, lat = hub.point(street)
        ticket_id = await hub.report(category="E0101", location=shifted(lon, lat))
        refused = await hub.act(ticket_id, desk, "defer", until=ahead(8))
        assert refused.status_code == 422 and "at most 7 days" in refused.json()["detail"]
        assert (await hub.act(ticket_id, desk, "defer", until=ahead(6))).status_code == 200
