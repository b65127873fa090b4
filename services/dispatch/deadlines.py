"""Deadlines of a ticket and its warning colour (pure: the clock is a parameter).

Each category carries accept and handle hours for its default priority, optionally overridden per
priority (`Category.deadlines`); otherwise a higher priority scales them down
(`Category.hours_at`). Ordinary and urgent deadlines count working hours; 特急 (critical) counts
wall-clock hours. A warning fires at 80 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.dispatch.calendar import WorkCalendar
from shared.catalogue import Category

WARN_FRACTION = 0.8  # a warning timer fires when 80 % of the allowed time has gone
Colour = Literal["red", "orange", "yellow", "blue", "green"]
TimerKind = Literal["accept_warn", "accept_due", "handle_warn", "handle_due"]


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When a ticket must be accepted and handled, and when to warn before each."""

    accept_warn: datetime
    accept_due: datetime
    handle_warn: datetime
    handle_due: datetime

    def timers(self) -> list[tuple[TimerKind, datetime]]:
        """The four timers to schedule."""
        return [
            ("accept_warn", self.accept_warn),
            ("accept_due", self.accept_due),
            ("handle_warn", self.handle_warn),
            ("handle_due", self.handle_due),
        ]


def allowed_hours(category: Category, priority: str) -> tuple[float, float]:
    """(accept hours, handle hours) for a category at a priority."""
    return category.hours_at(priority)


def _after(calendar: WorkCalendar, start: datetime, hours: float, *, wall_clock: bool) -> datetime:
    amount = timedelta(hours=hours)
    return start + amount if wall_clock else calendar.add_working_time(start, amount)


def plan(
    category: Category,
    priority: str,
    calendar: WorkCalendar,
    start: datetime,
    *,
    factor: float = 1.0,
) -> Deadlines:
    """Deadlines from `start`; `factor` < 1 shortens them (emergency mode)."""
    accept_h, handle_h = (h * factor for h in allowed_hours(category, priority))
    wall = priority == "critical"
    return Deadlines(
        accept_warn=_after(calendar, start, accept_h * WARN_FRACTION, wall_clock=wall),
        accept_due=_after(calendar, start, accept_h, wall_clock=wall),
        handle_warn=_after(calendar, start, handle_h * WARN_FRACTION, wall_clock=wall),
        handle_due=_after(calendar, start, handle_h, wall_clock=wall),
    )


def colour(
    *, done: bool, overdue: bool, priority: str, start: datetime, due: datetime | None,
    now: datetime,
) -> Colour:  # fmt: skip
    """The 5-level warning colour (红/橙/黄/蓝/绿) for the screens.

    green: finished (resolved/closed/rejected) in time; red: overdue; otherwise by the share of
    the allowed time left — under 20 % orange, under 50 % yellow, else blue — one step more
    urgent for 特急 tickets.
    """
    if overdue:
        return "red"
    if done or due is None:
        return "green"
    total = (due - start).total_seconds()
    left = (due - now).total_seconds()
    if left <= 0:
        return "red"
    share = left / total if total > 0 else 0.0
    steps: list[Colour] = ["orange", "yellow", "blue"]
    level = 0 if share < 0.2 else 1 if share < 0.5 else 2
    if priority == "critical":
        level = max(level - 1, 0)
    return steps[level]
