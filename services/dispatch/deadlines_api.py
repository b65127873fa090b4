"""Per-priority deadlines of a category (admin), stored on the catalogue's `deadlines` field."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends

from services.dispatch.deadlines import allowed_hours
from services.dispatch.schemas import CategoryDeadlines, DeadlinesUpdate, PriorityDeadlines
from shared.auth import Principal
from shared.catalogue import Category, Priority, revised
from shared.catalogue.store import load_catalogue, save_category
from shared.errors import NotFoundError
from shared.params import Code
from shared.web import RuntimeDep, SessionDep, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["categories"], dependencies=[Depends(require_json)])

Admin = Annotated[Principal, Depends(require_roles("admin"))]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)


def deadlines_of(category: Category) -> CategoryDeadlines:
    """The hours that apply at each priority."""
    return CategoryDeadlines(
        category=category.code,
        default_priority=category.priority,
        priorities={
            p: PriorityDeadlines(
                accept_hours=round(allowed_hours(category, p)[0], 4),
                handle_hours=round(allowed_hours(category, p)[1], 4),
                overridden=p in category.deadlines,
            )
            for p in PRIORITIES
        },
    )


@router.get("/categories/{code}/deadlines")
async def get_deadlines(code: Code, _admin: Admin, runtime: RuntimeDep) -> CategoryDeadlines:
    """Accept and handling hours of a category at every priority."""
    category = runtime.catalogue.get(code)
    if category is None:
        raise NotFoundError(f"category {code!r} not found")
    return deadlines_of(category)


@router.put("/categories/{code}/deadlines")
async def put_deadlines(
    code: Code, body: DeadlinesUpdate, _admin: Admin, session: SessionDep, runtime: RuntimeDep
) -> CategoryDeadlines:
    """Set per-priority hours (replacing earlier ones; each finite, positive, at most 8,760 h,
    accept ≤ handle: 422 otherwise); new tickets use them at once here and within 30 s in other
    processes, open tickets keep their deadlines."""
    category = runtime.catalogue.get(code)
    if category is None:
        raise NotFoundError(f"category {code!r} not found")
    updated = revised(category, deadlines=dict(body.deadlines))
    await save_category(session, updated)
    runtime.catalogue = await load_catalogue(session)
    return deadlines_of(updated)
