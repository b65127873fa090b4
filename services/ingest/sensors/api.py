"""The sensor registry API: register (PUT), read, list, and a sensor's alarms."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status

from services.ingest.schemas import Location
from services.ingest.sensors import store
from services.ingest.sensors.payloads import SENSOR_ID_PATTERN
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from services.ingest.sensors.registration import rule_keys, sensor_row
from services.ingest.sensors.schemas import AlarmRead, SensorPage, SensorPut, SensorRead
from shared.auth import Principal, owner_limit
from shared.db.models import Sensor, SensorAlarm
from shared.errors import HubError, NotFoundError
from shared.params import Code
from shared.web import RuntimeDep, SessionDep, require_roles

router = APIRouter(prefix="/api/v1/sensors", tags=["sensors"])

Owner = Annotated[Principal, Depends(require_roles("admin", "integrator"))]
SensorIdPath = Annotated[str, Path(pattern=f"^{SENSOR_ID_PATTERN}$")]


def to_read(sensor: Sensor) -> SensorRead:
    """The public view of a sensor."""
    return SensorRead(
        id=sensor.id,
        type=sensor.type,
        integrator=sensor.integrator,
        name=sensor.name,
        location=Location(lon=sensor.lon, lat=sensor.lat),
        interval_s=sensor.interval_s,
        alarm_category=sensor.alarm_category,
        rules=sensor.rules,
        last_seen_at=sensor.last_seen_at,
        created_at=sensor.created_at,
        updated_at=sensor.updated_at,
    )


def alarm_read(alarm: SensorAlarm) -> AlarmRead:
    """The public view of an alarm."""
    return AlarmRead(
        id=alarm.id,
        state="raised" if alarm.cleared_at is None else "cleared",
        rule_key=alarm.rule_key,
        kind=alarm.kind,
        category=alarm.category,
        event_id=alarm.event_id,
        metric=alarm.metric,
        threshold=alarm.threshold,
        severity=alarm.severity,
        message=alarm.message,
        raised_at=alarm.raised_at,
        value=alarm.value,
        count=alarm.count,
        last_value=alarm.last_value,
        last_at=alarm.last_at,
        cleared_at=alarm.cleared_at,
        clear_value=alarm.clear_value,
        clear_reason=alarm.clear_reason,
    )


def _visible(principal: Principal, sensor: Sensor | None) -> Sensor:
    """The sensor if the caller may see it; 404 otherwise (never say which)."""
    owner = owner_limit(principal)  # admins (the only other role here) see every sensor
    if sensor is None or (owner is not None and sensor.integrator != owner):
        raise NotFoundError("sensor not found")
    return sensor


@router.put(
    "/{sensor_id}",
    responses={201: {"model": SensorRead, "description": "Registered."}},
)
async def put_sensor(
    sensor_id: SensorIdPath,
    body: SensorPut,
    principal: Owner,
    runtime: RuntimeDep,
    response: Response,
) -> SensorRead:
    """Register or replace a sensor: by its integrator's key, or by an admin naming the owner."""
    if principal.role == "admin":
        if body.integrator is None:
            raise HubError("admins must name the owning integrator (integrator)", 422)
        owner = body.integrator
    else:
        if body.integrator not in (None, principal.subject):
            raise HubError("integrators register sensors only for themselves", 403)
        owner = principal.subject
    now = datetime.now(UTC)
    async with runtime.sessions() as session, session.begin():
        existing = await store.get_sensor(session, sensor_id)
        if existing is not None and principal.role != "admin":
            _visible(principal, existing)
        if principal.role == "admin" and not await store.integrator_exists(session, owner):
            raise HubError(f"no integrator {owner!r}: create its key first (cityhub keys add)", 422)
        row = sensor_row(sensor_id, body, owner, runtime.catalogue, now)
        await store.upsert_sensors(session, [row])
        await store.clear_stale_rule_alarms(session, {sensor_id: rule_keys(row["rules"])}, now)
        sensor = await store.get_sensor(session, sensor_id)
        assert sensor is not None
        await session.refresh(sensor)
    intake: SensorIntake | None = runtime.extras.get(INTAKE_KEY)
    if intake is not None:  # this process evaluates readings: use the new rules at once
        intake.add_row(sensor, time.time())
    if existing is None:
        response.status_code = status.HTTP_201_CREATED
    return to_read(sensor)


@router.get("/{sensor_id}")
async def get_sensor(sensor_id: SensorIdPath, principal: Owner, session: SessionDep) -> SensorRead:
    """One sensor (404 unless the caller owns it or is an admin)."""
    return to_read(_visible(principal, await store.get_sensor(session, sensor_id)))


@router.get("")
async def list_sensors(
    principal: Owner,
    session: SessionDep,
    after: Code | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SensorPage:
    """The caller's sensors (an admin's: all), by id; page on with `after`."""
    rows = await store.list_sensors(
        session, integrator=owner_limit(principal), after=after, limit=limit
    )
    return SensorPage(items=[to_read(s) for s in rows])


@router.get("/{sensor_id}/alarms")
async def get_alarms(
    sensor_id: SensorIdPath,
    principal: Owner,
    session: SessionDep,
    state: Literal["open", "all"] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[AlarmRead]:
    """A sensor's alarms, newest first (repeats counted in `count`)."""
    _visible(principal, await store.get_sensor(session, sensor_id))
    alarms = await store.alarms_of(session, sensor_id, open_only=state == "open", limit=limit)
    return [alarm_read(a) for a in alarms]
