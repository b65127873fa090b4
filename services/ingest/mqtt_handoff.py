"""Embedded mode: the in-process broker hands every published message straight to the sensor
intake, and acknowledges it only once what the message caused is committed.

No MQTT client sits between the two (in production, ingest subscribes to Mosquitto instead:
services/ingest/mqtt_intake.py). A message the broker's gate would refuse — a topic that is not
under one of the publisher's own sensors — becomes a `forbidden_topic` dead letter the publisher
can read, worded the same whether the sensor is unregistered or another integrator's (an
integrator never learns which). See docs/decisions/0002-embedded-broker.md.
"""

from __future__ import annotations

import asyncio
import time

from services.ingest.dead_letters import Reason
from services.ingest.mqtt_auth import IngestBrokerGate
from services.ingest.sensors.payloads import RejectedError, parse_topic
from services.ingest.sensors.processor import SensorIntake
from services.ingest.sensors.writes import DeadLetterWrite, Write
from shared.mqtt_broker import LoginRevokedError

HANDOFF_KEY = "mqtt_handoff"  # runtime.extras: present while the embedded broker hands over
FORBIDDEN: Reason = "forbidden_topic"  # the dead-letter reason of a publish the gate refuses


class IntakeHandoff:
    """Delivers the embedded broker's messages to the intake (a `shared.mqtt_broker.Handoff`)."""

    def __init__(self, intake: SensorIntake, gate: IngestBrokerGate) -> None:
        self.intake = intake
        self._gate = gate
        self._prefix = f"{intake.root}/sensors/"
        self._in_order = asyncio.Lock()  # FIFO: messages are evaluated in the order they came

    async def deliver(self, username: str | None, topic: str, payload: bytes) -> None:
        """Evaluate one message; return once the writes it caused are committed (at once when it
        caused none: most readings); `LoginRevokedError` once the publisher's key is revoked."""
        # The login check may await the database, and amqtt runs each PUBLISH in a task of its
        # own: without the lock a later reading of a sensor could be evaluated before an
        # earlier one (a clear before its raise). Evaluation itself never awaits.
        async with self._in_order:
            if not await self._gate.still_valid(username):
                raise LoginRevokedError(f"the key {username!r} was revoked")
            if self._gate.may_publish(username, topic):
                writes = self.intake.receive(topic, payload)
            else:
                writes = [self._forbidden(username, topic, payload)]
        if not writes:
            return
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.intake.submit(writes, lambda: _settle(stored))
        await stored

    def _forbidden(self, username: str | None, topic: str, payload: bytes) -> Write:
        self.intake.dead_letters[FORBIDDEN] += 1  # the intake's per-reason counter
        try:
            sensor_id: str | None = parse_topic(topic, self._prefix).sensor_id
        except RejectedError:
            sensor_id = None
        return DeadLetterWrite(
            topic,
            payload,
            FORBIDDEN,
            f"{username!r} may publish only under its own sensors' topics "
            f"({self._prefix}<sensor_id>/readings|alarms|status)",
            time.time(),
            sensor_id=sensor_id,
            integrator=username,
        )


def _settle(stored: asyncio.Future[None]) -> None:
    """Wake the waiting delivery (gone already if its client disconnected meanwhile)."""
    if not stored.done():
        stored.set_result(None)
