"""Alerts end to end on a running hub: a breach, an emergency switch, a sensor going offline and
back and a dead-letter spike each become stored alerts in their area, on `/api/v1/alerts` and in
the live log; a redelivered message stores and streams nothing new; every scope sees only its
own area's alerts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch.scheduler import for_runtime
from services.gateway.proxy import upstream_for
from services.ingest.sensors.writes import RaiseAlarm
from services.metrics.alerts_consumer import record
from shared.db.models import AlertRow, OutboxMessage, Ticket
from shared.messages import (
    ALERTS_RAISED,
    EMERGENCY_CHANGED,
    AlertRaisedV1,
    EmergencyChangedV1,
    Message,
    encode,
)
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.apps import add_user, login, runtime_of
from tests.support.sensors import SensorHub, sensor_hub
from tests.support.tickets import Hub, running_hub
from tests.support.waiting import wait_for

DISTRICT, OTHER_DISTRICT = "500103", "500104"
Headers = dict[str, str]


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The whole hub on SQLite + in-process bus, and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        await running.user("root", "admin", "city")
        yield running


@pytest.fixture
async def embedded_hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with running_hub(embedded_settings) as running:
        await running.user("root", "admin", "city")
        yield running


async def listed(
    client: httpx.AsyncClient, headers: Headers, **params: Any
) -> list[dict[str, Any]]:
    """`GET /api/v1/alerts` (200 expected): the items."""
    reply = await client.get("/api/v1/alerts", params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


async def wait_listed(
    client: httpx.AsyncClient, headers: Headers, count: int, **params: Any
) -> list[dict[str, Any]]:
    """Wait until the listing holds at least `count` alerts."""

    async def probe() -> list[dict[str, Any]]:
        items = await listed(client, headers, **params)
        return items if len(items) >= count else []

    return await wait_for(probe, within=20)


async def live_alerts(runtime: Runtime) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    """(type, district, street, data) of every alert in the live log, oldest first."""
    records = await runtime.live.read_after(0, 100_000)
    assert records is not None
    frames = [(r, json.loads(r.frame)) for r in records if r.stream == "alerts"]
    return [(f["type"], r.district, r.street, f["data"]) for r, f in frames]


async def stored(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AlertRow)) or 0)


async def drain(runtime: Runtime, stream: str, sentinel: Message) -> None:
    """Wait until everything committed so far was published, then until the alerts consumer
    handled `sentinel` (published after it on `stream`, so handled after it)."""

    async def outbox_empty() -> bool:
        async with runtime.sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(OutboxMessage))
        return rows == 0

    await wait_for(outbox_empty, within=20)
    await runtime.bus.publish(stream, encode(sentinel))

    async def handled() -> bool:
        async with runtime.sessions() as session:
            found = await session.scalar(
                select(func.count()).select_from(AlertRow).where(AlertRow.source_id == sentinel.id)
            )
        return bool(found)

    await wait_for(handled, within=20)


def sentinel() -> AlertRaisedV1:
    return AlertRaisedV1(alert="sensor_online", at=datetime.now(UTC), sensor_id="sentinel")


# -- breaches -------------------------------------------------------------------------------


async def test_a_breach_alerts_its_street_and_only_its_street(hub: Hub) -> None:
    a, b = hub.streets()[:2]
    root = hub.users["root"]
    mgr_a = await hub.user("mgr-a", "manager", f"street:{a.code}")
    mgr_b = await hub.user("mgr-b", "manager", f"street:{b.code}")
    district = await hub.user("mgr-d", "manager", f"district:{DISTRICT}")
    other = await hub.user("mgr-o", "manager", f"district:{OTHER_DISTRICT}")
    field = await hub.user("field-a", "field_staff", f"street:{a.code}", f"cgj@{DISTRICT}")
    lon, lat = hub.point(a)
    ticket_id = await hub.report(category="E0403", location={"lon": lon, "lat": lat})
    runtime = hub.runtime
    async with runtime.sessions() as session:
        ticket = await session.get(Ticket, uuid.UUID(ticket_id))
    assert ticket is not None and ticket.accept_due_at is not None
    due = ticket.accept_due_at

    # The hub's own scheduler runs on the wall clock; this one stands just past the deadline.
    scheduler = for_runtime(runtime)
    scheduler.clock = lambda: due + timedelta(seconds=1)
    assert await scheduler.fire_due() >= 1
    runtime.outbox.wake()

    items = await wait_listed(hub.client, root, 3, kind=["breach", "supervision", "escalation"])
    assert sorted(i["kind"] for i in items) == ["breach", "escalation", "supervision"]
    for item in items:
        assert (item["district"], item["street"], item["ticket_id"]) == (
            DISTRICT,
            a.code,
            ticket_id,
        )
        assert item["title"] and item["title_en"] and item["severity"] in ("warning", "critical")
    breach = next(i for i in items if i["kind"] == "breach")
    assert breach["details"]["phase"] == "accept"
    assert breach["title_en"].startswith("Ticket overdue")

    ids = {i["id"] for i in items}
    assert {i["id"] for i in await listed(hub.client, mgr_a)} == ids
    assert {i["id"] for i in await listed(hub.client, district)} == ids
    assert {i["id"] for i in await listed(hub.client, field)} == ids
    assert await listed(hub.client, mgr_b) == []  # never another street's alert
    assert await listed(hub.client, other) == []
    assert [i["kind"] for i in await listed(hub.client, mgr_a, kind="breach")] == ["breach"]
    later = (due + timedelta(days=1)).isoformat()
    assert await listed(hub.client, mgr_a, since=later) == []

    streamed = [entry for entry in await live_alerts(runtime) if entry[3]["id"] in ids]
    assert sorted(t for t, *_ in streamed) == [
        "alert.breach",
        "alert.escalation",
        "alert.supervision",
    ]
    assert {(d, s) for _, d, s, _data in streamed} == {(DISTRICT, a.code)}
    assert {data["id"]: data for *_, data in streamed} == {i["id"]: i for i in items}


# -- emergency mode and redelivery --------------------------------------------------------

FLOOD: dict[str, Any] = {
    "area": DISTRICT, "incident": "防汛", "categories": ["E0501", "S0101"], "deadline_factor": 0.5,
}  # fmt: skip


async def test_emergency_switches_alert_their_district(embedded_hub: Hub) -> None:
    hub = embedded_hub
    desk = await hub.user("desk", "dispatcher", "city")
    district = await hub.user("mgr-d", "manager", f"district:{DISTRICT}")
    other = await hub.user("mgr-o", "manager", f"district:{OTHER_DISTRICT}")
    reply = await hub.client.post("/api/v1/emergency", json=FLOOD, headers=desk)
    assert reply.status_code == 201, reply.text
    mode = reply.json()
    [started] = await wait_listed(hub.client, district, 1)
    assert (started["kind"], started["severity"], started["district"], started["street"]) == (
        "emergency_started", "critical", DISTRICT, None
    )  # fmt: skip
    assert started["title"] == "渝中区启动应急模式：防汛"
    assert started["details"]["emergency_id"] == mode["id"]

    reply = await hub.client.delete(f"/api/v1/emergency/{mode['id']}", headers=desk)
    assert reply.status_code == 200, reply.text
    ended, _started = await wait_listed(hub.client, district, 2)  # newest first
    assert (ended["kind"], ended["severity"], ended["district"]) == (
        "emergency_ended",
        "info",
        DISTRICT,
    )
    assert await listed(hub.client, other) == []
    assert [t for t, *_ in await live_alerts(hub.runtime)] == [
        "alert.emergency_started", "alert.emergency_ended"
    ]  # fmt: skip


async def test_a_city_wide_switch_is_a_city_alert(embedded_hub: Hub) -> None:
    hub = embedded_hub
    desk = await hub.user("desk", "dispatcher", "city")
    district = await hub.user("mgr-d", "manager", f"district:{DISTRICT}")
    city = hub.runtime.hierarchy.city.code
    reply = await hub.client.post("/api/v1/emergency", json={**FLOOD, "area": city}, headers=desk)
    assert reply.status_code == 201, reply.text
    [alert] = await wait_listed(hub.client, hub.users["root"], 1)
    assert (alert["kind"], alert["district"], alert["street"]) == ("emergency_started", None, None)
    assert alert["title_en"] == "Emergency mode started in the city: 防汛"
    # City-wide alerts reach city-scope screens only (the rule `/ws/live` applies: Scope.covers).
    assert await listed(hub.client, district) == []


async def test_a_redelivered_message_stores_and_streams_nothing_new(hub: Hub) -> None:
    runtime = hub.runtime
    switch = EmergencyChangedV1(
        emergency_id=uuid.uuid4(), change="started", area=DISTRICT, incident="防汛",
        categories=["E0501"], deadline_factor=0.5, at=datetime.now(UTC), by="desk",
    )  # fmt: skip
    for _ in range(3):  # the relay published it, crashed before deleting the row, published again
        await runtime.bus.publish(EMERGENCY_CHANGED, encode(switch))
    await drain(runtime, EMERGENCY_CHANGED, switch.model_copy(update={"id": uuid.uuid4()}))
    assert await stored(runtime) == 2  # the switch once, and the sentinel
    assert [d["details"]["emergency_id"] for *_, d in await live_alerts(runtime)] == [
        str(switch.emergency_id), str(switch.emergency_id)
    ]  # fmt: skip
    live = await live_alerts(runtime)
    assert len({d["id"] for *_, d in live}) == 2  # one each: nothing appended twice
    assert await record(runtime, [switch]) == []  # handled directly once more: still nothing
    assert await stored(runtime) == 2
    assert len(await live_alerts(runtime)) == 2


# -- REST -----------------------------------------------------------------------------------


async def test_who_may_list_and_bounded_parameters(embedded_hub: Hub) -> None:
    hub = embedded_hub
    root = hub.users["root"]
    reply = await hub.client.get("/api/v1/alerts", headers=hub.key)  # an integrator's key
    assert reply.status_code == 403
    assert (await hub.client.get("/api/v1/alerts")).status_code == 401
    for params in (
        {"kind": "nonsense"},
        {"limit": 0},
        {"limit": 501},
        {"since": "1999-12-31T00:00:00+00:00"},
        {"since": "2026-01-01T00:00:00"},  # no zone
        {"kind": ["breach"] * 21},
    ):
        reply = await hub.client.get("/api/v1/alerts", params=params, headers=root)
        assert reply.status_code == 422, (params, reply.text)
    page = (await hub.client.get("/api/v1/alerts", headers=root)).json()
    assert page == {"scope": "city", "items": []}
    assert upstream_for("/api/v1/alerts") == "metrics"  # production: the gateway forwards it


async def test_newest_first_and_limited(embedded_hub: Hub) -> None:
    hub = embedded_hub
    runtime = hub.runtime
    start = datetime.now(UTC) - timedelta(minutes=10)
    messages = [
        AlertRaisedV1(
            alert="sensor_offline",
            at=start + timedelta(minutes=i),
            sensor_id=f"s-{i}",
            district=DISTRICT,
            street=hub.streets()[0].code,
        )
        for i in range(5)
    ]
    assert len(await record(runtime, messages)) == 5
    root = hub.users["root"]
    items = await listed(hub.client, root, limit=3)
    assert [i["details"]["sensor_id"] for i in items] == ["s-4", "s-3", "s-2"]
    since = (start + timedelta(minutes=3)).isoformat()
    assert [i["details"]["sensor_id"] for i in await listed(hub.client, root, since=since)] == [
        "s-4", "s-3"
    ]  # fmt: skip


# -- sensors --------------------------------------------------------------------------------


@pytest.fixture(params=["embedded", pytest.param("mosquitto", marks=pytest.mark.mqtt)])
async def sensors(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SensorHub]:
    """A hub with the sensor intake on the embedded broker or on Mosquitto; a spike is more
    than 5 refused messages a minute."""
    monkeypatch.setenv("CITYHUB_ALERTS__DEAD_LETTER_SPIKE", "5")
    servers = request.getfixturevalue("servers") if request.param == "mosquitto" else None
    async with sensor_hub(request.param, tmp_path, servers) as running:
        yield running


def reading(value: float) -> str:
    return json.dumps({"ts": round(time.time() * 1000), "values": {"water_level_cm": value}})


async def test_a_sensor_going_offline_and_back_raises_two_alerts(sensors: SensorHub) -> None:
    hub = sensors
    runtime = runtime_of(hub.app)
    await hub.put_sensor("wl-3", name="解放碑地下通道")
    will = (hub.topic("wl-3", "status"), b"offline")
    async with hub.publisher(will=will) as device:
        await device.publish(hub.topic("wl-3"), reading(10))
        device.drop()  # the connection dies: the broker publishes the will
        [offline] = await wait_listed(hub.client, hub.admin, 1, kind="sensor_offline")
    async with hub.publisher() as pub:
        await pub.publish(hub.topic("wl-3"), reading(11))
        [online] = await wait_listed(hub.client, hub.admin, 1, kind="sensor_online")

    [alarm] = await hub.alarms("wl-3")
    event = (
        await hub.client.get(f"/api/v1/events/{alarm['event_id']}", headers=hub.headers())
    ).json()
    place = (event["geotag"]["street"], event["geotag"]["district"])
    assert place[0] is not None  # the sensor stands inside a street
    for alert in (offline, online):
        assert (alert["street"], alert["district"]) == place  # where its ticket is
        assert alert["details"]["sensor_id"] == "wl-3"
        assert alert["details"]["integrator"] == "acme"
    assert offline["severity"] == "warning" and online["severity"] == "info"
    assert offline["details"]["event_id"] == alarm["event_id"]
    assert offline["details"]["alarm_id"] == online["details"]["alarm_id"] == alarm["id"]
    assert online["details"]["offline_s"] >= 0

    await add_user(hub.app, "mgr-here", "manager", f"street:{place[0]}")
    here = await login(hub.client, "mgr-here")
    assert {a["kind"] for a in await listed(hub.client, here)} == {
        "sensor_offline",
        "sensor_online",
    }
    elsewhere = next(s for s in runtime.hierarchy.streets if s.code != place[0])
    await add_user(hub.app, "mgr-there", "manager", f"street:{elsewhere.code}")
    assert await listed(hub.client, await login(hub.client, "mgr-there")) == []
    streamed = [(t, d, s) for t, d, s, _ in await live_alerts(runtime)]
    assert streamed == [
        ("alert.sensor_offline", place[1], place[0]), ("alert.sensor_online", place[1], place[0])
    ]  # fmt: skip

    # Offline again; its raise stored twice (a redelivered message after a crash, or another
    # replica): one alarm, one alert.
    writes = hub.intake.receive(hub.topic("wl-3", "status"), b"offline")
    assert [type(w) for w in writes] == [RaiseAlarm]
    for _ in range(2):
        done = asyncio.Event()
        hub.intake.submit(list(writes), done.set)
        await asyncio.wait_for(done.wait(), 10)
    await drain(runtime, ALERTS_RAISED, sentinel())
    assert len(await listed(hub.client, hub.admin, kind="sensor_offline")) == 2  # a new silence


async def test_a_dead_letter_spike_alerts_the_city_once_a_minute(sensors: SensorHub) -> None:
    hub = sensors
    runtime = runtime_of(hub.app)
    await hub.put_sensor("wl-5")
    async with hub.publisher() as pub:
        for i in range(12):  # more than 5 within a minute, twice over
            await pub.publish(hub.topic("wl-5"), f"not json {i}".encode())
        await hub.sync(pub, "wl-5")
    [spike] = await wait_listed(hub.client, hub.admin, 1, kind="dead_letter_spike")
    assert (spike["district"], spike["street"], spike["severity"]) == (None, None, "warning")
    assert spike["details"]["integrator"] == "acme"
    assert spike["details"]["refused"] == 6 and spike["details"]["threshold"] == 5
    assert spike["details"]["reasons"] == {"not_json": 6}
    assert "acme" in spike["title"] and "acme" in spike["title_en"]
    await drain(runtime, ALERTS_RAISED, sentinel())
    assert len(await listed(hub.client, hub.admin, kind="dead_letter_spike")) == 1

    # Another integrator's few refused messages are no spike; a street screen sees none of it.
    async with hub.publisher("other") as pub:
        await pub.publish(hub.topic("wl-5"), b"not mine")  # forbidden_topic, dead-lettered
    await add_user(
        hub.app, "mgr", "manager", f"street:{hub.intake.runtime.hierarchy.streets[0].code}"
    )
    assert await listed(hub.client, await login(hub.client, "mgr")) == []
    assert [t for t, *_ in await live_alerts(runtime) if t == "alert.dead_letter_spike"] == [
        "alert.dead_letter_spike"
    ]
