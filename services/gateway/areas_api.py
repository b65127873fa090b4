"""Read API for the area hierarchy and the geotagger."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from shapely.geometry import mapping

from shared.areas import Area, Hierarchy
from shared.auth import Scope
from shared.errors import NotFoundError
from shared.params import Code
from shared.web import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/v1", tags=["areas"])


class AreaRead(BaseModel):
    """An area; `geometry` is GeoJSON when asked for."""

    code: str
    name: str
    level: Literal["city", "district", "street"]
    parent: str | None
    geometry: dict[str, Any] | None = None


class AreaRef(BaseModel):
    """An area by code and name."""

    code: str
    name: str


class GeotagResult(BaseModel):
    """Where a point lies and how it was located."""

    street: AreaRef | None
    district: AreaRef | None
    city: AreaRef | None
    method: Literal["point", "nearest", "address", "none"]


def visible(area: Area, scope: Scope, hierarchy: Hierarchy) -> bool:
    """True for areas inside the scope and for the scope's own ancestors (its context)."""
    if scope.level == "city" or area.level == "city":
        return True
    if scope.level == "district":
        return scope.code in (area.code, area.parent)
    street = hierarchy.get(scope.code or "")
    return area.code == scope.code or (street is not None and area.code == street.parent)


def _read(area: Area, geometry: bool) -> AreaRead:
    return AreaRead(
        code=area.code,
        name=area.name,
        level=area.level,
        parent=area.parent,
        geometry=dict(mapping(area.geometry)) if geometry else None,
    )


def _ref(area: Area | None) -> AreaRef | None:
    return AreaRef(code=area.code, name=area.name) if area else None


@router.get("/areas", responses={404: {"description": "`parent` names no area"}})
async def list_areas(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    level: Literal["city", "district", "street"] | None = None,
    parent: Code | None = None,
    geometry: bool = False,
) -> list[AreaRead]:
    """Areas inside the caller's scope, by level and parent (geometry only when asked)."""
    hierarchy = runtime.hierarchy
    if parent is not None and hierarchy.get(parent) is None:
        raise NotFoundError(f"area {parent!r} not found")
    return [
        _read(a, geometry)
        for a in hierarchy
        if (level is None or a.level == level)
        and (parent is None or a.parent == parent)
        and visible(a, principal.scope, hierarchy)
    ]


@router.get("/areas/{code}")
async def get_area(code: Code, principal: PrincipalDep, runtime: RuntimeDep) -> AreaRead:
    """One area with its GeoJSON geometry."""
    area = runtime.hierarchy.get(code)
    if area is None or not visible(area, principal.scope, runtime.hierarchy):
        raise NotFoundError(f"area {code!r} not found")
    return _read(area, geometry=True)


@router.get("/geotag")
async def geotag(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
) -> GeotagResult:
    """Locate a point: street, district and city, and the method that found them."""
    tag = runtime.geotagger.locate(lon, lat)
    return GeotagResult(
        street=_ref(tag.street), district=_ref(tag.district), city=_ref(tag.city), method=tag.method
    )
