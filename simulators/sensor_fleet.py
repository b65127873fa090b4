"""A fleet of IoT sensors publishing readings over MQTT, the way an integrator's platform does:
one connection, QoS 1, each sensor on its own interval, with noise, slow drift, injected
threshold crossings (a few readings over the line, then back) and sensors that go silent.

`cityhub simulate sensors --key KEY --sensors 1000 --rate 100 --duration 600`
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

logger = logging.getLogger(__name__)

# The main urban area of Chongqing (渝中, 江北, 南岸, 沙坪坝, 九龙坡, 大渡口, 渝北 cores).
URBAN_BOX = (106.40, 29.45, 106.65, 29.68)
PROGRESS_EVERY_S = 2.0
TICK_S = 0.05  # publishing granularity
MAX_INFLIGHT = 1000  # QoS 1 messages awaiting the broker's PUBACK
MAX_QUEUED = 20_000  # messages paho may buffer before publish() refuses
REGISTER_CONCURRENCY = 20  # parallel PUT /api/v1/sensors requests


@dataclass(frozen=True, slots=True)
class Kind:
    """A sensor type: what it measures, its normal level, and its alarm threshold."""

    type: str
    metric: str
    base: float
    noise: float
    drift: float  # random-walk step per reading
    threshold: float
    hysteresis: float
    category: str


KINDS = (
    Kind("water_level", "water_level_cm", 8.0, 1.5, 0.3, 30.0, 5.0, "S0101"),
    Kind("manhole", "tilt_deg", 1.0, 0.3, 0.05, 15.0, 3.0, "S0102"),
    Kind("smoke", "obscuration_pct", 0.5, 0.2, 0.02, 10.0, 2.0, "S0103"),
    Kind("gas", "lel_pct", 2.0, 0.5, 0.1, 20.0, 5.0, "S0104"),
    Kind("air_quality", "pm25_ugm3", 45.0, 10.0, 2.0, 150.0, 20.0, "S0105"),
    Kind("bridge", "strain_ue", 300.0, 30.0, 5.0, 800.0, 50.0, "S0106"),
)


@dataclass(slots=True)
class SimSensor:
    """One simulated device and its state."""

    id: str
    kind: Kind
    lon: float
    lat: float
    interval_s: int
    level: float
    battery_v: float = 3.65
    crossing_left: int = 0  # readings still to send over the threshold
    silent_after: int | None = None  # goes silent after this many readings
    sent: int = 0

    def body(self) -> dict[str, Any]:
        """The registration as `PUT /api/v1/sensors/{id}` takes it."""
        k = self.kind
        return {
            "type": k.type,
            "location": {"lon": self.lon, "lat": self.lat},
            "interval_s": self.interval_s,
            "name": f"{k.type} {self.id}",
            "rules": [
                {
                    "metric": k.metric,
                    "op": ">",
                    "value": k.threshold,
                    "hysteresis": k.hysteresis,
                    "for_s": 0,
                    "category": k.category,
                }
            ],
        }

    def reading(self, rng: random.Random, crossing_chance: float) -> dict[str, float]:
        """The next values: noise around a drifting level, or an injected crossing."""
        k = self.kind
        # Mean-reverting random walk: drifts, but never wanders off for good.
        self.level += rng.gauss(0, k.drift) + 0.02 * (k.base - self.level)
        if self.crossing_left == 0 and rng.random() < crossing_chance:
            self.crossing_left = rng.randint(2, 6)
        if self.crossing_left > 0:
            self.crossing_left -= 1
            value = k.threshold + abs(rng.gauss(0, 0.2 * (k.threshold - k.base))) + k.noise
        else:
            value = self.level + rng.gauss(0, k.noise)
        self.battery_v = max(3.0, self.battery_v - rng.random() * 1e-5)
        return {k.metric: round(value, 2), "battery_v": round(self.battery_v, 3)}


@dataclass
class Fleet:
    """The simulated sensors."""

    sensors: list[SimSensor]

    @classmethod
    def generate(
        cls,
        count: int,
        *,
        prefix: str = "sim-",
        rate_per_s: float = 10.0,
        seed: int = 1,
        box: tuple[float, float, float, float] = URBAN_BOX,
    ) -> Fleet:
        """`count` sensors of mixed kinds, reporting so the fleet sends `rate_per_s` in total."""
        rng = random.Random(seed)
        interval = max(1, round(count / max(rate_per_s, 1e-9)))
        width = len(str(count))
        sensors = []
        for i in range(count):
            kind = KINDS[i % len(KINDS)]
            sensors.append(
                SimSensor(
                    id=f"{prefix}{i + 1:0{width}d}",
                    kind=kind,
                    lon=round(rng.uniform(box[0], box[2]), 6),
                    lat=round(rng.uniform(box[1], box[3]), 6),
                    interval_s=interval,
                    level=kind.base,
                )
            )
        return cls(sensors)


async def register(client: httpx.AsyncClient, key: str, fleet: Fleet, *, put: bool = True) -> str:
    """Register the fleet through the API (unless `put` is off); the integrator's name."""
    headers = {"X-API-Key": key}
    names: set[str] = set()
    if not put:
        reply = await client.get("/api/v1/sensors", params={"limit": 1}, headers=headers)
        reply.raise_for_status()
        items = reply.json()["items"]
        if not items:
            raise RuntimeError("no sensors registered under this key: run with --register")
        return str(items[0]["integrator"])
    gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

    async def one(sensor: SimSensor) -> None:
        async with gate:
            reply = await client.put(
                f"/api/v1/sensors/{sensor.id}", json=sensor.body(), headers=headers
            )
        reply.raise_for_status()
        names.add(reply.json()["integrator"])

    await asyncio.gather(*(one(s) for s in fleet.sensors))
    print(f"registered {len(fleet.sensors)} sensors", file=sys.stderr)
    return names.pop()


