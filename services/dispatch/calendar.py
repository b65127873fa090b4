"""Working-hour deadlines: a configurable calendar (work days, hours, holidays, make-up days).

Ordinary and urgent deadlines count working hours (a 24 h handling limit filed on Friday
afternoon runs into Monday); 特急 (critical) deadlines count wall-clock hours. Pure: no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS_AHEAD = 3660  # a deadline further out than ten years is a configuration error


@dataclass(frozen=True)
class WorkCalendar:
    """When the city's offices work."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    # (start, end) periods of a working day; the default is a common government day.
    periods: tuple[tuple[time, time], ...] = ((time(9), time(12)), (time(13, 30), time(18)))
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()  # make-up working days (调休) on weekends

    def is_working_day(self, day: date) -> bool:
        """True when offices are open that day."""
        if day in self.workdays:
            return True
        return day.weekday() in self.weekdays and day not in self.holidays

    def _periods_of(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_working_day(day):
            return []
        return [
            (datetime.combine(day, a, self.tz), datetime.combine(day, b, self.tz))
            for a, b in self.periods
        ]

    def add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """The moment `amount` of working time after `start` has passed."""
        if amount <= timedelta(0):
            return start
        left = amount
        cursor = start.astimezone(self.tz)
        day = cursor.date()
        for _ in range(MAX_DAYS_AHEAD):
            for begin, end in self._periods_of(day):
                if end <= cursor:
                    continue
                begin = max(begin, cursor)
                if end - begin >= left:
                    return (begin + left).astimezone(start.tzinfo)
                left -= end - begin
            day += timedelta(days=1)
            cursor = datetime.combine(day, time(0), self.tz)
        raise ValueError("no working time within ten years: check the calendar")

    def working_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Working time elapsed from `start` to `end` (zero if end ≤ start)."""
        if end <= start:
            return timedelta(0)
        total = timedelta(0)
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            for begin, finish in self._periods_of(day):
                lo, hi = max(begin, start), min(finish, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


def deadline(
    calendar: WorkCalendar, start: datetime, hours: float, *, wall_clock: bool
) -> datetime:
    """A deadline `hours` after `start`: wall-clock for 特急, else working hours."""
    amount = timedelta(hours=hours)
    return start + amount if wall_clock else calendar.add_working_time(start, amount)
