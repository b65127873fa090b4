"""The category catalogue: read by everyone signed in, edited by admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.dispatch.departments import shipped_kinds
from shared.auth import Principal
from shared.catalogue import Category, Group
from shared.catalogue.store import load_catalogue, save_category
from shared.errors import HubError, NotFoundError
from shared.params import Code
from shared.web import PrincipalDep, RuntimeDep, SessionDep, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["categories"], dependencies=[Depends(require_json)])

Admin = Annotated[Principal, Depends(require_roles("admin"))]
MAX_CATEGORIES = 1_000  # the shipped catalogue has 57; the table stays a catalogue, not a log


@router.get("/categories")
async def list_categories(
    _principal: PrincipalDep, runtime: RuntimeDep, group: Group | None = None
) -> list[Category]:
    """Every category, optionally of one group (component, event or sensor)."""
    return [c for c in runtime.catalogue if group is None or c.group == group]


@router.get("/categories/{code}")
async def get_category(code: Code, _principal: PrincipalDep, runtime: RuntimeDep) -> Category:
    """One category by code."""
    category = runtime.catalogue.get(code)
    if category is None:
        raise NotFoundError(f"category {code!r} not found")
    return category


@router.put("/categories/{code}")
async def put_category(
    code: Code, category: Category, _admin: Admin, session: SessionDep, runtime: RuntimeDep
) -> Category:
    """Add or replace a category (other processes pick the change up within 30 s). Hours are
    finite, positive, at most 8,760 h at every priority, accept ≤ handle; `department` is a
    bureau kind of the directory (422 otherwise)."""
    if category.code != code:
        raise HubError(f"body code {category.code!r} does not match the path {code!r}", 422)
    kinds = shipped_kinds()
    if category.department not in kinds:
        raise HubError(
            f"unknown department kind {category.department!r} ({', '.join(sorted(kinds))})", 422
        )
    if runtime.catalogue.get(code) is None and len(runtime.catalogue) >= MAX_CATEGORIES:
        raise HubError(f"the catalogue holds at most {MAX_CATEGORIES} categories", 422)
    await save_category(session, category)
    runtime.catalogue = await load_catalogue(session)
    return category
