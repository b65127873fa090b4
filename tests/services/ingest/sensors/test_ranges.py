"""Plausible ranges: shipped defaults, lookup order, the override file, the simulator's fleet."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.sensors.payloads import RejectedError
from services.ingest.sensors.ranges import load_ranges, shipped_ranges
from services.ingest.sensors.registration import TYPE_CATEGORIES
from shared.errors import ConfigError
from simulators.sensor_fleet import KINDS, Fleet

SHIPPED = shipped_ranges()


def refusal(sensor_type: str, values: dict[str, float]) -> RejectedError:
    with pytest.raises(RejectedError) as refused:
        SHIPPED.check(sensor_type, values)
    return refused.value


def test_the_absurd_reading_of_the_issue_is_implausible() -> None:
    refused = refusal("water_level", {"battery_v": 3.6, "water_level_cm": 1.7976931348623157e308})
    assert refused.reason == "implausible_value"
    assert refused.detail == (
        "'water_level_cm' = 1.79769e+308 is outside the plausible range -100..5000 "
        "for a water_level sensor"
    )
    assert refusal("water_level", {"water_level_cm": -101}).reason == "implausible_value"
    SHIPPED.check("water_level", {"water_level_cm": 5000, "battery_v": 0})  # bounds included


def test_a_type_s_metric_then_any_type_s_metric_then_the_fallback() -> None:
    assert SHIPPED.bound("water_level", "water_level_cm") == (-100, 5000)
    assert SHIPPED.bound("water_level", "battery_v") == (0, 60)  # a metric of every type
    assert SHIPPED.bound("no_such_type", "battery_v") == (0, 60)
    assert SHIPPED.bound("no_such_type", "water_level_cm") == (-1e9, 1e9)  # not its metric
    assert SHIPPED.bound("smoke", "anything") == (-1e9, 1e9)
    SHIPPED.check("smoke", {"anything": -1e9})
    assert "-1e+09..1e+09" in refusal("smoke", {"anything": 1.0000001e9}).detail


def test_every_default_type_and_simulated_kind_has_its_own_ranges() -> None:
    assert set(TYPE_CATEGORIES) <= set(SHIPPED.types)
    for kind in KINDS:
        low, high = SHIPPED.bound(kind.type, kind.metric)
        assert (low, high) != SHIPPED.fallback
        assert low < kind.threshold - kind.hysteresis < kind.threshold < high


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), crossing_chance=st.floats(0, 1))
def test_the_simulated_fleet_s_readings_are_plausible(seed: int, crossing_chance: float) -> None:
    fleet = Fleet.generate(len(KINDS) * 2, seed=seed)
    rng = random.Random(seed)
    for _ in range(200):
        for sensor in fleet.sensors:
            SHIPPED.check(sensor.kind.type, sensor.reading(rng, crossing_chance))


def test_an_override_file_replaces_entries_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "ranges.json"
    path.write_text(
        json.dumps(
            {
                "$comment": "our city's sensors",
                "fallback": [-1000, 1000],
                "metrics": {"noise_db": [0, 160], "battery_v": [2.5, 4.5]},
                "types": {
                    "water_level": {"water_level_cm": [0, 800]},
                    "tide": {"level_m": [-5, 15]},
                },
            }
        )
    )
    ranges = load_ranges(path)
    assert ranges.bound("water_level", "water_level_cm") == (0, 800)
    assert ranges.bound("waterlogging", "water_level_cm") == (-100, 5000)  # kept
    assert ranges.bound("manhole", "tilt_deg") == (-180, 180)  # kept
    assert ranges.bound("tide", "level_m") == (-5, 15)  # a new type
    assert ranges.bound("tide", "battery_v") == (2.5, 4.5)
    assert ranges.bound("smoke", "noise_db") == (0, 160)
    assert ranges.bound("smoke", "other") == (-1000, 1000)
    assert load_ranges(None).bound("water_level", "water_level_cm") == (-100, 5000)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"metrics": {"a": [5, 1]}}', "min 5 is above max 1"),
        ('{"metrics": {"a": [0, Infinity]}}', "metrics.a"),
        ('{"metrics": {"a": [0]}}', "metrics.a"),
        ('{"types": {"Bad Type": {"a": [0, 1]}}}', "types.Bad Type"),
        ('{"ranges": {}}', "ranges: Extra inputs are not permitted"),
        ("not json", "file: Invalid JSON"),
    ],
)
def test_a_bad_override_file_is_a_one_line_config_error(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "ranges.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^CITYHUB_SENSOR_RANGES_FILE: cannot use ") as error:
        load_ranges(path)
    assert problem in error.value.message and "\n" not in error.value.message
    with pytest.raises(ConfigError, match="CITYHUB_SENSOR_RANGES_FILE"):
        load_ranges(tmp_path / "missing.json")
