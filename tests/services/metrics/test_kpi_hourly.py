"""The `hourly` series of `GET /api/v1/kpis`, on the hand-made day of test_kpi_figures (SQLite and
PostgreSQL): counts land in the right local hours (or days), empty ones are 0, and they add up to
`intake.total` and `close_time_s.count`; DST is handled by the pure bucket list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.figures import bucket_starts
from tests.services.metrics.test_kpi_figures import (
    DISTRICT,
    MIDNIGHT,
    area,
    figures,
    sessions,
)

__all__ = ["sessions"]  # the fixture (SQLite and PostgreSQL with the day stored)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=SHANGHAI)


async def test_today_is_every_local_hour_since_midnight(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    k = await figures(sessions, area("city"))
    assert k.bucket == "hour"
    # NOW is 12:00 local: hours 0 to 12, each starting on the local hour.
    assert [h.hour for h in k.hourly] == [local(10, h) for h in range(13)]
    assert k.model_dump(mode="json")["hourly"][1]["hour"] == "2026-03-10T01:00:00+08:00"
    intake = {h.hour.hour: h.intake for h in k.hourly if h.intake}
    closed = {h.hour.hour: h.closed for h in k.hourly if h.closed}
    # e4 00:20; e1 01:00 and e2 01:10; e3 05:00; e6 06:40 (unlocated: the city counts it).
    assert intake == {0: 1, 1: 2, 5: 1, 6: 1}
    # A closed 02:50, H 03:00, B 03:45; F was merged (no closure of its own).
    assert closed == {2: 1, 3: 2}
    assert sum(h.intake for h in k.hourly) == k.intake.total == 5
    assert sum(h.closed for h in k.hourly) == k.close_time_s.count == 3


async def test_a_district_counts_only_its_facts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    k = await figures(sessions, area("district", DISTRICT))
    assert {h.hour.hour: h.intake for h in k.hourly if h.intake} == {0: 1, 1: 2, 5: 1}
    assert sum(h.intake for h in k.hourly) == k.intake.total == 4
    empty = await figures(sessions, area("district", "500104"))
    assert len(empty.hourly) == 13
    assert all(h.intake == 0 and h.closed == 0 for h in empty.hourly)


async def test_24h_covers_the_hours_it_touches(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    k = await figures(sessions, area("city"), "24h")
    assert k.bucket == "hour"
    hours = [h.hour for h in k.hourly]
    assert hours == [local(9, 12) + timedelta(hours=i) for i in range(25)]
    by_hour = {h.hour: h.intake for h in k.hourly if h.intake}
    assert by_hour[local(9, 22)] == 1  # e5, yesterday 22:20
    assert sum(h.intake for h in k.hourly) == k.intake.total == 6


async def test_7d_is_by_local_day(sessions: async_sessionmaker[AsyncSession]) -> None:
    k = await figures(sessions, area("city"), "7d")
    assert k.bucket == "day"
    assert [h.hour for h in k.hourly] == [local(d, 0) for d in range(3, 11)]
    assert [(h.intake, h.closed) for h in k.hourly[-2:]] == [(1, 0), (5, 3)]
    assert sum(h.intake for h in k.hourly) == k.intake.total


def test_buckets_follow_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")

    def hours(month: int, day: int) -> list[int]:
        start = datetime(2026, month, day - 1, 23, tzinfo=UTC)
        return [b.hour for b in bucket_starts(start, start + timedelta(hours=3), berlin, "hour")]

    assert hours(3, 29) == [0, 1, 3, 4]  # 02:00 does not exist
    assert hours(10, 25) == [1, 2, 3]  # 02:00 happens twice: one bucket
    assert MIDNIGHT.astimezone(SHANGHAI) == local(10, 0)
