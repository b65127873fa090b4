"""`cityhub kpis recompute` gives exactly the figures of the incremental path: a simulated day
(repeat reports, merges and a split, returns, deferrals and parking, rework, a rejection, a
missed deadline, call-backs) goes through the real hub on SQLite + the in-process bus and on
PostgreSQL + Redis; once the `kpis` consumers caught up, the facts they stored equal the facts
derived from the stored rows, redelivering every message changes nothing, and the recompute
command leaves every figure of every window and scope as it was."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from services.cli import app as cli
from services.metrics import store
from services.metrics.consumers import apply_changes, apply_events
from services.metrics.facts import EventFact
from services.metrics.figures import WINDOWS
from services.metrics.kpis import kpis_of, ranking_of
from services.metrics.kpis_api import context_of
from services.metrics.recompute import derive
from services.metrics.schemas import Kpis
from services.metrics.scopes import KpiScope, place_of
from shared.db.models import Timer
from shared.messages import (
    EVENTS_INGESTED,
    TICKETS_CHANGED,
    EventIngestedV1,
    TicketChangedV2,
    decode,
)
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted
from tests.support.waiting import wait_for

DISTRICT = "500103"
PROBE = "kpi-probe"  # a consumer group that keeps every message, to redeliver them
Snapshot = dict[str, set[tuple[Any, ...]]]


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same day on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        for stream in (EVENTS_INGESTED, TICKETS_CHANGED):
            await running.runtime.bus.create_group(stream, PROBE)
        yield running


async def simulate_day(hub: Hub) -> None:
    """A day in one district through the API (and one deadline passing early)."""
    s = hub.streets(DISTRICT)
    desks = [await hub.user(f"desk{i}", "dispatcher", f"street:{s[i].code}") for i in range(5)]
    crew = await hub.user("cgj-crew", "field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}")
    points = [hub.point(street) for street in s[:5]]

    # A complaint, a repeat report that joins it, rework, closing and a satisfied call-back.
    one = await hub.report(source="hotline", category="E0101", location=shifted(*points[0]),
                           reporter={"name": "张三", "phone": "13800000000"})  # fmt: skip
    assert await hub.report(source="grid", category="E0101",
                            location=shifted(*points[0], east_m=10)) == one  # fmt: skip
    for action in ("accept", "start", "resolve"):
        await hub.ok(one, crew, action)
    await hub.ok(one, desks[0], "verify", passed=False, note="仍有垃圾")
    await hub.ok(one, crew, "accept")
    await hub.ok(one, crew, "resolve")
    await hub.ok(one, desks[0], "verify", passed=True)
    await hub.ok(one, desks[0], "callback", score=5)

    # Sent to the wrong department, returned, sent on, deferred, parked, sent again.
    two = await hub.report(category="C0501", location=shifted(*points[1]))
    await hub.ok(two, desks[1], "dispatch", department=f"zjw@{DISTRICT}")
    await hub.ok(two, desks[1], "return", reason="不属于本部门")
    await hub.ok(two, desks[1], "dispatch", department=f"office@{s[1].code}")
    until = (datetime.now(UTC) + timedelta(days=25)).replace(microsecond=0)
    await hub.ok(two, desks[1], "defer", until=until.isoformat())
    await hub.ok(two, desks[1], "park", reason="待专项整治")
    await hub.ok(two, desks[1], "dispatch")

    # Two reports merged by hand, one split off again; the survivor closed, a poor call-back.
    three = await hub.report(source="hotline", category="C0501", location=shifted(*points[2]))
    four = await hub.report(source="grid", category="C0501",
                            location=shifted(*points[2], east_m=400))  # fmt: skip
    await hub.ok(four, desks[2], "merge", into=three, note="同一处")
    survivor = await hub.ticket(three, desks[2])
    grid_event = next(e["id"] for e in survivor["events"] if e["source"] == "grid")
    await hub.ok(three, desks[2], "split", event_ids=[grid_event], note="其实是两处")
    await hub.ok(three, desks[2], "dispatch", department=f"cgj@{DISTRICT}")
    await hub.ok(three, crew, "accept")
    await hub.ok(three, crew, "resolve")
    await hub.ok(three, desks[2], "verify", passed=True)
    await hub.ok(three, desks[2], "callback", score=2)

    # Rejected (不予立案).
    six = await hub.report(category="C0501", location=shifted(*points[3]))
    await hub.ok(six, desks[3], "reject", reason="不属于受理范围")

    # A sensor's ticket, accepted, whose handling deadline passes (the real scheduler fires it).
    seven = await hub.report(source="sensor", category="E0101", location=shifted(*points[4]))
    await hub.ok(seven, crew, "accept")
    async with hub.runtime.sessions() as session, session.begin():
        await session.execute(
            update(Timer)
            .where(Timer.ticket_id == uuid.UUID(seven), Timer.kind == "handle_due")
            .values(due_at=datetime.now(UTC))
        )

    async def breached() -> bool:
        timeline = (await hub.ticket(seven, desks[4]))["timeline"]
        return any(e["action"] == "overdue" for e in timeline)

    await wait_for(breached, within=20)
    # An unlocated report: counted for the city only.
    await hub.report(source="api", category="E0101", address="somewhere")


async def snapshot(hub: Hub) -> Snapshot:
    """Every stored fact (without when it was written)."""
    found: Snapshot = {}
    async with hub.runtime.sessions() as session:
        for table in (store.KPI_EVENTS, store.KPI_TICKETS, store.KPI_TRANSITIONS):
            columns = [c for c in table.columns if c.name != "touched_at"]
            found[table.name] = set(map(tuple, (await session.execute(select(*columns))).all()))
    return found


async def derived(hub: Hub) -> Snapshot:
    """Every fact the stored events, tickets and timelines give (nothing written)."""
    found: Snapshot = {"kpi_events": set(), "kpi_tickets": set(), "kpi_transitions": set()}
    async with hub.runtime.sessions() as session:
        async for step in derive(session):
            for ticket in step.tickets:
                row = ticket.row()
                found["kpi_tickets"].add(tuple(row[c] for c in store.TICKET_COLUMNS[:-1]))
            for transition in step.transitions:
                row = store.transition_row(transition)
                found["kpi_transitions"].add(tuple(row[c] for c in store.TRANSITION_COLUMNS))
            for event_id, fact, joined in step.events:
                found["kpi_events"].add(_event_tuple(event_id, fact, joined))
    return found


def _event_tuple(event_id: uuid.UUID, fact: EventFact | None, joined: bool) -> tuple[Any, ...]:
    known = store.event_row(fact) if fact else dict.fromkeys(store.EVENT_COLUMNS)
    row = {**known, "event_id": event_id, "joined": joined}
    return tuple(row[c] for c in store.EVENT_FACT_COLUMNS[:-1])


async def every_figure(hub: Hub, nows: list[datetime]) -> dict[tuple[str, ...], Any]:
    """The figures of every window and of several scopes and rankings, at each of `nows`."""
    ctx = context_of(hub.runtime)
    h = ctx.hierarchy
    places = [place_of(h, "city", None), place_of(h, "district", DISTRICT),
              *(place_of(h, "street", st.code) for st in hub.streets(DISTRICT)[:3])]  # fmt: skip
    scopes = [KpiScope(p) for p in places if p is not None]
    city, district = scopes[0].place, scopes[1].place
    for code in (f"cgj@{DISTRICT}", f"office@{hub.streets(DISTRICT)[1].code}"):
        department = ctx.directory.get(code)
        assert department is not None
        scopes.append(KpiScope(city, department))
    found: dict[tuple[str, ...], Any] = {}
    async with hub.runtime.sessions() as session:
        for now in nows:
            for window in WINDOWS:
                for scope in scopes:
                    kpis = await kpis_of(session, ctx, scope, window, now)
                    found[(now.isoformat(), window, scope.label)] = kpis.model_dump()
                for place, level in ((city, "district"), (district, "street"),
                                     (district, "department")):  # fmt: skip
                    ranking = await ranking_of(session, ctx, place, level, window, now)  # type: ignore[arg-type]
                    found[(now.isoformat(), window, level)] = ranking.model_dump()
    return found


async def redeliver_everything(hub: Hub) -> int:
    """Apply every message published so far again, newest first, in small batches."""
    bus = hub.runtime.bus
    events: list[EventIngestedV1] = []
    changes: list[TicketChangedV2] = []
    for stream in (EVENTS_INGESTED, TICKETS_CHANGED):
        while got := await bus.read(stream, PROBE, "probe", count=500, block_ms=10):
            for delivery in got:
                message = decode(delivery.data)
                if isinstance(message, EventIngestedV1):
                    events.append(message)
                elif isinstance(message, TicketChangedV2):
                    changes.append(message)
    events.reverse()
    changes.reverse()
    for i in range(0, len(changes), 7):
        await apply_changes(hub.runtime.sessions, changes[i : i + 7])
    await apply_events(hub.runtime.sessions, events)
    return len(events) + len(changes)


def run_recompute(settings: Settings) -> dict[str, Any]:
    """`cityhub kpis recompute` as a person runs it (in a thread: it runs its own event loop)."""
    env = {"CITYHUB_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["CITYHUB_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(cli, ["kpis", "recompute"], env=env)
    assert result.exit_code == 0, result.output
    printed: dict[str, Any] = json.loads(result.stdout)
    return printed


async def test_recompute_equals_incremental(hub: Hub) -> None:
    await simulate_day(hub)
    settled = await derived(hub)
    # 8 tickets (one split off, one unlocated) from 8 events.
    assert len(settled["kpi_tickets"]) == 8 and len(settled["kpi_events"]) == 8

    async def caught_up() -> bool:
        return await snapshot(hub) == settled

    await wait_for(caught_up, within=30)
    now = datetime.now(UTC)
    nows = [now, now + timedelta(days=2), now + timedelta(days=25), now + timedelta(days=40)]
    before = await every_figure(hub, nows)
    today = before[(now.isoformat(), "today", "city")]
    assert (today["intake"]["total"], today["filed"]) == (8, 8)
    assert today["merge_ratio"] == 0.25  # the repeat report and the merged ticket's event
    assert (today["verifications"], today["failed_verifications"]) == (3, 1)
    assert today["satisfaction"]["count"] == 2
    assert (today["parked"], today["overdue"]) == (0, 1)
    # Within 30 days of now + 25 days every deadline of the day has passed: one and three
    # closed on time, two deferred (then re-planned when it left parking), five (split off) and
    # seven (missed) open; four was merged, six rejected, the unlocated one is not in the district.
    later = before[((now + timedelta(days=25)).isoformat(), "30d", f"district:{DISTRICT}")]
    assert (later["due"], later["closed"], later["closed_on_time"], later["deferred"]) == (
        5, 2, 2, 1,
    )  # fmt: skip

    assert await redeliver_everything(hub) >= 30
    assert await snapshot(hub) == settled  # the same facts: the same figures

    printed = await asyncio.to_thread(run_recompute, hub.runtime.settings)
    assert printed["facts"]["tickets"] == 8 and printed["facts"]["events"] == 8
    # Nothing to change: every fact the consumers kept is the one recompute derives.
    assert printed["facts"]["changes"] == {
        "kpi_events": [0, 0], "kpi_tickets": [0, 0], "kpi_transitions": [0, 0],
    }  # fmt: skip
    assert await snapshot(hub) == settled
    assert await every_figure(hub, nows) == before
    ctx = context_of(hub.runtime)
    city_place = place_of(ctx.hierarchy, "city", None)
    assert city_place is not None
    city = KpiScope(city_place)
    async with hub.runtime.sessions() as session:
        for window in WINDOWS:
            shown = Kpis.model_validate(printed["kpis"][window])
            assert shown == await kpis_of(session, ctx, city, window, shown.end)
