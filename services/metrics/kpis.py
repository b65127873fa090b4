"""KPI figures of a scope, a ranking of units, and the headline figures of many units at once
(grouped queries: the cost of a level does not grow with its number of units)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.departments import Directory, load_kinds
from services.metrics import formulas, store
from services.metrics.figures import (
    Counts,
    aware,
    bucket_of,
    bucket_starts,
    headline,
    window_start,
)
from services.metrics.schemas import (
    CategoryCount,
    Hotspot,
    HourCount,
    Intake,
    Kpis,
    Level,
    RankedUnit,
    Ranking,
    Timing,
    Window,
)
from services.metrics.scopes import KpiScope, Place, units
from shared.areas import Hierarchy
from shared.catalogue import Catalogue
from shared.settings import KpiWeights, Settings

TOP = 10  # categories and hotspots listed
P90 = 0.9


@dataclass(frozen=True)
class KpiContext:
    """What computing figures needs besides the database."""

    hierarchy: Hierarchy
    directory: Directory
    catalogue: Callable[[], Catalogue]  # the current one (refreshed periodically)
    weights: KpiWeights
    zone: ZoneInfo

    @classmethod
    def build(
        cls, settings: Settings, hierarchy: Hierarchy, catalogue: Callable[[], Catalogue]
    ) -> KpiContext:
        """The context of a process (the department directory is built here)."""
        return cls(
            hierarchy,
            Directory(hierarchy, load_kinds()),
            catalogue,
            settings.kpi.weights,
            ZoneInfo(settings.timezone),
        )

    def area_name(self, code: str | None) -> str:
        """An area's name (its code when the hierarchy has no such area)."""
        area = self.hierarchy.get(code or "")
        return area.name if area is not None else (code or "")


async def kpis_of(
    session: AsyncSession, ctx: KpiContext, scope: KpiScope, window: Window, now: datetime
) -> Kpis:
    """Every KPI of one scope and window, as of `now`."""
    start = window_start(window, now, ctx.zone)
    part = scope.slice()
    counts = (await store.counts(session, part, start, now)).get(None, Counts())
    accept_p90 = await _p90(session, part, "accept", start, now, counts.accepted)
    close_p90 = await _p90(session, part, "close", start, now, counts.closed_timed)
    catalogue = ctx.catalogue()
    top = [
        CategoryCount(code=code, name=_category_name(catalogue, code), events=n)
        for code, _, n in await store.top_events(session, part, "category", start, now, TOP)
    ]
    hotspots = None
    if scope.department is None and scope.place.level != "street":
        hotspots = [
            Hotspot(code=code, name=ctx.area_name(code), district=district, events=n)
            for code, district, n in await store.top_events(
                session, part, "street", start, now, TOP
            )
        ]
    bucket = bucket_of(window)
    intake, closed = await store.series(session, part, start, now, ctx.zone, bucket)
    hourly = [
        HourCount(hour=aware(local, ctx.zone), intake=intake[local], closed=closed[local])
        for local in bucket_starts(start, now, ctx.zone, bucket)
    ]
    return Kpis(
        scope=scope.label,
        name=scope.name,
        window=window,
        start=start,
        end=now,
        timezone=ctx.zone.key,
        intake=Intake(total=counts.events, by_channel=dict(counts.by_channel)),
        merge_ratio=formulas.rate(counts.joined, counts.events),
        accept_time_s=Timing(
            count=counts.accepted,
            mean=formulas.mean_seconds(counts.accept_ms, counts.accepted),
            p90=accept_p90,
        ),
        close_time_s=Timing(
            count=counts.closed_timed,
            mean=formulas.mean_seconds(counts.close_ms, counts.closed_timed),
            p90=close_p90,
        ),
        top_categories=top,
        hotspots=hotspots,
        bucket=bucket,
        hourly=hourly,
        **headline(counts, ctx.weights),
    )


async def _p90(
    session: AsyncSession,
    part: store.Slice,
    duration: store.Duration,
    start: datetime,
    end: datetime,
    count: int,
) -> float | None:
    rank = formulas.nearest_rank(count, P90)
    if rank is None:
        return None
    value = await store.percentile(session, part, duration, start, end, rank, count)
    return None if value is None else round(value / 1000, formulas.SECONDS_DIGITS)


def _category_name(catalogue: Catalogue, code: str) -> str:
    category = catalogue.get(code)
    return category.name_zh if category is not None else code


async def headlines(
    session: AsyncSession,
    ctx: KpiContext,
    part: store.Slice,
    start: datetime,
    now: datetime,
) -> dict[str | None, tuple[Counts, dict[str, Any]]]:
    """Counts and headline figures of every unit a slice groups (key None: not grouped)."""
    found = await store.counts(session, part, start, now)
    return {key: (c, headline(c, ctx.weights)) for key, c in found.items()}


async def ranking_of(
    session: AsyncSession,
    ctx: KpiContext,
    place: Place,
    level: Level,
    window: Window,
    now: datetime,
) -> Ranking:
    """The districts, streets or departments inside `place`, best score first (units without a
    score last); departments only when they have tickets or events there."""
    start = window_start(window, now, ctx.zone)
    found = await headlines(session, ctx, place.slice(group=level), start, now)
    empty = headline(Counts(), ctx.weights)
    items: list[RankedUnit] = []
    for code, name in units(level, place, ctx.hierarchy, ctx.directory):
        counts, figures = found.get(code, (None, empty))
        if counts is None and level == "department":
            continue
        intake = counts.events if counts is not None else 0
        items.append(RankedUnit(rank=0, code=code, name=name, intake=intake, **figures))
    items.sort(key=lambda u: (u.score is None, -(u.score or 0.0), u.code))
    ranked = [u.model_copy(update={"rank": i}) for i, u in enumerate(items, 1)]
    return Ranking(
        level=level, parent=str(place), window=window, start=start, end=now, items=ranked
    )
