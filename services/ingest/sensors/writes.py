"""What the intake must store: alarm transitions and dead letters.

A batch is stored in two commits. First every raise's event goes through the intake path
(`intake.submit`: normalise, geotag, idempotent on source + source_ref) and the ingest process's
group-committed event writer, all raises of the batch in one multi-row insert. Then one
transaction inserts the alarm rows (each naming its event), records clears and inserts dead
letters, all as Core executemany statements. A crash between the two commits is harmless: the
messages are not acknowledged yet, the broker redelivers them, the raise is evaluated again with
the same deterministic reference, `submit` returns the stored event and the alarm row follows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.dead_letters import Reason, dead_letter_row, store_dead_letters
from services.ingest.intake import submit
from services.ingest.schemas import EventCreate, Location
from services.ingest.sensors import store
from services.ingest.sensors.registry import OpenAlarm
from shared.catalogue import Priority
from shared.db.models import SensorAlarm
from shared.errors import HubError
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

_ALARMS = cast(Table, SensorAlarm.__table__)


def utc(ts: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True)
class RaiseAlarm:
    """An alarm starts: store it and its event (category, location and owner of the sensor)."""

    alarm: OpenAlarm  # its id is replaced if the alarm turns out to exist already
    sensor_id: str
    integrator: str
    lon: float
    lat: float
    rule_key: str
    kind: str  # threshold | device | offline
    category: str
    raised_at: float
    description: str
    value: float | None = None
    metric: str | None = None
    threshold: float | None = None
    severity: str | None = None
    message: str = ""
    priority: Priority | None = None


@dataclass(slots=True)
class ClearAlarm:
    """An alarm ends."""

    alarm: OpenAlarm
    at: float
    value: float | None
    reason: str  # value | device | reading | rule_removed


@dataclass(slots=True)
class DeadLetterWrite:
    """A refused message."""

    topic: str
    payload: bytes
    reason: Reason
    detail: str
    received_at: float
    sensor_id: str | None = None
    integrator: str | None = None


@dataclass(slots=True)
class AfterPrevious:
    """Nothing of its own to store, but its sensor has a raise not committed yet: the message is
    acknowledged only once that raise is (else a crash could lose the raise while the broker
    believes this later message, evaluated against it, was handled)."""


Write = RaiseAlarm | ClearAlarm | DeadLetterWrite | AfterPrevious


@dataclass
class _Phase:
    """Raises and clears that can run as two statements: inserts first, then updates."""

    raises: list[tuple[RaiseAlarm, Any]] = field(default_factory=list)
    clears: list[ClearAlarm] = field(default_factory=list)
    cleared: set[tuple[str, str]] = field(default_factory=set)


async def store_writes(runtime: Runtime, writes: list[Write]) -> None:
    """Store a batch of writes (see the module docstring); raises if the database failed."""
    raises = [w for w in writes if isinstance(w, RaiseAlarm)]
    events = await asyncio.gather(*(_event(runtime, w) for w in raises))
    event_of = {id(w): event for w, event in zip(raises, events, strict=True)}
    letters: list[dict[str, Any]] = []
    # Clears of alarms raised in an earlier batch (stored already: batches commit one after
    # another) run first, before any insert: a raise of the same rule later in this batch needs
    # the one-open-alarm slot free, or it would be taken for the old alarm and lost.
    earlier: list[ClearAlarm] = []
    phases = [_Phase()]
    keys: dict[int, tuple[str, str]] = {}  # alarm object → (sensor, rule) of its raise
    for write in writes:
        if isinstance(write, DeadLetterWrite):
            letters.append(_dead_letter(write))
        elif isinstance(write, RaiseAlarm):
            event = event_of[id(write)]
            if isinstance(event, HubError):
                letters.append(_refused(write, event))
                continue
            key = (write.sensor_id, write.rule_key)
            keys[id(write.alarm)] = key
            if key in phases[-1].cleared:  # raised again after a clear: insert after it
                phases.append(_Phase())
            phases[-1].raises.append((write, event))
        elif isinstance(write, ClearAlarm):
            raised = keys.get(id(write.alarm))
            if raised is None:
                earlier.append(write)
            else:
                phases[-1].clears.append(write)
                phases[-1].cleared.add(raised)
    async with runtime.sessions() as session, session.begin():
        await _clear_alarms(session, earlier)
        for phase in phases:
            await _insert_alarms(session, phase.raises)
            await _clear_alarms(session, phase.clears)
        await store_dead_letters(session, letters)


async def _event(runtime: Runtime, write: RaiseAlarm) -> Any:
    """The id of the raise's event (stored now or before), or the HubError refusing it."""
    payload = EventCreate(
        source="sensor",
        source_ref=write.alarm.ref,
        category=write.category,
        priority=write.priority,
        description=write.description,
        location=Location(lon=write.lon, lat=write.lat),
        reported_at=utc(write.raised_at),
    )
    try:
        event, _created = await submit(runtime, payload, write.integrator)
    except HubError as exc:
        if exc.status_code >= 500:
            raise  # the database failed: the batch is retried
        return exc
    return event.id


