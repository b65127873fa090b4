"""`/ws/live` over a real server: tickets appear live, a resumed client gets exactly what it
missed, a slow client is dropped without slowing the others, bad requests close with their codes."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import pytest
import websockets

from services.gateway.identity import set_user_disabled
from services.hub import create_hub_app
from shared.areas import Area, Hierarchy, generate_demo
from shared.live import LiveItem, LiveRecord
from shared.live.base import LiveStream
from shared.live.redis_log import RedisLiveLog
from shared.runtime import Runtime
from shared.settings import LiveSettings, Settings
from tests.support.apps import PASSWORD, add_key, add_user, runtime_of
from tests.support.http_server import ServedApp, served
from tests.support.live import is_ticket, live
from tests.support.processes import cli, production_env, service
from tests.support.servers import free_port
from tests.support.waiting import wait_for

TICKET_FIELDS = {
    "id", "status", "category", "priority", "city_code", "district_code", "street_code",
    "owner_tier", "owner_code", "department", "colour", "overdue", "report_count", "location",
    "transition",
}  # fmt: skip


@dataclass
class Intake:
    """Posts events as an integrator through a hub's HTTP API and waits for their tickets."""

    client: httpx.AsyncClient
    key: str
    refs: int = field(default=0, kw_only=True)

    async def post(self, street: Area, category: str = "井盖缺失") -> dict[str, Any]:
        self.refs += 1
        point = street.geometry.representative_point()
        reply = await self.client.post(
            "/api/v1/events",
            json={
                "source": "hotline",
                "source_ref": f"live-{self.refs}",
                "category": category,
                "location": {"lon": point.x, "lat": point.y},
            },
            headers={"X-API-Key": self.key},
        )
        assert reply.status_code == 201, reply.text
        event: dict[str, Any] = reply.json()
        return event

    async def ticket_of(self, event_id: str) -> str:
        async def probe() -> str:
            reply = await self.client.get(
                f"/api/v1/events/{event_id}", headers={"X-API-Key": self.key}
            )
            return str(reply.json()["ticket_id"] or "")

        return await wait_for(probe, within=60)


@dataclass
class LiveHub(Intake):
    """The hub served over HTTP, an integrator key, and a client to post with."""

    server: ServedApp

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.server.app)

    def street(self, index: int, district: str = "500103") -> Area:
        return self.runtime.hierarchy.children(district)[index]

    async def token(self, name: str, role: str = "dispatcher", scope: str = "city") -> str:
        self.server.run(add_user(self.server.app, name, role, scope))
        reply = await self.client.post("/auth/token", data={"username": name, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["access_token"]
        return token

    async def append(self, *items: LiveItem) -> list[int]:
        """Append straight to the hub's live history (as the metrics service would)."""
        log = self.runtime.live
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(log.append(items), self.server.loop)
        )

    async def history(self, since: int) -> list[LiveRecord]:
        """The hub's live history after `since` (read on the server's loop)."""
        records = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                self.runtime.live.read_after(since, 10_000), self.server.loop
            )
        )
        assert records is not None
        return records


async def _hub(settings: Settings) -> AsyncIterator[LiveHub]:
    app = create_hub_app(settings)
    with served(app) as server:
        key = server.run(add_key(app, "crm"))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield LiveHub(client, key, server)


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[LiveHub]:
    """The embedded hub, served."""
    async for served_hub in _hub(embedded_settings):
        yield served_hub


