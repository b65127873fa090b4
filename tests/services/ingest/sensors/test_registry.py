"""The in-memory registry: compact, shared rule sets, runtime state kept across updates."""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.ingest.sensors.registry import OFFLINE_KEY, OpenAlarm, Registry, SensorState
from services.ingest.sensors.rules import RuleState

RULES: list[dict[str, Any]] = [
    {"metric": "water_level_cm", "op": ">", "value": 30.0, "hysteresis": 5.0, "for_s": 0.0,
     "category": "S0101"},
    {"metric": "battery_v", "op": "<", "value": 3.3, "hysteresis": 0.1, "for_s": 0.0,
     "category": "S0101"},
]  # fmt: skip


def put(registry: Registry, sensor_id: str, rules: Any = RULES, **changes: Any) -> SensorState:
    fields: dict[str, Any] = {
        "sensor_id": sensor_id,
        "sensor_type": "water_level",
        "integrator": "acme",
        "name": None,
        "lon": 106.5,
        "lat": 29.5,
        "interval_s": 60,
        "alarm_category": "S0101",
        "rules": rules,
        "last_seen_at": None,
        "now": 1_000.0,
    }
    return registry.put(**{**fields, **changes})


def test_sensors_with_the_same_rules_share_one_rule_set() -> None:
    registry = Registry()
    states = [put(registry, f"s{i}") for i in range(1000)]
    stored_text = json.dumps(RULES)  # as the database returns the JSON column
    states.append(put(registry, "from-db", rules=stored_text))
    assert len({id(s.rules) for s in states}) == 1
    assert [r.key for r in states[0].rules] == ["water_level_cm>30", "battery_v<3.3"]
    assert states[0].last_seen == 1_000.0  # never heard from: silence counts from now


def test_updates_keep_state_of_rules_still_there() -> None:
    registry = Registry()
    sensor = put(registry, "s1")
    alarm = OpenAlarm(uuid.uuid4(), "s1:water_level_cm>30:1", stored=True)
    offline = OpenAlarm(uuid.uuid4(), "s1:device_offline:1", stored=True)
    sensor.rule_states = {"water_level_cm>30": RuleState(1.0, 1.0), "battery_v<3.3": RuleState(2)}
    sensor.alarms = {"water_level_cm>30": alarm, OFFLINE_KEY: offline}
    sensor.last_seen, sensor.last_ts = 5_000.0, 4_999.0
    assert put(registry, "s1") is sensor  # nothing changed: the same object

    moved = put(registry, "s1", rules=RULES[1:], lon=106.6)
    assert moved is not sensor and registry.get("s1") is moved
    assert moved.rule_states == {"battery_v<3.3": RuleState(2)}
    assert moved.alarms == {OFFLINE_KEY: offline}  # the removed rule's alarm is gone
    assert (moved.last_seen, moved.last_ts, moved.lon) == (5_000.0, 4_999.0, 106.6)
    assert registry.owner_of("s1") == "acme" and registry.owner_of("nope") is None
