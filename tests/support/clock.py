"""A clock the test moves by hand (components take a `now()` callable)."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    """Returns the time it was set to; `advance` and `set` move it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware start")
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        """Jump to a moment (forwards or back)."""
        self.now = moment

    def advance(self, **delta: float) -> datetime:
        """Move forward by a `timedelta(**delta)`; returns the new time."""
        self.now += timedelta(**delta)
        return self.now