def _item(n: int, street: Area | None, stream: str = "alerts", pad: int = 0) -> LiveItem:
    return LiveItem(
        stream,  # type: ignore[arg-type]  # the test picks valid names
        "test.item",
        datetime.now(UTC),
        {"n": n, "pad": secrets.token_hex(pad // 2)},  # random: compression cannot shrink it
        street.parent if street else None,
        street.code if street else None,
    )


async def test_a_ticket_appears_within_a_second_of_its_event(hub: LiveHub) -> None:
    token = await hub.token("chief")
    async with live(hub.server.url, token=token, streams="tickets") as client:
        hello = await client.next()
        assert hello["type"] == "hello" and hello["streams"] == ["tickets"]
        assert hello["scope"] == "city" and isinstance(hello["seq"], int) and hello["epoch"]
        street = hub.street(0)
        posted = time.monotonic()
        event = await hub.post(street)
        message = await client.until(lambda m: is_ticket(m, street_code=street.code), within=5)
        elapsed = time.monotonic() - posted
        assert elapsed < 1.0, f"the ticket took {elapsed:.3f} s to appear"
        assert message["type"] == "ticket.created" and message["epoch"] == hello["epoch"]
        assert message["seq"] > hello["seq"]
        assert datetime.fromisoformat(message["at"]).tzinfo is not None
        data = message["data"]
        assert set(data) >= TICKET_FIELDS
        assert data["id"] == await hub.ticket_of(event["id"])
        assert data["district_code"] == street.parent and data["category_name"] == "井盖缺失"
        assert data["colour"] in {"red", "orange", "yellow", "blue", "green"}
        assert data["transition"]["to"] == data["status"]


class Driver(Protocol):
    """What the resume scenario needs from a hub, embedded or production."""

    def street(self, index: int, district: str = "500103") -> Area: ...
    async def post(self, street: Area, category: str = "井盖缺失") -> dict[str, Any]: ...
    async def ticket_of(self, event_id: str) -> str: ...
    async def history(self, since: int) -> list[LiveRecord]: ...


async def resume_exactly(first: str, second: str, hub: Driver, token: str) -> None:
    """Disconnect from `first`, post while away, resume on `second` with `since`: exactly the
    messages of the subscription after `since`, in order, once each, then live again."""
    street = hub.street(1)
    async with live(first, token=token, streams="tickets") as client:
        await client.next(within=30)  # hello
        await hub.post(street)
        seen = await client.until(lambda m: is_ticket(m, street_code=street.code), within=30)
    since = seen["seq"]
    missed = [await hub.post(street, category="路灯不亮")]
    missed += [await hub.post(hub.street(2 + n)) for n in range(4)]
    tickets = {await hub.ticket_of(e["id"]) for e in missed}

    async def all_in_history() -> list[LiveRecord]:
        # Dispatch and the relay run asynchronously: wait until all five tickets are there.
        records = await hub.history(since)
        created = {
            json.loads(r.frame)["data"]["id"] for r in records if "ticket.created" in r.frame
        }
        return records if tickets <= created else []

    history = await wait_for(all_in_history, within=60)
    # The history holds KPI and alert messages too; the subscription is to tickets only.
    expected = [r.seq for r in history if r.stream == "tickets"]
    async with live(second, token=token, streams="tickets", since=since) as client:
        assert (await client.next(within=30))["type"] == "hello"
        replayed = [await client.next(within=30) for _ in expected]
        # Exactly the subscription's messages after `since`: no gap, no duplicate, in order.
        assert [m["seq"] for m in replayed] == expected
        assert {m["data"]["id"] for m in replayed if m["type"] == "ticket.created"} == tickets
        # …then live: a new ticket arrives after the replay, once.
        fresh_street = hub.street(7)
        await hub.post(fresh_street)
        fresh = await client.until(lambda m: is_ticket(m, street_code=fresh_street.code), within=30)
        assert fresh["seq"] > expected[-1]
        seqs = [m["seq"] for m in client.received if m["type"] != "hello"]
        assert seqs == sorted(set(seqs))


async def test_resume_with_since_receives_exactly_the_missed_messages(hub: LiveHub) -> None:
    token = await hub.token("chief")
    await resume_exactly(hub.server.url, hub.server.url, hub, token)


async def test_a_since_beyond_the_history_gets_resync(hub: LiveHub) -> None:
    token = await hub.token("chief")
    async with live(hub.server.url, token=token, since=10**9) as client:
        hello = await client.next()
        resync = await client.next()
        assert resync == {"type": "resync", "reason": "history lost"}
        # …and it goes on live.
        seqs = await hub.append(_item(1, None))
        message = await client.until(lambda m: m.get("seq") == seqs[0])
        assert message["seq"] > hello["seq"]
    async with live(hub.server.url, token=token, since=0, epoch="an-old-epoch") as client:
        await client.next()
        assert (await client.next()) == {"type": "resync", "reason": "epoch changed"}


async def test_a_street_screen_never_receives_another_streets_messages(hub: LiveHub) -> None:
    mine, other = hub.street(0), hub.street(1)
    elsewhere = hub.street(0, district="500106")
    street_token = await hub.token("street-mgr", "manager", f"street:{mine.code}")
    district_token = await hub.token("district-mgr", "manager", f"district:{mine.parent}")
    async with (
        live(hub.server.url, token=street_token) as street_client,
        live(hub.server.url, token=district_token) as district_client,
    ):
        await street_client.next()
        await district_client.next()
        for stream in ("alerts", "kpis", "tickets"):
            await hub.append(
                _item(1, other, stream), _item(2, elsewhere, stream), _item(3, None, stream),
                _item(4, mine, stream),
            )  # fmt: skip
        await hub.post(other)
        await hub.post(mine)
        await street_client.until(lambda m: is_ticket(m, street_code=mine.code))
        await district_client.until(lambda m: is_ticket(m, street_code=mine.code))
        marker = await hub.append(_item(99, mine))
        await street_client.until(lambda m: m.get("seq") == marker[0])
        await district_client.until(lambda m: m.get("seq") == marker[0])
    for message in street_client.received[1:]:
        place = message["data"].get("street_code", "") if message["stream"] == "tickets" else None
        assert message["data"].get("n") in (4, 99) or place == mine.code, message
    district_ns = {m["data"].get("n") for m in district_client.received[1:]}
    assert district_ns >= {1, 4, 99} and not district_ns & {2, 3}
    for stream in ("alerts", "kpis", "tickets"):
        assert len(street_client.data(stream)) >= 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"streams": "tickets,weather"}, 4400),
        ({"scope": "province:50"}, 4400),
        ({"since": "yesterday"}, 4400),
        ({"since": "-3"}, 4400),
        ({"scope": "district:999999"}, 4400),
        ({"token": "not-a-jwt"}, 4401),
        ({}, 4403),  # the token below is a street user's, asking for the city
    ],
)
async def test_bad_requests_close_with_their_code(
    hub: LiveHub, params: dict[str, str], code: int
) -> None:
    token = await hub.token("street-mgr", "manager", f"street:{hub.street(0).code}")
    query = {"token": token, "scope": "city", **params}
    async with live(hub.server.url, **query) as client:
        closed_code, reason = await client.closed()
    assert closed_code == code and reason


