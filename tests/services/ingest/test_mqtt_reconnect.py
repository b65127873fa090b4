"""The intake survives a broker restart: it retries with back-off while Mosquitto is down and
subscribes again once it is back (without persistence the restarted broker forgot the session)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path

import pytest

from services.ingest.mqtt_intake import MqttIntake
from tests.support.apps import runtime_of
from tests.support.sensors import sensor_hub
from tests.support.servers import Servers, free_port, start_mosquitto
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mqtt


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a Mosquitto this test started."""
    proc.terminate()
    proc.wait(10)


def reading(value: float) -> str:
    return json.dumps({"values": {"water_level_cm": value}})


async def test_intake_reconnects_and_resubscribes_after_the_broker_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.ingest.mqtt_intake")
    port, confdir = free_port(), tmp_path / "mosquitto"
    confdir.mkdir()
    # In a thread: the hub runs on this event loop and must keep running meanwhile.
    broker = await asyncio.to_thread(start_mosquitto, port, confdir)
    try:
        async with sensor_hub("mosquitto", tmp_path, Servers(mqtt_port=port)) as hub:
            intake: MqttIntake = runtime_of(hub.app).extras["mqtt_intake"]
            await hub.put_sensor("wl-1")
            async with hub.publisher() as pub:
                await pub.publish(hub.topic("wl-1"), reading(10))
                await hub.sync(pub, "wl-1")  # processed: the first connection works

            await asyncio.to_thread(stop, broker)

            async def failed_to_reconnect() -> bool:
                return any(
                    r.name == "services.ingest.mqtt_intake" and "failed" in r.getMessage()
                    for r in caplog.records
                )

            await wait_for(failed_to_reconnect)  # it retried while the broker was down
            assert not intake.is_connected
            broker = await asyncio.to_thread(start_mosquitto, port, confdir)

            async def resubscribed() -> bool:
                return intake.connections >= 2 and intake.is_subscribed

            await wait_for(resubscribed, within=20)
            async with hub.publisher() as pub:
                await pub.publish(hub.topic("wl-1"), reading(42))  # over the 30 cm threshold
                raised = await hub.wait_alarms("wl-1", lambda a: len(a) == 1)
            assert (raised[0]["state"], raised[0]["value"]) == ("raised", 42.0)
    finally:
        await asyncio.to_thread(stop, broker)
