"""Parse MQTT topics and payloads of the sensor intake (pure; every refusal names its reason)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from services.ingest.dead_letters import Reason

MAX_PAYLOAD_BYTES = 16_384  # readings are ~200 B; anything this large is a mistake or an attack
MAX_VALUES = 64  # metrics in one reading
MAX_METRIC_CHARS = 64  # a metric's name (as rules name metrics)
# Any message: nesting of objects and arrays (a reading needs 2), and values in all of them
# together. Checked before the fields, so a deep or huge structure is "bad_shape" wherever it is.
MAX_DEPTH = 8
MAX_ITEMS = 256
MAX_TS_CHARS = 64  # an ISO-8601 timestamp is ~30
MAX_CLOCK_SKEW_S = 300.0  # a timestamp further ahead of our clock than this is refused
EARLIEST_TS_S = 946_684_800.0  # 2000-01-01: earlier means seconds sent as ms, or an unset clock
MAX_MESSAGE_CHARS = 500  # device alarm text
ORJSON_DEPTH_ERROR = "depth limit exceeded"  # how orjson words a refusal of over 1,024 levels

SENSOR_ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
_SENSOR_ID = re.compile(SENSOR_ID_PATTERN)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
Kind = Literal["readings", "alarms", "status"]
KINDS: tuple[Kind, ...] = ("readings", "alarms", "status")
Severity = Literal["info", "warning", "minor", "major", "critical", "clear"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "minor", "major", "critical", "clear")


class RejectedError(Exception):
    """A message the intake cannot accept; it becomes a dead letter with this reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Topic:
    """A sensor topic: `<root>/sensors/<sensor_id>/<kind>`."""

    sensor_id: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Reading:
    """Measured values at a time (epoch seconds)."""

    ts: float
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    """An alarm the device raised (or cleared, severity `clear`) itself."""

    ts: float
    type: str
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class Status:
    """A heartbeat (`online`) or a last will (`offline`)."""

    ts: float
    online: bool


def topic_filter(root: str) -> str:
    """The subscription covering every sensor topic (wrong ones become dead letters)."""
    return f"{root}/sensors/#"


def sensor_topic(root: str, sensor_id: str, kind: Kind) -> str:
    """The topic a sensor publishes `kind` messages on."""
    return f"{root}/sensors/{sensor_id}/{kind}"


def parse_topic(topic: str, prefix: str) -> Topic:
    """Split `<prefix><sensor_id>/<kind>`; `prefix` is `<root>/sensors/`."""
    if not topic.startswith(prefix):
        raise RejectedError("bad_topic", f"topic must look like {prefix}<sensor_id>/<kind>")
    sensor_id, _, kind = topic[len(prefix) :].partition("/")
    if not _SENSOR_ID.fullmatch(sensor_id):
        raise RejectedError("bad_topic", "sensor id must be 1-64 of A-Z a-z 0-9 _ . : -")
    if kind not in KINDS:
        raise RejectedError("bad_topic", f"last topic level must be one of {', '.join(KINDS)}")
    return Topic(sensor_id, kind)


