"""Emergency mode API (平急转换): switch an area to emergency handling and back, list what is on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.dispatch import emergency_store as store
from services.dispatch.emergency import cache_of
from shared.areas import Hierarchy
from shared.auth import Principal
from shared.db.models import EmergencyMode
from shared.errors import ConflictError, HubError, NotFoundError
from shared.messages import EmergencyChangedV1
from shared.outbox import add_to_outbox
from shared.web import RuntimeDep, SessionDep, require_roles

router = APIRouter(prefix="/api/v1", tags=["emergency"])

Reader = Annotated[
    Principal, Depends(require_roles("admin", "dispatcher", "field_staff", "manager"))
]
Switcher = Annotated[Principal, Depends(require_roles("admin", "dispatcher"))]


MIN_FACTOR = 0.1  # emergency deadlines are at least a tenth of the ordinary ones


class EmergencyCreate(BaseModel):
    """Switch an area to emergency handling for an incident."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    area: str = Field(min_length=1, max_length=32, description="a district code or the city code")
    incident: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        max_length=200, examples=["防汛"]
    )
    categories: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=500, examples=[["E0501", "S0101"]]
    )
    deadline_factor: Annotated[
        float,
        Field(ge=MIN_FACTOR, le=1, description="deadlines of new tickets × this (0.1 to 1)"),
    ]


class EmergencyRead(BaseModel):
    """An emergency mode, active or ended."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: uuid.UUID
    area: str
    area_name: str | None
    city_wide: bool
    incident: str
    categories: list[str]
    deadline_factor: float
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    ended_by: str | None


def _read(mode: EmergencyMode, hierarchy: Hierarchy) -> EmergencyRead:
    area = hierarchy.get(mode.area)
    return EmergencyRead(
        id=mode.id,
        area=mode.area,
        area_name=area.name if area else None,
        city_wide=area is not None and area.level == "city",
        incident=mode.incident,
        categories=list(mode.categories),
        deadline_factor=mode.deadline_factor,
        started_at=mode.started_at,
        started_by=mode.started_by,
        ended_at=mode.ended_at,
        ended_by=mode.ended_by,
    )


def check_switcher(principal: Principal) -> None:
    """Only an admin or a city-level dispatcher switches modes (403 otherwise)."""
    if principal.role == "dispatcher" and principal.scope.level != "city":
        raise HubError("only the city centre switches emergency mode", 403)


def visible(principal: Principal, area_code: str, hierarchy: Hierarchy) -> bool:
    """True when a mode of `area_code` concerns the caller's scope (city-wide modes concern all)."""
    scope = principal.scope
    area = hierarchy.get(area_code)
    if scope.level == "city" or (area is not None and area.level == "city"):
        return True
    if scope.level == "district":
        return area_code == scope.code
    street = hierarchy.get(scope.code or "")
    return street is not None and street.parent == area_code


def _message(mode: EmergencyMode, change: str, at: datetime, by: str) -> EmergencyChangedV1:
    return EmergencyChangedV1(
        emergency_id=mode.id,
        change="started" if change == "started" else "ended",
        area=mode.area,
        incident=mode.incident,
        categories=list(mode.categories),
        deadline_factor=mode.deadline_factor,
        at=at,
        by=by,
    )


@router.post("/emergency", status_code=201)
async def start_emergency(
    body: EmergencyCreate,
    principal: Switcher,
    session: SessionDep,
    runtime: RuntimeDep,
    after_commit: BackgroundTasks,
) -> EmergencyRead:
    """Switch a district (or the city) to emergency mode for the listed categories."""
    check_switcher(principal)
    area = runtime.hierarchy.get(body.area)
    if area is None or area.level not in ("district", "city"):
        raise HubError(f"area {body.area!r} is neither a district nor the city", 422)
    categories = list(dict.fromkeys(body.categories))
    unknown = [c for c in categories if runtime.catalogue.get(c) is None]
    if unknown:
        raise HubError(f"unknown categories: {', '.join(unknown)}", 422)
    for active in await store.active_in_area(session, body.area):
        shared = sorted(set(active.categories) & set(categories))
        if shared:
            raise ConflictError(
                f"emergency mode {active.id} ({active.incident}) already covers "
                f"{', '.join(shared)} in {body.area}: switch it back first"
            )
    now = datetime.now(UTC)
    mode = EmergencyMode(
        id=uuid.uuid4(),
        area=body.area,
        incident=body.incident,
        categories=categories,
        deadline_factor=body.deadline_factor,
        started_at=now,
        started_by=principal.subject,
    )
    session.add(mode)
    add_to_outbox(session, _message(mode, "started", now, principal.subject))
    await session.flush()
    after_commit.add_task(cache_of(runtime).invalidate)  # this process sees the switch at once
    return _read(mode, runtime.hierarchy)


@router.delete("/emergency/{emergency_id}")
async def end_emergency(
    emergency_id: uuid.UUID,
    principal: Switcher,
    session: SessionDep,
    runtime: RuntimeDep,
    after_commit: BackgroundTasks,
) -> EmergencyRead:
    """Switch back to normal rules (平急转换): new tickets get ordinary deadlines and routing."""
    check_switcher(principal)
    mode = await store.get_mode(session, emergency_id)
    if mode is None or not visible(principal, mode.area, runtime.hierarchy):
        raise NotFoundError(f"emergency mode {emergency_id} not found")
    if mode.ended_at is not None:
        raise ConflictError(f"emergency mode {emergency_id} already ended at {mode.ended_at}")
    now = datetime.now(UTC)
    mode.ended_at, mode.ended_by = now, principal.subject
    add_to_outbox(session, _message(mode, "ended", now, principal.subject))
    await session.flush()
    after_commit.add_task(cache_of(runtime).invalidate)  # this process sees the switch at once
    return _read(mode, runtime.hierarchy)


@router.get("/emergency")
async def list_emergencies(
    principal: Reader, session: SessionDep, runtime: RuntimeDep
) -> list[EmergencyRead]:
    """Active emergency modes that concern the caller's scope."""
    modes = [mode for mode, _level in await store.active_with_level(session)]
    return [
        _read(m, runtime.hierarchy) for m in modes if visible(principal, m.area, runtime.hierarchy)
    ]
