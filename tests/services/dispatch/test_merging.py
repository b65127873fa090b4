"""Merge matching (pure): same problem across channels, distance, time window, lock cells."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.merging import (
    Candidate,
    MergePolicy,
    distance_m,
    family,
    family_members,
    sensor_of,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LON, LAT = 106.5516, 29.5630
POLICY = MergePolicy()


def east(metres: float) -> float:
    """The longitude `metres` east of LON at LAT."""
    return LON + metres / (111_320 * math.cos(math.radians(LAT)))


def candidate(lon: float, category: str = "E0501", age_h: float = 1.0) -> Candidate:
    return Candidate(uuid.uuid4(), category, lon, LAT, T0 - timedelta(hours=age_h), None)


def test_sensor_alarms_share_a_family_with_the_citizen_category() -> None:
    assert family("S0101") == family("E0501") == "E0501"
    assert family_members("S0101") == family_members("E0501") == ["E0501", "S0101"]
    assert family_members("C0201") == ["C0201"]


def test_distance_is_metres() -> None:
    assert abs(distance_m(LON, LAT, east(100), LAT) - 100) < 0.5
    assert abs(distance_m(LON, LAT, LON, LAT + 1 / 110_540 * 250) - 250) < 0.5


def test_nearest_within_distance_and_window() -> None:
    near, far = candidate(east(60)), candidate(east(150))
    closer = candidate(east(20))
    found = POLICY.nearest([far, near, closer], category="E0501", lon=LON, lat=LAT, reported_at=T0)
    assert found is closer
    assert POLICY.nearest([far], category="E0501", lon=LON, lat=LAT, reported_at=T0) is None


def test_old_tickets_and_other_problems_do_not_match() -> None:
    stale = candidate(east(10), age_h=25)
    other = candidate(east(10), category="C0201")
    assert (
        POLICY.nearest([stale, other], category="E0501", lon=LON, lat=LAT, reported_at=T0) is None
    )
    sensor = candidate(east(10), category="S0101")
    assert POLICY.nearest([sensor], category="E0501", lon=LON, lat=LAT, reported_at=T0) is sensor


def test_box_holds_the_whole_circle() -> None:
    box = POLICY.box(LON, LAT)
    assert box.lon_min < east(-100) and east(100) < box.lon_max
    assert box.lat_min <= LAT - 100 / 110_540 < LAT + 100 / 110_540 <= box.lat_max


@given(dx=st.floats(-99, 99), dy=st.floats(-99, 99), lat=st.floats(20, 45), lon=st.floats(100, 120))
def test_events_that_can_merge_share_a_lock_cell(
    dx: float, dy: float, lat: float, lon: float
) -> None:
    other_lon = lon + dx / (111_320 * math.cos(math.radians(lat)))
    other_lat = lat + dy / 110_540
    if distance_m(lon, lat, other_lon, other_lat) > POLICY.distance_m:
        return
    mine = POLICY.lock_keys("S0101", lon, lat)
    assert POLICY.cell_key("E0501", other_lon, other_lat) in mine
    assert mine & POLICY.lock_keys("E0501", other_lon, other_lat)
    assert len(mine) <= 4


def test_sensor_of_an_alarm_event() -> None:
    assert sensor_of("sensor", "WL-0001:water_level_cm>30:1700000000000", {}) == "WL-0001"
    known = {"site:7:device:leak:1": "site:7"}  # ids may hold colons: the alarm row knows
    assert sensor_of("sensor", "site:7:device:leak:1", known) == "site:7"
    assert sensor_of("hotline", "WL-0001:x:1", {}) is None
    assert sensor_of("sensor", None, {}) is None
