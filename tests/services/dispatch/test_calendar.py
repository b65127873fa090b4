"""Working-hour deadlines across nights, weekends, holidays and make-up days."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.calendar import WorkCalendar, deadline

CST = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar(
    holidays=frozenset({date(2026, 10, 1), date(2026, 10, 2)}),  # National Day (Thu, Fri)
    workdays=frozenset({date(2026, 10, 10)}),  # a Saturday made a working day (调休)
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST)  # type: ignore[misc, arg-type]


def test_within_one_day() -> None:
    assert CAL.add_working_time(at(2026, 11, 23, 9), timedelta(hours=2)) == at(2026, 11, 23, 11)


def test_lunch_break_is_skipped() -> None:
    assert CAL.add_working_time(at(2026, 11, 23, 11), timedelta(hours=2)) == at(
        2026, 11, 23, 14, 30
    )


def test_friday_afternoon_runs_into_monday() -> None:
    # Fri 2026-11-20 17:00 + 4 h: 1 h on Friday, 3 h on Monday morning.
    assert CAL.add_working_time(at(2026, 11, 20, 17), timedelta(hours=4)) == at(2026, 11, 23, 12)


def test_holiday_and_make_up_day() -> None:
    # Wed 30 Sep 17:00 + 2 h: 1 h Wed, Thu+Fri are holidays, weekend off → Mon 5 Oct 10:00.
    assert CAL.add_working_time(at(2026, 9, 30, 17), timedelta(hours=2)) == at(2026, 10, 5, 10)
    # Fri 9 Oct 17:00 + 2 h: Saturday 10 Oct is a make-up working day.
    assert CAL.add_working_time(at(2026, 10, 9, 17), timedelta(hours=2)) == at(2026, 10, 10, 10)


def test_start_outside_hours_begins_at_the_next_opening() -> None:
    assert CAL.add_working_time(at(2026, 11, 21, 23), timedelta(hours=1)) == at(2026, 11, 23, 10)


def test_critical_deadlines_count_wall_clock() -> None:
    start = at(2026, 11, 21, 23)  # a Saturday night
    assert deadline(CAL, start, 2, wall_clock=True) == at(2026, 11, 22, 1)
    assert deadline(CAL, start, 2, wall_clock=False) == at(2026, 11, 23, 11)


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),  # noqa: DTZ001
    st.floats(min_value=0.01, max_value=200),
)
def test_working_time_round_trips(start_naive: datetime, hours: float) -> None:
    start = start_naive.replace(tzinfo=CST)
    end = CAL.add_working_time(start, timedelta(hours=hours))
    elapsed = CAL.working_time_between(start, end)
    assert abs(elapsed - timedelta(hours=hours)) < timedelta(microseconds=10)
    assert end >= start