async def test_a_district_user_may_watch_one_of_its_streets_only(hub: LiveHub) -> None:
    district = hub.street(0).parent
    token = await hub.token("district-mgr", "manager", f"district:{district}")
    async with live(hub.server.url, token=token, scope=f"street:{hub.street(3).code}") as ok:
        assert (await ok.next())["scope"] == f"street:{hub.street(3).code}"
    foreign = hub.street(0, district="500106")
    async with live(hub.server.url, token=token, scope=f"street:{foreign.code}") as refused:
        assert (await refused.closed())[0] == 4403


async def test_the_token_may_come_as_the_first_message(hub: LiveHub) -> None:
    token = await hub.token("chief")
    async with live(hub.server.url) as client:
        await client.connection.send('{"type": "ping"}')
        assert (await client.next()) == {"type": "pong"}
        await client.connection.send(json.dumps({"type": "auth", "token": token}))
        assert (await client.next())["type"] == "hello"
        for noise in ("not json", "[1, 2]", '{"type": "subscribe"}', '{"no": "type"}'):
            await client.connection.send(noise)  # ignored, never fatal
        await client.connection.send('{"type": "ping"}')
        assert (await client.next()) == {"type": "pong"}
        await client.connection.send("x" * 5_000)
        assert (await client.closed())[0] == 1009


async def test_a_silent_socket_is_closed_4401(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"live": LiveSettings(auth_timeout_s=0.3)})
    async for quick in _hub(settings):
        async with live(quick.server.url) as client:
            assert (await client.closed())[0] == 4401


async def test_a_slow_client_is_dropped_and_the_others_keep_up(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings.model_copy(update={"live": LiveSettings(queue_max=20)})
    async for slow_hub in _hub(settings):
        token = await slow_hub.token("chief")
        url = slow_hub.server.url
        # The slow client reads nothing: its library stops reading the socket after one frame,
        # and its small receive buffer (fixed before connecting) stops the kernel's autotuning.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        async with (
            websockets.connect(
                f"{url.replace('http', 'ws')}/ws/live?token={token}", sock=sock, max_queue=1
            ) as slow,
            live(url, token=token) as fast,
        ):
            await fast.next()
            for batch in range(40):  # 8 MB: more than the socket buffers hold
                seqs = await slow_hub.append(
                    *(_item(batch * 10 + n, None, pad=20_000) for n in range(10))
                )
                # The fast client keeps up: every batch arrives before the next is sent.
                last: int = seqs[-1]
                await fast.until(lambda m: bool(m.get("seq") == last), within=5)  # noqa: B023
            frames: list[str] = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(20):
                    while True:
                        frames.append(str(await slow.recv())[:100])
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert '"type":"resync"' in frames[-1] and "too slow" in frames[-1]
            assert len(frames) < 400  # it was dropped, not served everything
        assert runtime_of(slow_hub.server.app).extras["live_hub"].dropped_slow == 1


@dataclass
class ProductionDriver(Intake):
    """The production stack as separate processes, driven through gateway A."""

    hierarchy: Hierarchy
    log: RedisLiveLog

    def street(self, index: int, district: str = "500103") -> Area:
        return self.hierarchy.children(district)[index]

    async def history(self, since: int) -> list[LiveRecord]:
        records = await self.log.read_after(since, 10_000)
        assert records is not None
        return records


