"""A poison event — one dispatch cannot turn into a ticket — is set aside with its reason, visible
to admins and retried after a fix; it never holds back the events around it (both backends).

The poison is a real stored value, not an injected failure: an event reported on 0001-01-01 (the
intake accepted such a `reported_at` until it was bounded; rows stored before remain), whose
merge window reaches before the first representable date, so opening its ticket raises
OverflowError. It is stored straight into the database, as a
SIGKILL leaves events: stored and answered 201, their `events.ingested` message lost.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from services.dispatch.backoff import REASON_MAX_CHARS, reason_of, retry_delay
from services.dispatch.consumers import GROUP, event_consumer, sweep_once
from services.gateway.proxy import upstream_for
from services.ingest.logic import normalise
from services.ingest.schemas import EventCreate, Location
from shared.bus import ConsumerConfig
from shared.bus.memory import MemoryBus
from shared.db.engine import create_engine
from shared.db.models import Event, HeldEvent, TicketEvent
from shared.events import NewEvent, ingested_message
from shared.messages import EVENTS_INGESTED, encode
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub
from tests.support.waiting import wait_for

GOOD = 30
DAWN_OF_TIME = datetime(1, 1, 1, tzinfo=UTC)  # a reported_at dispatch cannot compute a window for
CATEGORIES = ("E0101", "C0201", "E0103")


@pytest.fixture(params=["embedded", "production"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """SQLite + in-process bus, or PostgreSQL + Redis."""
    chosen: Settings = request.getfixturevalue(f"{request.param}_settings")
    return chosen


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    """A running hub with an admin."""
    async with running_hub(settings) as running:
        await running.user("root", "admin", "city")
        yield running


def new_event(hub: Hub, n: int, received: datetime, reported: datetime | None = None) -> NewEvent:
    """The n-th event as ingest would store it: at its own street, normalised and geotagged."""
    runtime = hub.runtime
    streets = runtime.hierarchy.streets
    point = streets[n % len(streets)].geometry.representative_point()
    category = runtime.catalogue.get(CATEGORIES[n % len(CATEGORIES)])
    assert category is not None
    payload = EventCreate(
        source="api",
        source_ref=f"held-{n}",
        category=category.code,
        location=Location(lon=point.x, lat=point.y),
    )
    event, _message = normalise(payload, category, runtime.geotagger, "crm", now=received)
    if reported is not None:  # past what the intake now accepts: set on the row directly
        event.reported_at = reported
    return event


async def store_unsent(settings: Settings, events: list[NewEvent]) -> None:
    """Store events without publishing them: what a SIGKILL after the commit leaves behind."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Event), [e.row() for e in events])
    finally:
        await engine.dispose()


async def linked(runtime: Runtime, event_ids: list[uuid.UUID]) -> int:
    """How many of these events a ticket links."""
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(TicketEvent.event_id).where(TicketEvent.event_id.in_(event_ids))
        )
        return len(rows.all())


async def test_a_poison_event_next_to_30_good_ones_across_a_restart(settings: Settings) -> None:
    async with running_hub(settings) as hub:  # the first life: schema, areas, catalogue
        before = datetime.now(UTC) - timedelta(minutes=5)
        poison = new_event(hub, GOOD, before - timedelta(minutes=1), reported=DAWN_OF_TIME)
        good = [new_event(hub, n, before + timedelta(seconds=n)) for n in range(GOOD)]
    # Killed after answering 201: the rows are stored, their messages gone. The poison is the
    # oldest, so a sweep that stops at it never reaches the others.
    await store_unsent(settings, [poison, *good])

    async with running_hub(settings, key_name="crm-2") as hub:
        admin = await hub.user("root", "admin", "city")
        good_ids = [e.id for e in good]

        async def all_ticketed() -> bool:
            return await linked(hub.runtime, good_ids) == GOOD

        await wait_for(all_ticketed, within=30)

        async def listed() -> list[dict[str, object]]:
            reply = await hub.client.get("/api/v1/held-events", headers=admin)
            assert reply.status_code == 200, reply.text
            items: list[dict[str, object]] = reply.json()["items"]
            return items

        held = await wait_for(listed, within=10)
        assert [h["event_id"] for h in held] == [str(poison.id)]
        assert "OverflowError" in str(held[0]["reason"])
        assert held[0]["attempts"] == 1
        assert await linked(hub.runtime, [poison.id]) == 0


