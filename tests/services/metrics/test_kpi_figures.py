"""KPI figures of hand-made timelines, stored through the incremental path's upserts and counted
by the real queries, on SQLite and on PostgreSQL: every figure by hand, zero denominators (null),
a deferred ticket, a missed deadline that an escalation's follow-up does not excuse, parked,
rejected and merged tickets left out of `due`, and repeated or stale facts changing nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics import store
from services.metrics.facts import (
    TicketDelta,
    event_fact,
    from_timeline,
    ticket_state,
)
from services.metrics.kpis import KpiContext, kpis_of, ranking_of
from services.metrics.schemas import Kpis
from services.metrics.scopes import KpiScope, place_of
from shared.areas import Hierarchy, generate_demo
from shared.catalogue import Catalogue, default_categories
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import KpiTicket
from shared.migrations.runner import upgrade
from shared.settings import Settings

MIDNIGHT = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # 2026-03-10 00:00 in Shanghai
NOW = MIDNIGHT + timedelta(hours=12)
DISTRICT = "500103"


def at(minutes: float) -> datetime:
    """A moment this many minutes after local midnight (negative: yesterday)."""
    return MIDNIGHT + timedelta(minutes=minutes)


@cache
def hierarchy() -> Hierarchy:
    return generate_demo()


@dataclass(frozen=True)
class Entry:
    """A hand-made timeline entry."""

    seq: int
    at: datetime
    action: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Day:
    """The hand-made day: ticket facts (with their transitions and joins) and events."""

    tickets: dict[str, TicketDelta] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)

    def id(self, name: str) -> uuid.UUID:
        """The same id for a name every time (the day can be made again, identically)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"cityhub-kpi-test:{name}")

    def ticket(
        self, name: str, *, status: str, street: str | None, filed: float, due: float,
        entries: Sequence[Entry] = (), closed: float | None = None, accept_due: float = 10_000,
        department: str | None = "cgj@500103", merged_into: str | None = None,
        overdue: bool = False,
    ) -> None:  # fmt: skip
        state = ticket_state(
            ticket_id=self.id(name), version=max((e.seq for e in entries), default=1),
            status=status, merged_into=self.id(merged_into) if merged_into else None,
            category="E0101", district=DISTRICT if street else None, street=street,
            department=department, created_at=at(filed), accept_due_at=at(accept_due),
            handle_due_at=at(due), overdue=overdue,
            closed_at=at(closed) if closed is not None else None,
        )  # fmt: skip
        self.tickets[name] = from_timeline(state, entries)

    def event(
        self, name: str, source: str, minutes: float, street: str | None, category: str
    ) -> None:
        self.events.append(
            SimpleNamespace(
                id=self.id(name), source=source, category=category, received_at=at(minutes),
                district_code=DISTRICT if street else None, street_code=street,
            )
        )  # fmt: skip


def the_day() -> Day:
    s1, s2 = (s.code for s in hierarchy().children(DISTRICT)[:2])
    day = Day()
    day.ticket("A", status="closed", street=s1, filed=60, due=180, closed=170, entries=[
        Entry(2, at(70), "report", {"event_id": str(day.id("e2"))}),
        Entry(3, at(90), "accept"), Entry(4, at(160), "resolve"),
        Entry(5, at(170), "verify", {"passed": True}), Entry(6, at(200), "callback", {"score": 5}),
    ])  # fmt: skip
    day.ticket("B", status="closed", street=s1, filed=0, due=210, closed=225, entries=[
        Entry(2, at(5), "defer", {"until": at(210).isoformat()}), Entry(3, at(60), "accept"),
        Entry(4, at(100), "resolve"), Entry(5, at(120), "verify", {"passed": False}),
        Entry(6, at(130), "accept"), Entry(7, at(220), "resolve"),
        Entry(8, at(225), "verify", {"passed": True}), Entry(9, at(240), "callback", {"score": 3}),
    ])  # fmt: skip
    day.ticket("C", status="in_progress", street=s2, filed=30, due=120,
               department="office@" + s2, entries=[Entry(2, at(45), "accept")])  # fmt: skip
    day.ticket("D", status="parked", street=s2, filed=10, due=100)
    day.ticket("E", status="rejected", street=s2, filed=-120, due=100)
    day.ticket("F", status="closed", street=s1, filed=20, due=200, closed=50, merged_into="A",
               entries=[Entry(2, at(50), "merge", {"events": [str(day.id("e4"))]})])  # fmt: skip
    day.ticket("G", status="dispatched", street=s2, filed=300, due=2_000, accept_due=400)
    day.ticket("H", status="closed", street=s1, filed=30, due=1_500, closed=180, overdue=True,
               entries=[
        Entry(2, at(40), "accept"),
        Entry(3, at(90), "overdue", {"timer": "handle_due", "due_at": at(90).isoformat()}),
        Entry(4, at(90), "escalate"), Entry(5, at(170), "resolve"),
        Entry(6, at(180), "verify", {"passed": True}),
    ])  # fmt: skip
    day.event("e1", "hotline", 60, s1, "E0101")
    day.event("e2", "grid", 70, s1, "E0101")
    day.event("e3", "sensor", 300, s2, "C0104")
    day.event("e4", "api", 20, s1, "E0101")
    day.event("e5", "hotline", -100, s1, "E0101")  # yesterday
    day.event("e6", "webhook", 400, None, "C0104")  # unlocated; an unknown source is `api`
    return day


