"""The in-memory sensor registry: compact per-sensor state the intake evaluates readings against.

Sized for 100,000+ sensors in one process: slotted objects, rule tuples shared between sensors
with the same rules, owner names interned, rule state allocated only for sensors in (or close
to) alarm. Loaded from the database at start, refreshed from it periodically, updated directly by
the registry API of the same process.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from services.ingest.sensors.rules import Rule, RuleState

OFFLINE_KEY = "device_offline"  # rule key of the offline alarm
DEVICE_KEY_PREFIX = "device:"  # rule keys of alarms a device raised itself: device:<type>


class OpenAlarm:
    """An alarm raised and not yet cleared, as the intake tracks it."""

    __slots__ = ("count", "dirty", "id", "last_at", "last_value", "ref", "stored")

    def __init__(
        self,
        alarm_id: uuid.UUID,
        ref: str,
        *,
        count: int = 1,
        last_value: float | None = None,
        last_at: float = 0.0,
        stored: bool = False,
    ) -> None:
        self.id = alarm_id
        self.ref = ref
        self.count = count
        self.last_value = last_value
        self.last_at = last_at
        self.stored = stored  # its raise is committed (repeats can be written)
        self.dirty = False  # repeats not written yet


class SensorState:
    """One sensor: registration (what the intake needs of it) and runtime state."""

    __slots__ = (
        "alarm_category",
        "alarms",
        "id",
        "integrator",
        "interval_s",
        "last_seen",
        "last_ts",
        "lat",
        "lon",
        "name",
        "rule_states",
        "rules",
        "type",
    )

    def __init__(
        self,
        sensor_id: str,
        sensor_type: str,
        integrator: str,
        name: str | None,
        lon: float,
        lat: float,
        interval_s: int,
        alarm_category: str,
        rules: tuple[Rule, ...],
        last_seen: float,
    ) -> None:
        self.id = sensor_id
        self.type = sensor_type  # picks the plausible ranges of its readings
        self.integrator = integrator
        self.name = name
        self.lon = lon
        self.lat = lat
        self.interval_s = interval_s
        self.alarm_category = alarm_category
        self.rules = rules
        self.last_seen = last_seen  # epoch s we last heard from it (or it was registered)
        self.last_ts = 0.0  # device time of the newest reading evaluated
        self.rule_states: dict[str, RuleState] | None = None  # only rules not simply normal
        self.alarms: dict[str, OpenAlarm] | None = None  # open alarms by rule key

    def label(self) -> str:
        """How descriptions name the sensor."""
        return f"{self.name} ({self.id})" if self.name else self.id


class Registry:
    """Sensors by id."""

    def __init__(self) -> None:
        self._sensors: dict[str, SensorState] = {}
        self._rule_sets: dict[str, tuple[Rule, ...]] = {}

    def __len__(self) -> int:
        return len(self._sensors)

    def __iter__(self) -> Iterator[SensorState]:
        # No copy (100k sensors): callers must not await while iterating.
        return iter(self._sensors.values())

    def get(self, sensor_id: str) -> SensorState | None:
        """A sensor by id."""
        return self._sensors.get(sensor_id)

    def owner_of(self, sensor_id: str) -> str | None:
        """The integrator owning a sensor."""
        sensor = self._sensors.get(sensor_id)
        return None if sensor is None else sensor.integrator

    def compile_rules(self, raw: str | list[dict[str, Any]]) -> tuple[Rule, ...]:
        """Rules from their stored JSON (text or decoded), shared between sensors with identical
        rules (the text is the cache key: loading 100k sensors decodes each distinct set once)."""
        text = raw if isinstance(raw, str) else json.dumps(raw)  # as the JSON column stores it
        rules = self._rule_sets.get(text)
        if rules is None:
            decoded: list[dict[str, Any]] = json.loads(text) if isinstance(raw, str) else raw
            rules = tuple(
                Rule(
                    metric=r["metric"],
                    op=r["op"],
                    value=float(r["value"]),
                    category=r["category"],
                    hysteresis=float(r.get("hysteresis", 0.0)),
                    for_s=float(r.get("for_s", 0.0)),
                )
                for r in decoded
            )
            self._rule_sets[text] = rules
        return rules

    def put(
        self,
        *,
        sensor_id: str,
        sensor_type: str,
        integrator: str,
        name: str | None,
        lon: float,
        lat: float,
        interval_s: int,
        alarm_category: str,
        rules: str | list[dict[str, Any]],
        last_seen_at: datetime | None,
        now: float,
    ) -> SensorState:
        """Add or update a sensor, keeping the runtime state of rules it still has."""
        compiled = self.compile_rules(rules)
        current = self._sensors.get(sensor_id)
        if current is not None and (
            current.rules is compiled
            and current.type == sensor_type
            and current.integrator == integrator
            and current.name == name
            and current.lon == lon
            and current.lat == lat
            and current.interval_s == interval_s
            and current.alarm_category == alarm_category
        ):
            return current  # unchanged (a refresh re-reading it)
        # Never heard from: count the silence from now (registration or this process's start).
        seen = now if last_seen_at is None else last_seen_at.timestamp()
        if current is not None:
            seen = max(current.last_seen, seen)
        state = SensorState(
            sensor_id,
            sys.intern(sensor_type),
            sys.intern(integrator),
            name,
            lon,
            lat,
            interval_s,
            sys.intern(alarm_category),
            compiled,
            seen,
        )
        if current is not None:
            keys = {rule.key for rule in compiled}
            state.last_ts = current.last_ts
            if current.rule_states:
                kept = {k: v for k, v in current.rule_states.items() if k in keys}
                state.rule_states = kept or None
            if current.alarms:
                alarms = {
                    k: v
                    for k, v in current.alarms.items()
                    if k in keys or k == OFFLINE_KEY or k.startswith(DEVICE_KEY_PREFIX)
                }
                state.alarms = alarms or None
        self._sensors[sensor_id] = state
        return state
