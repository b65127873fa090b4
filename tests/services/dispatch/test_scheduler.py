"""The timer scheduler on SQLite and PostgreSQL, with a hand-moved clock: warnings, breaches
(overdue, 督办, escalation street → district → city), the working calendar, moved and deleted
timers, finished tickets, catching up after downtime, and a ticket locked by an action."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.dispatch import timer_rows
from services.dispatch.calendar import WorkCalendar
from services.dispatch.scheduler import Scheduler
from services.dispatch.timeline import verify_chain
from shared.catalogue import Catalogue, default_categories
from shared.db.models import OutboxMessage, SupervisionOrder, Ticket, TicketTransition, Timer
from shared.messages import TicketChangedV2, decode
from tests.support.clock import ManualClock
from tests.support.factories import CITY, DISTRICT, STREET, Db, add_ticket, count, open_db
from tests.support.waiting import wait_for

CST = ZoneInfo("Asia/Shanghai")
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=CST)  # a working Monday morning
CALENDAR = WorkCalendar()  # 09:00–12:00 and 13:30–18:00, Monday to Friday
CATALOGUE = Catalogue(default_categories())
# E0403 违章停车: normal, accept within 1 working hour, handle within 4.


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    opened = await open_db(request, tmp_path, request.param)
    yield opened
    await opened.engine.dispose()


def scheduler(
    db: Db,
    clock: ManualClock,
    *,
    name: str = "s1",
    catalogue: Catalogue = CATALOGUE,
    calendar: WorkCalendar = CALENDAR,
    batch: int = 500,
) -> Scheduler:
    return Scheduler(
        sessions=db.sessions,
        catalogue=lambda: catalogue,
        calendar=calendar,
        city=CITY,
        row_locks=db.row_locks,
        clock=clock,
        name=name,
        batch=batch,
    )


async def new_ticket(db: Db, at: datetime, **fields: Any) -> Ticket:
    async with db.sessions() as session, session.begin():
        ticket, _deadlines = await add_ticket(session, CATALOGUE, CALENDAR, at, **fields)
    return ticket


async def reload(db: Db, ticket_id: uuid.UUID) -> Ticket:
    async with db.sessions() as session:
        found = await session.get(Ticket, ticket_id)
    assert found is not None
    return found


async def timeline(db: Db, ticket_id: uuid.UUID) -> list[TicketTransition]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(TicketTransition)
            .where(TicketTransition.ticket_id == ticket_id)
            .order_by(TicketTransition.seq)
        )
        return list(rows)


async def published(db: Db) -> list[TicketChangedV2]:
    async with db.sessions() as session:
        rows = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        messages = [decode(row.payload) for row in rows]
    assert all(isinstance(m, TicketChangedV2) for m in messages)
    return [m for m in messages if isinstance(m, TicketChangedV2)]


async def pending(db: Db, ticket_id: uuid.UUID) -> list[tuple[str, datetime]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(Timer.kind, Timer.due_at)
            .where(Timer.ticket_id == ticket_id, Timer.fired_at.is_(None))
            .order_by(Timer.due_at)
        )
        return [(kind, due) for kind, due in rows]


async def orders(db: Db, ticket_id: uuid.UUID) -> list[SupervisionOrder]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SupervisionOrder)
            .where(SupervisionOrder.ticket_id == ticket_id)
            .order_by(SupervisionOrder.created_at)
        )
        return list(rows)


async def test_a_warning_fires_at_80_percent_and_changes_nothing(db: Db) -> None:
    ticket = await new_ticket(db, MONDAY_9)
    clock = ManualClock(MONDAY_9 + timedelta(minutes=47, seconds=59))
    s = scheduler(db, clock)
    assert await s.fire_due() == 0
    clock.set(MONDAY_9 + timedelta(minutes=48))  # 80 % of one working hour
    assert await s.fire_due() == 1
    assert await s.fire_due() == 0
    after = await reload(db, ticket.id)
    assert (after.status, after.overdue, after.owner_tier) == ("dispatched", False, "street")
    [entry] = await timeline(db, ticket.id)
    assert (entry.action, entry.actor, entry.from_status, entry.to_status) == (
        "warning", "system", "dispatched", "dispatched"
    )  # fmt: skip
    [message] = await published(db)
    assert (message.change, message.ticket.id, message.colour) == ("warning", ticket.id, "yellow")
    assert message.transition is not None and message.transition.action == "warning"
    async with db.sessions() as session:
        timer = await session.scalar(select(Timer).where(Timer.kind == "accept_warn"))
    assert timer is not None and (timer.fired_at, timer.fired_by) == (clock.now, "s1")


async def test_a_breach_marks_overdue_supervises_and_escalates_one_tier(db: Db) -> None:
    ticket = await new_ticket(db, MONDAY_9)
    clock = ManualClock(MONDAY_9 + timedelta(hours=1))  # the accept deadline, warning unsent
    assert await scheduler(db, clock).fire_due() == 2
    after = await reload(db, ticket.id)
    assert after.overdue
    assert (after.owner_tier, after.owner_code, after.status) == (
        "district",
        DISTRICT,
        "dispatched",
    )
    [order] = await orders(db, ticket.id)
    assert (order.from_tier, order.from_code, order.to_tier, order.to_code) == (
        "street", STREET, "district", DISTRICT
    )  # fmt: skip
    entries = await timeline(db, ticket.id)
    assert [e.action for e in entries] == ["overdue", "supervise", "escalate"]
    assert verify_chain(entries) is None
    messages = await published(db)
    assert [m.change for m in messages] == ["overdue", "supervise", "escalate"]
    assert messages[-1].ticket.owner_tier == "district" and messages[-1].colour == "red"
    # The district gets its own accept period from the breach: 10:00 + 1 working hour.
    assert ("accept_due", MONDAY_9 + timedelta(hours=2)) in await pending(db, ticket.id)


async def test_a_breach_stores_the_follow_up_deadline_on_the_ticket(db: Db) -> None:
    unaccepted = await new_ticket(db, MONDAY_9)
    accepted = await new_ticket(db, MONDAY_9, status="accepted")

    async def escalated_with_follow_up(ticket: Ticket, kind: str) -> Ticket:
        after = await reload(db, ticket.id)
        assert after.owner_tier == "district"
        [follow_up] = [due for k, due in await pending(db, ticket.id) if k == kind]
        assert (after.accept_due_at if kind == "accept_due" else after.handle_due_at) == follow_up
        return after

    clock = ManualClock(MONDAY_9 + timedelta(hours=1))  # `unaccepted` misses its accept deadline
    s = scheduler(db, clock)
    await s.fire_due()
    after = await escalated_with_follow_up(unaccepted, "accept_due")
    assert after.accept_due_at == MONDAY_9 + timedelta(hours=2)
    assert after.handle_due_at == unaccepted.handle_due_at  # the other deadline stays
    clock.set(MONDAY_9 + timedelta(hours=5, minutes=30))  # `accepted` misses its handle deadline
    await s.fire_due()
    after = await escalated_with_follow_up(accepted, "handle_due")
    assert after.handle_due_at is not None and after.handle_due_at > clock.now
    assert after.accept_due_at == accepted.accept_due_at


async def test_still_late_at_the_district_it_goes_to_the_city(db: Db) -> None:
    ticket = await new_ticket(db, MONDAY_9)
    clock = ManualClock(MONDAY_9 + timedelta(hours=1))
    s = scheduler(db, clock)
    await s.fire_due()
    clock.set(MONDAY_9 + timedelta(hours=2))  # the district's accept deadline
    assert await s.fire_due() == 1
    after = await reload(db, ticket.id)
    assert (after.owner_tier, after.owner_code) == ("city", CITY)
    assert [(o.to_tier, o.to_code) for o in await orders(db, ticket.id)] == [
        ("district", DISTRICT), ("city", CITY)
    ]  # fmt: skip
    assert [k for k, _ in await pending(db, ticket.id)] == ["handle_warn", "handle_due"]
    clock.set(MONDAY_9 + timedelta(hours=4, minutes=42))  # 80 % of 4 working hours: 13:42
    assert await s.fire_due() == 1
    # At the top, a handling breach is supervised by the city itself; nothing is left to move.
    clock.set(MONDAY_9 + timedelta(hours=5, minutes=30))  # 14:30
    assert await s.fire_due() == 1
    after = await reload(db, ticket.id)
    assert (after.owner_tier, after.owner_code) == ("city", CITY)
    assert [(o.from_tier, o.to_tier) for o in await orders(db, ticket.id)][-1] == ("city", "city")
    assert await pending(db, ticket.id) == []
    entries = await timeline(db, ticket.id)
    assert [e.action for e in entries] == [
        "overdue", "supervise", "escalate", "overdue", "supervise", "escalate", "warning",
        "overdue", "supervise",
    ]  # fmt: skip
    assert verify_chain(entries) is None


async def test_a_category_may_keep_ownership_on_breach(db: Db) -> None:
    catalogue = Catalogue(
        c.model_copy(update={"escalate_on_breach": False}) if c.code == "E0403" else c
        for c in default_categories()
    )
    ticket = await new_ticket(db, MONDAY_9)
    await scheduler(db, ManualClock(MONDAY_9 + timedelta(hours=1)), catalogue=catalogue).fire_due()
    after = await reload(db, ticket.id)
    assert after.overdue and (after.owner_tier, after.owner_code) == ("street", STREET)
    assert [(o.to_tier, o.to_code) for o in await orders(db, ticket.id)] == [("district", DISTRICT)]
    assert [e.action for e in await timeline(db, ticket.id)] == ["overdue", "supervise"]
    assert [k for k, _ in await pending(db, ticket.id)] == ["handle_warn", "handle_due"]


async def test_deadlines_count_working_hours_across_a_weekend_and_a_holiday(db: Db) -> None:
    friday_17 = datetime(2026, 11, 20, 17, 0, tzinfo=CST)
    calendar = WorkCalendar(holidays=frozenset({date(2026, 11, 23)}))  # Monday off
    async with db.sessions() as session, session.begin():
        ticket, deadlines = await add_ticket(
            session, CATALOGUE, calendar, friday_17, category="E0101"
        )  # 暴露垃圾: accept within 2 working hours
    # One hour on Friday, none over the weekend or the holiday, one on Tuesday morning.
    assert deadlines.accept_due == datetime(2026, 11, 24, 10, 0, tzinfo=CST)
    clock = ManualClock(datetime(2026, 11, 21, 12, 0, tzinfo=CST))  # Saturday noon
    s = scheduler(db, clock, calendar=calendar)
    assert await s.fire_due() == 0
    clock.set(datetime(2026, 11, 23, 17, 0, tzinfo=CST))  # the holiday
    assert await s.fire_due() == 0
    assert not (await reload(db, ticket.id)).overdue
    clock.set(datetime(2026, 11, 24, 9, 36, tzinfo=CST))  # 80 %: Tuesday 09:36
    assert await s.fire_due() == 1
    clock.set(datetime(2026, 11, 24, 10, 0, tzinfo=CST))
    assert await s.fire_due() == 1
    assert (await reload(db, ticket.id)).overdue


async def test_defer_moves_timers_and_deleted_timers_never_fire(db: Db) -> None:
    moved = await new_ticket(db, MONDAY_9, status="accepted")
    cancelled = await new_ticket(db, MONDAY_9, status="accepted")
    later = MONDAY_9 + timedelta(days=2)
    async with db.sessions() as session, session.begin():
        # What the tickets side does on accept (accept timers go) and on defer (handle timers move).
        for ticket_id in (moved.id, cancelled.id):
            await timer_rows.cancel(session, ticket_id, timer_rows.ACCEPT)
        await timer_rows.replace(
            session, moved.id, [("handle_warn", later - timedelta(hours=1)), ("handle_due", later)]
        )
        await timer_rows.cancel(session, cancelled.id)
        deferred = await session.get(Ticket, moved.id)
        assert deferred is not None
        deferred.handle_due_at = later
    clock = ManualClock(MONDAY_9 + timedelta(hours=6))  # both original handle deadlines passed
    s = scheduler(db, clock)
    assert await s.fire_due() == 0
    clock.set(later - timedelta(hours=1))
    assert await s.fire_due() == 1
    clock.set(later)
    assert await s.fire_due() == 1
    assert [e.action for e in await timeline(db, moved.id)] == [
        "warning", "overdue", "supervise", "escalate"
    ]  # fmt: skip
    clock.set(later + timedelta(days=30))
    assert await s.fire_due() == 1  # only the follow-up deadline of `moved` at the district
    assert await timeline(db, cancelled.id) == []
    assert not (await reload(db, cancelled.id)).overdue


async def test_a_finished_ticket_only_has_its_timers_marked_fired(db: Db) -> None:
    closed = await new_ticket(db, MONDAY_9, status="closed")
    resolved = await new_ticket(db, MONDAY_9, status="resolved")
    clock = ManualClock(MONDAY_9 + timedelta(days=3))
    assert await scheduler(db, clock).fire_due() == 8
    for ticket in (closed, resolved):
        after = await reload(db, ticket.id)
        assert (after.overdue, after.owner_tier, after.status) == (False, "street", ticket.status)
        assert await timeline(db, ticket.id) == []
        assert await orders(db, ticket.id) == []
        assert await pending(db, ticket.id) == []
    assert await published(db) == []


async def test_fired_timers_are_pruned_after_their_retention_and_pending_ones_kept(
    db: Db,
) -> None:
    await new_ticket(db, MONDAY_9, status="closed")  # its 4 timers fire and change nothing
    await new_ticket(db, MONDAY_9 + timedelta(days=2))  # its 4 timers stay pending
    clock = ManualClock(MONDAY_9 + timedelta(days=1))
    s = scheduler(db, clock)
    assert await s.fire_due() == 4

    async def timers(*where: Any) -> int:
        async with db.sessions() as session:
            return await count(session, Timer, *where)

    clock.advance(days=6)  # fired a day ago + 6 days: still within the 7-day retention
    assert await s.prune() == 0
    assert await timers(Timer.fired_at.is_not(None)) == 4
    clock.advance(days=1, seconds=1)
    assert await s.prune() == 4
    assert await timers(Timer.fired_at.is_not(None)) == 0
    assert await timers(Timer.fired_at.is_(None)) == 4


async def test_after_downtime_overdue_timers_fire_on_start(db: Db) -> None:
    tickets = [await new_ticket(db, MONDAY_9) for _ in range(3)]
    clock = ManualClock(MONDAY_9 + timedelta(days=1))  # the process was down all that time
    s = scheduler(db, clock, batch=5)  # 12 timers due: the loop takes full batches back to back
    task = asyncio.create_task(s.run())

    async def caught_up() -> bool:
        async with db.sessions() as session:
            return (
                await count(session, Timer, Timer.fired_at.is_(None), Timer.due_at <= clock.now)
                == 0
            )

    try:
        await wait_for(caught_up, within=20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for ticket in tickets:
        after = await reload(db, ticket.id)
        assert after.overdue and after.owner_tier == "city"
        actions = [e.action for e in await timeline(db, ticket.id)]
        assert "warning" not in actions  # deadlines long gone: warnings would say nothing new
        # The accept breach (street → district), then the handling breach (district → city).
        assert actions == ["overdue", "supervise", "escalate"] * 2


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_a_ticket_held_by_an_action_is_skipped_not_waited_for(db: Db) -> None:
    ticket = await new_ticket(db, MONDAY_9)
    clock = ManualClock(MONDAY_9 + timedelta(minutes=50))
    s = scheduler(db, clock)
    async with db.sessions() as action, action.begin():
        await action.execute(select(Ticket).where(Ticket.id == ticket.id).with_for_update())
        assert await asyncio.wait_for(s.fire_due(), timeout=5) == 0
        assert len(await pending(db, ticket.id)) == 4  # left for the next tick
    assert await s.fire_due() == 1
