"""Benchmark the KPIs: the incremental path's cost per ticket change, and `cityhub kpis
recompute` for a month of a Chongqing-sized city.

Run: python -m simulators.bench_kpis [--tickets 360000] [--sqlite-tickets 36000] [--repeat 3]
     [--changes 12000] [--only postgres|sqlite]

In a throwaway database (PostgreSQL: a new database on CITYHUB_BENCH_PG, default the local
server; SQLite: a temporary file), a month of activity is bulk-loaded (COPY on PostgreSQL):
`--tickets` tickets over 30 days in the demo map's 1,031 streets, about 1.25 events per ticket
(a quarter of the tickets get repeat reports), and their timelines: created and dispatched,
accepted, resolved, verified (5 % fail once: rework), called back (half of them), a few deferred,
parked, rejected, merged or past a deadline, 12 % still open. Then:

* recompute — `services.metrics.recompute.rebuild` (what `cityhub kpis recompute` runs) in one
  transaction: once with no facts stored (it writes them all), then `--repeat` times with every
  fact already stored (the usual case: it finds nothing to change), median;
* incremental — `--changes` `tickets.changed` messages (new tickets' lifecycles, as dispatch
  publishes them) go through the `kpis` consumer's batch handler (decode + merge upserts, one
  transaction per read) on top of that month, in reads of 500 (a busy bus) and of 1 (a quiet
  one): microseconds per change, median of `--repeat` runs;
* queries — the figures of the city for 30 days, of a district for today, the street ranking of
  the city for 30 days, and the live push's full pass (every area's `today` headline figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import JSON, Table, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.consumers import apply_changes, decode_changes
from services.metrics.kpis import KpiContext, kpis_of, ranking_of
from services.metrics.push import KpiPusher
from services.metrics.recompute import rebuild
from services.metrics.scopes import KpiScope, place_of
from shared.areas import Area, Hierarchy
from shared.bus import Delivery
from shared.catalogue import Catalogue, default_categories
from shared.db.engine import create_engine, create_sessionmaker
from shared.db.models import Event, Ticket, TicketEvent, TicketTransition
from shared.live.memory import MemoryLiveLog
from shared.messages import TICKETS_CHANGED, TicketChangedV2, TicketSummary, TransitionInfo, encode
from shared.migrations.runner import upgrade
from shared.runtime import ensure_hierarchy
from shared.service import tune_gc
from shared.settings import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DAYS = 30
CHUNK = 10_000  # tickets generated and loaded at a time
CATEGORIES = ["E0101", "E0102", "C0104", "C0501", "E0201", "E0301", "C0201", "E0401"]
SOURCES = ["hotline", "hotline", "hotline", "grid", "grid", "sensor", "api"]
READ = 500  # messages per consumer read (services.metrics.consumers.READ_BATCH)
SEED = 20_261_129

TABLES: dict[str, Table] = {
    "tickets": Ticket.__table__,  # type: ignore[dict-item]
    "events": Event.__table__,  # type: ignore[dict-item]
    "ticket_events": TicketEvent.__table__,  # type: ignore[dict-item]
    "ticket_transitions": TicketTransition.__table__,  # type: ignore[dict-item]
}


@dataclass
class Rows:
    """Generated rows of one chunk, by table."""

    tickets: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    ticket_events: list[dict[str, Any]] = field(default_factory=list)
    ticket_transitions: list[dict[str, Any]] = field(default_factory=list)


class Month:
    """A month of a city's tickets, events and timelines, generated reproducibly."""

    def __init__(self, hierarchy: Hierarchy, tickets: int, end: datetime, seed: int) -> None:
        self.streets: list[Area] = hierarchy.streets
        self.city = hierarchy.city.code
        self.tickets = tickets
        self.start = end - timedelta(days=DAYS)
        self.end = end
        self.rng = random.Random(seed)

    def chunks(self) -> Iterator[Rows]:
        """The month, CHUNK tickets at a time."""
        for first in range(0, self.tickets, CHUNK):
            rows = Rows()
            for _ in range(min(CHUNK, self.tickets - first)):
                self._ticket(rows)
            yield rows

    def _ticket(self, rows: Rows) -> None:
        r = self.rng
        street = r.choice(self.streets)
        district = street.parent
        span = (self.end - self.start).total_seconds() - 3 * 3600
        created = self.start + timedelta(seconds=r.uniform(0, span))
        ticket_id = uuid.uuid4()
        category = r.choice(CATEGORIES)
        department = f"cgj@{district}" if r.random() < 0.7 else f"office@{street.code}"
        handle_due = created + timedelta(hours=r.choice((4, 24, 48, 96)))
        outcome = r.choices(("closed", "open", "parked", "rejected", "merged"), (80, 12, 2, 3, 3))[
            0
        ]
        entries: list[tuple[datetime, str, dict[str, Any]]] = []
        first_event = self._event(rows, created, street, category, ticket_id)
        entries.append((created, "create", {"event_id": str(first_event)}))
        entries.append((created, "dispatch", {"department": department}))
        clock = created
        for _ in range(r.choice((0, 0, 0, 1, 1, 2)) if r.random() < 0.25 else 0):
            clock += timedelta(minutes=r.uniform(1, 30))
            event = self._event(rows, clock, street, category, ticket_id)
            entries.append((clock, "report", {"event_id": str(event)}))
        status, accepted, closed, satisfaction = "dispatched", None, None, None
        overdue = False
        if outcome == "merged":
            clock += timedelta(minutes=r.uniform(5, 60))
            entries.append(
                (clock, "merge", {"into": str(uuid.uuid4()), "events": [str(first_event)]})
            )
            status, closed = "closed", clock
        elif outcome == "rejected":
            entries.append((clock + timedelta(minutes=5), "reject", {}))
            status = "rejected"
        elif outcome == "parked":
            entries.append((clock + timedelta(minutes=30), "park", {}))
            status = "parked"
        else:
            clock += timedelta(minutes=r.uniform(10, 180))
            accepted = clock
            entries.append((clock, "accept", {}))
            status = "accepted"
            if r.random() < 0.03:
                handle_due += timedelta(days=2)
                entries.append((clock, "defer", {"until": handle_due.isoformat()}))
            if r.random() < 0.05:
                overdue = True
                missed = {"timer": "handle_due", "due_at": handle_due.isoformat()}
                entries.append((handle_due, "overdue", missed))
            if outcome == "closed":
                clock += timedelta(hours=r.uniform(1, 30))
                entries.append((clock, "resolve", {}))
                if r.random() < 0.05:
                    entries.append((clock + timedelta(minutes=20), "verify", {"passed": False}))
                    clock += timedelta(hours=r.uniform(1, 5))
                    entries.append((clock, "accept", {}))
                    entries.append((clock + timedelta(minutes=30), "resolve", {}))
                    clock += timedelta(minutes=40)
                clock += timedelta(minutes=20)
                entries.append((clock, "verify", {"passed": True}))
                status, closed = "closed", clock
                if r.random() < 0.5:
                    satisfaction = r.choice((5, 5, 5, 4, 4, 3, 2, 1))
                    entries.append((clock + timedelta(hours=2), "callback",
                                    {"score": satisfaction}))  # fmt: skip
            elif r.random() < 0.5:
                status = r.choice(("in_progress", "resolved"))
        for seq, (at, action, data) in enumerate(entries, 1):
            rows.ticket_transitions.append({
                "ticket_id": ticket_id, "seq": seq, "at": at, "actor": "bench", "action": action,
                "from_status": None, "to_status": status, "note": "", "data": data,
                "prev_hash": "0" * 64, "hash": "0" * 64,
            })  # fmt: skip
        rows.tickets.append({
            "id": ticket_id, "category": category, "priority": "normal", "status": status,
            "owner_tier": "street", "owner_code": street.code, "description": "",
            "lon": None, "lat": None, "street_code": street.code, "district_code": district,
            "city_code": self.city, "geotag_method": "point", "report_count": 1,
            "created_at": created, "updated_at": entries[-1][0], "source": "hotline",
            "department": department, "sensor_id": None,
            "accept_due_at": created + timedelta(hours=2), "handle_due_at": handle_due,
            "overdue": overdue, "rework_count": 0,
            "merged_into": uuid.uuid4() if outcome == "merged" else None, "emergency": None,
            "dispatched_at": created, "accepted_at": accepted, "resolved_at": None,
            "closed_at": closed, "satisfaction": satisfaction, "timeline_head": "0" * 64,
        })  # fmt: skip

    def _event(
        self, rows: Rows, at: datetime, street: Area, category: str, ticket_id: uuid.UUID
    ) -> uuid.UUID:
        event_id = uuid.uuid4()
        rows.events.append({
            "id": event_id, "source": self.rng.choice(SOURCES), "source_ref": None,
            "category": category, "priority": None, "description": "", "lon": None, "lat": None,
            "address": None, "street_code": street.code, "district_code": street.parent,
            "city_code": self.city, "geotag_method": "point", "reported_at": at,
            "received_at": at - timedelta(seconds=1), "submitted_by": "bench", "reporter": None,
            "attachments": [], "attributes": {}, "raw": {},
        })  # fmt: skip
        rows.ticket_events.append({"event_id": event_id, "ticket_id": ticket_id, "linked_at": at})
        return event_id


