"""Parsing MQTT topics and payloads: every refusal names its reason."""

from __future__ import annotations

import json
import time

import pytest

from services.ingest.sensors.payloads import (
    MAX_PAYLOAD_BYTES,
    RejectedError,
    parse_alarm,
    parse_reading,
    parse_status,
    parse_topic,
)

NOW = time.time()
PREFIX = "cityhub/v1/sensors/"


def test_topics() -> None:
    topic = parse_topic(PREFIX + "wl-1/readings", PREFIX)
    assert (topic.sensor_id, topic.kind) == ("wl-1", "readings")
    for bad in ("other/wl-1/readings", PREFIX + "wl-1/temperature", PREFIX + "a b/status"):
        with pytest.raises(RejectedError) as refused:
            parse_topic(bad, PREFIX)
        assert refused.value.reason == "bad_topic"


def test_readings_with_iso_or_epoch_ms_timestamps() -> None:
    iso = parse_reading(b'{"ts": "2026-01-01T08:00:00+08:00", "values": {"a": 1}}', 2e9)
    assert iso.ts == 1767225600.0
    ms = parse_reading(json.dumps({"ts": 1767225600000, "values": {"a": 1.5}}).encode(), 2e9)
    assert (ms.ts, ms.values) == (1767225600.0, {"a": 1.5})
    assert parse_reading(b'{"values": {"a": 2}}', NOW).ts == NOW


def test_integer_values_become_floats() -> None:
    # 2**64 - 1 comes out of orjson as an int, which SQLite could not store.
    values = parse_reading(b'{"values": {"a": 18446744073709551615, "b": 3}}', NOW).values
    assert values == {"a": 1.8446744073709552e19, "b": 3.0}
    assert all(type(v) is float for v in values.values())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "bad_shape"),
        (b'{"values": {}}', "bad_shape"),
        (b'{"values": {"a": 1}, "extra": 1}', "bad_shape"),
        (b'{"values": {"a": "high"}}', "bad_value"),
        (b'{"values": {"a": true}}', "bad_value"),
        (b'{"values": {"a": NaN}}', "bad_value"),
        (b'{"values": {"a": Infinity}}', "bad_value"),
        (b'{"values": {"a": 1e999}}', "bad_value"),
        (b'{"values": {"a": 1' + b"0" * 400 + b"}}", "bad_value"),  # no float holds 10**400
        (b'{"values": {"a": -1' + b"0" * 400 + b"}}", "bad_value"),
        (b'{"ts": "yesterday", "values": {"a": 1}}', "bad_timestamp"),
        (b'{"ts": "2026-01-01T08:00:00", "values": {"a": 1}}', "bad_timestamp"),
        (b'{"ts": 1767225600, "values": {"a": 1}}', "bad_timestamp"),  # seconds, not ms
        (json.dumps({"ts": (NOW + 3600) * 1000, "values": {"a": 1}}).encode(), "future_timestamp"),
        (b'{"values": {"a": 1}, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "oversize"),
    ],
)
def test_bad_readings(payload: bytes, reason: str) -> None:
    with pytest.raises(RejectedError) as refused:
        parse_reading(payload, NOW)
    assert refused.value.reason == reason


def test_device_alarms() -> None:
    alarm = parse_alarm(b'{"type": "leak", "severity": "major", "message": "water inside"}', NOW)
    assert (alarm.type, alarm.severity, alarm.message, alarm.ts) == (
        "leak",
        "major",
        "water inside",
        NOW,
    )
    for bad in (b'{"type": "leak", "severity": "apocalyptic"}', b'{"severity": "major"}'):
        with pytest.raises(RejectedError) as refused:
            parse_alarm(bad, NOW)
        assert refused.value.reason == "bad_shape"


def test_status_as_text_or_json() -> None:
    assert parse_status(b"offline", NOW).online is False
    assert parse_status(b" Online\n", NOW).online is True
    assert parse_status(b'{"status": "online"}', NOW).online is True
    with pytest.raises(RejectedError):
        parse_status(b'{"status": "sleepy"}', NOW)
