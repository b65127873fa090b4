"""The working calendar from its data file (`CITYHUB_DISPATCH__CALENDAR_FILE`, else shipped)."""

from __future__ import annotations

from datetime import date, time
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from services.dispatch.calendar import WorkCalendar
from shared.errors import ConfigError


class CalendarFile(BaseModel):
    """The calendar as the JSON file writes it."""

    model_config = ConfigDict(extra="ignore")

    timezone: str = "Asia/Shanghai"
    periods: list[tuple[time, time]] = Field(min_length=1)
    weekdays: list[int] = Field(default=[0, 1, 2, 3, 4])
    holidays: list[date] = []
    workdays: list[date] = []


def parse_calendar(text: str) -> WorkCalendar:
    """A `WorkCalendar` from the file's JSON text (ValueError when malformed)."""
    data = CalendarFile.model_validate_json(text)
    for start, end in data.periods:
        if end <= start:
            raise ValueError(f"work period {start}-{end} ends before it starts")
    if not set(data.weekdays) <= set(range(7)):
        raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
    return WorkCalendar(
        tz=ZoneInfo(data.timezone),
        periods=tuple(sorted(data.periods)),
        weekdays=frozenset(data.weekdays),
        holidays=frozenset(data.holidays),
        workdays=frozenset(data.workdays),
    )


def load_calendar(path: Path | None) -> WorkCalendar:
    """The configured calendar, or the shipped one; a bad file is a one-line config error."""
    try:
        if path is None:
            text = (files("services.dispatch") / "data" / "work_calendar.json").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        return parse_calendar(text)
    except (OSError, ValueError) as exc:
        where = path or "the shipped work calendar"
        raise ConfigError(f"CITYHUB_DISPATCH__CALENDAR_FILE: cannot use {where}: {exc}") from exc
