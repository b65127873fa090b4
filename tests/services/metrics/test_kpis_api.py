"""The KPI API (who may read what, bad input) and the `kpis` live messages, on a running hub."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.metrics.kpis_api import context_of
from services.metrics.push import KpiPusher
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted
from tests.support.waiting import wait_for

DISTRICT = "500103"
OTHER = "500104"


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with running_hub(embedded_settings) as running:
        yield running


async def get(hub: Hub, path: str, headers: dict[str, str], status: int = 200) -> Any:
    reply = await hub.client.get(path, headers=headers)
    assert reply.status_code == status, reply.text
    return reply.json()


async def test_who_reads_which_kpis(hub: Hub) -> None:
    street = hub.streets(DISTRICT)[0]
    admin = await hub.user("root", "admin", "city")
    district = await hub.user("district-desk", "dispatcher", f"district:{DISTRICT}")
    desk = await hub.user("desk", "dispatcher", f"street:{street.code}")
    boss = await hub.user("boss", "manager", f"district:{DISTRICT}")
    crew = await hub.user("crew", "field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}")
    await hub.report(source="hotline", category="E0101", location=shifted(*hub.point(street)))

    async def counted() -> bool:
        found = await get(hub, "/api/v1/kpis", desk)
        return bool(found["intake"]["total"] == 1 and found["filed"] == 1)

    await wait_for(counted)
    own = await get(hub, "/api/v1/kpis", desk)  # default: the caller's scope, today
    assert (own["scope"], own["window"], own["name"]) == (f"street:{street.code}", "today",
                                                         street.name)  # fmt: skip
    assert own["hotspots"] is None and own["intake"]["by_channel"]["hotline"] == 1
    city = await get(hub, "/api/v1/kpis?window=30d", admin)
    assert (city["scope"], city["window"], city["filed"]) == ("city", "30d", 1)
    assert [h["code"] for h in city["hotspots"]] == [street.code]
    assert (await get(hub, "/api/v1/kpis", boss))["scope"] == f"district:{DISTRICT}"
    inside = await get(hub, f"/api/v1/kpis?scope=street:{street.code}&window=7d", district)
    assert inside["filed"] == 1
    dept = await get(hub, f"/api/v1/kpis?scope=department:cgj@{DISTRICT}", district)
    assert (dept["scope"], dept["backlog"], dept["intake"]["total"]) == (
        f"department:cgj@{DISTRICT}", 1, 1,
    )  # fmt: skip

    # Outside the caller's scope, or unknown: 404; malformed or unknown values: 422.
    for path, who in [
        (f"/api/v1/kpis?scope=district:{OTHER}", district),
        ("/api/v1/kpis?scope=city", district),
        (f"/api/v1/kpis?scope=district:{DISTRICT}", desk),
        (f"/api/v1/kpis?scope=street:{hub.streets(OTHER)[0].code}", district),
        ("/api/v1/kpis?scope=district:999999", admin),
        (f"/api/v1/kpis?scope=district:{street.code}", admin),  # a street is no district
        (f"/api/v1/kpis?scope=department:cgj@{OTHER}", district),
        ("/api/v1/kpis?scope=department:nosuch", admin),
        (f"/api/v1/kpis?scope=department:dispatch@{DISTRICT}", admin),  # a queue handles nothing
        (f"/api/v1/kpis/ranking?level=street&parent={OTHER}", district),
        ("/api/v1/kpis/ranking?level=street&parent=nowhere", admin),
    ]:
        assert (await hub.client.get(path, headers=who)).status_code == 404, path
    for path in [
        "/api/v1/kpis?window=1y", "/api/v1/kpis?scope=bogus", "/api/v1/kpis?scope=district:",
        "/api/v1/kpis?scope=city:1", "/api/v1/kpis/ranking?level=province",
        "/api/v1/kpis/ranking", "/api/v1/kpis/ranking?level=street&window=week",
    ]:  # fmt: skip
        assert (await hub.client.get(path, headers=admin)).status_code == 422, path
    for who in (crew, hub.key):
        assert (await hub.client.get("/api/v1/kpis", headers=who)).status_code == 403
        assert (
            await hub.client.get("/api/v1/kpis/ranking?level=district", headers=who)
        ).status_code == 403
    assert (await hub.client.get("/api/v1/kpis")).status_code == 401
    assert (await get(hub, "/api/v1/kpis/summary", admin))["tickets_total"] == 1  # kept


async def test_rankings_list_the_units_inside_the_scope(hub: Hub) -> None:
    streets = hub.streets(DISTRICT)
    admin = await hub.user("root", "admin", "city")
    district = await hub.user("district-desk", "dispatcher", f"district:{DISTRICT}")
    desk = await hub.user("desk", "dispatcher", f"street:{streets[1].code}")
    await hub.report(category="E0101", location=shifted(*hub.point(streets[1])))

    async def counted() -> bool:
        found = await get(hub, "/api/v1/kpis/ranking?level=street", district)
        return any(u["intake"] == 1 for u in found["items"])

    await wait_for(counted)
    ranking = await get(hub, "/api/v1/kpis/ranking?level=street", district)
    assert ranking["parent"] == f"district:{DISTRICT}" and ranking["window"] == "today"
    assert sorted(u["code"] for u in ranking["items"]) == sorted(s.code for s in streets)
    assert [u["rank"] for u in ranking["items"]] == list(range(1, len(streets) + 1))
    cities = await get(hub, "/api/v1/kpis/ranking?level=district&window=7d", admin)
    assert len(cities["items"]) == len(context_of(hub.runtime).hierarchy.districts)
    own = await get(hub, "/api/v1/kpis/ranking?level=district", district)
    assert [(u["code"], u["filed"]) for u in own["items"]] == [(DISTRICT, 1)]
    nested = await get(hub, f"/api/v1/kpis/ranking?level=street&parent={streets[1].code}", admin)
    assert [u["code"] for u in nested["items"]] == [streets[1].code]
    departments = await get(hub, "/api/v1/kpis/ranking?level=department", district)
    assert [(u["code"], u["backlog"]) for u in departments["items"]] == [(f"cgj@{DISTRICT}", 1)]
    assert (await get(hub, "/api/v1/kpis/ranking?level=district", desk))["items"] == []


def kpi_frames(frames: list[str]) -> list[dict[str, Any]]:
    found = [json.loads(f) for f in frames]
    return [f for f in found if f["stream"] == "kpis"]


@pytest.fixture(params=["embedded", "production"])
async def either_hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The hub on SQLite (one process pushes) and on PostgreSQL (the advisory lock elects)."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        yield running


async def test_kpis_live_messages_follow_changes_at_most_once_a_second(either_hub: Hub) -> None:
    hub = either_hub
    street = hub.streets(DISTRICT)[2]
    await hub.report(source="grid", category="E0101", location=shifted(*hub.point(street)))
    live = hub.runtime.live

    async def pushed() -> list[dict[str, Any]]:
        records = await live.read_after(0, 10_000) or []
        frames = kpi_frames([r.frame for r in records])
        return frames if {f["data"]["scope"] for f in frames} >= {
            "city", f"district:{DISTRICT}", f"street:{street.code}"
        } else []  # fmt: skip

    first = await wait_for(pushed, within=15)
    assert len(first) >= 3
    records = await live.read_after(0, 10_000) or []
    by_scope: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record.stream == "kpis":
            frame = json.loads(record.frame)
            by_scope.setdefault(frame["data"]["scope"], []).append(frame)
            if frame["data"]["scope"] == f"street:{street.code}":
                assert (record.district, record.street) == (DISTRICT, street.code)
            if frame["data"]["scope"] == "city":
                assert (record.district, record.street) == (None, None)
    street_frames = by_scope[f"street:{street.code}"]
    assert street_frames[-1]["data"]["intake"] == 1 and street_frames[-1]["data"]["filed"] == 1
    assert street_frames[-1]["data"]["window"] == "today"
    latest = street_frames[-1]["data"]
    assert latest["by_channel"] == {"hotline": 0, "sensor": 0, "grid": 1, "api": 0}
    assert latest["close_time_s"] == {"count": 0, "mean": None}
    for frames in by_scope.values():
        times = [datetime.fromisoformat(f["at"]) for f in frames]
        assert all(b - a >= timedelta(seconds=0.9) for a, b in itertools.pairwise(times))
        datas = [f["data"] for f in frames]
        assert all(a != b for a, b in itertools.pairwise(datas))  # only when a figure changed

    # Nothing changed since: a pass finds every area's figures as pushed and pushes nothing.
    pusher = KpiPusher(hub.runtime.sessions, hub.runtime.live, context_of(hub.runtime))
    now = datetime.now(UTC)
    await pusher.seed(now)
    assert await pusher.tick(now) == []