def _check_shape(data: dict[str, Any]) -> None:
    """Refuse nesting deeper than MAX_DEPTH or more than MAX_ITEMS values (iterative: no
    recursion however deep the structure is)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    items = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RejectedError("bad_shape", f"nested deeper than {MAX_DEPTH} levels")
        items += len(node)
        if items > MAX_ITEMS:
            raise RejectedError("bad_shape", f"more than {MAX_ITEMS} values in the message")
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def _json_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RejectedError("oversize", f"{len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        data = orjson.loads(payload)  # ~3x the standard library; strict JSON only
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith(ORJSON_DEPTH_ERROR):
            # Over orjson's 1,024 levels: not worth a second, recursive parse.
            raise RejectedError("bad_shape", f"nested deeper than {MAX_DEPTH} levels") from None
        # The slow path, for refused messages only: the standard library also reads NaN and
        # Infinity, so those become "bad_value" below rather than "not_json".
        try:
            data = json.loads(payload.decode("utf-8"))  # strict: no surrogates in the bytes
            # Nor escaped ("\\ud800"): the standard library reads lone surrogates, which are
            # no text (orjson refused them; PostgreSQL cannot store them).
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except RecursionError:  # deep nesting orjson did not already refuse
            raise RejectedError("bad_shape", f"nested deeper than {MAX_DEPTH} levels") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RejectedError("not_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise RejectedError("bad_shape", "payload must be a JSON object")
    _check_shape(data)
    return data


def parse_ts(raw: object, now: float) -> float:
    """Epoch seconds from ISO-8601 with a zone or epoch milliseconds; absent means `now`."""
    if raw is None:
        return now
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise RejectedError("bad_timestamp", "ts must be ISO-8601 text or epoch milliseconds")
    if isinstance(raw, str):
        if len(raw) > MAX_TS_CHARS:
            raise RejectedError("bad_timestamp", f"ts is longer than {MAX_TS_CHARS} characters")
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise RejectedError("bad_timestamp", f"ts {raw[:40]!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise RejectedError("bad_timestamp", "ts needs a time zone (Z or +08:00)")
        ts = parsed.timestamp()
    else:
        try:
            ts = raw / 1000.0  # an integer past 1e308 (read exactly by the fallback) overflows
        except OverflowError:
            raise RejectedError("bad_timestamp", "ts is not a plausible epoch in ms") from None
        if not math.isfinite(ts):
            raise RejectedError("bad_timestamp", "ts must be a finite number")
    if ts < EARLIEST_TS_S:
        raise RejectedError("bad_timestamp", "ts is before 2000 (epoch seconds sent as ms?)")
    if ts > now + MAX_CLOCK_SKEW_S:
        raise RejectedError(
            "future_timestamp", f"ts is {ts - now:.0f} s ahead of the hub's clock (limit 300 s)"
        )
    return ts


def parse_reading(payload: bytes, now: float) -> Reading:
    """`{"ts": ..., "values": {"metric": number, ...}}`."""
    data = _json_object(payload)
    values = data.get("values")
    if not isinstance(values, dict) or not values:
        raise RejectedError("bad_shape", '"values" must be a non-empty object of numbers')
    if len(values) > MAX_VALUES:
        raise RejectedError("bad_shape", f"at most {MAX_VALUES} values per reading")
    for metric, value in values.items():
        if len(metric) > MAX_METRIC_CHARS:
            raise RejectedError(
                "bad_shape", f"metric {metric[:64]!r}... is longer than {MAX_METRIC_CHARS}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RejectedError("bad_value", f"{metric[:64]!r} must be a number")
        if isinstance(value, int):
            # Past 1e308 orjson refuses the literal and the standard library fallback reads it
            # exactly, so no float holds it: refused like inf. Others become floats (the
            # columns are floats; SQLite cannot bind an integer of more than 63 bits).
            try:
                values[metric] = value = float(value)
            except OverflowError:
                raise RejectedError(
                    "bad_value", f"{metric[:64]!r} is a {value.bit_length()}-bit integer: too large"
                ) from None
        if not math.isfinite(value):
            raise RejectedError("bad_value", f"{metric[:64]!r} is {value}: not a finite number")
    extra = data.keys() - {"ts", "values"}
    if extra:
        raise RejectedError("bad_shape", f"unexpected field(s): {', '.join(sorted(extra))[:200]}")
    return Reading(parse_ts(data.get("ts"), now), values)


def parse_alarm(payload: bytes, now: float) -> DeviceAlarm:
    """`{"ts": ..., "type": "leak", "severity": "major", "message": "..."}`."""
    data = _json_object(payload)
    kind, severity, message = data.get("type"), data.get("severity"), data.get("message", "")
    if not isinstance(kind, str) or not _NAME.fullmatch(kind):
        raise RejectedError("bad_shape", '"type" must be 1-64 of A-Z a-z 0-9 _ . -')
    if severity not in SEVERITIES:
        raise RejectedError("bad_shape", f'"severity" must be one of {", ".join(SEVERITIES)}')
    if not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS:
        raise RejectedError("bad_shape", f'"message" must be text of at most {MAX_MESSAGE_CHARS}')
    extra = data.keys() - {"ts", "type", "severity", "message"}
    if extra:
        raise RejectedError("bad_shape", f"unexpected field(s): {', '.join(sorted(extra))[:200]}")
    return DeviceAlarm(parse_ts(data.get("ts"), now), kind, severity, message)


def parse_status(payload: bytes, now: float) -> Status:
    """`online` / `offline` as plain text (typical last wills) or `{"status": ..., "ts": ...}`."""
    text = payload.strip().lower()
    if text in (b"online", b"offline"):
        return Status(now, text == b"online")
    data = _json_object(payload)
    status = data.get("status")
    if status not in ("online", "offline"):
        raise RejectedError("bad_shape", '"status" must be "online" or "offline"')
    return Status(parse_ts(data.get("ts"), now), status == "online")
