"""Routing rules (admin-edited data) and the department directory."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from services.dispatch.context import ContextDep
from services.dispatch.rules import check_rules
from services.dispatch.rules_store import load_rules, replace_rules
from services.dispatch.schemas import DepartmentRead, RoutingRules
from shared.auth import Principal
from shared.params import Code
from shared.web import PrincipalDep, RuntimeDep, SessionDep, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["routing"], dependencies=[Depends(require_json)])

Admin = Annotated[Principal, Depends(require_roles("admin"))]


@router.get("/routing-rules")
async def get_routing_rules(_admin: Admin, session: SessionDep) -> RoutingRules:
    """The routing table as stored."""
    return RoutingRules(rules=await load_rules(session))


@router.put("/routing-rules")
async def put_routing_rules(
    body: RoutingRules, _admin: Admin, session: SessionDep, runtime: RuntimeDep, context: ContextDep
) -> RoutingRules:
    """Replace the whole routing table (checked first; other replicas apply it within 30 s).

    New tickets follow it at once; tickets already open keep their routing.
    """
    check_rules(body.rules, runtime.catalogue, runtime.hierarchy, context.directory)
    await replace_rules(session, body.rules)
    context.rules = list(body.rules)
    return body


@router.get("/departments")
async def list_departments(
    _principal: PrincipalDep,
    context: ContextDep,
    group: Literal["bureau", "utility", "office", "dispatch"] | None = None,
    level: Literal["city", "district", "street"] | None = None,
    area: Code | None = None,
    kind: Code | None = None,
) -> list[DepartmentRead]:
    """City bureaus, their district counterparts, street offices and dispatcher queues."""
    return [
        DepartmentRead(
            code=d.code, name=d.name, group=d.group, kind=d.kind, level=d.level, area=d.area
        )
        for d in context.directory
        if (group is None or d.group == group)
        and (level is None or d.level == level)
        and (area is None or d.area == area)
        and (kind is None or d.kind == kind)
    ]
