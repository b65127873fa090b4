"""KPI reads, filtered by the caller's scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from shared.auth import Principal, Scope
from shared.db.models import Ticket
from shared.web import SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["kpis"])

Viewer = Annotated[Principal, Depends(require_roles("admin", "dispatcher", "manager"))]


class KpiSummary(BaseModel):
    """Ticket counts inside one scope."""

    scope: str
    tickets_total: int
    tickets_by_status: dict[str, int]


def scope_filter(scope: Scope) -> ColumnElement[bool]:
    """SQL condition selecting tickets located inside a scope."""
    if scope.level == "district":
        return Ticket.district_code == scope.code
    if scope.level == "street":
        return Ticket.street_code == scope.code
    return Ticket.id.is_not(None)


@router.get("/kpis/summary")
async def kpi_summary(principal: Viewer, session: SessionDep) -> KpiSummary:
    """Ticket counts by status for the caller's scope."""
    rows = await session.execute(
        select(Ticket.status, func.count())
        .where(scope_filter(principal.scope))
        .group_by(Ticket.status)
    )
    by_status = {status: int(n) for status, n in rows.all()}
    return KpiSummary(
        scope=str(principal.scope),
        tickets_total=sum(by_status.values()),
        tickets_by_status=by_status,
    )
