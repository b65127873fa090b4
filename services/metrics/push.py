"""`kpis` live messages: at most once a second, the `today` headline figures of every area
(city, district, street) whose facts changed, for each one whose figures differ from what was
last pushed.

Which areas changed is read from the facts themselves (`touched_at`), so it does not matter
which replica's consumer wrote them; one replica pushes (a PostgreSQL advisory lock elects it;
embedded mode has one process). Each tick runs one grouped query set per level, restricted to
the changed units: the cost follows the areas that changed, not the number of areas. A full
pass every minute catches what time alone changes (deadlines passing, midnight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from services.metrics import formulas, store
from services.metrics.figures import Counts, headline, window_start
from services.metrics.kpis import KpiContext, headlines
from services.metrics.kpis_api import context_of
from services.metrics.schemas import Window
from shared.db.engine import is_postgres
from shared.live import LiveItem, LiveLog
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

PUSH_EVERY_S = 1.0  # at most one message per area this often
FULL_EVERY_S = 60.0  # every area re-checked this often (time passes: overdue, midnight)
# Facts written this long before a tick are looked at again: a consumer's transaction may commit
# after the tick that would have seen it, and replicas' clocks differ a little.
TOUCH_MARGIN_S = 5.0
LEADER_RETRY_S = 5.0  # a replica that is not the pusher asks again this often
LOCK_KEY = 0x6B706973  # pg_try_advisory_lock key of the KPI pusher ("kpis")
WINDOW: Window = "today"

Area = tuple[str | None, str | None]  # (district, street); (None, None) is the city


class KpiPusher:
    """Computes changed areas' figures and appends a `kpis` live message per changed one."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], live: LiveLog, ctx: KpiContext
    ) -> None:
        self.sessions, self.live, self.ctx = sessions, live, ctx
        self.pushed: dict[Area, dict[str, Any]] = {}  # the figures last pushed per area
        self._next_full = 0.0
        self._since: datetime | None = None

    async def seed(self, now: datetime) -> None:
        """Record every area's current figures without pushing them (start or take-over)."""
        self._since = now - timedelta(seconds=TOUCH_MARGIN_S)
        for area, data in (await self.figures(None, now)).items():
            self.pushed[area] = data
        self._next_full = asyncio.get_running_loop().time() + FULL_EVERY_S

    async def tick(self, now: datetime) -> list[LiveItem]:
        """One pass; returns the messages it appended."""
        loop_time = asyncio.get_running_loop().time()
        full = loop_time >= self._next_full
        since = self._since or now - timedelta(seconds=TOUCH_MARGIN_S)
        self._since = now - timedelta(seconds=TOUCH_MARGIN_S)
        if full:
            self._next_full = loop_time + FULL_EVERY_S
            changed = None
        else:
            async with self.sessions() as session:
                changed = await store.touched_areas(session, since)
            if not changed:
                return []
        items = []
        for area, data in (await self.figures(changed, now)).items():
            if self.pushed.get(area) == data:
                continue
            self.pushed[area] = data
            items.append(self._item(area, data, now))
        if items:
            await self.live.append(items)
        return items

    async def figures(self, changed: set[Area] | None, now: datetime) -> dict[Area, dict[str, Any]]:
        """Headline figures of the city and of the districts and streets in `changed` (None:
        every one); an area whose facts all left the window gets zero figures."""
        ctx = self.ctx
        start = window_start(WINDOW, now, ctx.zone)
        levels: list[tuple[store.Group | None, set[str] | None]] = [(None, None)]
        if changed is None:
            levels += [("district", None), ("street", None)]
        else:
            levels += [
                ("district", {d for d, _ in changed if d is not None}),
                ("street", {s for _, s in changed if s is not None}),
            ]
        found: dict[Area, dict[str, Any]] = {}
        async with self.sessions() as session:
            for group, only in levels:
                if only is not None and not only:
                    continue
                part = store.Slice(group=group, only=only)
                found_here = await headlines(session, ctx, part, start, now)
                for code, (counts, figures) in found_here.items():
                    if group is not None and code is None:
                        continue  # facts in no district or street count for the city only
                    area = self._area(group, code)
                    found[area] = self._data(area, start, counts, figures)
        empty = Counts()
        zero = headline(empty, ctx.weights)
        areas = set(self.pushed if changed is None else changed)
        areas |= {(None, None)} | {(d, None) for d, _ in areas if d is not None}
        for area in areas:
            found.setdefault(area, self._data(area, start, empty, zero))
        return found

    def _area(self, group: store.Group | None, code: str | None) -> Area:
        if group is None or code is None:
            return (None, None)
        if group == "district":
            return (code, None)
        street = self.ctx.hierarchy.get(code)
        return (street.parent if street is not None else None, code)

    def _data(
        self, area: Area, start: datetime, counts: Counts, figures: dict[str, Any]
    ) -> dict[str, Any]:
        """A `kpis` message's data (JSON-ready): the scope and its `today` headline figures,
        intake by channel and the time to close's count and mean (the grouped counts hold
        them; its p90 would cost a query per area, so it stays with the REST answer)."""
        district, street = area
        if street is not None:
            scope, code = f"street:{street}", street
        elif district is not None:
            scope, code = f"district:{district}", district
        else:
            scope, code = "city", self.ctx.hierarchy.city.code
        return {
            "scope": scope, "name": self.ctx.area_name(code), "window": WINDOW,
            "start": start.isoformat(), "intake": counts.events,
            "by_channel": dict(counts.by_channel),
            "close_time_s": {
                "count": counts.closed_timed,
                "mean": formulas.mean_seconds(counts.close_ms, counts.closed_timed),
            },
            **figures,
        }  # fmt: skip

    def _item(self, area: Area, data: dict[str, Any], now: datetime) -> LiveItem:
        district, street = area
        return LiveItem(
            stream="kpis", type="kpis", at=now, data=data, district=district, street=street
        )


@contextlib.asynccontextmanager
async def leadership(runtime: Runtime) -> AsyncIterator[AsyncConnection | None]:
    """Yield while this process is the pusher: on PostgreSQL the connection holding the advisory
    lock (lost with it), None when embedded; raises LookupError when another replica pushes."""
    if not is_postgres(runtime.engine):
        yield None
        return
    async with runtime.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
        if not got:
            raise LookupError("another replica pushes KPI messages")
        try:
            yield conn
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})


async def run_kpi_push(runtime: Runtime) -> None:
    """Push `kpis` live messages while this process is the pusher; wait for a turn otherwise."""
    while True:
        try:
            async with leadership(runtime) as held:
                pusher = KpiPusher(runtime.sessions, runtime.live, context_of(runtime))
                await pusher.seed(datetime.now(UTC))
                while True:
                    await asyncio.sleep(PUSH_EVERY_S)
                    if held is not None:
                        await held.execute(text("SELECT 1"))  # still holding the lock?
                    await pusher.tick(datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except LookupError:
            await asyncio.sleep(LEADER_RETRY_S)
        except Exception:
            logger.exception("KPI live push failed; starting over")
            await asyncio.sleep(LEADER_RETRY_S)
