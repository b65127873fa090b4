"""`GET /api/v1/dead-letters`: what the intake refused and why."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from services.ingest import dead_letters
from services.ingest.dead_letters import Reason
from shared.auth import Principal, owner_limit
from shared.params import RowId
from shared.web import SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["ingest"])
Reader = Annotated[Principal, Depends(require_roles("admin", "integrator"))]


class DeadLetterRead(BaseModel):
    """One refused message (payload truncated to 4 KiB, bad UTF-8 escaped)."""

    id: int
    channel: str
    topic: str
    payload: str
    payload_bytes: int
    reason: str
    detail: str
    sensor_id: str | None
    received_at: datetime


class DeadLetterPage(BaseModel):
    """Newest first, with the total per reason of everything the caller may see."""

    items: list[DeadLetterRead]
    counts: dict[str, int]


@router.get("/dead-letters")
async def get_dead_letters(
    principal: Reader,
    session: SessionDep,
    reason: Reason | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[RowId | None, Query(description="Page on: ids below this one")] = None,
) -> DeadLetterPage:
    """Refused input, newest first: admins see all, integrators their own sensors' topics."""
    integrator = owner_limit(principal)  # admins (the only other role here) see all
    rows = await dead_letters.list_dead_letters(
        session, integrator=integrator, reason=reason, limit=limit, before=before
    )
    return DeadLetterPage(
        items=[
            DeadLetterRead(
                id=r.id,
                channel=r.channel,
                topic=r.topic,
                payload=r.payload,
                payload_bytes=r.payload_bytes,
                reason=r.reason,
                detail=r.detail,
                sensor_id=r.sensor_id,
                received_at=r.received_at,
            )
            for r in rows
        ],
        counts=await dead_letters.count_by_reason(session, integrator=integrator),
    )
