"""The gateway's live hub without sockets: who a record reaches, and the one upkeep task that ends
stalled, expired and signed-out connections for all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from services.gateway.live_hub import STALLED, LiveHub, Subscriber, reaches
from shared.auth import Principal, Scope
from shared.live import LiveItem
from shared.live.memory import MemoryLiveLog
from shared.settings import LiveSettings
from tests.support.waiting import wait_for

CITY, DISTRICT, STREET = Scope("city"), Scope("district", "500103"), Scope("street", "500103001")
OTHER_STREET = "500103002"


def _sub(scope: Scope, principal: Principal | None = None, expires: float = 1e18) -> Subscriber:
    return Subscriber(scope, frozenset({"tickets", "kpis", "alerts"}), 100, principal, expires)


def test_kpis_reach_their_own_area_and_its_parent_only() -> None:
    city_kpis, district_kpis = (None, None), ("500103", None)
    street_kpis = ("500103", "500103001")
    assert reaches(CITY, "kpis", *city_kpis)
    assert reaches(CITY, "kpis", *district_kpis)
    assert not reaches(CITY, "kpis", *street_kpis)  # a city screen ranks districts
    assert not reaches(DISTRICT, "kpis", *city_kpis)
    assert reaches(DISTRICT, "kpis", *district_kpis)
    assert reaches(DISTRICT, "kpis", *street_kpis)
    assert reaches(STREET, "kpis", *street_kpis)
    assert not reaches(STREET, "kpis", "500103", OTHER_STREET)
    # Tickets and alerts reach every scope that covers them.
    assert reaches(CITY, "tickets", *street_kpis)
    assert not reaches(STREET, "alerts", "500103", OTHER_STREET)


async def test_the_index_delivers_as_reaches_says() -> None:
    log = MemoryLiveLog()
    hub = LiveHub(log)
    subs = {scope: _sub(scope) for scope in (CITY, DISTRICT, STREET)}
    for sub in subs.values():
        hub.subscribe(sub)
    areas = [(None, None), ("500103", None), ("500103", "500103001"), ("500103", OTHER_STREET)]
    items = [
        LiveItem(stream, "test", datetime.now(UTC), {}, district, street)
        for stream in ("tickets", "kpis")
        for district, street in areas
    ]
    await log.append(items)
    records = await log.read_after(0, 100)
    assert records is not None
    for record in records:
        hub.deliver(record)
    for scope, sub in subs.items():
        got = {sub.queue.get_nowait()[0] for _ in range(sub.queue.qsize())}
        expected = {r.seq for r in records if reaches(scope, r.stream, r.district, r.street)}
        assert got == expected, scope
        assert {r.seq for r in records if sub.wants(r)} == expected  # replay agrees


def test_stalled_sends_and_expired_lifetimes_are_ended() -> None:
    hub = LiveHub(MemoryLiveLog(), LiveSettings(send_timeout_s=5))
    stalled, expired, fine = _sub(STREET), _sub(STREET, expires=100.0), _sub(STREET)
    for sub in (stalled, expired, fine):
        hub.subscribe(sub)
    stalled.sending_since = 94.0
    fine.sending_since = 96.0
    hub.check_connections(100.0)
    assert stalled.ending is not None and stalled.ending[0] == STALLED
    assert expired.ending is not None and expired.ending[0] == 4000
    assert fine.ending is None and not fine.ended.is_set()


async def test_sign_ins_are_checked_once_per_distinct_principal() -> None:
    asked: list[str] = []
    gone = Principal("gone", "manager", CITY)
    kept = Principal("kept", "manager", CITY)

    async def signed_in(principal: Principal) -> bool:
        asked.append(principal.subject)
        return principal != gone

    hub = LiveHub(MemoryLiveLog(), signed_in=signed_in)
    screens = [_sub(CITY, gone) for _ in range(50)] + [_sub(CITY, kept) for _ in range(50)]
    for sub in screens:
        hub.subscribe(sub)
    await hub.check_sign_ins()
    assert sorted(asked) == ["gone", "kept"]
    assert all(s.ending == (4401, "signed out or disabled") for s in screens[:50])
    assert all(s.ending is None for s in screens[50:])


async def test_upkeep_ends_a_stalled_connection_by_itself() -> None:
    hub = LiveHub(MemoryLiveLog(), LiveSettings(send_timeout_s=0.2, recheck_s=0.1))
    sub = _sub(STREET)
    hub.subscribe(sub)
    sub.sending_since = asyncio.get_running_loop().time()
    task = asyncio.create_task(hub.upkeep())
    try:
        await asyncio.wait_for(sub.ended.wait(), timeout=10)
    finally:
        task.cancel()
    assert sub.ending is not None and sub.ending[0] == STALLED


async def test_hello_is_answered_from_the_hubs_own_position() -> None:
    log = MemoryLiveLog()
    await log.append([LiveItem("alerts", "test", datetime.now(UTC), {})])
    hub = LiveHub(log)
    assert (await hub.head()).seq == 1  # not following yet: the log's head
    task = asyncio.create_task(hub.follow())
    try:
        await wait_for(_probe(lambda: hub.epoch is not None))
        await log.append([LiveItem("alerts", "test", datetime.now(UTC), {})])
        await wait_for(_probe(lambda: hub.last == 2))
        head = await hub.head()
        assert (head.epoch, head.seq) == ((await log.head()).epoch, 2)
    finally:
        task.cancel()


def _probe(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe


def test_connections_and_dropped_slow_clients_are_counted_on_metrics() -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    open_before = sample("cityhub_websocket_connections")
    dropped_before = sample("cityhub_websocket_slow_clients_dropped_total")
    hub = LiveHub(MemoryLiveLog())
    fast, slow = _sub(STREET), Subscriber(STREET, frozenset({"tickets"}), 1)
    hub.subscribe(fast)
    hub.subscribe(slow)
    assert sample("cityhub_websocket_connections") == open_before + 2
    slow.offer(1, "{}")
    slow.offer(2, "{}")  # past its queue: marked too slow
    hub.unsubscribe(slow)
    hub.unsubscribe(fast)
    assert sample("cityhub_websocket_connections") == open_before
    assert sample("cityhub_websocket_slow_clients_dropped_total") == dropped_before + 1
