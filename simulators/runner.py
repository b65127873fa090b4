"""Drive a simulator: Poisson arrivals shaped by the hour of day, bounded in count and time,
with a one-line progress display."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from simulators.city import hourly_weight, next_gap

logger = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8))
MAX_IN_FLIGHT = 50  # concurrent requests a simulator keeps open
PROGRESS_EVERY_S = 2.0


@dataclass
class Tally:
    """Outcomes by HTTP status (or error name)."""

    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        """How many were sent."""
        return sum(self.counts.values())

    def line(self, name: str) -> str:
        """A progress line: totals, rate and outcomes."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        parts = " ".join(f"{k}:{v}" for k, v in sorted(self.counts.items()))
        return f"{name}: {self.total} sent, {self.total / elapsed:.1f}/s [{parts}]"


async def run_arrivals(
    name: str,
    emit: Callable[[random.Random], Awaitable[str]],
    *,
    rate_per_s: float,
    count: int | None = None,
    duration_s: float | None = None,
    seed: int = 1,
    shaped: bool = True,
    progress: bool = True,
    tally: Tally | None = None,
) -> Tally:
    """Call `emit` at Poisson arrival times until `count` or `duration_s` is reached (counting
    outcomes into `tally`, which a caller may pass to watch them meanwhile)."""
    rng = random.Random(seed)
    tally = tally if tally is not None else Tally()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    deadline = time.monotonic() + duration_s if duration_s else None
    next_progress = time.monotonic() + PROGRESS_EVERY_S

    async def one() -> None:
        try:
            outcome = await emit(rng)
        except Exception as exc:  # a simulator reports failures, it does not stop on them
            outcome = type(exc).__name__
            logger.debug("%s: request failed", name, exc_info=True)
        finally:
            gate.release()
        tally.counts[outcome] += 1

    sent = 0
    while (count is None or sent < count) and (deadline is None or time.monotonic() < deadline):
        factor = hourly_weight(datetime.now(BEIJING).hour) if shaped else 1.0
        await asyncio.sleep(next_gap(rate_per_s * factor, rng))
        await gate.acquire()
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        if progress and time.monotonic() >= next_progress:
            next_progress = time.monotonic() + PROGRESS_EVERY_S
            print("\r" + tally.line(name), end="", file=sys.stderr, flush=True)
    await asyncio.gather(*tasks)
    if progress:
        print("\r" + tally.line(name), file=sys.stderr, flush=True)
    return tally