async def held_record(runtime: Runtime, event_id: uuid.UUID) -> HeldEvent | None:
    """The held record of an event, as stored."""
    async with runtime.sessions() as session:
        return await session.get(HeldEvent, event_id)


def first_sweep_time(runtime: Runtime, received: datetime) -> datetime:
    """A sweep clock at which events received at `received` are past the grace period."""
    return received + timedelta(seconds=runtime.settings.dispatch.sweep_grace_s + 1)


async def test_a_held_event_is_left_alone_until_its_retry_time(hub: Hub) -> None:
    runtime = hub.runtime
    received = datetime.now(UTC)  # the hub's own sweeper leaves these alone for the grace period
    poison = new_event(hub, 0, received, reported=DAWN_OF_TIME)
    await store_unsent(runtime.settings, [poison])
    first = first_sweep_time(runtime, received)

    assert await sweep_once(runtime, now=first) == 0
    held = await held_record(runtime, poison.id)
    assert held is not None and held.attempts == 1
    assert held.first_failed_at == held.last_failed_at == first
    assert held.retry_at == first + timedelta(minutes=1)

    # Before its retry time the sweep does not touch it, and tickets what came since.
    good = new_event(hub, 1, received)
    await store_unsent(runtime.settings, [good])
    assert await sweep_once(runtime, now=first + timedelta(seconds=59)) == 1
    assert await linked(runtime, [good.id]) == 1
    held = await held_record(runtime, poison.id)
    assert held is not None and held.attempts == 1 and held.last_failed_at == first

    # Once due it is tried again (it still fails), and the wait doubles.
    due = first + timedelta(seconds=61)
    assert await sweep_once(runtime, now=due) == 0
    held = await held_record(runtime, poison.id)
    assert held is not None and held.attempts == 2
    assert held.first_failed_at == first and held.last_failed_at == due
    assert held.retry_at == due + timedelta(minutes=2)
    assert await linked(runtime, [poison.id]) == 0


async def test_an_admin_retries_a_held_event_once_its_cause_is_fixed(hub: Hub) -> None:
    runtime, admin = hub.runtime, hub.users["root"]
    received = datetime.now(UTC)
    poison = new_event(hub, 0, received, reported=DAWN_OF_TIME)
    await store_unsent(runtime.settings, [poison])
    await sweep_once(runtime, now=first_sweep_time(runtime, received))
    retry = f"/api/v1/held-events/{poison.id}/retry"

    listed = (await hub.client.get("/api/v1/held-events", headers=admin)).json()
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert item["event_id"] == str(poison.id) and item["attempts"] == 1
    assert item["source"] == "api" and item["category"] == poison.category
    assert item["reason"].startswith("OverflowError: ")

    # Not fixed yet: still held, one more failure, the new reason.
    reply = await hub.client.post(retry, headers=admin)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["outcome"] == "held" and body["ticket_id"] is None
    assert body["held"]["attempts"] == 2 and body["held"]["reason"].startswith("OverflowError")

    # The fix: the stored time corrected. Retried, ticketed, and no longer held.
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Event).where(Event.id == poison.id).values(reported_at=received)
        )
    reply = await hub.client.post(retry, headers=admin)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["outcome"] == "ticketed" and body["held"] is None
    async with runtime.sessions() as session:
        link = await session.get(TicketEvent, poison.id)
    assert link is not None and str(link.ticket_id) == body["ticket_id"]
    assert await held_record(runtime, poison.id) is None
    listed = (await hub.client.get("/api/v1/held-events", headers=admin)).json()
    assert listed == {"items": [], "total": 0}
    assert (await hub.client.post(retry, headers=admin)).status_code == 404


