"""`/api/v1/held-events`: events dispatch could not turn into a ticket, for admins to see and
retry once the cause is fixed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from services.dispatch import held, held_store
from services.dispatch.held_store import HeldView
from shared.auth import Principal
from shared.db.models import HeldEvent
from shared.errors import NotFoundError
from shared.web import RuntimeDep, SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["held events"])

Admin = Annotated[Principal, Depends(require_roles("admin"))]
MAX_LIMIT = 500  # held events listed per request


class HeldEventRead(BaseModel):
    """An event set aside: why, how often it failed, when it is tried next."""

    event_id: uuid.UUID
    reason: str = Field(description="The last failure (exception type and message, ≤ 1,000 chars)")
    attempts: int = Field(description="Failed tries so far")
    first_failed_at: datetime
    last_failed_at: datetime
    retry_at: datetime = Field(description="The sweep tries it again from then (back-off)")
    source: str | None = Field(description="The event's channel (null if its row is gone)")
    category: str | None
    received_at: datetime | None


class HeldEventPage(BaseModel):
    """Held events, the longest held first, and how many there are in all."""

    items: list[HeldEventRead]
    total: int


class RetryResult(BaseModel):
    """What a retry came to: `ticketed` (with the ticket) or still `held` (with the new reason)."""

    event_id: uuid.UUID
    outcome: Literal["ticketed", "held"]
    ticket_id: uuid.UUID | None = None
    held: HeldEventRead | None = None


def _read(record: HeldEvent, view: HeldView | None = None) -> HeldEventRead:
    return HeldEventRead(
        event_id=record.event_id,
        reason=record.reason,
        attempts=record.attempts,
        first_failed_at=record.first_failed_at,
        last_failed_at=record.last_failed_at,
        retry_at=record.retry_at,
        source=view.source if view else None,
        category=view.category if view else None,
        received_at=view.received_at if view else None,
    )


@router.get("/held-events")
async def list_held_events(
    _admin: Admin,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> HeldEventPage:
    """Events dispatch could not turn into a ticket, with the reason (admins)."""
    views = await held_store.list_held(session, limit)
    return HeldEventPage(
        items=[_read(v.held, v) for v in views], total=await held_store.count_held(session)
    )


@router.post("/held-events/{event_id}/retry")
async def retry_held_event(event_id: uuid.UUID, _admin: Admin, runtime: RuntimeDep) -> RetryResult:
    """Try a held event now (after fixing its cause): ticketed, or still held with the new
    reason (admins; 404 when the event is not held)."""
    # No request session: the try commits (or records its failure) in transactions of its own.
    outcome = await held.retry(runtime, event_id)
    if outcome is None:
        raise NotFoundError(f"event {event_id} is not held")
    if outcome.held is not None:
        async with runtime.sessions() as session:
            view = await held_store.view_of(session, event_id)
        return RetryResult(event_id=event_id, outcome="held", held=_read(outcome.held, view))
    return RetryResult(event_id=event_id, outcome="ticketed", ticket_id=outcome.ticket_id)