async def load(sessions: async_sessionmaker[AsyncSession], month: Month) -> dict[str, int]:
    """Bulk-load the month (COPY on PostgreSQL); returns rows per table."""
    counts = dict.fromkeys(TABLES, 0)
    for rows in month.chunks():
        async with sessions() as session, session.begin():
            for name, table in TABLES.items():
                batch: list[dict[str, Any]] = getattr(rows, name)
                counts[name] += len(batch)
                await _bulk(session, table, batch)
    return counts


async def _bulk(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    columns = [c for c in table.columns if c.name in rows[0]]
    if session.get_bind().dialect.name != "postgresql":
        for first in range(0, len(rows), 2_000):
            await session.execute(table.insert(), rows[first : first + 2_000])
        return
    encoded = [c.name for c in columns if isinstance(c.type, JSON)]
    records = [
        tuple(json.dumps(row[c.name]) if c.name in encoded else row[c.name] for c in columns)
        for row in rows
    ]
    connection = await session.connection()
    raw: Any = (await connection.get_raw_connection()).driver_connection
    await raw.copy_records_to_table(table.name, records=records, columns=[c.name for c in columns])


def lifecycles(hierarchy: Hierarchy, count: int, now: datetime, seed: int) -> list[Delivery]:
    """`count` ticket changes as dispatch publishes them: new tickets going through
    created, accepted, resolved, verified and called back, interleaved like live traffic."""
    r = random.Random(seed)
    streets = hierarchy.streets
    pending: list[list[TicketChangedV2]] = []
    while sum(len(p) for p in pending) < count:
        street = r.choice(streets)
        created = now - timedelta(hours=r.uniform(0, 10))
        base = TicketSummary(
            id=uuid.uuid4(), category=r.choice(CATEGORIES), priority="normal",
            status="dispatched", source="hotline", owner_tier="street", owner_code=street.code,
            department=f"cgj@{street.parent}", street=street.code, district=street.parent,
            city=hierarchy.city.code, lon=None, lat=None, report_count=1, overdue=False,
            rework_count=0, created_at=created, updated_at=created,
            accept_due_at=created + timedelta(hours=2), handle_due_at=created + timedelta(hours=24),
        )  # fmt: skip
        steps: list[tuple[str, int, str, dict[str, Any], dict[str, Any]]] = [
            ("created", 2, "dispatch", {}, {}),
            ("accept", 3, "accept", {}, {"status": "accepted"}),
            ("resolve", 4, "resolve", {}, {"status": "resolved"}),
            ("verify", 5, "verify", {"passed": True}, {"status": "closed"}),
            ("callback", 6, "callback", {"score": 4}, {"status": "closed", "satisfaction": 4}),
        ]
        life = []
        for i, (change, seq, action, data, state) in enumerate(steps):
            at = created + timedelta(minutes=30 * (i + 1))
            if state.get("status") == "closed":
                state = {**state, "closed_at": created + timedelta(minutes=120)}
            summary = base.model_copy(update={**state, "updated_at": at})
            transition = TransitionInfo(
                seq=seq, at=at, actor="bench", action=action, from_status=None,
                to_status=summary.status, data=data,
            )  # fmt: skip
            life.append(TicketChangedV2(change=change, ticket=summary, transition=transition))
        pending.append(life)
    out: list[Delivery] = []
    while pending and len(out) < count:
        life = r.choice(pending)
        out.append(Delivery(f"{len(out)}-0", TICKETS_CHANGED, encode(life.pop(0)), 1))
        if not life:
            pending.remove(life)
    return out


async def incremental(
    sessions: async_sessionmaker[AsyncSession], deliveries: list[Delivery], read: int
) -> float:
    """Microseconds per change through the consumer's batch handler, reads of `read`."""
    started = time.perf_counter()
    for first in range(0, len(deliveries), read):
        await apply_changes(sessions, decode_changes(deliveries[first : first + read]))
    return (time.perf_counter() - started) / len(deliveries) * 1e6


@dataclass
class Figures:
    """One database's results."""

    backend: str
    rows: dict[str, int]
    load_s: float
    cold_s: float = 0.0  # recompute writing every fact (none stored yet)
    recompute_s: list[float] = field(default_factory=list)  # with every fact already stored
    facts: dict[str, int] = field(default_factory=dict)
    us_per_change: dict[int, list[float]] = field(default_factory=dict)
    queries_ms: dict[str, list[float]] = field(default_factory=dict)


async def bench(
    settings: Settings, backend: str, tickets: int, args: argparse.Namespace
) -> Figures:
    """Load a month into a fresh database and measure it."""
    engine = create_engine(settings)
    try:
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        hierarchy = await ensure_hierarchy(sessions)
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        rows = await load(sessions, Month(hierarchy, tickets, now, SEED))
        if backend == "postgres":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
        result = Figures(backend, rows, time.perf_counter() - started)
        print(f"{backend}: loaded {rows} in {result.load_s:.1f} s", flush=True)
        for run in range(args.repeat + 1):  # the first finds no facts: it writes them all
            async with sessions() as session, session.begin():
                done = await rebuild(session, now)
            if run == 0:
                result.cold_s = done.seconds
            else:
                result.recompute_s.append(done.seconds)
            result.facts = {"tickets": done.tickets, "transitions": done.transitions,
                            "events": done.events}  # fmt: skip
            print(f"{backend}: recompute {done.seconds:.2f} s, {result.facts}, {done.changes}",
                  flush=True)  # fmt: skip
        if backend == "postgres":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
        for read in (READ, 1):
            count = args.changes if read == READ else max(args.changes // 10, 500)
            for run in range(args.repeat):
                deliveries = lifecycles(hierarchy, count, now, SEED + run + read)
                us = await incremental(sessions, deliveries, read)
                result.us_per_change.setdefault(read, []).append(us)
                print(f"{backend}: {us:.0f} µs per change in reads of {read}", flush=True)
        catalogue = Catalogue(default_categories())
        ctx = KpiContext.build(settings, hierarchy, lambda: catalogue)
        city = place_of(hierarchy, "city", None)
        district = place_of(hierarchy, "district", "500103")
        assert city is not None and district is not None
        for _ in range(args.repeat):
            async with sessions() as session:
                for name, work in (
                    ("kpis city 30d", kpis_of(session, ctx, KpiScope(city), "30d", now)),
                    (
                        "kpis district today",
                        kpis_of(session, ctx, KpiScope(district), "today", now),
                    ),
                    ("ranking streets 30d", ranking_of(session, ctx, city, "street", "30d", now)),
                ):
                    t0 = time.perf_counter()
                    await work
                    result.queries_ms.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
            pusher = KpiPusher(sessions, MemoryLiveLog(), ctx)
            t0 = time.perf_counter()
            await pusher.figures(None, now)
            result.queries_ms.setdefault("live push, full pass", []).append(
                (time.perf_counter() - t0) * 1e3
            )
        return result
    finally:
        await engine.dispose()


async def _with_postgres(args: argparse.Namespace) -> Figures:
    server = os.environ.get("CITYHUB_BENCH_PG", DEFAULT_PG)
    name = f"cityhub_bench_kpis_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        url = server.rsplit("/", 1)[0] + f"/{name}"
        return await bench(Settings(database_url=url), "postgres", args.tickets, args)
    finally:
        admin = await asyncpg.connect(server)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _with_sqlite(args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        return await bench(Settings(data_dir=Path(tmp)), "sqlite", args.sqlite_tickets, args)


def report(results: list[Figures]) -> None:
    """Print the medians."""
    print()
    for r in results:
        n = r.rows
        print(
            f"## {r.backend}: {n['tickets']:,} tickets, {n['events']:,} events, "
            f"{n['ticket_transitions']:,} timeline entries (loaded in {r.load_s:.0f} s)"
        )
        print(f"recompute, no facts stored yet: {r.cold_s:.2f} s -> {r.facts}")
        print(f"recompute, facts kept by the incremental path (median of "
              f"{len(r.recompute_s)}): {statistics.median(r.recompute_s):.2f} s")  # fmt: skip
        for read, values in r.us_per_change.items():
            print(f"incremental, reads of {read}: {statistics.median(values):.0f} µs per change")
        for name, values in r.queries_ms.items():
            print(f"{name}: {statistics.median(values):.0f} ms")


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=360_000, help="PostgreSQL month")
    parser.add_argument("--sqlite-tickets", type=int, default=36_000, help="SQLite month")
    parser.add_argument("--changes", type=int, default=12_000, help="ticket changes per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("postgres", "sqlite"))
    args = parser.parse_args(argv)
    tune_gc()  # as a served process does (the incremental path runs in one)
    results = []
    if args.only in (None, "sqlite"):
        results.append(asyncio.run(_with_sqlite(args)))
    if args.only in (None, "postgres"):
        results.append(asyncio.run(_with_postgres(args)))
    report(results)


if __name__ == "__main__":
    main()
