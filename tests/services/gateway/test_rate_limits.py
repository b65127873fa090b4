"""Rate limits per user and per API key: 429 with `Retry-After` past the budget, one budget shared
by gateway replicas through Redis, in-process when embedded, other callers unaffected, off at 0,
and open (not closed) when Redis is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
import redis.asyncio as aioredis

from services.gateway.app import create_app as create_gateway_app
from services.gateway.rate_limits import LIMITER_KEY
from shared.rate_limits import Limit, MemoryRateStore, RedisRateStore
from shared.settings import RateLimitSettings, Settings
from tests.services.gateway.sign_in import Hub, bearer, hub_with_users
from tests.support.apps import add_key, add_user, login, runtime_of, serving
from tests.support.servers import free_port

# One request per 100 s with a burst of 3: the fourth is refused with about 100 s to wait, and
# however slow the machine, the budget cannot refill a request within the test.
RATE = 0.01
BURST_S = 300.0
BURST = 3
LIMITS = RateLimitSettings(per_user=RATE, per_key=RATE, burst_s=BURST_S)
USER_ROUTE = "/api/v1/categories"  # served by the gateway itself, for any signed-in user


def _limited(settings: Settings, limits: RateLimitSettings = LIMITS) -> Settings:
    return settings.model_copy(update={"rate_limits": limits})


def _assert_too_many(reply: httpx.Response, who: str) -> None:
    assert reply.status_code == 429, reply.text
    retry = int(reply.headers["retry-after"])
    assert 50 <= retry <= 1 / RATE, retry  # the next slot: one interval on, less time passed
    detail = reply.json()["detail"]
    assert who in detail and f"{retry} s" in detail
    assert reply.headers["x-request-id"]  # inside the telemetry middleware: traced like the rest


async def test_the_algorithm_admits_a_burst_then_one_request_per_interval() -> None:
    now = [1_000.0]
    store = MemoryRateStore(clock=lambda: now[0])
    limit = Limit(rate=2.0, burst=3.0)  # one every 0.5 s, three at once
    assert [await store.take("a", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await store.take("a", limit) == pytest.approx(0.5)
    assert await store.take("b", limit) == 0.0  # another caller has its own budget
    now[0] += 0.5
    assert await store.take("a", limit) == 0.0
    assert await store.take("a", limit) == pytest.approx(0.5)
    now[0] += 60  # idle: the burst is back, never more
    assert [await store.take("a", limit) for _ in range(4)][3] == pytest.approx(0.5)


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with hub_with_users(_limited(embedded_settings)) as running:
        yield running


async def test_embedded_a_user_is_limited_and_others_are_not(hub: Hub) -> None:
    ana, root = bearer(await hub.sign_in("ana")), bearer(await hub.sign_in("root"))
    for _ in range(BURST):
        assert (await hub.client.get(USER_ROUTE, headers=ana)).status_code == 200
    _assert_too_many(await hub.client.get(USER_ROUTE, headers=ana), "'ana'")
    # Another route of the same user: the budget is the user's, not the route's.
    _assert_too_many(await hub.client.get("/api/v1/tickets", headers=ana), "'ana'")
    # Another user, and an integrator key, are unaffected.
    for _ in range(BURST):
        assert (await hub.client.get(USER_ROUTE, headers=root)).status_code == 200
    key = {"X-API-Key": hub.crm_key}
    for _ in range(BURST):
        assert (await hub.client.get("/api/v1/sensors", headers=key)).status_code == 200
    _assert_too_many(await hub.client.get("/api/v1/sensors", headers=key), "'crm'")
    # Unverified credentials are not counted against anyone: they get 401, however many.
    forged = {"Authorization": "Bearer not-a-token"}
    for _ in range(BURST + 2):
        assert (await hub.client.get(USER_ROUTE, headers=forged)).status_code == 401
    # Sign-in itself is not this limit's business.
    await hub.sign_in("ana")
    assert runtime_of(hub.app).extras[LIMITER_KEY].limited == 3


async def test_disabled_limits_never_refuse(embedded_settings: Settings) -> None:
    off = RateLimitSettings(per_user=0, per_key=0, burst_s=BURST_S)
    async with hub_with_users(_limited(embedded_settings, off)) as running:
        assert runtime_of(running.app).extras[LIMITER_KEY] is None
        ana, key = bearer(await running.sign_in("ana")), {"X-API-Key": running.crm_key}
        for _ in range(BURST + 3):
            assert (await running.client.get(USER_ROUTE, headers=ana)).status_code == 200
            assert (await running.client.get("/api/v1/sensors", headers=key)).status_code == 200


async def test_one_limit_off_leaves_the_other_on(embedded_settings: Settings) -> None:
    keys_only = RateLimitSettings(per_user=0, per_key=RATE, burst_s=BURST_S)
    async with hub_with_users(_limited(embedded_settings, keys_only)) as running:
        ana = bearer(await running.sign_in("ana"))
        for _ in range(BURST + 3):
            assert (await running.client.get(USER_ROUTE, headers=ana)).status_code == 200
        key = {"X-API-Key": running.crm_key}
        for _ in range(BURST):
            assert (await running.client.get("/api/v1/sensors", headers=key)).status_code == 200
        _assert_too_many(await running.client.get("/api/v1/sensors", headers=key), "'crm'")


async def test_two_gateways_share_one_budget_in_redis(
    production_settings: Settings, redis_url: str
) -> None:
    settings = _limited(production_settings.model_copy(update={"ingest_url": "http://127.0.0.1:1"}))
    first, second = create_gateway_app(settings), create_gateway_app(settings)
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(serving(first))
        two = await stack.enter_async_context(serving(second))
        await add_user(first, "ana", "dispatcher", "district:500103")
        await add_user(first, "bob", "dispatcher", "district:500103")
        key = {"X-API-Key": await add_key(first, "crm")}
        ana, bob = await login(one, "ana"), await login(two, "bob")
        replicas = [one, two, one]
        for client in replicas:  # the burst, spread over both replicas
            assert (await client.get(USER_ROUTE, headers=ana)).status_code == 200
        _assert_too_many(await two.get(USER_ROUTE, headers=ana), "'ana'")
        _assert_too_many(await one.get(USER_ROUTE, headers=ana), "'ana'")
        for client in replicas:
            assert (await client.get(USER_ROUTE, headers=bob)).status_code == 200
        # Forwarded routes are limited at the gateway too (ingest is not running here: 503).
        event = {"category": "路灯不亮", "location": {"lon": 106.55, "lat": 29.56}}
        for client in replicas:
            reply = await client.post("/api/v1/events", json=event, headers=key)
            assert reply.status_code == 503, reply.text
        _assert_too_many(await two.post("/api/v1/events", json=event, headers=key), "'crm'")
    redis_client = aioredis.Redis.from_url(redis_url)
    try:
        stored = sorted(
            [k.decode() async for k in redis_client.scan_iter(settings.bus_prefix + "rate:*")]
        )
        expected = ["key:crm", "user:ana", "user:bob"]
        assert stored == [f"{settings.bus_prefix}rate:{who}" for who in expected]
        ttl_ms = await redis_client.pttl(settings.bus_prefix + "rate:user:ana")
        assert 0 < ttl_ms <= BURST_S * 1000  # idle again once the burst has drained
    finally:
        await redis_client.aclose()


async def test_redis_down_admits_every_request(bus_prefix: str) -> None:
    store = RedisRateStore.from_url(f"redis://127.0.0.1:{free_port()}/0", bus_prefix)
    try:
        limit = Limit(rate=RATE, burst=1)
        assert [await store.take("user:ana", limit) for _ in range(5)] == [0.0] * 5
        assert store.failed_open == 5
    finally:
        await store.close()


async def test_redis_store_counts_atomically_on_redis_time(redis_url: str, bus_prefix: str) -> None:
    stores = [RedisRateStore.from_url(redis_url, bus_prefix) for _ in range(2)]
    try:
        limit = Limit(rate=RATE, burst=BURST)
        waits = [await stores[i % 2].take("user:ana", limit) for i in range(BURST + 1)]
        assert waits[:BURST] == [0.0] * BURST
        assert 50 < waits[BURST] <= 1 / RATE
        assert stores[0].failed_open == stores[1].failed_open == 0
    finally:
        for store in stores:
            await store.close()
        client = aioredis.Redis.from_url(redis_url)
        await client.delete(bus_prefix + "rate:user:ana")
        await client.aclose()


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_RATE_LIMITS__PER_USER", "5")
    monkeypatch.setenv("CITYHUB_RATE_LIMITS__PER_KEY", "0")
    monkeypatch.setenv("CITYHUB_RATE_LIMITS__BURST_S", "2.5")
    assert Settings().rate_limits == RateLimitSettings(per_user=5, per_key=0, burst_s=2.5)
    assert RateLimitSettings() == RateLimitSettings(per_user=100, per_key=10_000, burst_s=5)
