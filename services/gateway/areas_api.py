"""Read API for the area hierarchy and the geotagger."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from shapely.geometry import mapping

from services.gateway.outlines import (
    DEFAULT_ZOOM,
    MAX_ZOOM,
    MIN_ZOOM,
    OutlineCache,
    OutlineQuery,
    Rendered,
    outline_members,
    zoom_bucket,
)
from shared.areas import Area, Hierarchy, Level
from shared.auth import Scope
from shared.compression import accepts_gzip
from shared.errors import HubError, NotFoundError
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


# ---- outlines for the screens' maps -----------------------------------------------------------

# Rendered outlines of every hierarchy this process serves (keyed by the hierarchy object).
OUTLINES = OutlineCache()
GEOJSON = "application/geo+json"
# Revalidate every time: the body depends on the caller's scope under one URL (a browser shared by
# a city manager and then a district dispatcher must not reuse the manager's answer), and a 304
# costs a round trip of a few hundred bytes. `private`: no shared cache may keep it at all.
OUTLINE_CACHE_CONTROL = "private, no-cache"
MAX_QUERY_ZOOM = 24  # web map zooms end about here; anything above MAX_ZOOM is served as MAX_ZOOM
PARENT_LEVEL: dict[Level, Level | None] = {"city": None, "district": "city", "street": "district"}


class OutlineProperties(BaseModel):
    """Which area an outline draws."""

    code: str
    name: str
    level: Literal["city", "district", "street"]
    parent: str | None


class OutlineGeometry(BaseModel):
    """A GeoJSON Polygon or MultiPolygon (lon, lat; exteriors counter-clockwise)."""

    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any]


class OutlineFeature(BaseModel):
    """One area's outline with its bounding box [west, south, east, north]."""

    type: Literal["Feature"]
    bbox: list[float] = Field(min_length=4, max_length=4)
    properties: OutlineProperties
    geometry: OutlineGeometry


class OutlineCollection(BaseModel):
    """Outlines of one level; `bbox` spans them all (absent when there are none)."""

    type: Literal["FeatureCollection"]
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)
    features: list[OutlineFeature]


class GeoJSONResponse(JSONResponse):
    """GeoJSON (RFC 7946) rendered beforehand; a JSONResponse so that OpenAPI documents the
    body by its model alone."""

    media_type = GEOJSON

    def render(self, content: Any) -> bytes:
        """The rendered bytes as they are."""
        return content if isinstance(content, bytes) else super().render(content)


_TEXT = {"schema": {"type": "string"}}
OUTLINE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": OutlineCollection,
        "description": "The outlines, simplified for display at the zoom; gzip when accepted",
        "headers": {
            "ETag": {**_TEXT, "description": "Strong validator of this body", "required": True},
            "Cache-Control": {**_TEXT, "description": "`private, no-cache`", "required": True},
            "Vary": {**_TEXT, "description": "`Accept-Encoding`", "required": True},
            "Content-Encoding": {**_TEXT, "description": "`gzip` when the request accepts it"},
        },
    },
    304: {
        "description": "Not modified: `If-None-Match` names the current ETag",
        "headers": {"ETag": {**_TEXT, "description": "The current ETag", "required": True}},
    },
    404: {"description": "`parent` names no area, or one outside the caller's scope"},
    422: {
        "description": "Invalid parameters: streets without `parent`, or a `parent` of the"
        " wrong level"
    },
}


def _etag_matches(if_none_match: str, rendered: Rendered) -> bool:
    """True when If-None-Match names either encoding's ETag (weak comparison, as RFC 9110 asks
    for this header) or is `*`."""
    current = {rendered.etag, rendered.gzip_etag}
    tags = (t.strip().removeprefix("W/") for t in if_none_match.split(","))
    return any(t == "*" or t in current for t in tags)


def _outline_parent(
    hierarchy: Hierarchy, scope: Scope, level: Level, parent: str | None
) -> str | None:
    """The checked parent: required for streets, and of the level above the requested one."""
    if level == "street" and parent is None:
        raise HubError("street outlines come one district at a time: give parent=<district>", 422)
    if parent is None:
        return None
    area = hierarchy.get(parent)
    if area is None or not visible(area, scope, hierarchy):
        raise NotFoundError(f"area {parent!r} not found")
    if area.level != PARENT_LEVEL[level]:
        above = PARENT_LEVEL[level] or "nothing"
        raise HubError(
            f"the parent of {level} outlines is {above}, not {area.level} {parent!r}", 422
        )
    return parent


@router.get(
    "/areas/outlines",
    response_class=GeoJSONResponse,
    response_model=None,
    responses=OUTLINE_RESPONSES,
)
async def area_outlines(
    request: Request,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    level: Literal["city", "district", "street"],
    parent: Code | None = None,
    zoom: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_QUERY_ZOOM,
            description=f"The map's zoom (256 px tiles): simplified to half a pixel there"
            f" ({MIN_ZOOM}–{MAX_ZOOM} apart; default {DEFAULT_ZOOM['district']},"
            f" streets {DEFAULT_ZOOM['street']})",
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header(description="An ETag from before")] = None,
) -> Response:
    """Outlines of one level for a map, inside the caller's scope: the city, its districts, or
    one district's streets (`parent`), simplified for the zoom, with an ETag."""
    hierarchy = runtime.hierarchy
    scope = principal.scope
    parent = _outline_parent(hierarchy, scope, level, parent)
    members = outline_members(hierarchy, level, parent)
    codes = tuple(a.code for a in members if visible(a, scope, hierarchy))
    query = OutlineQuery(
        level=level,
        parent=parent if level == "street" else None,
        bucket=zoom_bucket(level, zoom),
        codes=None if len(codes) == len(members) else codes,
    )
    rendered = OUTLINES.cached(hierarchy, query)
    if rendered is None:  # simplifying is CPU work: off the event loop
        rendered = await asyncio.to_thread(OUTLINES.render, hierarchy, query)
    gzipped = accepts_gzip(request.headers.get("accept-encoding", ""))
    headers = {
        "ETag": rendered.gzip_etag if gzipped else rendered.etag,
        "Cache-Control": OUTLINE_CACHE_CONTROL,
        "Vary": "Accept-Encoding",
    }
    if if_none_match is not None and _etag_matches(if_none_match, rendered):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return GeoJSONResponse(rendered.gzipped, headers=headers)
    return GeoJSONResponse(rendered.body, headers=headers)


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