def test_a_client_resumes_on_another_gateway_process(production_settings: Settings) -> None:
    names = ("ingest", "dispatch", "metrics", "gateway", "gateway-b")
    ports = {name: free_port() for name in names}
    env = production_env(
        production_settings,
        CITYHUB_INGEST_URL=f"http://127.0.0.1:{ports['ingest']}",
        CITYHUB_DISPATCH_URL=f"http://127.0.0.1:{ports['dispatch']}",
        CITYHUB_METRICS_URL=f"http://127.0.0.1:{ports['metrics']}",
    )
    assert cli(env, "migrate").returncode == 0
    added = cli(env, "users", "add", "chief", "--role", "dispatcher", "--scope", "city",
                "--password", PASSWORD)  # fmt: skip
    assert added.returncode == 0, added.stderr
    key = cli(env, "keys", "add", "crm").stdout.strip()
    with ExitStack() as stack:
        for name, port in ports.items():
            service_env = {**env, "CITYHUB_HTTP_PORT": str(port)}
            health = f"http://127.0.0.1:{port}/healthz"
            stack.enter_context(
                service(service_env, "serve", name.split("-")[0], health_url=health)
            )
        first, second = (f"http://127.0.0.1:{ports[n]}" for n in ("gateway", "gateway-b"))

        async def scenario() -> None:
            assert production_settings.redis_url
            log = RedisLiveLog.from_url(
                production_settings.redis_url, production_settings.bus_prefix
            )
            try:
                async with httpx.AsyncClient(base_url=first, timeout=30) as client:
                    reply = await client.post(
                        "/auth/token", data={"username": "chief", "password": PASSWORD}
                    )
                    token = reply.json()["access_token"]
                    driver = ProductionDriver(client, key, generate_demo(), log)
                    await resume_exactly(first, second, driver, token)
            finally:
                await log.close()

        asyncio.run(scenario())


async def test_disabling_a_user_closes_its_socket(hub: LiveHub) -> None:
    token = await hub.token("chief")
    async with live(hub.server.url, token=token) as client:
        await client.next()

        async def disable() -> None:
            async with hub.runtime.sessions() as session, session.begin():
                await set_user_disabled(session, "chief", True)

        hub.server.run(disable())
        code, reason = await client.closed(within=10)
    assert code == 4401 and "disabled" in reason


ROLE_DEPARTMENTS = {"city": "cgj", "district": "cgj@500103", "street": None}


@pytest.mark.parametrize("role", ["admin", "dispatcher", "manager", "field_staff"])
async def test_every_role_receives_its_own_scope_only(hub: LiveHub, role: str) -> None:
    mine, sibling = hub.street(0), hub.street(1)
    elsewhere = hub.street(0, district="500106")
    scopes = {
        "city": "city",
        "district": f"district:{mine.parent}",
        "street": f"street:{mine.code}",
    }
    tokens = {}
    for level, scope in scopes.items():
        department = None
        if role == "field_staff":
            department = ROLE_DEPARTMENTS[level] or f"office@{mine.code}"
        hub.server.run(add_user(hub.server.app, f"{role}-{level}", role, scope, department))
        reply = await hub.client.post(
            "/auth/token", data={"username": f"{role}-{level}", "password": PASSWORD}
        )
        tokens[level] = reply.json()["access_token"]
    places = {"mine": mine, "sibling": sibling, "elsewhere": elsewhere, "nowhere": None}
    districts = {"my district": mine.parent, "another district": elsewhere.parent}
    expected = {
        "city": {"mine", "sibling", "elsewhere", "nowhere", *districts},
        "district": {"mine", "sibling", "my district"},
        "street": {"mine"},
    }
    # KPIs: a scope's own area's and its children's only (the city's and the districts').
    expected_kpis = {
        "city": {"nowhere", *districts},
        "district": {"my district", "mine", "sibling"},
        "street": {"mine"},
    }
    async with (
        live(hub.server.url, token=tokens["city"]) as city,
        live(hub.server.url, token=tokens["district"]) as district,
        live(hub.server.url, token=tokens["street"]) as street,
    ):
        clients = {"city": city, "district": district, "street": street}
        for level, client in clients.items():
            assert (await client.next())["scope"] == scopes[level]
        streams: tuple[LiveStream, ...] = ("tickets", "kpis", "alerts")
        for stream in streams:
            await hub.append(
                *(
                    LiveItem(stream, "test", datetime.now(UTC), {"place": name}, *_area(area))
                    for name, area in places.items()
                ),
                *(
                    LiveItem(stream, "test", datetime.now(UTC), {"place": name}, code)
                    for name, code in districts.items()
                ),
            )
        marker = (await hub.append(_item(0, mine)))[0]
        for level, client in clients.items():
            await client.until(lambda m: m.get("seq") == marker)
            for stream in ("tickets", "kpis", "alerts"):
                got = {m["data"]["place"] for m in client.data(stream) if "place" in m["data"]}
                wanted = expected_kpis if stream == "kpis" else expected
                assert got == wanted[level], (role, level, stream, got)


def _area(street: Area | None) -> tuple[str | None, str | None]:
    return (street.parent, street.code) if street else (None, None)
