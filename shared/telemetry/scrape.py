"""`GET /metrics`: readings that need I/O (bus groups, outbox depth, a component's own probes)
are taken when Prometheus scrapes, then the process's registry is rendered as text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import Response

from shared.messages import STREAMS
from shared.outbox import outbox_depth
from shared.telemetry.metrics import BUS_LAG, BUS_PENDING, OUTBOX_DEPTH

if TYPE_CHECKING:
    from shared.runtime import Runtime

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0  # a probe that hangs (database or Redis down) is skipped, the scrape answers
Probe = Callable[["Runtime"], Awaitable[None]]


async def bus_groups(runtime: Runtime) -> None:
    """Pending and lag of every consumer group on the hub's streams. Every process reports the
    same groups (they are the bus's, not the process's): aggregate with `max by (stream, group)`."""
    readings = {stream: await runtime.bus.group_stats(stream) for stream in STREAMS}
    # Cleared and refilled with no await in between: a group that went away disappears.
    BUS_PENDING.clear()
    BUS_LAG.clear()
    for stream, groups in readings.items():
        for stats in groups:
            BUS_PENDING.labels(stream, stats.group).set(stats.pending)
            if stats.lag is not None:
                BUS_LAG.labels(stream, stats.group).set(stats.lag)


async def outbox(runtime: Runtime) -> None:
    """How many committed messages wait in the outbox (shared by every replica)."""
    OUTBOX_DEPTH.set(await outbox_depth(runtime.sessions))


DEFAULT_PROBES: tuple[Probe, ...] = (bus_groups, outbox)


async def render(runtime: Runtime, probes: Sequence[Probe]) -> Response:
    """Take the probes' readings, then render the registry (Prometheus text format)."""
    for probe in probes:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await probe(runtime)
        except Exception:  # a backend down must not hide the other metrics
            logger.warning("metrics probe %s failed", probe.__qualname__, exc_info=True)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
