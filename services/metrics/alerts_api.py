"""`GET /api/v1/alerts`: the recent alerts inside the caller's scope, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, field_serializer

from services.metrics import alerts_store as store
from services.metrics.alerts import AlertKind, Severity
from shared.auth import Principal
from shared.params import Moment
from shared.web import SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["alerts"])

# Everyone who reads tickets reads the alerts of their area (field staff too: they see the
# tickets located in their scope); integrators have their dead letters instead (403).
Reader = Annotated[
    Principal, Depends(require_roles("admin", "dispatcher", "manager", "field_staff"))
]
DEFAULT_LIMIT = 100
MAX_LIMIT = 500  # alerts per answer
MAX_KINDS = 20  # `kind` parameters per request


class AlertRead(BaseModel):
    """One alert, as `/ws/live` streams it in `data` (docs/alerts.md lists the kinds)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: AlertKind
    severity: Severity
    title: str
    title_en: str
    district: str | None
    street: str | None
    ticket_id: uuid.UUID | None
    at: datetime
    details: dict[str, Any]

    @field_serializer("at")
    def _iso(self, at: datetime) -> str:
        """The same text as the live frame's (`+00:00`, not `Z`): REST and stream agree."""
        return at.isoformat()


class AlertPage(BaseModel):
    """Alerts located inside `scope`, newest first."""

    scope: str
    items: list[AlertRead]


@router.get("/alerts")
async def list_alerts(
    principal: Reader,
    session: SessionDep,
    since: Annotated[Moment | None, Query(description="Only alerts from this moment on")] = None,
    kind: Annotated[
        list[AlertKind] | None, Query(max_length=MAX_KINDS, description="Only these kinds")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AlertPage:
    """Recent alerts inside the caller's scope (a street sees its street's, a district its
    district's, the city all), newest first."""
    rows = await store.recent(
        session, principal.scope, since=since, kinds=set(kind or ()), limit=limit
    )
    return AlertPage(scope=str(principal.scope), items=[AlertRead.model_validate(r) for r in rows])
