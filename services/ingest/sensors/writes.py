"""What the intake must store: alarm transitions and dead letters.

A batch is stored in two commits. First every raise's event goes through the intake path
(`intake.submit`: normalise, geotag, idempotent on source + source_ref) and the ingest process's
group-committed event writer, all raises of the batch in one multi-row insert. Then one
transaction inserts the alarm rows (each naming its event), records clears and inserts dead
letters, all as Core executemany statements. A crash between the two commits is harmless: the
messages are not acknowledged yet, the broker redelivers them, the raise is evaluated again with
the same deterministic reference, `submit` returns the stored event and the alarm row follows.

The second transaction also queues the `alerts.raised` messages of what it stored (an offline
alarm newly raised or cleared, a dead-letter spike) in the outbox: an alert is published exactly
when its fact is committed (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.dead_letters import Reason, dead_letter_row, store_dead_letters
from services.ingest.intake import submit
from services.ingest.schemas import EventCreate, Location
from services.ingest.sensors import store
from services.ingest.sensors.registry import OFFLINE_KEY, OpenAlarm
from shared.catalogue import Priority
from shared.db.models import Event, SensorAlarm
from shared.errors import HubError
from shared.events import NewEvent
from shared.messages import AlertRaisedV1
from shared.outbox import add_to_outbox
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
    rule_key: str = ""  # OFFLINE_KEY: the sensor is back (a sensor_online alert)


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


async def store_writes(
    runtime: Runtime,
    writes: list[Write],
    *,
    alerts: Sequence[AlertRaisedV1] = (),
    now: float | None = None,
) -> None:
    """Store a batch of writes and publish `alerts` (dead-letter spikes) with them (see the module
    docstring); `now` dates offline alerts. Raises if the database failed."""
    now = time.time() if now is None else now
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
        news = await _clear_alarms(session, earlier)
        for phase in phases:
            news += await _insert_alarms(session, phase.raises, now)
            news += await _clear_alarms(session, phase.clears)
        await store_dead_letters(session, letters)
        for message in [*news, *alerts]:
            add_to_outbox(session, message)


async def _event(runtime: Runtime, write: RaiseAlarm) -> NewEvent | Event | HubError:
    """The raise's event (stored now or before), or the HubError refusing it."""
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
    return event


async def _insert_alarms(
    session: AsyncSession, raises: list[tuple[RaiseAlarm, Any]], now: float
) -> list[AlertRaisedV1]:
    """Insert raised alarms; the sensor_offline alerts of offline alarms inserted now."""
    if not raises:
        return []
    rows = []
    for write, event in raises:
        at = utc(write.raised_at)
        rows.append(
            {
                "id": write.alarm.id,
                "sensor_id": write.sensor_id,
                "rule_key": write.rule_key,
                "kind": write.kind,
                "category": write.category,
                "ref": write.alarm.ref,
                "event_id": event.id,
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
    alerts = []
    for write, event in raises:
        if write.alarm.id in inserted:
            if write.kind == "offline":
                alerts.append(_offline_alert(write, event, now))
            continue
        # Raised before (a redelivered message) or by another replica: adopt the stored alarm.
        existing = await store.alarm_by_ref(session, write.alarm.ref) or await store.open_alarm_for(
            session, write.sensor_id, write.rule_key
        )
        if existing is not None:
            write.alarm.id = existing.id
        else:
            logger.warning("alarm %s was neither stored nor found", write.alarm.ref)
    return alerts


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


_CLEAR_OFFLINE = _CLEAR.returning(
    _ALARMS.c.sensor_id, _ALARMS.c.ref, _ALARMS.c.raised_at, _ALARMS.c.event_id
)


def _clear_params(c: ClearAlarm) -> dict[str, Any]:
    return {
        "b_id": c.alarm.id,
        "b_at": utc(c.at),
        "b_value": c.value,
        "b_reason": c.reason,
        "b_count": c.alarm.count,
        "b_last_value": c.alarm.last_value,
        "b_last_at": utc(c.alarm.last_at),
    }


async def _clear_alarms(session: AsyncSession, clears: list[ClearAlarm]) -> list[AlertRaisedV1]:
    """Record clears; the sensor_online alerts of offline alarms cleared now."""
    plain = [_clear_params(c) for c in clears if c.rule_key != OFFLINE_KEY]
    if plain:
        await session.execute(_CLEAR, plain)
    alerts = []
    # One by one (sensors coming back are rare): only a clear that took effect is announced.
    for c in clears:
        if c.rule_key == OFFLINE_KEY:
            row = (await session.execute(_CLEAR_OFFLINE, _clear_params(c))).first()
            if row is not None:
                alerts.append(await _online_alert(session, c, row))
    return alerts


def _alert_id(kind: str, ref: str) -> uuid.UUID:
    """The same alarm always announces itself under the same message id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cityhub:{kind}:{ref}")


def _offline_alert(write: RaiseAlarm, event: NewEvent | Event, now: float) -> AlertRaisedV1:
    return AlertRaisedV1(
        id=_alert_id("sensor_offline", write.alarm.ref),
        alert="sensor_offline",
        at=utc(max(now, write.raised_at)),
        district=event.district_code,
        street=event.street_code,
        sensor_id=write.sensor_id,
        integrator=write.integrator,
        details={
            "alarm_id": str(write.alarm.id),
            "event_id": str(event.id),
            "category": write.category,
            "last_seen_at": utc(write.raised_at).isoformat(),
            "description": write.description,
        },
    )


async def _online_alert(
    session: AsyncSession, c: ClearAlarm, cleared: Row[str, str, datetime, uuid.UUID | None]
) -> AlertRaisedV1:
    """The sensor_online alert of a cleared offline alarm, located where its raise's event was."""
    sensor_id, ref, raised_at, event_id = cleared
    place = (
        await session.execute(
            select(Event.district_code, Event.street_code, Event.submitted_by).where(
                Event.id == event_id
            )
        )
    ).first()
    district, street, integrator = place if place is not None else (None, None, None)
    return AlertRaisedV1(
        id=_alert_id("sensor_online", ref),
        alert="sensor_online",
        at=utc(c.at),
        district=district,
        street=street,
        sensor_id=sensor_id,
        integrator=integrator,
        details={
            "alarm_id": str(c.alarm.id),
            "last_seen_at": raised_at.isoformat(),
            "offline_s": round(max(0.0, c.at - raised_at.timestamp()), 3),
        },
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
