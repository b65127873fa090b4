"""POST /api/v1/events/batch through the group-commit writer: answers as if the items were taken
one by one (duplicates inside a batch and across batches, refused items next to good ones),
every created event stored once and announced, concurrent batches exact."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from services.hub import create_hub_app
from services.ingest.writer import EventWriter
from shared.bus.memory import MemoryBus
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import Event
from shared.events import NewEvent, ingested_message
from shared.messages import EVENTS_INGESTED, EventIngestedV1, Message, decode
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.apps import add_key, runtime_of, serving
from tests.support.waiting import wait_for

GOOD: dict[str, Any] = {"category": "E0101", "location": {"lon": 106.5516, "lat": 29.5630}}
Hub = tuple[httpx.AsyncClient, dict[str, str], Runtime]


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    app = create_hub_app(settings)
    async with serving(app) as client:
        yield client, {"X-API-Key": await add_key(app, "crm")}, runtime_of(app)


async def post_batch(
    client: httpx.AsyncClient, headers: dict[str, str], events: list[dict[str, Any]]
) -> dict[str, Any]:
    reply = await client.post("/api/v1/events/batch", json={"events": events}, headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert [r["index"] for r in body["results"]] == list(range(len(events)))
    return body


async def stored_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


def ref(source_ref: str, **change: Any) -> dict[str, Any]:
    return {**GOOD, "source": "hotline", "source_ref": source_ref, **change}


async def test_duplicates_and_refusals_are_answered_as_one_by_one(hub: Hub) -> None:
    client, key, runtime = hub
    before = await stored_count(runtime)
    events = [
        ref("r-1", description="first"),  # 0: 201
        ref("r-1", location={"lon": 999, "lat": 0}),  # 1: bad schema: 422 although r-1 exists
        ref("r-2", category="no-such-category"),  # 2: refused, r-2 not stored before it: 422
        ref("r-1", description="again"),  # 3: the first's duplicate: 200, the first's event
        ref("r-2", description="now good"),  # 4: 201
        ref("r-1", category="no-such-category"),  # 5: a duplicate before its category is read
        {**GOOD, "description": "no ref"},  # 6: 201
        {**GOOD, "description": "no ref"},  # 7: 201 again: without a ref nothing is repeated
        ref("r-1", source="grid"),  # 8: another source, another key: 201
        ref("r-3", attributes={"nope": "x"}),  # 9: refused by the category's questions: 422
    ]
    body = await post_batch(client, key, events)
    results = body["results"]
    assert [r["status"] for r in results] == [201, 422, 422, 200, 201, 200, 201, 201, 201, 422]
    assert (body["created"], body["duplicates"], body["rejected"]) == (5, 2, 3)
    assert "location.lon" in results[1]["error"]
    assert "no-such-category" in results[2]["error"]
    assert "nope" in results[9]["error"]
    assert results[3]["event"] == results[0]["event"] == results[5]["event"]
    assert results[0]["event"]["description"] == "first"
    assert results[4]["event"]["description"] == "now good"
    ids = [results[i]["event"]["id"] for i in (0, 4, 6, 7, 8)]
    assert len(set(ids)) == 5
    assert await stored_count(runtime) == before + 5

    # Each created event reads back as the batch answered it.
    for i in (0, 4, 8):
        answered = results[i]["event"]
        read = await client.get(f"/api/v1/events/{answered['id']}", headers=key)
        assert read.status_code == 200
        assert {**read.json(), "ticket_id": None} == answered

    # The whole batch again (a client's retry): refs are answered with the originals, a refused
    # item whose ref was stored before (by item 4 last time) is now that duplicate, as it was
    # when each item was looked up first; items without a ref are new events.
    again = await post_batch(client, key, events)
    statuses = [r["status"] for r in again["results"]]
    assert statuses == [200, 422, 200, 200, 200, 200, 201, 201, 200, 422]
    for i, original in ((0, 0), (2, 4), (3, 0), (4, 4), (5, 0), (8, 8)):
        assert again["results"][i]["event"] == results[original]["event"], i
    assert await stored_count(runtime) == before + 7


async def test_every_created_event_is_announced_once(hub: Hub) -> None:
    client, key, runtime = hub
    await runtime.bus.create_group(EVENTS_INGESTED, "batch-test")  # reads from the start
    first = await post_batch(client, key, [ref(f"a-{i}") for i in range(30)])
    second = await post_batch(client, key, [ref(f"a-{i}") for i in range(20, 40)])
    created = {
        r["event"]["id"] for body in (first, second) for r in body["results"] if r["status"] == 201
    }
    assert len(created) == 40
    seen: Counter[str] = Counter()

    async def all_announced() -> bool:
        for delivery in await runtime.bus.read(
            EVENTS_INGESTED, "batch-test", "t", count=1000, block_ms=100
        ):
            message = decode(delivery.data)
            if isinstance(message, EventIngestedV1):
                seen[str(message.event_id)] += 1
        return created <= set(seen)

    # Well within dispatch's sweep grace (30 s), which would otherwise announce a lost one.
    await wait_for(all_announced, within=20)
    assert all(seen[event_id] == 1 for event_id in created)


async def test_concurrent_batches_with_overlapping_refs_store_each_once(hub: Hub) -> None:
    client, key, runtime = hub
    before = await stored_count(runtime)
    batches = [[ref(f"c-{i}") for i in range(start, start + 60)] for start in (0, 20, 40, 0)]
    batches.append(list(reversed(batches[0])))
    bodies = await asyncio.gather(*(post_batch(client, key, b) for b in batches))
    ids: dict[str, set[str]] = {}
    created: Counter[str] = Counter()
    for batch, body in zip(batches, bodies, strict=True):
        for item, result in zip(batch, body["results"], strict=True):
            assert result["status"] in (200, 201), result
            ids.setdefault(item["source_ref"], set()).add(result["event"]["id"])
            created[item["source_ref"]] += result["status"] == 201
    assert len(ids) == 100
    assert all(len(answers) == 1 for answers in ids.values())  # everyone got the same event
    assert all(created[r] == 1 for r in ids)  # and exactly one batch created it
    assert await stored_count(runtime) == before + 100


def race_event(source_ref: str) -> tuple[NewEvent, Message]:
    now = datetime.now(UTC)
    event = NewEvent(
        id=uuid.uuid4(), source="hotline", source_ref=source_ref, category="E0101",
        priority="normal", description="", lon=None, lat=None, address=None, street_code=None,
        district_code=None, city_code=None, geotag_method="none", reported_at=now,
        received_at=now, submitted_by="race", reporter=None, attachments=[], attributes={},
        raw={},
    )  # fmt: skip
    return event, ingested_message(event)


async def test_two_writers_store_overlapping_batches_once(clean_pg: str) -> None:
    """Two ingest replicas taking overlapping batches in opposite orders at once: each event is
    stored by exactly one of them, and they never deadlock (PostgreSQL; SQLite has one writer)."""
    engine = create_engine(Settings(database_url=clean_pg))
    writers = [EventWriter(create_sessionmaker(engine), MemoryBus(), "postgresql") for _ in "ab"]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    refs = [f"w-{i:03}" for i in range(400)]
    units = [[race_event(r) for r in refs[:300]], [race_event(r) for r in reversed(refs[100:])]]
    blocker = await asyncpg.connect(clean_pg)
    watcher = await asyncpg.connect(clean_pg)

    async def both_waiting() -> bool:
        return bool(await watcher.fetchval(WAITING, blocker.get_server_pid()))

    try:
        # Someone else's uncommitted row in the middle of both batches stops each writer after
        # part of its batch, so the two are sure to overlap; in the orders given (not sorted),
        # they would then wait on each other's rows: a deadlock.
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute(
            "INSERT INTO events (id, source, source_ref, category, description, geotag_method,"
            " reported_at, received_at, submitted_by, attachments, attributes, raw) VALUES"
            " ($1, 'hotline', $2, 'E0101', '', 'none', now(), now(), 'race', '[]', '{}', '{}')",
            uuid.uuid4(),
            refs[200],
        )
        stores = [asyncio.create_task(w.store_many(u)) for w, u in zip(writers, units, strict=True)]
        await wait_for(both_waiting, within=30)
        await blocking.rollback()
        one, other = await asyncio.wait_for(asyncio.gather(*stores), 30)
        stored = await watcher.fetchval("SELECT count(*) FROM events WHERE submitted_by = 'race'")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await blocker.close()
        await watcher.close()
        await engine.dispose()
    by_id = {event.id: str(event.source_ref) for unit in units for event, _ in unit}
    assert sorted(by_id[i] for i in one | other) == refs  # each ref once, by either one
    assert stored == 400


# Two backends of this database wait for the blocker's transaction, or one for the blocker's and
# one for a writer's (pg_blocking_pids: who holds what each backend waits for).
WAITING = """
SELECT count(*) >= 2 FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND cardinality(pg_blocking_pids(pid)) > 0 AND pid <> $1
"""


async def test_a_request_larger_than_a_writer_batch_is_one_transaction(clean_pg: str) -> None:
    """A 1,000-event request is never split over two transactions (MAX_BATCH is 500): a failure
    stores none of it, and a 2xx means all of it is stored."""
    engine = create_engine(Settings(database_url=clean_pg))
    writer = EventWriter(create_sessionmaker(engine), MemoryBus(), "postgresql")
    task = asyncio.create_task(writer.run())
    try:
        small = writer.store_many([race_event(f"s-{i}") for i in range(10)])
        large = writer.store_many([race_event(f"l-{i:04}") for i in range(1000)])
        created = await asyncio.wait_for(asyncio.gather(small, large), 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
    assert len(created[1]) >= 1000
    assert writer.batches <= 2  # both in one, or each in its own: never the large one split
