"""Ticket lists, lifecycle actions and field staff's tasks, always inside the caller's scope."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import ticket_store
from services.dispatch.actions import act
from services.dispatch.context import ContextDep, DispatchContext
from services.dispatch.idempotency import REPLAY_HEADERS, IdempotencyKey, act_once
from services.dispatch.lifecycle import BEFORE_ACCEPT, Status
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
Order = Literal["created", "deadline"]
DEADLINE_CURSOR = "due"  # first item of a deadline-order cursor (a created-order one has two)


def encode_cursor(ticket: Ticket) -> str:
    """An opaque cursor after this ticket (newest-first order)."""
    raw = json.dumps([ticket.created_at.isoformat(), str(ticket.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def due_of(ticket: Ticket) -> datetime | None:
    """The deadline the deadline order sorts by (`ticket_store.due_now`, in Python)."""
    return ticket.accept_due_at if ticket.status in BEFORE_ACCEPT else ticket.handle_due_at


def encode_deadline_cursor(ticket: Ticket) -> str:
    """An opaque cursor after this ticket (soonest-deadline-first order)."""
    due = due_of(ticket)
    raw = [DEADLINE_CURSOR, due.isoformat() if due else None, str(ticket.id)]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def _moment(at: str) -> datetime:
    when = datetime.fromisoformat(at)
    if when.tzinfo is None:
        raise ValueError("naive time")
    check_moment(when)  # a forged far-away time would overflow in the query
    return when


def _cursor_items(cursor: str) -> list[object]:
    padded = cursor + "=" * (-len(cursor) % 4)
    items = json.loads(base64.urlsafe_b64decode(padded))
    if not isinstance(items, list):
        raise TypeError("not a list")
    return items


INVALID_CURSOR = "invalid cursor: pass back a next_cursor as given, with the same sort"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor points after; 422 when it is not one of ours."""
    try:
        at, ticket_id = _cursor_items(cursor)
        return _moment(str(at)), uuid.UUID(str(ticket_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise HubError(INVALID_CURSOR, 422) from exc


def decode_deadline_cursor(cursor: str) -> tuple[datetime | None, uuid.UUID]:
    """The (deadline, id) a deadline-order cursor points after; 422 when it is not one."""
    try:
        tag, at, ticket_id = _cursor_items(cursor)
        if tag != DEADLINE_CURSOR:
            raise ValueError("not a deadline cursor")
        return (None if at is None else _moment(str(at))), uuid.UUID(str(ticket_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise HubError(INVALID_CURSOR, 422) from exc


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
    returned: Annotated[
        bool | None,
        Query(description="true: back in the dispatcher queue after a department returned it"),
    ] = None,
    sort: Annotated[
        Order,
        Query(
            description="created: newest first; deadline: the deadline that matters now "
            "(accepting while new or dispatched, else handling) soonest first, none last"
        ),
    ] = "created",
    cursor: Text | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> TicketPage:
    """Tickets in the caller's scope, filtered, newest first (or by deadline); page with
    `cursor` (a `next_cursor` of the same sort)."""
    filters = ticket_store.TicketFilter(
        status=status or (), tier=tier, centre=centre, district=district, street=street,
        department=department, category=category, overdue=overdue, priority=priority,
        source=source, created_from=created_from, created_to=created_to, located=located,
        returned=returned,
    )  # fmt: skip
    if sort == "deadline":
        rows = await ticket_store.list_by_deadline(
            session,
            principal.scope,
            filters,
            after=decode_deadline_cursor(cursor) if cursor else None,
            limit=limit + 1,
        )
        encode = encode_deadline_cursor
    else:
        rows = await ticket_store.list_tickets(
            session,
            principal.scope,
            filters,
            after=decode_cursor(cursor) if cursor else None,
            limit=limit + 1,
        )
        encode = encode_cursor
    page = rows[:limit]
    return TicketPage(
        items=await _reads(session, runtime, context, principal, page),
        next_cursor=encode(page[-1]) if len(rows) > limit else None,
    )


@router.post(
    "/tickets/{ticket_id}/actions",
    response_model=ActionResult,
    responses={200: {"headers": REPLAY_HEADERS}},
)
async def post_action(
    ticket_id: uuid.UUID,
    body: ActionRequest,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    context: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> ActionResult | JSONResponse:
    """Do one lifecycle action (dispatch, accept, start, resolve, verify, return, reassign,
    escalate, defer, park, reject, comment, callback, merge, split); 409 names what is allowed.
    With an `Idempotency-Key`, a retry replays the first answer instead of acting again."""
    if idempotency_key is None:
        return await act(session, runtime, context, principal, ticket_id, body)
    return await act_once(
        session, principal.subject, idempotency_key, ticket_id, body,
        lambda: act(session, runtime, context, principal, ticket_id, body),
    )  # fmt: skip


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
