"""Every SQL query about sensors and their alarms."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Table, Text, select, text, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import ApiKey, Sensor, SensorAlarm

REGISTRY_CHUNK = 5_000  # rows fetched at a time when loading the registry
UPSERT_CHUNK = 1_000  # rows per INSERT ... ON CONFLICT statement


class RegistryRow(Protocol):
    """What the in-memory registry needs of a sensor (a row of REGISTRY_COLUMNS or a Sensor)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def integrator(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def lon(self) -> float: ...
    @property
    def lat(self) -> float: ...
    @property
    def interval_s(self) -> int: ...
    @property
    def alarm_category(self) -> str: ...
    @property
    def rules(self) -> str | list[dict[str, Any]]: ...
    @property
    def last_seen_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime: ...


REGISTRY_COLUMNS = (
    Sensor.id,
    Sensor.type,
    Sensor.integrator,
    Sensor.name,
    Sensor.lon,
    Sensor.lat,
    Sensor.interval_s,
    Sensor.alarm_category,
    # As text: the registry keys its shared rule sets by it and decodes each distinct one once.
    cast_(Sensor.rules, Text).label("rules"),
    Sensor.last_seen_at,
    Sensor.updated_at,
)


async def get_sensor(session: AsyncSession, sensor_id: str) -> Sensor | None:
    """A sensor by id."""
    return await session.get(Sensor, sensor_id)


async def list_sensors(
    session: AsyncSession, *, integrator: str | None, after: str | None, limit: int
) -> Sequence[Sensor]:
    """Sensors by id (one integrator's when given), starting after `after`."""
    query = select(Sensor).order_by(Sensor.id).limit(limit)
    if integrator is not None:
        query = query.where(Sensor.integrator == integrator)
    if after is not None:
        query = query.where(Sensor.id > after)
    return (await session.scalars(query)).all()


async def integrator_exists(session: AsyncSession, name: str) -> bool:
    """True when an unrevoked API key has this name."""
    found = await session.scalar(
        select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    )
    return found is not None


async def existing_integrators(session: AsyncSession, names: Iterable[str]) -> set[str]:
    """Which of `names` are unrevoked API keys."""
    wanted = sorted(set(names))
    found: set[str] = set()
    for i in range(0, len(wanted), UPSERT_CHUNK):
        chunk = wanted[i : i + UPSERT_CHUNK]
        query = select(ApiKey.name).where(ApiKey.name.in_(chunk), ApiKey.revoked_at.is_(None))
        found.update((await session.scalars(query)).all())
    return found


async def upsert_sensors(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or replace sensors (dicts of column values); returns how many were new."""
    table = cast(Table, Sensor.__table__)
    dialect = session.get_bind().dialect.name
    ids = [r["id"] for r in rows]
    known: set[str] = set()
    for i in range(0, len(ids), UPSERT_CHUNK):
        chunk = ids[i : i + UPSERT_CHUNK]
        known.update((await session.scalars(select(Sensor.id).where(Sensor.id.in_(chunk)))).all())
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for i in range(0, len(rows), UPSERT_CHUNK):
        statement = insert(table).values(list(rows[i : i + UPSERT_CHUNK]))
        replaced = {
            c: getattr(statement.excluded, c)
            for c in rows[0]
            if c not in ("id", "created_at", "last_seen_at")
        }
        await session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=replaced))
    return len(set(ids) - known)


async def stream_registry(session: AsyncSession) -> AsyncIterator[Sequence[RegistryRow]]:
    """Every sensor's registry columns, a chunk of rows at a time (bounded memory)."""
    result = await session.stream(
        select(*REGISTRY_COLUMNS).execution_options(yield_per=REGISTRY_CHUNK)
    )
    async for partition in result.partitions():
        yield cast(Sequence[RegistryRow], partition)


async def changed_sensors(session: AsyncSession, since: datetime) -> Sequence[RegistryRow]:
    """Registry columns of sensors updated at or after `since` (by the database's clock)."""
    query = select(*REGISTRY_COLUMNS).where(Sensor.updated_at >= since)
    return cast(Sequence[RegistryRow], (await session.execute(query)).all())


async def open_alarms(session: AsyncSession) -> Sequence[SensorAlarm]:
    """Every alarm not cleared yet."""
    return (
        await session.scalars(select(SensorAlarm).where(SensorAlarm.cleared_at.is_(None)))
    ).all()


async def open_alarm_for(
    session: AsyncSession, sensor_id: str, rule_key: str
) -> SensorAlarm | None:
    """The open alarm of one sensor's rule."""
    return await session.scalar(
        select(SensorAlarm).where(
            SensorAlarm.sensor_id == sensor_id,
            SensorAlarm.rule_key == rule_key,
            SensorAlarm.cleared_at.is_(None),
        )
    )


async def alarm_by_ref(session: AsyncSession, ref: str) -> SensorAlarm | None:
    """The alarm raised under this deterministic reference."""
    return await session.scalar(select(SensorAlarm).where(SensorAlarm.ref == ref))


async def alarms_of(
    session: AsyncSession, sensor_id: str, *, open_only: bool, limit: int
) -> Sequence[SensorAlarm]:
    """A sensor's alarms, newest first."""
    query = (
        select(SensorAlarm)
        .where(SensorAlarm.sensor_id == sensor_id)
        .order_by(SensorAlarm.raised_at.desc(), SensorAlarm.id)
        .limit(limit)
    )
    if open_only:
        query = query.where(SensorAlarm.cleared_at.is_(None))
    return (await session.scalars(query)).all()


async def clear_alarm(
    session: AsyncSession,
    alarm_id: uuid.UUID,
    *,
    at: datetime,
    value: float | None,
    reason: str,
    count: int | None = None,
    last_value: float | None = None,
    last_at: datetime | None = None,
) -> None:
    """Record that an alarm ended (idempotent: an alarm is cleared once)."""
    values: dict[str, Any] = {"cleared_at": at, "clear_value": value, "clear_reason": reason}
    if count is not None:
        values.update(count=count, last_value=last_value, last_at=last_at or at)
    await session.execute(
        update(SensorAlarm)
        .where(SensorAlarm.id == alarm_id, SensorAlarm.cleared_at.is_(None))
        .values(**values)
    )


async def clear_stale_rule_alarms(
    session: AsyncSession, keys: dict[str, set[str]], at: datetime
) -> int:
    """Clear open threshold alarms whose rule their sensor no longer has; how many."""
    ids = sorted(keys)
    cleared = 0
    for i in range(0, len(ids), UPSERT_CHUNK):
        query = select(SensorAlarm.id, SensorAlarm.sensor_id, SensorAlarm.rule_key).where(
            SensorAlarm.sensor_id.in_(ids[i : i + UPSERT_CHUNK]),
            SensorAlarm.kind == "threshold",
            SensorAlarm.cleared_at.is_(None),
        )
        for alarm_id, sensor_id, rule_key in (await session.execute(query)).all():
            if rule_key not in keys[sensor_id]:
                await clear_alarm(session, alarm_id, at=at, value=None, reason="rule_removed")
                cleared += 1
    return cleared


async def save_repeats(
    session: AsyncSession, repeats: Sequence[tuple[uuid.UUID, int, float | None, datetime]]
) -> None:
    """Write (alarm id, count, last value, last time) of alarms that repeated."""
    if not repeats:
        return
    # ORM bulk UPDATE by primary key: one executemany.
    await session.execute(
        update(SensorAlarm),
        [{"id": a, "count": c, "last_value": v, "last_at": t} for a, c, v, t in repeats],
    )


async def save_last_seen(session: AsyncSession, seen: Sequence[tuple[str, datetime]]) -> None:
    """Write when each sensor was last heard from (one statement on PostgreSQL)."""
    if not seen:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _PG_LAST_SEEN, {"ids": [s for s, _ in seen], "ts": [t for _, t in seen]}
        )
        return
    await session.execute(update(Sensor), [{"id": i, "last_seen_at": t} for i, t in seen])


# unnest() turns the two arrays into rows: one UPDATE for any number of sensors.
_PG_LAST_SEEN = text(
    "UPDATE sensors AS s SET last_seen_at = v.t"
    " FROM unnest(CAST(:ids AS text[]), CAST(:ts AS timestamptz[])) AS v(id, t)"
    " WHERE s.id = v.id"
)
