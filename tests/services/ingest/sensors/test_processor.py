"""The intake's evaluation of messages, without a broker or a database."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.ingest.sensors import processor
from services.ingest.sensors.processor import SensorIntake
from services.ingest.sensors.registry import OFFLINE_KEY, Registry
from services.ingest.sensors.writes import AfterPrevious, ClearAlarm, DeadLetterWrite, RaiseAlarm
from shared.runtime import Runtime
from shared.settings import Settings

RULES = [{"metric": "level", "op": ">", "value": 30, "hysteresis": 5, "category": "S0101"}]
T0 = 1_800_000_000.0  # "now" of the fake clock


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_intake(
    interval_s: int = 60, settings: Settings | None = None
) -> tuple[SensorIntake, Clock]:
    clock = Clock()
    runtime = cast(Runtime, SimpleNamespace(settings=settings or Settings()))
    intake = SensorIntake(runtime, Registry(), clock=clock)
    intake.registry.put(
        sensor_id="s1",
        sensor_type="water_level",
        integrator="acme",
        name="Underpass",
        lon=106.5,
        lat=29.5,
        interval_s=interval_s,
        alarm_category="S0101",
        rules=RULES,
        last_seen_at=None,
        now=T0,
    )
    return intake, clock


def send(
    intake: SensorIntake, value: float, ts: float, sensor: str = "s1", metric: str = "level"
) -> list[Any]:
    payload = json.dumps({"ts": ts * 1000, "values": {metric: value}}).encode()
    return intake.receive(f"cityhub/v1/sensors/{sensor}/readings", payload)


def test_raise_carries_a_deterministic_reference_and_the_sensor() -> None:
    intake, _ = make_intake()
    [write] = send(intake, 40, T0 - 10)
    assert isinstance(write, RaiseAlarm)
    assert write.alarm.ref == f"s1:level>30:{round((T0 - 10) * 1000)}"
    assert (write.category, write.integrator, write.lon, write.lat) == (
        "S0101",
        "acme",
        106.5,
        29.5,
    )
    assert write.description == "Underpass (s1): level = 40 (> 30)"


def test_readings_for_a_sensor_with_an_unstored_raise_wait_for_it() -> None:
    intake, _ = make_intake()
    [raised] = send(intake, 40, T0 - 10)
    assert isinstance(raised, RaiseAlarm)
    assert send(intake, 41, T0 - 9) == [processor.AFTER_PREVIOUS]  # a repeat, raise not stored
    assert isinstance(processor.AFTER_PREVIOUS, AfterPrevious)
    raised.alarm.stored = True
    assert send(intake, 42, T0 - 8) == []  # now acknowledged at once
    assert raised.alarm.count == 3


def test_older_readings_are_seen_but_not_evaluated() -> None:
    intake, clock = make_intake()
    send(intake, 10, T0 - 5)
    clock.now += 1
    assert send(intake, 40, T0 - 50) == []
    sensor = intake.registry.get("s1")
    assert sensor is not None and sensor.alarms is None and sensor.last_seen == T0 + 1
    assert intake.stale == 1


def test_offline_only_while_connected_and_once() -> None:
    intake, clock = make_intake(interval_s=10)
    clock.now = T0 + 100
    assert intake.scan_offline() == []  # not connected: silence says nothing
    intake.connected()
    clock.now = T0 + 125
    assert intake.scan_offline() == []  # silent 125 s, but connected only 25 s: grace
    clock.now = T0 + 131
    [offline] = intake.scan_offline()
    assert isinstance(offline, RaiseAlarm) and offline.kind == "offline"
    assert (
        offline.category == "S0108" and offline.alarm.ref == f"s1:{OFFLINE_KEY}:{round(T0 * 1000)}"
    )
    assert intake.scan_offline() == []  # once
    offline.alarm.stored = True
    [cleared] = send(intake, 10, T0 + 131)
    assert isinstance(cleared, ClearAlarm) and cleared.reason == "reading"


def test_unknown_sensors_and_bugs_become_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    intake, _ = make_intake()
    [unknown] = send(intake, 10, T0, sensor="nope")
    assert isinstance(unknown, DeadLetterWrite) and unknown.reason == "unknown_sensor"
    assert (unknown.sensor_id, unknown.integrator) == ("nope", None)

    def broken(_payload: bytes, _now: float) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(processor, "parse_reading", broken)
    [bug] = send(intake, 10, T0)
    assert isinstance(bug, DeadLetterWrite) and bug.reason == "internal_error"
    assert bug.integrator == "acme" and "a bug" in bug.detail
    assert dict(intake.dead_letters) == {"unknown_sensor": 1, "internal_error": 1}


def test_an_implausible_reading_is_a_dead_letter_and_changes_nothing() -> None:
    intake, clock = make_intake(interval_s=10)
    intake.connected()
    send(intake, 40, T0 - 5)  # raises (not stored yet)
    sensor = intake.registry.get("s1")
    assert sensor is not None and sensor.alarms is not None
    states, alarms, last_ts = dict(sensor.rule_states or {}), dict(sensor.alarms), sensor.last_ts
    clock.now = T0 + 25
    # "level" has no range of its own: the fallback bound (|x| <= 1e9) refuses the absurd value.
    [refused] = send(intake, 1.7976931348623157e308, T0 + 20)
    assert isinstance(refused, DeadLetterWrite) and refused.reason == "implausible_value"
    assert (refused.sensor_id, refused.integrator) == ("s1", "acme")
    assert "'level' = 1.79769e+308" in refused.detail and "-1e+09..1e+09" in refused.detail
    # The type's own range: 6000 cm is below the fallback bound, but no water level.
    [deep] = send(intake, 6000, T0 + 21, metric="water_level_cm")
    assert isinstance(deep, DeadLetterWrite) and deep.reason == "implausible_value"
    assert "-100..5000 for a water_level sensor" in deep.detail
    # No effect: rule state, alarms and the device time as before, the offline clock not reset.
    assert (sensor.rule_states, sensor.alarms, sensor.last_ts) == (states, alarms, last_ts)
    assert sensor.last_seen == T0
    clock.now = T0 + 31
    [offline] = intake.scan_offline()
    assert isinstance(offline, RaiseAlarm) and offline.kind == "offline"
    assert intake.dead_letters == {"implausible_value": 2}


def test_deep_json_is_bad_shape_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    intake, _ = make_intake()
    [refused] = intake.receive("cityhub/v1/sensors/s1/readings", b"[" * 5000 + b"]" * 5000)
    assert isinstance(refused, DeadLetterWrite) and refused.reason == "bad_shape"
    assert intake.dead_letters == {"bad_shape": 1}
    mine = [r for r in caplog.records if r.name.startswith("services.")]
    assert len(mine) <= 1 and all(r.levelno <= logging.INFO and not r.exc_info for r in mine)


def test_the_ranges_setting_reaches_the_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ranges.json"
    path.write_text('{"metrics": {"level": [0, 100]}}')
    monkeypatch.setenv("CITYHUB_SENSOR_RANGES_FILE", str(path))
    settings = Settings()
    assert settings.sensor_ranges_file == path
    intake, _ = make_intake(settings=settings)
    [refused] = send(intake, 101, T0)
    assert isinstance(refused, DeadLetterWrite) and refused.reason == "implausible_value"
    assert send(intake, 40, T0 + 1)[0].kind == "threshold"  # inside: evaluated as before
