"""The sensor intake: every message is evaluated in memory; only alarm transitions and dead
letters are stored, in batches, and a message is acknowledged once what it caused is committed
(and, for a sensor with a raise still being stored, once that raise is).

MQTT-agnostic: the adapter (services/ingest/mqtt_intake.py) hands over topic and payload and gets
back the writes the message caused; `submit()` queues them with a callback run after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from services.ingest.dead_letter_spikes import SpikeDetector, spike_alert
from services.ingest.sensors import store
from services.ingest.sensors.payloads import (
    DeviceAlarm,
    Reading,
    RejectedError,
    Status,
    parse_alarm,
    parse_reading,
    parse_status,
    parse_topic,
)
from services.ingest.sensors.ranges import PlausibleRanges, load_ranges
from services.ingest.sensors.registry import (
    DEVICE_KEY_PREFIX,
    OFFLINE_KEY,
    OpenAlarm,
    Registry,
    SensorState,
)
from services.ingest.sensors.rules import Outcome, Rule, RuleState, step
from services.ingest.sensors.writes import (
    AfterPrevious,
    ClearAlarm,
    DeadLetterWrite,
    RaiseAlarm,
    Write,
    store_writes,
    utc,
)
from shared.catalogue import Priority
from shared.runtime import Runtime
from shared.telemetry.metrics import MQTT_MESSAGES

logger = logging.getLogger(__name__)

INTAKE_KEY = "sensor_intake"  # runtime.extras key
OFFLINE_FACTOR = 3  # silent for this many reporting intervals → device_offline alarm
OFFLINE_CATEGORY = "S0108"  # 设备离线 device offline
OFFLINE_SCAN_S = 2.0  # how often silence is checked
REPEAT_FLUSH_S = 2.0  # how often repeat counts of open alarms are written
LAST_SEEN_FLUSH_S = 15.0  # how often last-seen times are written (offline detection after restart)
REGISTRY_REFRESH_S = 5.0  # how soon a sensor registered through another process is known here
REFRESH_OVERLAP_S = 10.0  # re-read this far back: clocks of processes differ a little
WRITE_BATCH = 500  # writes per transaction
# Group commit: after a wake-up the writer waits this long for more writes to share the
# transaction (at 10k readings/s, 1 % alarms, it turns ~200 tiny commits a second into ~50).
WRITE_LINGER_S = 0.02
WRITE_RETRY_MAX_S = 10.0  # longest pause between attempts while the database is down

StoredCallback = Callable[[], None]
AFTER_PREVIOUS = AfterPrevious()
# /metrics: each message's outcome (children bound once: ~10k messages a second pass here).
ACCEPTED, STALE, RAISED, CLEARED, REFUSED = (
    MQTT_MESSAGES.labels(outcome)
    for outcome in ("accepted", "stale", "alarm_raised", "alarm_cleared", "dead_lettered")
)
SEVERITY_PRIORITY: dict[str, Priority] = {"critical": "critical", "major": "urgent"}


class SensorIntake:
    """Evaluates sensor messages against the registry and stores what must be stored."""

    def __init__(
        self,
        runtime: Runtime,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
        ranges: PlausibleRanges | None = None,
    ) -> None:
        self.runtime = runtime
        self.registry = registry
        if ranges is None:
            ranges = load_ranges(runtime.settings.sensor_ranges_file)
        self.ranges = ranges
        self.root = runtime.settings.mqtt_topic_root
        self._prefix = f"{self.root}/sensors/"
        self._clock = clock
        self._queue: deque[tuple[list[Write], StoredCallback | None]] = deque()
        self._wakeup = asyncio.Event()
        self._dirty_alarms: set[OpenAlarm] = set()
        self._dirty_seen: set[str] = set()
        self._refreshed_at: datetime | None = None  # when the last load or refresh began
        # None while no broker connection: silence then says nothing about the sensors.
        self.online_since: float | None = None
        self.received = 0
        self.stale = 0  # readings older than one already evaluated (seen, not evaluated)
        self.raised = 0
        self.cleared = 0
        self.dead_letters: Counter[str] = Counter()  # per reason, for a metrics endpoint
        # Refused messages per integrator over a sliding minute (dead_letter_spike alerts).
        self.spikes = SpikeDetector(runtime.settings.alerts.dead_letter_spike)
        self.write_failures = 0
        self._writing = 0  # writes in the transaction being committed

    @property
    def pending_writes(self) -> int:
        """Messages' and scans' writes waiting for the writer."""
        return sum(len(writes) for writes, _ in self._queue) + self._writing

    # -- messages ---------------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes) -> list[Write]:
        """Evaluate one message; the writes it caused (empty for most readings)."""
        stale = self.stale
        writes = self._evaluate(topic, payload)
        if not writes:
            (ACCEPTED if self.stale == stale else STALE).inc()
            return writes
        outcome = ACCEPTED
        for write in writes:
            if isinstance(write, DeadLetterWrite):
                outcome = REFUSED
                break
            if isinstance(write, RaiseAlarm):
                outcome = RAISED
            elif isinstance(write, ClearAlarm) and outcome is ACCEPTED:
                outcome = CLEARED
        outcome.inc()
        return writes

    def _evaluate(self, topic: str, payload: bytes) -> list[Write]:
        now = self._clock()
        self.received += 1
        sensor: SensorState | None = None
        try:
            parsed = parse_topic(topic, self._prefix)
            sensor = self.registry.get(parsed.sensor_id)
            if sensor is None:
                self.dead_letters["unknown_sensor"] += 1
                return [
                    DeadLetterWrite(
                        topic,
                        payload,
                        "unknown_sensor",
                        f"no sensor {parsed.sensor_id!r} is registered",
                        now,
                        sensor_id=parsed.sensor_id,
                    )
                ]
            if parsed.kind == "readings":
                reading = parse_reading(payload, now)
                self.ranges.check(sensor.type, reading.values)  # before it changes anything
                writes = self._reading(sensor, reading, now)
            elif parsed.kind == "alarms":
                writes = self._device_alarm(sensor, parse_alarm(payload, now), now)
            else:
                writes = self._status(sensor, parse_status(payload, now), now)
            if not writes and sensor.alarms and not all(a.stored for a in sensor.alarms.values()):
                return [AFTER_PREVIOUS]
            return writes
        except RejectedError as exc:  # expected: the sender's mistake, no traceback
            logger.debug("dead letter on %s: %s", topic[:200], exc)
            return [self._refuse(topic, payload, exc.reason, exc.detail, now, sensor)]
        except Exception as exc:  # a bug must not stop delivery: keep the message, say why
            logger.exception("evaluating a message on %s failed", topic)
            return [self._refuse(topic, payload, "internal_error", repr(exc), now, sensor)]

    def submit(self, writes: list[Write], on_stored: StoredCallback | None = None) -> None:
        """Queue writes for the writer; `on_stored` runs once they are committed."""
        self._queue.append((writes, on_stored))
        self._wakeup.set()

    def _refuse(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        detail: str,
        now: float,
        sensor: SensorState | None,
    ) -> DeadLetterWrite:
        self.dead_letters[reason] += 1
        if sensor is None and topic.startswith(self._prefix):
            # A bad kind of topic under a known sensor: its integrator should see it too.
            sensor = self.registry.get(topic[len(self._prefix) :].partition("/")[0])
        return DeadLetterWrite(
            topic,
            payload,
            reason,  # type: ignore[arg-type]  # a Reason, from RejectedError or a literal
            detail,
            now,
            sensor_id=sensor.id if sensor else None,
            integrator=sensor.integrator if sensor else None,
        )

    def _seen(self, sensor: SensorState, now: float, writes: list[Write]) -> None:
        sensor.last_seen = now
        self._dirty_seen.add(sensor.id)
        if sensor.alarms and OFFLINE_KEY in sensor.alarms:
            writes.append(self._clear(sensor, OFFLINE_KEY, now, None, "reading"))

    def _reading(self, sensor: SensorState, reading: Reading, now: float) -> list[Write]:
        writes: list[Write] = []
        self._seen(sensor, now, writes)
        if reading.ts < sensor.last_ts:
            self.stale += 1  # out of order (or redelivered): rules need readings in time order
            return writes
        sensor.last_ts = reading.ts
        values = reading.values
        for rule in sensor.rules:
            value = values.get(rule.metric)
            if value is None:
                continue
            states = sensor.rule_states
            key = rule.key
            state = states.get(key) if states else None
            new_state, outcome = step(rule, state, value, reading.ts)
            if outcome is Outcome.NORMAL and state is None:
                continue
            self._set_rule_state(sensor, key, new_state)
            if outcome is Outcome.RAISE:
                writes.append(self._raise_threshold(sensor, rule, value, reading.ts))
            elif outcome is Outcome.REPEAT:
                self._repeat(sensor, key, value, reading.ts)
            elif outcome is Outcome.CLEAR:
                writes.append(self._clear(sensor, key, reading.ts, value, "value"))
        return writes

    def _device_alarm(self, sensor: SensorState, alarm: DeviceAlarm, now: float) -> list[Write]:
        writes: list[Write] = []  # not a reading: the offline clock keeps running
        key = DEVICE_KEY_PREFIX + alarm.type
        is_open = bool(sensor.alarms and key in sensor.alarms)
        if alarm.severity == "clear":
            if is_open:
                writes.append(self._clear(sensor, key, alarm.ts, None, "device"))
        elif is_open:
            self._repeat(sensor, key, None, alarm.ts)
        else:
            text = f": {alarm.message}" if alarm.message else ""
            writes.append(
                self._raise(
                    sensor,
                    key,
                    "device",
                    sensor.alarm_category,
                    alarm.ts,
                    f"{sensor.label()}: device alarm {alarm.type} ({alarm.severity}){text}",
                    severity=alarm.severity,
                    message=alarm.message,
                    priority=SEVERITY_PRIORITY.get(alarm.severity),
                )
            )
        return writes

    def _status(self, sensor: SensorState, status: Status, now: float) -> list[Write]:
        # "Online" says the link is up, not that the sensor measures: only a reading resets the
        # offline clock ("no reading for 3× the interval") or clears device_offline.
        writes: list[Write] = []
        if not status.online and not (sensor.alarms and OFFLINE_KEY in sensor.alarms):
            writes.append(self._raise_offline(sensor, now, "its connection dropped (last will)"))
        return writes

    # -- alarm bookkeeping ------------------------------------------------------------------

    def _set_rule_state(self, sensor: SensorState, key: str, state: RuleState | None) -> None:
        if state is None:
            if sensor.rule_states is not None:
                sensor.rule_states.pop(key, None)
                if not sensor.rule_states:
                    sensor.rule_states = None
        elif sensor.rule_states is None:
            sensor.rule_states = {key: state}
        else:
            sensor.rule_states[key] = state

    def _raise(
        self,
        sensor: SensorState,
        key: str,
        kind: str,
        category: str,
        ts: float,
        description: str,
        *,
        value: float | None = None,
        metric: str | None = None,
        threshold: float | None = None,
        severity: str | None = None,
        message: str = "",
        priority: Priority | None = None,
    ) -> RaiseAlarm:
        # Deterministic: the same message (or the same silence) always makes the same reference.
        ref = f"{sensor.id}:{key}:{round(ts * 1000)}"
        alarm = OpenAlarm(uuid.uuid4(), ref, last_value=value, last_at=ts)
        if sensor.alarms is None:
            sensor.alarms = {}
        sensor.alarms[key] = alarm
        self.raised += 1
        return RaiseAlarm(
            alarm=alarm,
            sensor_id=sensor.id,
            integrator=sensor.integrator,
            lon=sensor.lon,
            lat=sensor.lat,
            rule_key=key,
            kind=kind,
            category=category,
            raised_at=ts,
            description=description,
            value=value,
            metric=metric,
            threshold=threshold,
            severity=severity,
            message=message,
            priority=priority,
        )

    def _raise_threshold(
        self, sensor: SensorState, rule: Rule, value: float, ts: float
    ) -> RaiseAlarm:
        return self._raise(
            sensor,
            rule.key,
            "threshold",
            rule.category,
            ts,
            f"{sensor.label()}: {rule.metric} = {value:g} ({rule.op} {rule.value:g})",
            value=value,
            metric=rule.metric,
            threshold=rule.value,
        )

    def _raise_offline(self, sensor: SensorState, now: float, why: str) -> RaiseAlarm:
        # The reference comes from the last reading, so one silence raises one alarm anywhere.
        return self._raise(
            sensor,
            OFFLINE_KEY,
            "offline",
            OFFLINE_CATEGORY,
            sensor.last_seen,
            f"{sensor.label()}: device offline, {why}",
        )

    def _repeat(self, sensor: SensorState, key: str, value: float | None, ts: float) -> None:
        alarm = sensor.alarms.get(key) if sensor.alarms else None
        if alarm is None:
            return
        alarm.count += 1
        alarm.last_value = value
        alarm.last_at = ts
        alarm.dirty = True
        self._dirty_alarms.add(alarm)

    def _clear(
        self, sensor: SensorState, key: str, at: float, value: float | None, reason: str
    ) -> ClearAlarm:
        assert sensor.alarms is not None
        alarm = sensor.alarms.pop(key)
        if not sensor.alarms:
            sensor.alarms = None
        if sensor.rule_states:
            self._set_rule_state(sensor, key, None)
        self._dirty_alarms.discard(alarm)
        self.cleared += 1
        return ClearAlarm(alarm, at, value, reason, rule_key=key)

    # -- periodic work ----------------------------------------------------------------------

    def connected(self) -> None:
        """The broker connection is up: silence from now on counts."""
        self.online_since = self._clock()

    def disconnected(self) -> None:
        """The broker connection is down: no offline alarms until it is back."""
        self.online_since = None

    def scan_offline(self) -> list[Write]:
        """device_offline alarms for sensors silent for OFFLINE_FACTOR intervals."""
        since = self.online_since
        if since is None:
            return []
        now = self._clock()
        writes: list[Write] = []
        for sensor in self.registry:
            if now - max(sensor.last_seen, since) <= OFFLINE_FACTOR * sensor.interval_s:
                continue
            if sensor.alarms and OFFLINE_KEY in sensor.alarms:
                continue
            silent = now - sensor.last_seen
            writes.append(self._raise_offline(sensor, now, f"silent for {silent:.0f} s"))
        return writes

    async def write_loop(self) -> None:
        """Store queued writes in batches and flush repeat counts and last-seen times, forever."""
        loop = asyncio.get_running_loop()
        next_repeats = loop.time() + REPEAT_FLUSH_S
        next_seen = loop.time() + LAST_SEEN_FLUSH_S
        while True:
            wait = max(0.0, min(next_repeats, next_seen) - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._queue and self.pending_writes < WRITE_BATCH:
                await asyncio.sleep(WRITE_LINGER_S)
            while self._queue:
                await self._write_batch()
            if loop.time() >= next_repeats:
                seen_due = loop.time() >= next_seen
                await self.flush(last_seen=seen_due)
                next_repeats = loop.time() + REPEAT_FLUSH_S
                if seen_due:
                    next_seen = loop.time() + LAST_SEEN_FLUSH_S

    async def _write_batch(self) -> None:
        writes: list[Write] = []
        callbacks: list[StoredCallback] = []
        while self._queue and len(writes) < WRITE_BATCH:
            entry, callback = self._queue.popleft()
            writes.extend(entry)
            if callback is not None:
                callbacks.append(callback)
        # Counted once per batch, before any attempt: a retried batch carries the same alerts.
        spikes = [
            spike_alert(spike)
            for w in writes
            if isinstance(w, DeadLetterWrite) and w.integrator is not None
            if (spike := self.spikes.add(w.integrator, w.received_at, w.reason)) is not None
        ]
        now = self._clock()
        delay = 0.1
        self._writing = len(writes)
        while True:
            try:
                await store_writes(self.runtime, writes, alerts=spikes, now=now)
                break
            except Exception:
                self.write_failures += 1
                logger.exception(
                    "storing %d sensor writes failed; retrying in %.1f s", len(writes), delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, WRITE_RETRY_MAX_S)
        self._writing = 0
        for write in writes:
            if isinstance(write, RaiseAlarm):
                write.alarm.stored = True
        self.runtime.outbox.wake()
        for callback in callbacks:
            callback()

    async def flush(self, *, last_seen: bool) -> None:
        """Write repeat counts of open alarms (and last-seen times); kept for later on failure."""
        repeats = [a for a in self._dirty_alarms if a.stored]
        seen_ids = self._dirty_seen if last_seen else set()
        if not repeats and not seen_ids:
            return
        for alarm in repeats:
            alarm.dirty = False
            self._dirty_alarms.discard(alarm)
        if last_seen:
            self._dirty_seen = set()
        seen: list[tuple[str, datetime]] = []
        for sensor_id in seen_ids:
            sensor = self.registry.get(sensor_id)
            if sensor is not None:
                seen.append((sensor_id, utc(sensor.last_seen)))
        try:
            async with self.runtime.sessions() as session, session.begin():
                await store.save_repeats(
                    session, [(a.id, a.count, a.last_value, utc(a.last_at)) for a in repeats]
                )
                await store.save_last_seen(session, seen)
        except Exception:
            logger.exception("flushing sensor counters failed; keeping them for the next try")
            for alarm in repeats:
                alarm.dirty = True
                self._dirty_alarms.add(alarm)
            self._dirty_seen |= seen_ids

    async def upkeep_loop(self) -> None:
        """Detect silent sensors and pick up registry changes made by other processes."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + REGISTRY_REFRESH_S
        while True:
            await asyncio.sleep(OFFLINE_SCAN_S)
            try:
                writes = self.scan_offline()
                if writes:
                    self.submit(writes)
                if loop.time() >= next_refresh:
                    await self.refresh()
                    next_refresh = loop.time() + REGISTRY_REFRESH_S
            except Exception:
                logger.exception("sensor upkeep failed; trying again")

    async def refresh(self) -> int:
        """Reload sensors changed since the previous refresh began (with an overlap: clocks of
        processes and commit order differ a little); how many rows were read."""
        started = utc(self._clock())
        since = (self._refreshed_at or started) - timedelta(seconds=REFRESH_OVERLAP_S)
        async with self.runtime.sessions() as session:
            rows = await store.changed_sensors(session, since)
        now = self._clock()
        for row in rows:
            self.add_row(row, now)
        self._refreshed_at = started
        return len(rows)

    def add_row(self, row: store.RegistryRow, now: float) -> SensorState:
        """Put a sensor's registry columns (a row or a registration) into the registry."""
        return self.registry.put(
            sensor_id=row.id,
            sensor_type=row.type,
            integrator=row.integrator,
            name=row.name,
            lon=row.lon,
            lat=row.lat,
            interval_s=row.interval_s,
            alarm_category=row.alarm_category,
            rules=row.rules,
            last_seen_at=row.last_seen_at,
            now=now,
        )

    async def load(self) -> None:
        """Fill the registry and the open alarms from the database."""
        now = self._clock()
        self._refreshed_at = utc(now)
        async with self.runtime.sessions() as session:
            async for chunk in store.stream_registry(session):
                for row in chunk:
                    self.add_row(row, now)
            alarms = await store.open_alarms(session)
        for alarm in alarms:
            sensor = self.registry.get(alarm.sensor_id)
            if sensor is None:
                continue
            raised = alarm.raised_at.timestamp()
            if alarm.kind == "threshold":
                if alarm.rule_key not in {r.key for r in sensor.rules}:
                    continue
                self._set_rule_state(sensor, alarm.rule_key, RuleState(raised, raised_at=raised))
            if sensor.alarms is None:
                sensor.alarms = {}
            sensor.alarms[alarm.rule_key] = OpenAlarm(
                alarm.id,
                alarm.ref,
                count=alarm.count,
                last_value=alarm.last_value,
                last_at=alarm.last_at.timestamp(),
                stored=True,
            )
        logger.info("sensor registry: %d sensors, %d open alarms", len(self.registry), len(alarms))


@asynccontextmanager
async def open_sensor_intake(runtime: Runtime) -> AsyncIterator[SensorIntake]:
    """The process's sensor intake, loaded from the database; counters flushed on exit."""
    ranges = await asyncio.to_thread(load_ranges, runtime.settings.sensor_ranges_file)
    intake = SensorIntake(runtime, Registry(), ranges=ranges)
    await intake.load()
    try:
        yield intake
    finally:
        with contextlib.suppress(Exception):
            await intake.flush(last_seen=True)
