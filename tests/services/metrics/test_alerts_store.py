"""The alerts table on SQLite and PostgreSQL: an alert is stored once however often (and however
concurrently) it is inserted, streamed-or-not bookkeeping, scope filtering, retention."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.metrics import alerts_store as store
from services.metrics.alerts import Alert, AlertKind, alert_id
from shared.auth import Scope
from tests.support.factories import DISTRICT, STREET, Db, open_db

OTHER_STREET = "500103002"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    opened = await open_db(request, tmp_path, request.param)
    yield opened
    await opened.engine.dispose()


def alert(
    district: str | None = DISTRICT,
    street: str | None = STREET,
    *,
    at: datetime = NOW,
    kind: AlertKind = "breach",
    source: uuid.UUID | None = None,
) -> Alert:
    source = source or uuid.uuid4()
    return Alert(
        id=alert_id(source, kind), kind=kind, severity="warning", title="工单超时",
        title_en="Ticket overdue", at=at, district=district, street=street, ticket_id=None,
        source_id=source, details={"n": 1},
    )  # fmt: skip


async def test_an_alert_is_stored_once(db: Db) -> None:
    first, second = alert(), alert()
    async with db.sessions() as session, session.begin():
        assert await store.insert_new(session, [first, second, first]) == {first.id, second.id}
    async with db.sessions() as session, session.begin():
        assert await store.insert_new(session, [first, second]) == set()  # redelivered
        assert await store.unstreamed(session, [first.id, second.id]) == {first.id, second.id}
        await store.mark_streamed(session, [first.id], NOW)
    async with db.sessions() as session:
        assert await store.unstreamed(session, [first.id, second.id]) == {second.id}
        [row] = await store.recent(session, Scope("city"), since=None, kinds={"breach"}, limit=1)
    assert (row.details, row.at, row.source_id) in [
        ({"n": 1}, NOW, first.source_id), ({"n": 1}, NOW, second.source_id)
    ]  # fmt: skip


async def test_concurrent_inserts_store_one_row(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = await open_db(request, tmp_path, "postgres")  # SQLite has one writer at a time
    same = alert()
    try:
        async with db.sessions() as one, db.sessions() as two:
            await one.begin()
            await two.begin()
            assert await store.insert_new(one, [same]) == {same.id}
            waiting = asyncio.create_task(store.insert_new(two, [same]))  # waits for `one`
            await asyncio.sleep(0.05)  # let its INSERT reach the server and block there
            assert not waiting.done()
            await one.commit()
            assert await asyncio.wait_for(waiting, 10) == set()
            await two.commit()
    finally:
        await db.engine.dispose()


async def test_each_scope_lists_its_own_area_newest_first(db: Db) -> None:
    here = [alert(at=NOW - timedelta(minutes=m)) for m in (3, 1, 2)]
    there = alert(DISTRICT, OTHER_STREET, kind="escalation")
    district_wide = alert(DISTRICT, None, kind="emergency_started")
    city_wide = alert(None, None, kind="dead_letter_spike")
    async with db.sessions() as session, session.begin():
        await store.insert_new(session, [*here, there, district_wide, city_wide])

    async def ids(
        scope: Scope, since: datetime | None = None, kinds: set[str] | None = None, limit: int = 100
    ) -> list[uuid.UUID]:
        async with db.sessions() as session:
            rows = await store.recent(session, scope, since=since, kinds=kinds or (), limit=limit)
        return [r.id for r in rows]

    newest_first = [here[1].id, here[2].id, here[0].id]
    assert await ids(Scope("street", STREET)) == newest_first
    assert await ids(Scope("street", OTHER_STREET)) == [there.id]
    assert set(await ids(Scope("district", DISTRICT))) == {
        *newest_first, there.id, district_wide.id
    }  # fmt: skip
    assert await ids(Scope("district", "500104")) == []
    assert set(await ids(Scope("city"))) == {
        *newest_first,
        there.id,
        district_wide.id,
        city_wide.id,
    }
    assert await ids(Scope("street", STREET), limit=2) == newest_first[:2]
    assert await ids(Scope("street", STREET), since=NOW - timedelta(minutes=2)) == newest_first[:2]
    assert await ids(Scope("district", DISTRICT), kinds={"escalation"}) == [there.id]


async def test_alerts_past_their_retention_go(db: Db) -> None:
    old, new = alert(at=NOW - timedelta(days=31)), alert(at=NOW - timedelta(days=29))
    async with db.sessions() as session, session.begin():
        await store.insert_new(session, [old, new])
    assert await store.delete_before(db.sessions, NOW - timedelta(days=30)) == 1
    async with db.sessions() as session:
        rows = await store.recent(session, Scope("city"), since=None, kinds=(), limit=10)
    assert [r.id for r in rows] == [new.id]