async def store_day(session: AsyncSession, day: Day, now: datetime = NOW) -> None:
    """Write the day through the incremental path's statements."""
    deltas = list(day.tickets.values())
    await store.upsert_tickets(session, [d.ticket for d in deltas], now)
    await store.insert_transitions(session, [t for d in deltas for t in d.transitions])
    await store.mark_joined(session, [e for d in deltas for e in d.joined], now)
    events = [
        event_fact(e.id, e.source, e.category, e.district_code, e.street_code, e.received_at)
        for e in day.events
    ]
    await store.upsert_events(session, events, now)


@pytest.fixture(params=["sqlite", "postgres"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A migrated database with the hand-made day stored."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        settings = Settings(database_url=request.getfixturevalue("clean_pg"))
    engine = create_engine(settings)
    await upgrade(engine)
    made = create_sessionmaker(engine)
    async with made() as session, session.begin():
        await store_day(session, the_day())
    yield made
    await engine.dispose()


def context() -> KpiContext:
    catalogue = Catalogue(default_categories())
    return KpiContext.build(Settings(), hierarchy(), lambda: catalogue)


def area(level: str, code: str | None = None) -> KpiScope:
    found = place_of(hierarchy(), level, code)  # type: ignore[arg-type]
    assert found is not None
    return KpiScope(found)


async def figures(
    sessions: async_sessionmaker[AsyncSession], scope: KpiScope, window: str = "today"
) -> Kpis:
    async with sessions() as session:
        return await kpis_of(session, context(), scope, window, NOW)  # type: ignore[arg-type]


async def test_every_figure_of_the_city_today(sessions: async_sessionmaker[AsyncSession]) -> None:
    k = await figures(sessions, area("city"))
    assert (k.scope, k.window, k.start, k.end, k.timezone) == (
        "city", "today", MIDNIGHT, NOW, "Asia/Shanghai",
    )  # fmt: skip
    assert k.intake.total == 5
    assert k.intake.by_channel == {"hotline": 1, "grid": 1, "sensor": 1, "api": 2}
    assert k.merge_ratio == 0.4  # e2 (a repeat report) and e4 (its ticket merged) of 5
    assert k.filed == 7  # E was filed yesterday
    assert (k.backlog, k.parked, k.overdue) == (3, 1, 2)  # C, D, G; D; C (handling), G (accept)
    # Due: A, B (deferred to 210), C (open), H (missed 90: its follow-up deadline does not count);
    # D parked, E rejected, F merged, G due tomorrow.
    assert (k.due, k.closed, k.closed_on_time, k.deferred) == (4, 3, 1, 1)
    assert (k.on_time_close_rate, k.close_rate, k.extension_rate) == (0.25, 0.75, 0.25)
    assert (k.verifications, k.failed_verifications, k.rework_rate) == (4, 1, 0.25)
    assert k.satisfaction.model_dump() == {"mean": 4.0, "count": 2, "satisfied_rate": 0.5}
    assert k.accept_time_s.model_dump() == {"count": 4, "mean": 1725.0, "p90": 3600.0}
    assert k.close_time_s.model_dump() == {"count": 3, "mean": 9700.0, "p90": 13500.0}
    # (40·0.25 + 20·0.75 + 20·(1 − 0.25) + 20·0.5) / 100
    assert (k.score, k.grade) == (50.0, "D")
    assert [(c.code, c.name, c.events) for c in k.top_categories] == [
        ("E0101", "暴露垃圾", 3), ("C0104", "井盖缺失", 2),
    ]  # fmt: skip
    s1, s2 = hierarchy().children(DISTRICT)[:2]
    assert k.hotspots is not None
    assert [(h.code, h.name, h.district, h.events) for h in k.hotspots] == [
        (s1.code, s1.name, DISTRICT, 3), (s2.code, s2.name, DISTRICT, 1),
    ]  # fmt: skip


async def test_other_windows_reach_further_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    k = await figures(sessions, area("city"), "24h")
    assert (k.intake.total, k.filed, k.due) == (6, 8, 4)  # e5 and E (yesterday) now count
    assert k.intake.by_channel["hotline"] == 2


async def test_zero_denominators_are_null_and_the_score_reweights(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    empty = await figures(sessions, area("district", "500104"))
    assert empty.intake.total == 0 and empty.due == 0
    for rate in ("on_time_close_rate", "close_rate", "extension_rate", "rework_rate",
                 "merge_ratio", "score", "grade"):  # fmt: skip
        assert getattr(empty, rate) is None, rate
    assert empty.satisfaction.model_dump() == {"mean": None, "count": 0, "satisfied_rate": None}
    assert empty.accept_time_s.model_dump() == {"count": 0, "mean": None, "p90": None}
    assert (empty.top_categories, empty.hotspots) == ([], [])

    s2 = hierarchy().children(DISTRICT)[1].code
    street = await figures(sessions, area("street", s2))
    assert (street.due, street.closed, street.deferred) == (1, 0, 0)  # C only
    assert (street.on_time_close_rate, street.close_rate, street.extension_rate) == (0, 0, 0)
    assert (street.rework_rate, street.satisfaction.satisfied_rate) == (None, None)
    assert (street.score, street.grade) == (0.0, "E")  # only the two due-based rates count
    assert street.hotspots is None  # a street has no hotspots
    assert (street.backlog, street.parked, street.overdue) == (3, 1, 2)


async def test_a_department_counts_its_own_tickets(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ctx = context()
    dept = ctx.directory.get("cgj@500103")
    assert dept is not None
    city = place_of(hierarchy(), "city", None)
    assert city is not None
    k = await figures(sessions, KpiScope(city, dept))
    assert (k.scope, k.name) == ("department:cgj@500103", dept.name)
    # A, B, H are cgj's (F too, merged); C is the street office's.
    assert (k.due, k.closed, k.closed_on_time, k.deferred) == (3, 3, 1, 1)
    assert (k.verifications, k.failed_verifications) == (4, 1)
    assert k.hotspots is None
    async with sessions() as session:
        ranking = await ranking_of(session, ctx, city, "department", "today", NOW)
    assert [(u.rank, u.code, u.due, u.score) for u in ranking.items] == [
        (1, "cgj@500103", 3, 58.3),  # (40·0.3333 + 20·1 + 20·0.75 + 20·0.5) / 100
        (2, "office@" + hierarchy().children(DISTRICT)[1].code, 1, 0.0),
    ]


async def test_a_ranking_lists_every_unit_best_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ctx = context()
    district = place_of(hierarchy(), "district", DISTRICT)
    assert district is not None
    async with sessions() as session:
        ranking = await ranking_of(session, ctx, district, "street", "today", NOW)
    streets = hierarchy().children(DISTRICT)
    assert len(ranking.items) == len(streets)
    first, second = ranking.items[:2]
    assert (first.code, first.rank, first.intake) == (streets[0].code, 1, 3)
    assert (second.code, second.score) == (streets[1].code, 0.0)
    assert all(u.score is None for u in ranking.items[2:])
    assert [u.code for u in ranking.items[2:]] == sorted(s.code for s in streets[2:])
    assert ranking.parent == f"district:{DISTRICT}"


async def test_repeated_and_stale_facts_change_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before = await figures(sessions, area("city"))
    day = the_day()
    stored = await ticket_facts(sessions)
    async with sessions() as session, session.begin():
        # The same facts again (a redelivered message), then each ticket's state as an older
        # message carries it (a late one): neither may change a stored fact.
        await store_day(session, day, NOW + timedelta(seconds=1))
        stale = [
            replace(d.ticket, version=1, status="new", closed_at=None, close_ms=None)
            for d in day.tickets.values()
        ]
        await store.upsert_tickets(session, stale, NOW)
    assert await figures(sessions, area("city")) == before
    assert await ticket_facts(sessions) == stored
    assert stored[day.id("B")][store.TICKET_COLUMNS.index("deferred")] is True


async def ticket_facts(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Every stored ticket fact, but when it was written."""
    async with sessions() as session:
        rows = (await session.execute(select(KpiTicket))).scalars().all()
    return {
        row.ticket_id: tuple(getattr(row, c) for c in store.TICKET_COLUMNS if c != "touched_at")
        for row in rows
    }