async def test_held_events_are_for_admins_and_check_their_parameters(hub: Hub) -> None:
    admin = hub.users["root"]
    desk = await hub.user("desk", "dispatcher", "city")
    some = f"/api/v1/held-events/{uuid.uuid4()}/retry"
    for headers in (desk, hub.key):
        assert (await hub.client.get("/api/v1/held-events", headers=headers)).status_code == 403
        assert (await hub.client.post(some, headers=headers)).status_code == 403
    assert (await hub.client.get("/api/v1/held-events")).status_code == 401
    for limit in ("0", "-1", "501", "abc", "1e3", "99999999999999999999999"):
        reply = await hub.client.get(f"/api/v1/held-events?limit={limit}", headers=admin)
        assert reply.status_code == 422, (limit, reply.text)
    assert (await hub.client.get("/api/v1/held-events?limit=500", headers=admin)).status_code == 200
    assert (await hub.client.post(some, headers=admin)).status_code == 404
    reply = await hub.client.post("/api/v1/held-events/not-an-id/retry", headers=admin)
    assert reply.status_code == 422


async def test_the_event_consumer_holds_what_it_gives_up_on(hub: Hub) -> None:
    runtime = hub.runtime
    now = datetime.now(UTC)
    good = [new_event(hub, n, now) for n in range(3)]
    poison = new_event(hub, 3, now, reported=DAWN_OF_TIME)
    await store_unsent(runtime.settings, [*good, poison])
    # A private bus: the hub's own consumer never sees these messages.
    bus = MemoryBus()
    fast = ConsumerConfig(batch=10, block_ms=0, claim_idle_ms=0, claim_every_s=0, max_attempts=2)
    consumer = event_consumer(runtime, bus=bus, config=fast)
    await bus.create_group(EVENTS_INGESTED, GROUP)
    for event in (good[0], poison, good[1], good[2]):
        await bus.publish(EVENTS_INGESTED, encode(ingested_message(event)))
    await bus.publish(EVENTS_INGESTED, b"not a message")  # names no event: dead letter only

    assert await consumer.poll() == 5  # the batch fails; one by one, the good ones go through
    assert await linked(runtime, [e.id for e in good]) == 3
    assert await bus.pending_count(EVENTS_INGESTED, GROUP) == 1
    assert await held_record(runtime, poison.id) is None  # not given up on yet

    assert await consumer.poll() == 1  # its second delivery fails too: given up
    held = await held_record(runtime, poison.id)
    assert held is not None and held.attempts == 1
    assert held.reason.startswith("bus consumer gave up: failed 2 times: OverflowError(")
    assert held.retry_at > held.last_failed_at  # the sweep tries it again with back-off
    assert await bus.pending_count(EVENTS_INGESTED, GROUP) == 0
    assert len(await bus.dead_letters(EVENTS_INGESTED)) == 2
    async with runtime.sessions() as session:
        assert (await session.scalars(select(HeldEvent.event_id))).all() == [poison.id]


def test_the_wait_doubles_from_a_minute_up_to_four_hours() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 10)] == [
        60,
        120,
        240,
        480,
        960,
        1920,
        3840,
        7680,
        14400,
    ]
    assert retry_delay(10_000) == timedelta(hours=4)


def test_a_reason_names_the_exception_and_is_bounded() -> None:
    assert reason_of(OverflowError("date value out of range")) == (
        "OverflowError: date value out of range"
    )
    assert reason_of(KeyError()) == "KeyError"
    long = reason_of(ValueError("x" * 5_000))
    assert len(long) == REASON_MAX_CHARS and long.endswith("…")


def test_the_gateway_forwards_held_events_to_dispatch() -> None:
    assert upstream_for("/api/v1/held-events") == "dispatch"
    assert upstream_for(f"/api/v1/held-events/{uuid.uuid4()}/retry") == "dispatch"
