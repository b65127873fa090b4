"""Lifecycle actions on a ticket: checked (scope, role, state), applied with their timer-row
bookkeeping, written to the hash-chained timeline and announced through the outbox — all in the
request's transaction, with the ticket row locked so concurrent actions serialise.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import ticket_store, timeline, timer_rows
from services.dispatch.changes import ticket_changed, transition_info
from services.dispatch.context import DispatchContext
from services.dispatch.deadlines import WARN_FRACTION, Deadlines, plan
from services.dispatch.departments import queue_of
from services.dispatch.lifecycle import Action, Status, is_open, next_status
from services.dispatch.merging import sensor_of
from services.dispatch.permissions import can_read, check, check_action, place
from services.dispatch.routing import centre_of, escalated, route
from services.dispatch.schemas import ActionRequest, ActionResult, TicketDetail
from services.dispatch.tickets import Batch, Subject, category_of, join, new_ticket
from services.dispatch.views import ticket_detail
from shared.auth import Principal
from shared.db.models import Ticket
from shared.errors import ConflictError, HubError, NotFoundError
from shared.messages import Message, ReportersToNotifyV1
from shared.outbox import add_to_outbox
from shared.runtime import Runtime


async def detail_of(
    session: AsyncSession,
    runtime: Runtime,
    ctx: DispatchContext,
    ticket: Ticket,
    principal: Principal,
) -> TicketDetail:
    """The API view of a ticket with its events and timeline, and what the caller may do."""
    events = await ticket_store.linked_events(session, ticket.id)
    entries = await ticket_store.timeline(session, ticket.id)
    return ticket_detail(
        ticket, events, entries, runtime.hierarchy, ctx.directory, principal, datetime.now(UTC)
    )


@dataclass
class Step:
    """One action being applied: what it reads, and what it adds to the timeline and the bus."""

    session: AsyncSession
    runtime: Runtime
    ctx: DispatchContext
    principal: Principal
    ticket: Ticket
    req: ActionRequest
    now: datetime
    locked: dict[uuid.UUID, Ticket]
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    batch: Batch = field(default_factory=Batch)  # other tickets this action changes or opens
    messages: list[Message] = field(default_factory=list)
    new_ticket_id: uuid.UUID | None = None

    def plan(self) -> Deadlines:
        """Fresh deadlines for the ticket, counted from now."""
        priority = self.ticket.priority or "normal"
        category = category_of(self.runtime.catalogue, self.ticket.category, priority)
        return plan(category, priority, self.ctx.calendar, self.now)

    async def restart_accept_clock(self) -> None:
        """A department newly holds the ticket: it has the accept time from now."""
        deadlines = self.plan()
        self.ticket.accept_due_at = deadlines.accept_due
        await timer_rows.replace(
            self.session,
            self.ticket.id,
            [t for t in deadlines.timers() if t[0] in timer_rows.ACCEPT],
        )

    async def restart_all_clocks(self) -> None:
        """Accept and handling deadlines anew from now (back from 挂账, or 返工)."""
        deadlines = self.plan()
        self.ticket.accept_due_at = deadlines.accept_due
        self.ticket.handle_due_at = deadlines.handle_due
        await timer_rows.replace(self.session, self.ticket.id, deadlines.timers())

    async def stop_clocks(self) -> None:
        """No deadline runs any more (finished, parked, rejected or merged)."""
        await timer_rows.cancel(self.session, self.ticket.id)

    async def notify_reporters(self, outcome: str) -> None:
        """Record who to call back now that the ticket ended."""
        ids = await ticket_store.reporter_event_ids(self.session, self.ticket.id)
        if ids:
            self.messages.append(
                ReportersToNotifyV1(
                    ticket_id=self.ticket.id, outcome=outcome, note=self.note, event_ids=ids
                )
            )


def _handling_department(ctx: DispatchContext, ticket: Ticket, code: str | None) -> str:
    """`code` when it handles tickets where this one is (its staff can see and take it)."""
    if code is None or not ctx.directory.handles(code):
        raise HubError(
            f"{code or 'no department'} is not a handling department (see GET /api/v1/departments)",
            422,
        )
    district, street = ticket.district_code, ticket.street_code
    if not ctx.directory.serves(code, district, street):
        kind = code.partition("@")[0]
        serving = sorted(ctx.directory.serving(district, street), key=lambda d: d.kind != kind)
        where = street or district or "no district (unlocated: city bureaus only)"
        raise HubError(
            f"{code} does not serve this ticket's area ({where}); departments that do: "
            + ", ".join(d.code for d in serving),
            422,
        )
    return code


async def _dispatch(s: Step) -> None:
    department = _handling_department(s.ctx, s.ticket, s.req.department or s.ticket.department)
    from_parked = s.ticket.status == "parked"
    s.ticket.department = department
    s.ticket.dispatched_at = s.now
    if from_parked:
        await s.restart_all_clocks()
    else:
        await s.restart_accept_clock()
    s.data = {"department": department}


async def _accept(s: Step) -> None:
    s.ticket.accepted_at = s.now
    await timer_rows.cancel(s.session, s.ticket.id, timer_rows.ACCEPT)


async def _start(s: Step) -> None:
    return None


async def _resolve(s: Step) -> None:
    s.ticket.resolved_at = s.now
    await s.stop_clocks()
    s.data = {"photos": s.req.photos} if s.req.photos else {}


async def _verify(s: Step) -> None:
    s.data = {"passed": s.req.passed}
    if s.req.passed:
        s.ticket.closed_at = s.now
        await s.stop_clocks()
        await s.notify_reporters("closed")
        return
    s.ticket.rework_count += 1  # 返工: back to the department with fresh deadlines
    s.ticket.resolved_at = None
    await s.restart_all_clocks()
    s.data["rework_count"] = s.ticket.rework_count


async def _return(s: Step) -> None:
    s.data = {"department": s.ticket.department}
    s.ticket.department = queue_of(s.ticket.owner_code)
    await timer_rows.cancel(s.session, s.ticket.id, timer_rows.ACCEPT)


async def _reassign(s: Step) -> None:
    department = _handling_department(s.ctx, s.ticket, s.req.department)
    if department == s.ticket.department:
        raise HubError(f"the ticket is already assigned to {department}", 422)
    s.data = {"from": s.ticket.department, "department": department}
    s.ticket.department = department
    s.ticket.dispatched_at = s.now
    await s.restart_accept_clock()


async def _escalate(s: Step) -> None:
    t = s.ticket
    up = escalated(t.owner_tier)  # type: ignore[arg-type]
    assert up is not None  # refused by permissions.check at the city
    city = t.city_code or s.runtime.hierarchy.city.code
    centre = centre_of(up, t.street_code, t.district_code, city)
    s.data = {"from": f"{t.owner_tier}:{t.owner_code}", "to": f"{up}:{centre}"}
    t.owner_tier, t.owner_code = up, centre
    if t.status == "new":  # still in a dispatcher queue: suggest the new tier's department
        t.department = route(
            s.ctx.rules, category=t.category, priority=t.priority or "normal", source=t.source,
            street=t.street_code, district=t.district_code, city=city, at_least=up,
        ).department  # fmt: skip


async def _defer(s: Step) -> None:
    assert s.req.until is not None  # checked by ActionRequest
    until = s.req.until.astimezone(UTC)
    if until <= s.now:
        raise HubError("defer needs a time in the future", 422)
    days = s.runtime.settings.dispatch.max_defer_days
    latest = s.now + timedelta(days=days)
    if until > latest:  # a deferral moves a deadline, it never switches it off
        raise HubError(
            f"defer at most {days:g} days ahead (until {latest.isoformat()}; "
            "CITYHUB_DISPATCH__MAX_DEFER_DAYS)",
            422,
        )
    previous = s.ticket.handle_due_at
    if previous is not None and until <= previous:
        raise HubError(f"defer moves the handling deadline later than {previous.isoformat()}", 422)
    s.ticket.handle_due_at = until
    warn = s.now + (until - s.now) * WARN_FRACTION
    await timer_rows.replace(s.session, s.ticket.id, [("handle_warn", warn), ("handle_due", until)])
    s.data = {"until": until.isoformat(), "previous": previous.isoformat() if previous else None}


async def _park(s: Step) -> None:
    await s.stop_clocks()


async def _reject(s: Step) -> None:
    await s.stop_clocks()
    await s.notify_reporters("rejected")


async def _comment(s: Step) -> None:
    s.data = {"photos": s.req.photos} if s.req.photos else {}


async def _callback(s: Step) -> None:
    s.ticket.satisfaction = s.req.score
    s.data = {"score": s.req.score}


async def _merge(s: Step) -> None:
    into = s.req.into
    target = s.locked.get(into) if into is not None else None
    if target is None or not can_read(s.principal, place(target)):
        raise NotFoundError(f"ticket {into} not found")
    if target.id == s.ticket.id:
        raise HubError("a ticket cannot be merged into itself", 422)
    if not is_open(target.status) or target.merged_into is not None:  # type: ignore[arg-type]
        raise ConflictError(f"cannot merge into ticket {target.id}: it is {target.status}")
    check_action(s.principal, place(target), "merge")
    events = [e.id for e in await ticket_store.linked_events(s.session, s.ticket.id)]
    await ticket_store.relink(s.session, events, target.id, s.now)
    s.batch.heads = await ticket_store.chain_heads(s.session, [target.id])
    join(
        s.batch, s.ctx, target, reports=s.ticket.report_count, priority=s.ticket.priority,
        sensor_id=s.ticket.sensor_id, now=s.now, actor=s.principal.subject, action="merge",
        data={"from_ticket": str(s.ticket.id), "events": [str(e) for e in events]},
        note=s.note,
    )  # fmt: skip
    s.ticket.merged_into = target.id
    s.ticket.closed_at = s.now
    await s.stop_clocks()
    s.data = {"into": str(target.id), "events": [str(e) for e in events]}


async def _split(s: Step) -> None:
    wanted = set(s.req.event_ids or ())
    linked = await ticket_store.linked_events(s.session, s.ticket.id)
    stray = wanted - {e.id for e in linked}
    if stray:
        raise HubError(f"event {sorted(map(str, stray))[0]} is not linked to this ticket", 422)
    moved = [e for e in linked if e.id in wanted]
    if len(moved) == len(linked):
        raise HubError("split must leave at least one event on the ticket", 422)
    first = moved[0]
    known = await ticket_store.sensor_refs(
        s.session, [e.source_ref for e in moved if e.source == "sensor" and e.source_ref]
    )
    subject = Subject(
        category=first.category, priority=first.priority, source=first.source,
        description=first.description, lon=first.lon, lat=first.lat, street=first.street_code,
        district=first.district_code, city=first.city_code, geotag_method=first.geotag_method,
        sensor_id=sensor_of(first.source, first.source_ref, known), report_count=len(moved),
    )  # fmt: skip
    ids = [str(e.id) for e in moved]
    created = new_ticket(
        s.batch, s.ctx, s.runtime.catalogue, s.runtime.hierarchy.city.code, subject,
        now=s.now, actor=s.principal.subject, opening={"split_from": str(s.ticket.id),
                                                        "events": ids},
        note=s.note,
    )  # fmt: skip
    await s.batch.write(s.session)
    s.batch = Batch()  # written: nothing left for the caller to insert
    await ticket_store.relink(s.session, wanted, created.id, s.now)
    s.ticket.report_count -= len(moved)
    s.new_ticket_id = created.id
    s.data = {"new_ticket": str(created.id), "events": ids}


HANDLERS: dict[Action, Callable[[Step], Awaitable[None]]] = {
    "dispatch": _dispatch,
    "accept": _accept,
    "start": _start,
    "resolve": _resolve,
    "verify": _verify,
    "return": _return,
    "reassign": _reassign,
    "escalate": _escalate,
    "defer": _defer,
    "park": _park,
    "reject": _reject,
    "comment": _comment,
    "callback": _callback,
    "merge": _merge,
    "split": _split,
}


async def act(
    session: AsyncSession,
    runtime: Runtime,
    ctx: DispatchContext,
    principal: Principal,
    ticket_id: uuid.UUID,
    req: ActionRequest,
) -> ActionResult:
    """Apply one action for a caller: 404 invisible, 403 forbidden, 409 illegal now, 422 bad."""
    ids = {ticket_id} | ({req.into} if req.action == "merge" and req.into else set())
    locked = await ticket_store.lock_tickets(session, ids, row_locks=ctx.row_locks)
    ticket = locked.get(ticket_id)
    if ticket is None or not can_read(principal, place(ticket)):
        raise NotFoundError(f"ticket {ticket_id} not found")
    before: Status = ticket.status  # type: ignore[assignment]
    check(principal, place(ticket), before, req.action, reports=ticket.report_count)
    after = next_status(before, req.action, passed=req.passed)
    now = datetime.now(UTC)
    step = Step(session, runtime, ctx, principal, ticket, req, now, locked)
    step.note = req.reason if req.reason is not None else req.note
    await HANDLERS[req.action](step)
    ticket.status = after
    ticket.updated_at = now
    entry = await timeline.append(
        session, ticket.id, at=now, actor=principal.subject, action=req.action,
        from_status=before, to_status=after, note=step.note, data=step.data,
    )  # fmt: skip
    ticket.timeline_head = entry.hash
    add_to_outbox(session, ticket_changed(ticket, req.action, transition_info(entry)))
    for message in step.messages:
        add_to_outbox(session, message)
    await step.batch.write(session)
    return ActionResult(
        ticket=await detail_of(session, runtime, ctx, ticket, principal),
        new_ticket_id=step.new_ticket_id,
    )
