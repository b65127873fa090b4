"""The sensor-fleet simulator: noise, drift, injected crossings, silences; against a real hub."""

from __future__ import annotations

import random
from pathlib import Path

from simulators.sensor_fleet import Fleet, register, run
from tests.support.sensors import sensor_hub
from tests.support.waiting import wait_for


def test_fleet_is_deterministic_and_mixed() -> None:
    one, two = Fleet.generate(12, rate_per_s=3, seed=7), Fleet.generate(12, rate_per_s=3, seed=7)
    assert [(s.id, s.lon, s.lat) for s in one.sensors] == [
        (s.id, s.lon, s.lat) for s in two.sensors
    ]
    assert len({s.kind.type for s in one.sensors}) == 6
    assert {s.interval_s for s in one.sensors} == {4}  # 12 sensors at 3/s: every 4 s each


def test_readings_stay_normal_unless_a_crossing_is_injected() -> None:
    rng = random.Random(1)
    sensor = Fleet.generate(1).sensors[0]
    normal = [sensor.reading(rng, 0.0)[sensor.kind.metric] for _ in range(500)]
    assert max(normal) < sensor.kind.threshold
    crossing = sensor.reading(rng, 1.0)[sensor.kind.metric]
    assert crossing > sensor.kind.threshold and sensor.crossing_left >= 1


async def test_fleet_publishes_to_the_hub(tmp_path: Path) -> None:
    async with sensor_hub("embedded", tmp_path, None) as hub:
        fleet = Fleet.generate(20, rate_per_s=200, seed=3)
        username = await register(hub.client, hub.keys["acme"], fleet)
        assert username == "acme" and len(hub.intake.registry) == 20
        stats = await run(
            fleet,
            host=hub.host,
            port=hub.port,
            username=username,
            password=hub.keys["acme"],
            root=hub.root,
            rate_per_s=200,
            count=60,
            crossing_chance=0.2,
            silent_share=0.1,
            progress=False,
        )
        assert stats.counts["published"] == 60 and stats.counts["silenced"] <= 2

        async def all_read() -> bool:
            return hub.intake.received >= 60

        await wait_for(all_read)
        assert hub.intake.raised >= 1 and not hub.intake.dead_letters