@dataclass
class Stats:
    """What the simulator did."""

    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """A progress line."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        c = self.counts
        return (
            f"sensors: {c['published']} published, {c['published'] / elapsed:.1f}/s, "
            f"{c['crossing']} over threshold, {c['silenced']} gone silent, "
            f"{c['refused']} refused by the client queue"
        )


def _connect(host: str, port: int, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.max_queued_messages_set(MAX_QUEUED)
    client.reconnect_delay_set(1, 30)
    client.connect(host, port, keepalive=30)
    client.loop_start()  # paho's own thread; publish() only queues
    return client


async def run(
    fleet: Fleet,
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    root: str,
    rate_per_s: float,
    count: int | None = None,
    duration_s: float | None = None,
    crossing_chance: float = 0.01,
    silent_share: float = 0.02,
    seed: int = 1,
    progress: bool = True,
    stats: Stats | None = None,
) -> Stats:
    """Publish readings round-robin over the fleet at `rate_per_s` until `count` or `duration_s`."""
    rng = random.Random(seed + 1)
    for sensor in rng.sample(fleet.sensors, round(silent_share * len(fleet.sensors))):
        sensor.silent_after = rng.randint(1, 5)
    client = await asyncio.to_thread(_connect, host, port, username, password)
    stats = stats if stats is not None else Stats()
    deadline = time.monotonic() + duration_s if duration_s else None
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    owed = 0.0
    index = 0
    last: mqtt.MQTTMessageInfo | None = None
    try:
        while (count is None or stats.counts["published"] < count) and (
            deadline is None or time.monotonic() < deadline
        ):
            await asyncio.sleep(TICK_S)
            owed += rate_per_s * TICK_S
            while owed >= 1 and (count is None or stats.counts["published"] < count):
                owed -= 1
                sensor = fleet.sensors[index % len(fleet.sensors)]
                index += 1
                if sensor.silent_after is not None and sensor.sent >= sensor.silent_after:
                    if sensor.sent == sensor.silent_after:
                        sensor.sent += 1
                        stats.counts["silenced"] += 1
                    continue
                values = sensor.reading(rng, crossing_chance)
                if values[sensor.kind.metric] > sensor.kind.threshold:
                    stats.counts["crossing"] += 1
                payload = json.dumps({"ts": round(time.time() * 1000), "values": values})
                info = client.publish(f"{root}/sensors/{sensor.id}/readings", payload, qos=1)
                sensor.sent += 1
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    stats.counts["published"] += 1
                    last = info
                else:
                    stats.counts["refused"] += 1
            if progress and time.monotonic() >= next_progress:
                next_progress = time.monotonic() + PROGRESS_EVERY_S
                print("\r" + stats.line(), end="", file=sys.stderr, flush=True)
    finally:
        await asyncio.to_thread(_drain, client, last)
        if progress:
            print("\r" + stats.line(), file=sys.stderr, flush=True)
    return stats


def _drain(client: mqtt.Client, last: mqtt.MQTTMessageInfo | None, timeout_s: float = 10.0) -> None:
    """Wait (bounded) until the broker acknowledged the last message, then disconnect."""
    if last is not None:
        try:
            last.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            logger.warning("the last readings may not have reached the broker")
    client.disconnect()
    client.loop_stop()
