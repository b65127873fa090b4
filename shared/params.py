"""Bounded types for query and path parameters, shared by every router.

A value outside these bounds is refused at the edge (422, or 400 in Open311's format) instead of
overflowing further in: a year-9999 date shifted by a time zone or a 90-day window, or an id that
no 64-bit SQL integer holds, used to answer 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # the hub holds nothing older (MQTT refuses it too)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive; far enough for any deadline or deferral
MAX_BIGINT = 2**63 - 1  # the largest value of a 64-bit SQL integer (BIGINT, SQLite INTEGER)
MAX_CODE = 64  # characters: area, category, department, centre and sensor codes
MAX_TEXT = 200  # characters: free-text filters and opaque cursors


def check_moment(moment: datetime) -> datetime:
    """`moment` if it lies in [EARLIEST, LATEST); ValueError otherwise."""
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return moment


# An ISO-8601 time with a zone, between 2000 and 2100.
Moment = Annotated[
    AwareDatetime,
    AfterValidator(check_moment),
    Field(description="ISO-8601 with a time zone, from 2000-01-01 to before 2100-01-01"),
]
# A row id as stored in a 64-bit integer column.
RowId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
# A code naming an area, category, department, centre or sensor.
Code = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CODE)]
# A short free-text value (a filter, an opaque cursor).
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