async def _insert_alarms(session: AsyncSession, raises: list[tuple[RaiseAlarm, Any]]) -> None:
    if not raises:
        return
    rows = []
    for write, event_id in raises:
        at = utc(write.raised_at)
        rows.append(
            {
                "id": write.alarm.id,
                "sensor_id": write.sensor_id,
                "rule_key": write.rule_key,
                "kind": write.kind,
                "category": write.category,
                "ref": write.alarm.ref,
                "event_id": event_id,
                "metric": write.metric,
                "threshold": write.threshold,
                "severity": write.severity,
                "message": write.message,
                "raised_at": at,
                "value": write.value,
                "count": 1,
                "last_value": write.value,
                "last_at": at,
            }
        )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Any conflict (the same reference, or another open alarm on the rule) means it exists.
    statement = insert(_ALARMS).on_conflict_do_nothing().returning(_ALARMS.c.id)
    inserted = set((await session.execute(statement, rows)).scalars())
    for write, _event_id in raises:
        if write.alarm.id in inserted:
            continue
        # Raised before (a redelivered message) or by another replica: adopt the stored alarm.
        existing = await store.alarm_by_ref(session, write.alarm.ref) or await store.open_alarm_for(
            session, write.sensor_id, write.rule_key
        )
        if existing is not None:
            write.alarm.id = existing.id
        else:
            logger.warning("alarm %s was neither stored nor found", write.alarm.ref)


_CLEAR = (
    update(_ALARMS)
    .where(_ALARMS.c.id == bindparam("b_id"), _ALARMS.c.cleared_at.is_(None))
    .values(
        cleared_at=bindparam("b_at"),
        clear_value=bindparam("b_value"),
        clear_reason=bindparam("b_reason"),
        count=bindparam("b_count"),
        last_value=bindparam("b_last_value"),
        last_at=bindparam("b_last_at"),
    )
)


async def _clear_alarms(session: AsyncSession, clears: list[ClearAlarm]) -> None:
    if not clears:
        return
    await session.execute(
        _CLEAR,
        [
            {
                "b_id": c.alarm.id,
                "b_at": utc(c.at),
                "b_value": c.value,
                "b_reason": c.reason,
                "b_count": c.alarm.count,
                "b_last_value": c.alarm.last_value,
                "b_last_at": utc(c.alarm.last_at),
            }
            for c in clears
        ],
    )


def _dead_letter(write: DeadLetterWrite) -> dict[str, Any]:
    return dead_letter_row(
        channel="mqtt",
        topic=write.topic,
        payload=write.payload,
        reason=write.reason,
        detail=write.detail,
        received_at=utc(write.received_at),
        sensor_id=write.sensor_id,
        integrator=write.integrator,
    )


def _refused(write: RaiseAlarm, exc: HubError) -> dict[str, Any]:
    logger.error("alarm %s of sensor %s refused: %s", write.alarm.ref, write.sensor_id, exc)
    return _dead_letter(
        DeadLetterWrite(
            topic=f"alarm/{write.sensor_id}/{write.rule_key}",
            payload=write.description.encode(),
            reason="alarm_rejected",
            detail=exc.message,
            received_at=write.raised_at,
            sensor_id=write.sensor_id,
            integrator=write.integrator,
        )
    )
