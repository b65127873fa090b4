"""The dispatch REST API: tickets, filtered by the caller's scope."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from services.dispatch import store
from services.dispatch.actions import detail_of
from services.dispatch.context import ContextDep
from services.dispatch.permissions import can_read, place
from services.dispatch.schemas import TicketDetail
from shared.auth import Principal
from shared.errors import NotFoundError
from shared.web import RuntimeDep, SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["tickets"])

Reader = Annotated[
    Principal, Depends(require_roles("admin", "dispatcher", "field_staff", "manager"))
]


@router.get("/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    context: ContextDep,
) -> TicketDetail:
    """One ticket with its areas, linked events, timeline, warning colour and the actions the
    caller may take now (404 outside the caller's scope)."""
    ticket = await store.get_ticket(session, ticket_id)
    if ticket is None or not can_read(principal, place(ticket)):
        raise NotFoundError(f"ticket {ticket_id} not found")
    return await detail_of(session, runtime, context, ticket, principal)
