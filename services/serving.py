"""How a served process stops: the hub's SIGTERM (and SIGINT) handling around uvicorn's server
(docs/decisions/0019-rate-limits-and-shutdown.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from services.gateway.live_hub import HUB_KEY, LiveHub
from shared.bus.consumer import stop_consumers
from shared.runtime import Runtime

if TYPE_CHECKING:
    from services.ingest.mqtt_intake import MqttIntake

logger = logging.getLogger(__name__)

# After SIGTERM, shares of CITYHUB_SHUTDOWN_GRACE_S: bus consumers finishing their batch and
# websockets closing (requests in flight go on meanwhile), then the HTTP requests still running
# (cancelled after their share); the rest is for the lifespan to close clients and pools.
DRAIN_SHARE = 0.5
SHUTDOWN_HTTP_SHARE = 0.3


class GracefulServer(uvicorn.Server):
    """uvicorn's server with the hub's SIGTERM (and SIGINT): stop taking work at once (no new
    connections, no new MQTT or bus messages), let the bus consumers finish and acknowledge the
    batch they hold, close live websockets with 1001, then let uvicorn finish the requests in
    flight and the lifespan stop the rest (docs/decisions/0019-rate-limits-and-shutdown.md).
    The process then exits 0; if it is still there `grace_s` after the signal, it exits anyway
    with 1. A second signal skips the waiting."""

    def __init__(self, config: uvicorn.Config, api: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self._api = api
        self._grace_s = grace_s
        self._signalled = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it re-raises the signal once stopped, so the process would end killed by
        # SIGTERM instead of exiting 0 after a clean stop.
        if self._watchdog is not None:
            self.should_exit = self.force_exit = True
            return
        self._watchdog = threading.Timer(self._grace_s, self._exit_anyway)
        self._watchdog.daemon = True
        self._watchdog.start()
        if self._loop is None or not self.started:
            self.should_exit = True  # still starting: nothing taken on yet
        else:
            self._loop.call_soon_threadsafe(self._signalled.set)

    def _exit_anyway(self) -> None:
        logger.error("still stopping %.0f s after the signal: exiting anyway", self._grace_s)
        logging.shutdown()
        os._exit(1)

    def stopped(self) -> None:
        """The server has stopped: no forced exit any more."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def stop_on_signal(self) -> None:
        """Wait for the signal, stop taking work and drain, then let uvicorn shut down."""
        self._loop = asyncio.get_running_loop()
        await self._signalled.wait()
        logger.info("stopping within %.0f s (CITYHUB_SHUTDOWN_GRACE_S)", self._grace_s)
        for listener in self.servers:
            listener.close()  # no new connections (uvicorn closes them too, later)
        drains: list[Awaitable[object]] = [stop_consumers()]
        runtime: Runtime | None = getattr(self._api.state, "runtime", None)
        if runtime is not None:
            from services.ingest.mqtt_intake import MQTT_INTAKE_KEY

            mqtt: MqttIntake | None = runtime.extras.get(MQTT_INTAKE_KEY)
            if mqtt is not None:
                mqtt.stop_reading()
            hub: LiveHub | None = runtime.extras.get(HUB_KEY)
            if hub is not None:
                drains.append(going_away(hub))
        try:
            async with asyncio.timeout(self._grace_s * DRAIN_SHARE):
                await asyncio.gather(*drains)
        except TimeoutError:
            logger.warning(
                "draining took over %.0f s; stopping anyway", self._grace_s * DRAIN_SHARE
            )
        self.should_exit = True


async def going_away(hub: LiveHub) -> None:
    """Close every live websocket with 1001 and wait until they are closed: uvicorn's own
    shutdown would close them with 1012 instead."""
    hub.end_all(1001, "the gateway is shutting down: reconnect with since")
    while hub.subscribers:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # each connection unsubscribes as it sends its close frame
