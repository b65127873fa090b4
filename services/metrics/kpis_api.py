"""`GET /api/v1/kpis` and `GET /api/v1/kpis/ranking`: KPIs per centre and window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.metrics.kpis import KpiContext, kpis_of, ranking_of
from services.metrics.schemas import Kpis, Level, Ranking, Window
from services.metrics.scopes import SCOPE_FORMS, caller_place, inside, place_of, resolve
from shared.auth import Principal
from shared.errors import NotFoundError
from shared.params import Code
from shared.runtime import Runtime
from shared.web import RuntimeDep, SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["kpis"])

KPI_CONTEXT_KEY = "kpis"
Viewer = Annotated[Principal, Depends(require_roles("admin", "dispatcher", "manager"))]
MAX_SCOPE = 80  # characters: "department:" + a department code
OUTSIDE: dict[int | str, dict[str, Any]] = {
    404: {"description": "The scope, parent or department is unknown or outside the caller's"}
}
WINDOW_HELP = "today (since local midnight, CITYHUB_TIMEZONE), 24h, 7d or 30d"


@asynccontextmanager
async def open_context(runtime: Runtime) -> AsyncIterator[KpiContext]:
    """The process's KPI context (hierarchy, department directory, weights, time zone)."""
    yield KpiContext.build(runtime.settings, runtime.hierarchy, lambda: runtime.catalogue)


def context_of(runtime: Runtime) -> KpiContext:
    """The KPI context a started process built."""
    context: KpiContext = runtime.extras[KPI_CONTEXT_KEY]
    return context


@router.get("/kpis", responses=OUTSIDE)
async def get_kpis(
    principal: Viewer,
    session: SessionDep,
    runtime: RuntimeDep,
    scope: Annotated[
        str | None,
        Query(max_length=MAX_SCOPE, description=f"{SCOPE_FORMS}; default: the caller's own"),
    ] = None,
    window: Annotated[Window, Query(description=WINDOW_HELP)] = "today",
) -> Kpis:
    """Every KPI of a scope inside the caller's (default: the caller's own) for a window."""
    ctx = context_of(runtime)
    target = resolve(scope, principal.scope, ctx.hierarchy, ctx.directory)
    return await kpis_of(session, ctx, target, window, datetime.now(UTC))


@router.get("/kpis/ranking", responses=OUTSIDE)
async def get_ranking(
    principal: Viewer,
    session: SessionDep,
    runtime: RuntimeDep,
    level: Annotated[Level, Query(description="district, street or department")],
    window: Annotated[Window, Query(description=WINDOW_HELP)] = "today",
    parent: Annotated[
        Code | None,
        Query(description="An area code inside the caller's scope; default: the caller's scope"),
    ] = None,
) -> Ranking:
    """The districts, streets or handling departments inside the caller's scope (or `parent`),
    ordered by 综合评价 score, best first."""
    ctx = context_of(runtime)
    place = caller_place(principal.scope, ctx.hierarchy)
    if parent is not None:
        area = ctx.hierarchy.get(parent)
        found = place_of(ctx.hierarchy, area.level, parent) if area is not None else None
        if found is None or not inside(place, found):
            raise NotFoundError(f"area {parent} not found in your scope ({principal.scope})")
        place = found
    return await ranking_of(session, ctx, place, level, window, datetime.now(UTC))
