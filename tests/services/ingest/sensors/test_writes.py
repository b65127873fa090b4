"""Storing the intake's writes in batches, on the embedded hub's database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.ingest.sensors.writes import ClearAlarm, RaiseAlarm
from tests.support.sensors import SensorHub, sensor_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[SensorHub]:
    async with sensor_hub("embedded", tmp_path, None) as running:
        yield running


def level(value: float, ts: float) -> bytes:
    """A water-level reading at epoch seconds `ts`."""
    return json.dumps({"ts": round(ts * 1000), "values": {"water_level_cm": value}}).encode()


async def test_a_raise_right_after_clearing_an_earlier_alarm_is_an_alarm_of_its_own(
    hub: SensorHub,
) -> None:
    await hub.put_sensor("wl-1")
    intake, topic, t0 = hub.intake, hub.topic("wl-1"), time.time() - 60
    stored = asyncio.Event()
    first = intake.receive(topic, level(40, t0))
    intake.submit(first, stored.set)
    await asyncio.wait_for(stored.wait(), 10)  # the first alarm is committed on its own

    # One batch: the clear of that stored alarm, then a new raise of the same rule (the
    # one-open-alarm-per-rule index must see the old one closed before the new one goes in).
    batch = intake.receive(topic, level(10, t0 + 1)) + intake.receive(topic, level(45, t0 + 2))
    assert [type(w) for w in batch] == [ClearAlarm, RaiseAlarm]
    stored.clear()
    intake.submit(batch, stored.set)
    await asyncio.wait_for(stored.wait(), 10)

    alarms = await hub.alarms("wl-1")  # newest first
    assert [(a["state"], a["value"]) for a in alarms] == [("raised", 45.0), ("cleared", 40.0)]
    assert alarms[0]["event_id"] != alarms[1]["event_id"]
