"""MQTT fuzz: 10,000 random and structured-invalid payloads published with QoS 1 to the sensor
topics of the embedded broker, from a seeded generator (random bytes, invalid UTF-8, JSON of the
wrong types, NaN and Infinity, huge numbers, wrong topics, oversized, too deep). Every one is
acknowledged and dead-lettered with a reason (never `internal_error`), the intake survives, and
good readings sent in between keep raising and clearing their sensor's alarm."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from shared.db.models import DeadLetter
from tests.support.apps import runtime_of
from tests.support.sensors import SensorHub, sensor_hub

SEED = 20_261_129  # the same messages on every run: a failure is reproducible
BAD = 10_000
GOOD_EVERY = 250  # a good reading after every 250 bad ones: 40 in all
INFLIGHT = 200  # unacknowledged QoS 1 messages the publisher keeps in flight
ACK_TIMEOUT_S = 150.0  # all PUBACKs (each after its dead letter was stored), on a loaded machine

Make = Callable[[random.Random], bytes]


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 300))


def _invalid_utf8(rng: random.Random) -> bytes:
    return (
        b'{"values": {"water_level_cm": 1}, "x": "'
        + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\\ud800"])
        + b'"}'
    )


def _raw(values: str, ts: str | None = None) -> bytes:
    """A reading as raw JSON text: `values` and `ts` are inserted verbatim (any literal)."""
    head = "" if ts is None else '"ts": ' + ts + ", "
    return ("{" + head + '"values": ' + values + "}").encode()


def _level(literal: str) -> str:
    return '{"water_level_cm": ' + literal + "}"


def _wrong_types(rng: random.Random) -> bytes:
    value = rng.choice(['"35"', "null", "true", "[1]", '{"a": 1}', '""', "[]"])
    return rng.choice(
        [
            _raw(_level(value)),
            _raw(value.replace('{"a": 1}', "{}")),  # {"a": 1} as values is a good reading
            _raw(_level("1"), rng.choice(['"yesterday"', "[]", "{}", "true"])),
            rng.choice(["[]", "1", '"text"', "null", "true", "[{}]"]).encode(),
            b'{"value": 1}',
            b"{}",
        ]
    )


def _not_finite(rng: random.Random) -> bytes:
    return _raw(_level(rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])))


def _huge(rng: random.Random) -> bytes:
    number = "9" * rng.choice([20, 400, 5_000, 10_000])
    return rng.choice([_raw(_level(number)), _raw('{"w": 1}', number)])


def _implausible(rng: random.Random) -> bytes:
    value = rng.choice([1.7976931348623157e308, -1e12, 1e9, -5000.5])
    return json.dumps({"values": {"water_level_cm": value}}).encode()


def _bad_timestamp(rng: random.Random) -> bytes:
    ts = rng.choice(
        ['"2999-01-01T00:00:00Z"', '"1999-01-01T00:00:00Z"', '"2026-01-01T00:00:00"', "0",
         str(round((time.time() + 86_400) * 1000)), '"' + "9" * 300 + '"']
    )  # fmt: skip
    return _raw(_level("1"), ts)


def _oversized(rng: random.Random) -> bytes:
    return (
        b'{"values": {"water_level_cm": 1}, "pad": "' + b"x" * rng.randint(16_400, 24_000) + b'"}'
    )


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([20, 2_000, 50_000])
    return b'{"values": {"water_level_cm": 1, "x": ' + b"[" * depth + b"]" * depth + b"}}"


def _too_many(rng: random.Random) -> bytes:
    values = {f"m{i}": i for i in range(rng.choice([100, 5_000]))}
    return json.dumps({"values": values}).encode()


def _bad_alarm(rng: random.Random) -> bytes:
    body = rng.choice(
        ['{"type": "leak", "severity": "doom"}', '{"severity": "major"}', '{"type": 5}', "[]"]
    )
    return body.encode()


MAKERS: list[tuple[Make, str]] = [  # payload maker, topic kind
    (_random_bytes, "readings"), (_invalid_utf8, "readings"), (_wrong_types, "readings"),
    (_not_finite, "readings"), (_huge, "readings"), (_implausible, "readings"),
    (_bad_timestamp, "readings"), (_oversized, "readings"), (_deep, "readings"),
    (_too_many, "readings"), (_bad_alarm, "alarms"),
]  # fmt: skip


def bad_messages(hub: SensorHub, rng: random.Random) -> list[tuple[str, bytes]]:
    """`BAD` (topic, payload) pairs: mostly bad payloads on the fuzz sensor's own topics, some
    good payloads on wrong topics (another integrator's sensor, unregistered, malformed)."""
    wrong_topics = [
        hub.topic("fz-other"), hub.topic("no-such-sensor"), f"{hub.root}/sensors/fz-bad",
        hub.topic("fz-bad", "telemetry"), f"{hub.root}/sensors/fz-bad/readings/extra",
        f"{hub.root}/elsewhere/fz-bad/readings", "cityhub-not/sensors/fz-bad/readings",
        hub.topic("fz-bad") + "/" + "x" * 2_000,
    ]  # fmt: skip
    messages = []
    for _ in range(BAD):
        if rng.random() < 0.1:
            messages.append((rng.choice(wrong_topics), b'{"values": {"water_level_cm": 50}}'))
        else:
            make, kind = rng.choice(MAKERS)
            messages.append((hub.topic("fz-bad", kind), make(rng)))
    return messages


def publish_all(hub: SensorHub, messages: list[tuple[str, bytes]]) -> float:
    """Publish with QoS 1 as acme, `INFLIGHT` at a time; seconds until every PUBACK came."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzz-acme")
    client.username_pw_set("acme", hub.keys["acme"])
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)  # unlimited: paho queues past the in-flight window
    acked = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_publish(*_args: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked == len(messages):
                done.set()

    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.on_publish = on_publish
    client.connect(hub.host, hub.port, keepalive=60)
    client.loop_start()
    try:
        assert connected.wait(10), "the broker did not answer the login"
        started = time.monotonic()
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS, (info.rc, topic)
        assert done.wait(ACK_TIMEOUT_S), f"{acked} of {len(messages)} acknowledged"
        return time.monotonic() - started
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[SensorHub]:
    async with sensor_hub("embedded", tmp_path, None) as running:
        yield running


@pytest.mark.timeout(240)
async def test_ten_thousand_bad_messages_are_dead_letters_and_good_ones_flow(
    hub: SensorHub,
) -> None:
    await hub.put_sensor("fz-bad")
    await hub.put_sensor("fz-good")
    await hub.put_sensor("fz-other", owner="other")
    rng = random.Random(SEED)
    bad = bad_messages(hub, rng)
    messages: list[tuple[str, bytes]] = []
    start_ms = round(time.time() * 1000) - 3_600_000
    good = 0
    for i, message in enumerate(bad, 1):
        messages.append(message)
        if i % GOOD_EVERY == 0:  # alternately over the threshold and back: raise, clear, ...
            value = 40.0 if good % 2 == 0 else 10.0
            reading = {"ts": start_ms + good * 1000, "values": {"water_level_cm": value}}
            messages.append((hub.topic("fz-good"), json.dumps(reading).encode()))
            good += 1
    took = await asyncio.to_thread(publish_all, hub, messages)

    async def stored() -> dict[str, int]:
        async with runtime_of(hub.app).sessions() as session:
            rows = await session.execute(
                select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason)
            )
            counts = {reason: n for reason, n in rows.all()}
        return counts

    reasons = await stored()  # each message is acknowledged after its dead letter was stored
    print(
        f"MQTT fuzz: {len(messages)} messages ({BAD} bad, {good} good) acknowledged in "
        f"{took:.1f} s ({len(messages) / took:.0f}/s); dead letters by reason: {reasons}"
    )
    assert sum(reasons.values()) == BAD, reasons
    assert "internal_error" not in reasons, reasons
    assert Counter(hub.intake.dead_letters) == Counter(reasons)
    # Every kind of refusal was exercised, so the generator did not collapse to one case.
    exercised = {"not_json", "bad_shape", "bad_value", "implausible_value", "bad_timestamp",
                 "future_timestamp", "oversize", "bad_topic", "forbidden_topic"}  # fmt: skip
    assert exercised <= set(reasons), reasons

    alarms = await hub.wait_alarms("fz-good", lambda a: len(a) == good // 2, within=60)
    assert all(a["state"] == "cleared" for a in alarms), alarms  # every raise cleared in turn
    assert await hub.alarms("fz-bad") == [] and await hub.alarms("fz-other", "other") == []
    # And the intake still takes the next message.
    async with hub.publisher() as pub:
        now_ms = round(time.time() * 1000)
        await pub.publish(
            hub.topic("fz-good"), json.dumps({"ts": now_ms, "values": {"water_level_cm": 50}})
        )
        await hub.wait_alarms("fz-good", lambda a: a[0]["state"] == "raised", within=30)
