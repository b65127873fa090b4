"""From counted facts to KPI figures (pure): windows, rates, score and grade.

The database adds up integers (`Counts`); everything with a division happens here, so a figure
never depends on the order rows were read in, and recompute and the incremental path agree to
the last digit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.metrics import formulas
from services.metrics.facts import CHANNELS, Channel
from services.metrics.schemas import Bucket, Headline, Satisfaction, Window
from shared.settings import KpiWeights

WINDOW_SPANS: dict[Window, timedelta] = {
    "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
}  # fmt: skip
WINDOWS: tuple[Window, ...] = ("today", "24h", "7d", "30d")


def window_start(window: Window, now: datetime, zone: ZoneInfo) -> datetime:
    """Where a window starts: local midnight for `today`, else `now` minus its span."""
    if window == "today":
        local = now.astimezone(zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(now.tzinfo)
    return now - WINDOW_SPANS[window]


def bucket_of(window: Window) -> Bucket:
    """How `hourly` splits a window: by local hour for `today` and `24h`, by local day beyond
    (168 or 720 bars would say less on a wall than 7 or 30)."""
    return "hour" if window in ("today", "24h") else "day"


def local_bucket(moment: datetime, zone: ZoneInfo, bucket: Bucket) -> datetime:
    """The naive local wall-clock start of the hour or day `moment` falls in."""
    local = moment.astimezone(zone).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    return local.replace(hour=0) if bucket == "day" else local


def bucket_starts(start: datetime, end: datetime, zone: ZoneInfo, bucket: Bucket) -> list[datetime]:
    """The naive local starts of every hour or day from the one `start` falls in to the one `end`
    falls in, in order. Stepping by real hours keeps DST right: a local hour skipped in
    spring is absent, one repeated in autumn appears once (it counts both)."""
    found: dict[datetime, None] = {}
    step = start
    while step <= end:
        found[local_bucket(step, zone, bucket)] = None
        step += timedelta(hours=1)
    found[local_bucket(end, zone, bucket)] = None
    return list(found)


def aware(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall-clock time with its zone attached."""
    return local.replace(tzinfo=zone)


@dataclass
class Counts:
    """Integer sums over the facts of one unit and window."""

    by_channel: dict[Channel, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    joined: int = 0
    filed: int = 0
    backlog: int = 0
    parked: int = 0
    overdue: int = 0
    due: int = 0
    closed: int = 0
    closed_on_time: int = 0
    deferred: int = 0
    verifications: int = 0
    failed_verifications: int = 0
    callbacks: int = 0
    score_sum: int = 0
    satisfied: int = 0
    accepted: int = 0
    accept_ms: int = 0
    closed_timed: int = 0
    close_ms: int = 0

    @property
    def events(self) -> int:
        """Events received."""
        return sum(self.by_channel.values())


def headline(counts: Counts, weights: KpiWeights) -> dict[str, Any]:
    """The `Headline` fields of a unit's counts."""
    c = counts
    on_time = formulas.rate(c.closed_on_time, c.due)
    close = formulas.rate(c.closed, c.due)
    rework = formulas.rate(c.failed_verifications, c.verifications)
    satisfied = formulas.rate(c.satisfied, c.callbacks)
    score = formulas.score(formulas.ScoreInputs(on_time, close, rework, satisfied), weights)
    return Headline(
        filed=c.filed, backlog=c.backlog, parked=c.parked, overdue=c.overdue, due=c.due,
        closed=c.closed, closed_on_time=c.closed_on_time, deferred=c.deferred,
        verifications=c.verifications, failed_verifications=c.failed_verifications,
        on_time_close_rate=on_time, close_rate=close,
        extension_rate=formulas.rate(c.deferred, c.due), rework_rate=rework,
        satisfaction=Satisfaction(
            mean=formulas.mean(c.score_sum, c.callbacks), count=c.callbacks,
            satisfied_rate=satisfied,
        ),
        score=score, grade=formulas.grade(score),
    ).model_dump()  # fmt: skip
