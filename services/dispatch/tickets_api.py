"""Ticket lists, lifecycle actions and field staff's tasks, always inside the caller's scope."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import ticket_store
from services.dispatch.actions import act
from services.dispatch.context import ContextDep, DispatchContext
from services.dispatch.lifecycle import Status
from services.dispatch.routing import Tier
from services.dispatch.schemas import ActionRequest, ActionResult, TicketPage, TicketRead
from services.dispatch.views import ticket_read
from shared.auth import Principal
from shared.catalogue import Priority
from shared.db.models import Ticket
from shared.errors import HubError
from shared.params import Code, Moment, Text, check_moment
from shared.runtime import Runtime
from shared.web import RuntimeDep, SessionDep, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["tickets"], dependencies=[Depends(require_json)])

Reader = Annotated[
    Principal, Depends(require_roles("admin", "dispatcher", "field_staff", "manager"))
]
FieldStaff = Annotated[Principal, Depends(require_roles("field_staff"))]
MAX_PAGE = 200  # tickets per page


def encode_cursor(ticket: Ticket) -> str:
    """An opaque cursor after this ticket (newest-first order)."""
    raw = json.dumps([ticket.created_at.isoformat(), str(ticket.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor points after; 422 when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, ticket_id = json.loads(base64.urlsafe_b64decode(padded))
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive time")
        check_moment(when)  # a forged far-away time would overflow in the query
        return when, uuid.UUID(ticket_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise HubError("invalid cursor: pass back a next_cursor as given", 422) from exc


async def _reads(
    session: AsyncSession,
    runtime: Runtime,
    ctx: DispatchContext,
    principal: Principal,
    tickets: list[Ticket],
) -> list[TicketRead]:
    events = await ticket_store.event_ids_by_ticket(session, [t.id for t in tickets])
    now = datetime.now(UTC)
    return [
        ticket_read(t, events[t.id], runtime.hierarchy, ctx.directory, principal, now)
        for t in tickets
    ]


@router.get("/tickets")
async def list_tickets(
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    context: ContextDep,
    status: Annotated[list[Status] | None, Query(max_length=len(get_args(Status)))] = None,
    tier: Tier | None = None,
    centre: Code | None = None,
    district: Code | None = None,
    street: Code | None = None,
    department: Code | None = None,
    category: Code | None = None,
    overdue: bool | None = None,
    priority: Priority | None = None,
    source: Code | None = None,
    created_from: Moment | None = None,
    created_to: Moment | None = None,
    located: Annotated[
        bool | None, Query(description="false: events the geotagger could not place")
    ] = None,
    cursor: Text | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> TicketPage:
    """Tickets in the caller's scope, newest first, filtered; page with `cursor`."""
    filters = ticket_store.TicketFilter(
        status=status or (), tier=tier, centre=centre, district=district, street=street,
        department=department, category=category, overdue=overdue, priority=priority,
        source=source, created_from=created_from, created_to=created_to, located=located,
    )  # fmt: skip
    after = decode_cursor(cursor) if cursor else None
    rows = await ticket_store.list_tickets(
        session, principal.scope, filters, after=after, limit=limit + 1
    )
    page = rows[:limit]
    return TicketPage(
        items=await _reads(session, runtime, context, principal, page),
        next_cursor=encode_cursor(page[-1]) if len(rows) > limit else None,
    )


@router.post("/tickets/{ticket_id}/actions")
async def post_action(
    ticket_id: uuid.UUID,
    body: ActionRequest,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    context: ContextDep,
) -> ActionResult:
    """Do one lifecycle action (dispatch, accept, start, resolve, verify, return, reassign,
    escalate, defer, park, reject, comment, callback, merge, split); 409 names what is allowed."""
    return await act(session, runtime, context, principal, ticket_id, body)


@router.get("/tasks/mine")
async def my_tasks(
    principal: FieldStaff,
    session: SessionDep,
    runtime: RuntimeDep,
    context: ContextDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[TicketRead]:
    """Tickets of the caller's department in its scope: those waiting on it first (soonest
    handling deadline first), then the rest, newest first."""
    if not principal.department:
        raise HubError("your account has no department", 403)
    tickets = await ticket_store.tasks(session, principal.scope, principal.department, limit=limit)
    return await _reads(session, runtime, context, principal, tickets)
