"""Parsing MQTT topics and payloads: every refusal names its reason."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.sensors.payloads import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    SEVERITIES,
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


def nested(depth: int) -> bytes:
    """Arrays nested `depth` deep (the only nesting that fits 5,000 levels in 16 KiB)."""
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("parse", [parse_reading, parse_alarm, parse_status])
@pytest.mark.parametrize(
    "payload",
    [
        nested(5000),  # deeper than orjson's limit (the standard library recursed, then failed)
        b'{"values": {"a": 1}, "ts": ' + nested(1000) + b"}",  # orjson reads it
        b'{"values": {"a": ' + nested(MAX_DEPTH) + b"}}",
        b'{"values": {"a": 1}, "x": [' + b"0," * 4000 + b"0]}",  # too many values
    ],
)
def test_deep_or_huge_structures_are_bad_shape(
    parse: Callable[[bytes, float], object], payload: bytes
) -> None:
    with pytest.raises(RejectedError) as refused:
        parse(payload, NOW)
    assert refused.value.reason == "bad_shape"


def test_too_many_or_too_long_metrics() -> None:
    many = {"values": {f"m{i}": 1 for i in range(65)}}
    long_name = {"values": {"m" * 65: 1}}
    for payload in (many, long_name):
        with pytest.raises(RejectedError) as refused:
            parse_reading(json.dumps(payload).encode(), NOW)
        assert refused.value.reason == "bad_shape"
    # 10,000 metrics cannot fit in 16 KiB: refused by size before any parsing.
    huge = json.dumps({"values": {f"m{i}": 1 for i in range(10_000)}}).encode()
    with pytest.raises(RejectedError) as refused:
        parse_reading(huge, NOW)
    assert refused.value.reason == "oversize"


def test_timestamps_no_float_holds_are_bad_timestamps() -> None:
    for ts in (b"1" + b"0" * 400, b"-1" + b"0" * 400, b'"' + b"2026" * 100 + b'"'):
        with pytest.raises(RejectedError) as refused:
            parse_reading(b'{"ts": ' + ts + b', "values": {"a": 1}}', NOW)
        assert refused.value.reason == "bad_timestamp"


NUMBERS = (
    st.integers()  # unbounded: the standard library fallback reads any integer
    | st.floats()  # NaN and Infinity too (written as the standard library writes them)
    | st.sampled_from([10**400, -(10**400), 2**64, 1.7976931348623157e308])  # past a float
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
# Messages close to the documented ones, so that the checks of every field are reached.
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "ts": NUMBERS | JSON,
        "values": st.dictionaries(st.text(max_size=8), NUMBERS | JSON, max_size=4) | JSON,
        "type": st.just("leak") | JSON,
        "severity": st.sampled_from(SEVERITIES) | JSON,
        "message": JSON,
        "status": st.sampled_from(["online", "offline"]) | JSON,
        "x": JSON,
    },
)


@settings(max_examples=200, deadline=None)
@given(MESSAGES | JSON)
def test_any_json_is_accepted_or_refused_with_a_reason(data: Any) -> None:
    payload = json.dumps(data).encode()
    for parse in (parse_reading, parse_alarm, parse_status):
        with contextlib.suppress(RejectedError):  # anything else would be internal_error
            parse(payload, NOW)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_accepted_or_refused_with_a_reason(payload: bytes) -> None:
    for parse in (parse_reading, parse_alarm, parse_status):
        with contextlib.suppress(RejectedError):
            parse(payload, NOW)
