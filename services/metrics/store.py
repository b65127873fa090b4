"""Every SQL statement of the KPIs: fact upserts (the incremental path), the reads and staged
rewrite of recompute, and the integer sums the figures are made of.

The ticket upsert merges a stored fact with a new one by the rules of `facts.fold`: the state
columns follow the higher `version` (timeline seq), `deferred` is OR-ed, `missed_due_at` and
`first_accepted_at` keep the earliest. Applying a message twice, or an old one after a newer one,
therefore changes nothing. Rows are written in key order, so concurrent consumers never deadlock.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    MetaData,
    Table,
    Text,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import FromClause

from services.metrics.facts import (
    COUNTED_ACTIONS,
    EventFact,
    TicketFact,
    TransitionFact,
)
from services.metrics.figures import Counts, local_bucket
from services.metrics.formulas import SATISFIED_SCORE
from services.metrics.schemas import Bucket
from shared.db.models import (
    Event,
    KpiEvent,
    KpiTicket,
    KpiTransition,
    Ticket,
    TicketEvent,
    TicketTransition,
)

KPI_EVENTS: Table = KpiEvent.__table__  # type: ignore[assignment]
KPI_TICKETS: Table = KpiTicket.__table__  # type: ignore[assignment]
KPI_TRANSITIONS: Table = KpiTransition.__table__  # type: ignore[assignment]
TICKET_EVENTS: Table = TicketEvent.__table__  # type: ignore[assignment]

# Columns of a ticket fact that follow the newest version.
STATE_COLUMNS = (
    "status", "merged", "category", "district", "street", "department", "filed_at",
    "accept_due_at", "handle_due_at", "breached", "closed_at", "close_ms",
)  # fmt: skip
EVENT_COLUMNS = ("received_at", "channel", "category", "district", "street")
TICKET_COLUMNS = tuple(c.name for c in KPI_TICKETS.columns)
EVENT_FACT_COLUMNS = tuple(c.name for c in KPI_EVENTS.columns)
TRANSITION_COLUMNS = tuple(c.name for c in KPI_TRANSITIONS.columns)
HANDLING = ("new", "dispatched", "accepted", "in_progress")  # a handling deadline binds
ACCEPTING = ("new", "dispatched")  # the acceptance deadline binds
OPEN = (*HANDLING, "resolved", "parked")
NOT_DUE = ("rejected", "parked")  # never counted as due (merged tickets neither)


def _insert(session: AsyncSession, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the session's dialect."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _earliest(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((a.is_(None), b), (b.is_(None), a), (b < a, b), else_=a)


# --- the incremental path ---


def _ticket_upsert(session: AsyncSession) -> Insert:
    ins = _insert(session, KPI_TICKETS)
    t, ex = KPI_TICKETS.c, ins.excluded
    newer = ex.version > t.version
    state = {name: case((newer, ex[name]), else_=t[name]) for name in STATE_COLUMNS}
    missed = _earliest(t.missed_due_at, ex.missed_due_at)
    earlier_accept = and_(
        ex.first_accepted_at.is_not(None),
        or_(t.first_accepted_at.is_(None), ex.first_accepted_at < t.first_accepted_at),
    )
    result: Insert = ins.on_conflict_do_update(
        index_elements=[t.ticket_id],
        set_={
            **state,
            "version": case((newer, ex.version), else_=t.version),
            "deferred": or_(t.deferred, ex.deferred),
            "missed_due_at": missed,
            "first_accepted_at": case(
                (earlier_accept, ex.first_accepted_at), else_=t.first_accepted_at
            ),
            "accept_ms": case((earlier_accept, ex.accept_ms), else_=t.accept_ms),
            "deadline": func.coalesce(missed, state["handle_due_at"]),
            "touched_at": ex.touched_at,
        },
    )
    return result


async def upsert_tickets(session: AsyncSession, facts: Sequence[TicketFact], now: datetime) -> None:
    """Merge ticket facts (one per ticket) into the stored ones."""
    if facts:
        rows = [{**f.row(), "touched_at": now} for f in sorted(facts, key=lambda f: f.ticket_id)]
        await session.execute(_ticket_upsert(session), rows)


async def insert_transitions(session: AsyncSession, facts: Iterable[TransitionFact]) -> None:
    """Store counted transitions; one already stored (same ticket and seq) is left alone."""
    rows = {(f.ticket_id, f.seq): transition_row(f) for f in facts}
    if rows:
        ins = _insert(session, KPI_TRANSITIONS).on_conflict_do_nothing()
        await session.execute(ins, [rows[k] for k in sorted(rows)])


def transition_row(f: TransitionFact) -> dict[str, Any]:
    """The `kpi_transitions` columns of a fact."""
    return {
        "ticket_id": f.ticket_id, "seq": f.seq, "kind": f.kind, "at": f.at, "passed": f.passed,
        "score": f.score, "district": f.district, "street": f.street,
    }  # fmt: skip


async def upsert_events(session: AsyncSession, facts: Iterable[EventFact], now: datetime) -> None:
    """Store event facts; `joined` (the ticket side's) is kept when the row exists."""
    rows = {f.event_id: {**event_row(f), "joined": False, "touched_at": now} for f in facts}
    if rows:
        ins = _insert(session, KPI_EVENTS)
        ins = ins.on_conflict_do_update(
            index_elements=[KPI_EVENTS.c.event_id],
            set_={name: ins.excluded[name] for name in (*EVENT_COLUMNS, "touched_at")},
        )
        await session.execute(ins, [rows[k] for k in sorted(rows)])


def event_row(f: EventFact) -> dict[str, Any]:
    """The `kpi_events` columns of a fact, but `joined` and `touched_at`."""
    return {
        "event_id": f.event_id, "received_at": f.received_at, "channel": f.channel,
        "category": f.category, "district": f.district, "street": f.street,
    }  # fmt: skip


async def mark_joined(session: AsyncSession, event_ids: Iterable[uuid.UUID], now: datetime) -> None:
    """Record that these events joined an existing ticket (before or after their own fact)."""
    ids = sorted(set(event_ids))
    if ids:
        ins = _insert(session, KPI_EVENTS)
        ins = ins.on_conflict_do_update(
            index_elements=[KPI_EVENTS.c.event_id],
            set_={"joined": True, "touched_at": ins.excluded.touched_at},
        )
        await session.execute(
            ins, [{**dict.fromkeys(EVENT_COLUMNS), "event_id": i, "joined": True,
                   "touched_at": now} for i in ids],
        )  # fmt: skip


async def events_by_id(session: AsyncSession, ids: Collection[uuid.UUID]) -> list[Any]:
    """The stored events among `ids` (what their facts are derived from)."""
    if not ids:
        return []
    rows = await session.execute(select(*EVENT_SOURCE).where(Event.id.in_(list(ids))))
    return list(rows.all())


# What an event fact is derived from, in `facts.event_fact`'s order.
EVENT_SOURCE = (
    Event.id, Event.source, Event.category, Event.district_code, Event.street_code,
    Event.received_at,
)  # fmt: skip


# --- recompute: the facts rebuilt from events, tickets and their timelines ---


# Recompute stages the derived facts in temporary tables, then changes only the stored facts
# that differ: after a recompute that agrees with the incremental path nothing is written (no
# dead rows, no index churn), and the counts say what had drifted.
FACT_TABLES = (KPI_EVENTS, KPI_TICKETS, KPI_TRANSITIONS)
_STAGED = {
    table.name: Table(
        f"{table.name}_derived",
        MetaData(),
        *(Column(c.name, c.type) for c in table.columns),
        prefixes=["TEMPORARY"],
    )
    for table in FACT_TABLES
}
BOOKKEEPING = frozenset({"touched_at"})  # written with a change, never a reason for one


def staged(table: Table) -> Table:
    """The temporary table recompute stages `table`'s derived rows in."""
    return _STAGED[table.name]


async def begin_rebuild(session: AsyncSession) -> None:
    """Keep consumers from writing facts until the rebuild commits (readers go on reading the
    stored facts), and create empty staging tables."""
    connection = await session.connection()
    if session.get_bind().dialect.name == "postgresql":
        names = ", ".join(t.name for t in FACT_TABLES)
        await connection.execute(text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))
    for table in FACT_TABLES:
        await connection.run_sync(staged(table).drop, checkfirst=True)
        await connection.run_sync(staged(table).create)


async def apply_rebuild(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Make the stored facts equal to the staged ones: per table, (rows added or changed, rows
    removed); then drop the staging tables. An update joined on the key changes the rows that
    differ; an `ON CONFLICT DO NOTHING` insert adds the missing ones without touching the others
    (an upsert would lock, and so write, every stored row; an anti-join insert probes a table it
    is growing, quadratic when the planner picks a loop)."""
    connection = await session.connection()
    found: dict[str, tuple[int, int]] = {}
    for table in FACT_TABLES:
        derived = staged(table)
        names = [c.name for c in table.columns]
        keys = [c.name for c in table.primary_key.columns]
        # Statistics, so PostgreSQL joins by hash; SQLite joins through an index instead (built
        # after loading: one sorted build).
        if session.get_bind().dialect.name != "postgresql":
            key_list = ", ".join(keys)
            await connection.execute(
                text(f"CREATE INDEX ix_{derived.name}_key ON {derived.name} ({key_list})")
            )
        await connection.execute(text(f"ANALYZE {derived.name}"))
        same_key = and_(*(table.c[k] == derived.c[k] for k in keys))
        compared = [n for n in names if n not in keys and n not in BOOKKEEPING]
        differs = or_(*(table.c[n].is_distinct_from(derived.c[n]) for n in compared))
        updated = await connection.execute(
            update(table)
            .where(same_key, differs)
            .values({n: derived.c[n] for n in names if n not in keys})
        )
        everything = select(*(derived.c[n] for n in names)).where(true())  # SQLite's parser
        added = await connection.execute(
            _insert(session, table).from_select(names, everything).on_conflict_do_nothing()
        )
        removed = await connection.execute(delete(table).where(~exists().where(same_key)))
        found[table.name] = (updated.rowcount + added.rowcount, removed.rowcount)
        await connection.run_sync(derived.drop)
    return found


# What a ticket fact is derived from, in this order (`recompute.derive` unpacks it).
TICKET_SOURCE = (
    Ticket.id, Ticket.status, Ticket.merged_into, Ticket.category, Ticket.district_code,
    Ticket.street_code, Ticket.department, Ticket.created_at, Ticket.accept_due_at,
    Ticket.handle_due_at, Ticket.overdue, Ticket.closed_at,
)  # fmt: skip
# On PostgreSQL recompute streams two queries through server-side cursors, straight from the
# driver: each table is scanned once in storage order (paging by id walked a randomly ordered heap
# page by page) and the server groups each ticket's timeline; SQLAlchemy's result processing cost
# more than the queries at this size. The values are the same (UUIDs, UTC moments).
_PG_TIMELINES = """
SELECT t.id, t.status, t.merged_into, t.category, t.district_code, t.street_code, t.department,
    t.created_at, t.accept_due_at, t.handle_due_at, t.overdue, t.closed_at,
    h.last_seq, c.entries::text
FROM tickets t
LEFT JOIN (SELECT ticket_id, max(seq) AS last_seq FROM ticket_transitions GROUP BY ticket_id) h
    ON h.ticket_id = t.id
LEFT JOIN (
    SELECT ticket_id, json_agg(json_build_array(seq, at, action, data) ORDER BY seq) AS entries
    FROM ticket_transitions WHERE action = ANY($1::text[]) GROUP BY ticket_id
) c ON c.ticket_id = t.id
"""
_PG_EVENTS = "SELECT id, source, category, district_code, street_code, received_at FROM events"


class StoredEntry(NamedTuple):
    """A timeline entry as recompute reads it (`facts.EntryLike`)."""

    ticket_id: uuid.UUID
    seq: int
    at: datetime
    action: str
    data: dict[str, Any]


class StoredTicket(NamedTuple):
    """A ticket as recompute reads it: `TICKET_SOURCE` values, its last timeline seq and the
    entries of its timeline that count, in seq order."""

    row: Sequence[Any]
    last_seq: int
    entries: list[StoredEntry]


async def _driver(session: AsyncSession) -> Any | None:
    """The asyncpg connection of the session's transaction; None on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():  # the adapter begins on its first statement
        await connection.execute(select(literal(1)))
    return driver


async def _core(session: AsyncSession, query: Executable) -> Sequence[Any]:
    connection = await session.connection()
    rows: Sequence[Any] = (await connection.execute(query)).all()
    return rows


def _object(text: str | None) -> dict[str, Any]:
    value = orjson.loads(text) if text else None
    return value if isinstance(value, dict) else {}


async def stored_tickets(session: AsyncSession, page: int) -> AsyncIterator[list[StoredTicket]]:
    """Every ticket with its counted timeline entries, `page` tickets at a time."""
    counted = sorted(COUNTED_ACTIONS)
    driver = await _driver(session)
    if driver is not None:
        cursor = await driver.cursor(_PG_TIMELINES, counted)
        while rows := await cursor.fetch(page):
            yield [_from_server(row) for row in rows]
        return
    after: uuid.UUID | None = None
    while rows := await _ticket_page(session, after, page):
        first, last = rows[0][0], rows[-1][0]
        heads, entries = await _timeline_slice(session, first, last, counted)
        by_ticket: dict[uuid.UUID, list[StoredEntry]] = {}
        for entry in entries:
            by_ticket.setdefault(entry.ticket_id, []).append(entry)
        yield [StoredTicket(row, heads.get(row[0], 0), by_ticket.get(row[0], [])) for row in rows]
        after = last


def _from_server(row: Sequence[Any]) -> StoredTicket:
    ticket_id, text = row[0], row[13]
    entries = []
    for seq, at, action, data in orjson.loads(text) if text else ():
        entry_data = data if isinstance(data, dict) else {}
        entries.append(StoredEntry(ticket_id, seq, datetime.fromisoformat(at), action, entry_data))
    return StoredTicket(row[:12], row[12] or 0, entries)


async def _ticket_page(session: AsyncSession, after: uuid.UUID | None, limit: int) -> Sequence[Any]:
    query = select(*TICKET_SOURCE).order_by(Ticket.id).limit(limit)
    if after is not None:
        query = query.where(Ticket.id > after)
    return await _core(session, query)


async def _timeline_slice(
    session: AsyncSession, first: uuid.UUID, last: uuid.UUID, counted: list[str]
) -> tuple[dict[uuid.UUID, int], list[StoredEntry]]:
    t = TicketTransition
    where = (t.ticket_id >= first, t.ticket_id <= last)
    heads = await _core(
        session, select(t.ticket_id, func.max(t.seq)).where(*where).group_by(t.ticket_id)
    )
    rows = await _core(
        session,
        select(t.ticket_id, t.seq, t.at, t.action, cast(t.data, Text))
        .where(*where, t.action.in_(counted))
        .order_by(t.ticket_id, t.seq),
    )
    entries = [
        StoredEntry(ticket_id, seq, at, action, _object(data))
        for ticket_id, seq, at, action, data in rows
    ]
    return {ticket: int(seq) for ticket, seq in heads}, entries


async def stored_events(session: AsyncSession, page: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
    """Every event (`EVENT_SOURCE` values), `page` at a time."""
    driver = await _driver(session)
    if driver is not None:
        cursor = await driver.cursor(_PG_EVENTS)
        while rows := await cursor.fetch(page):
            yield rows
        return
    after: uuid.UUID | None = None
    while rows := await _core(
        session,
        select(*EVENT_SOURCE)
        .where(Event.id > after if after is not None else Event.id.is_not(None))
        .order_by(Event.id)
        .limit(page),
    ):
        yield rows
        after = rows[-1][0]


async def bulk_insert(
    session: AsyncSession, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert many rows (into a staging table): COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))
        return
    await session.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])


# --- the sums the figures are made of ---

Group = Literal["district", "street", "department"]


@dataclass(frozen=True, slots=True)
class Slice:
    """Which facts a figure counts: an area (district, or street with its district), maybe one
    department, grouped by unit or not (`only`: just these units of the group)."""

    district: str | None = None
    street: str | None = None
    department: str | None = None
    group: Group | None = None
    only: Collection[str] | None = None

    @property
    def by_department(self) -> bool:
        """True when facts are told apart by their ticket's department."""
        return self.department is not None or self.group == "department"


def _where_area(table: Table, s: Slice) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if s.district is not None:
        conditions.append(table.c.district == s.district)
    if s.street is not None:
        conditions.append(table.c.street == s.street)
    return conditions


def _key(table: Table, s: Slice) -> list[ColumnElement[Any]]:
    """The grouping column (none for one unit); a department is its ticket's."""
    if s.group is None:
        return []
    column = KPI_TICKETS.c.department if s.group == "department" else table.c[s.group]
    return [column]


def _where(table: Table, s: Slice) -> list[ColumnElement[bool]]:
    conditions = _where_area(table, s)
    if s.department is not None:
        conditions.append(KPI_TICKETS.c.department == s.department)
    keys = _key(table, s)
    if keys and s.only is not None:
        conditions.append(keys[0].in_(sorted(s.only)))
    return conditions


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _within(column: ColumnElement[Any], start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(column >= start, column <= end)


def _events_from(s: Slice) -> FromClause:
    if not s.by_department:
        return KPI_EVENTS
    return KPI_EVENTS.join(TICKET_EVENTS, TICKET_EVENTS.c.event_id == KPI_EVENTS.c.event_id).join(
        KPI_TICKETS, KPI_TICKETS.c.ticket_id == TICKET_EVENTS.c.ticket_id
    )


def _transitions_from(s: Slice) -> FromClause:
    if not s.by_department:
        return KPI_TRANSITIONS
    return KPI_TRANSITIONS.join(KPI_TICKETS, KPI_TICKETS.c.ticket_id == KPI_TRANSITIONS.c.ticket_id)


Key = str | None


async def counts(
    session: AsyncSession, s: Slice, start: datetime, end: datetime
) -> dict[Key, Counts]:
    """The integer sums of every unit of the slice (key None when not grouped) for the window
    [start, end]; `end` is also the "now" of backlog, parked and overdue."""
    found: dict[Key, Counts] = {}

    def of(key: Key) -> Counts:
        return found.setdefault(key, Counts())

    e, t, x = KPI_EVENTS.c, KPI_TICKETS.c, KPI_TRANSITIONS.c
    keys = _key(KPI_EVENTS, s)
    rows = await session.execute(
        select(*keys, e.channel, func.count(), _count_if(e.joined))
        .select_from(_events_from(s))
        .where(_within(e.received_at, start, end), *_where(KPI_EVENTS, s))
        .group_by(*keys, e.channel)
    )
    for row in rows.all():
        key, (channel, n, joined) = _split(row, keys)
        c = of(key)
        if channel in c.by_channel:
            c.by_channel[channel] += int(n)
        c.joined += int(joined or 0)

    keys = _key(KPI_TICKETS, s)
    where = _where(KPI_TICKETS, s)
    on_time = and_(t.status == "closed", t.closed_at <= t.deadline)
    queries: list[tuple[ColumnElement[bool], tuple[str, ...], list[ColumnElement[Any]]]] = [
        (_within(t.filed_at, start, end), ("filed",), [func.count()]),
        (
            and_(_within(t.deadline, start, end), t.status.not_in(NOT_DUE), t.merged.is_(False)),
            ("due", "closed", "closed_on_time", "deferred"),
            [func.count(), _count_if(t.status == "closed"), _count_if(on_time),
             _count_if(t.deferred)],
        ),
        (
            _within(t.first_accepted_at, start, end),
            ("accepted", "accept_ms"),
            [func.count(), func.sum(t.accept_ms)],
        ),
        (
            and_(_within(t.closed_at, start, end), t.close_ms.is_not(None)),
            ("closed_timed", "close_ms"),
            [func.count(), func.sum(t.close_ms)],
        ),
        (
            t.status.in_(OPEN),
            ("backlog", "parked", "overdue"),
            [func.count(), _count_if(t.status == "parked"), _count_if(_overdue(end))],
        ),
    ]  # fmt: skip
    for condition, names, sums in queries:
        rows = await session.execute(select(*keys, *sums).where(condition, *where).group_by(*keys))
        for row in rows.all():
            key, values = _split(row, keys)
            c = of(key)
            for name, value in zip(names, values, strict=True):
                setattr(c, name, int(value or 0))

    keys = _key(KPI_TRANSITIONS, s)
    verify, callback = x.kind == "verify", x.kind == "callback"
    rows = await session.execute(
        select(
            *keys, _count_if(verify), _count_if(and_(verify, x.passed.is_(False))),
            _count_if(callback), func.sum(case((callback, x.score), else_=0)),
            _count_if(and_(callback, x.score >= SATISFIED_SCORE)),
        )
        .select_from(_transitions_from(s))
        .where(_within(x.at, start, end), *_where(KPI_TRANSITIONS, s))
        .group_by(*keys)
    )  # fmt: skip
    for row in rows.all():
        key, values = _split(row, keys)
        c = of(key)
        names = ("verifications", "failed_verifications", "callbacks", "score_sum", "satisfied")
        for name, value in zip(names, values, strict=True):
            setattr(c, name, int(value or 0))
    return found


def _overdue(now: datetime) -> ColumnElement[bool]:
    t = KPI_TICKETS.c
    return and_(
        t.status.in_(HANDLING),
        or_(
            t.breached.is_(True),
            t.handle_due_at < now,
            and_(t.status.in_(ACCEPTING), t.accept_due_at < now),
        ),
    )


def _split(row: Any, keys: Sequence[object]) -> tuple[Key, tuple[Any, ...]]:
    values = tuple(row)
    if keys:
        return values[0], values[1:]
    return None, values


Duration = Literal["accept", "close"]


async def percentile(
    session: AsyncSession,
    s: Slice,
    duration: Duration,
    start: datetime,
    end: datetime,
    rank: int,
    count: int,
) -> int | None:
    """The `rank`-th smallest (0-based) of the `count` durations (ms) of one unit's tickets in the
    window. A high rank is counted from the top: sorting keeps only the values above it."""
    t = KPI_TICKETS.c
    if duration == "accept":
        column, where = t.accept_ms, _within(t.first_accepted_at, start, end)
    else:
        column, where = t.close_ms, and_(_within(t.closed_at, start, end), t.close_ms.is_not(None))
    query = select(column).where(where, *_where(KPI_TICKETS, s)).limit(1)
    if rank > count // 2:
        query = query.order_by(column.desc()).offset(count - 1 - rank)
    else:
        query = query.order_by(column).offset(rank)
    value = await session.scalar(query)
    return None if value is None else int(value)


async def top_events(
    session: AsyncSession,
    s: Slice,
    by: Literal["category", "street"],
    start: datetime,
    end: datetime,
    limit: int,
) -> list[tuple[str, str | None, int]]:
    """The `limit` categories or streets with the most events of one unit: (code, the street's
    district or None, events), most first, then by code."""
    e = KPI_EVENTS.c
    column = e.category if by == "category" else e.street
    extra = e.district if by == "street" else literal(None)
    n = func.count().label("n")
    rows = await session.execute(
        select(column, extra, n)
        .select_from(_events_from(s))
        .where(_within(e.received_at, start, end), column.is_not(None), *_where(KPI_EVENTS, s))
        .group_by(column, extra)
        .order_by(n.desc(), column)
        .limit(limit)
    )  # fmt: skip
    return [(str(code), district, int(count)) for code, district, count in rows.all()]


async def series(
    session: AsyncSession, s: Slice, start: datetime, end: datetime, zone: ZoneInfo, bucket: Bucket
) -> tuple[Counter[datetime], Counter[datetime]]:
    """Events received and tickets closed (the facts of `intake` and `close_time_s`) per naive
    local hour or day (`figures.local_bucket`) of one unit's window [start, end]."""
    e, t = KPI_EVENTS.c, KPI_TICKETS.c
    intake = await _per_bucket(
        session, e.received_at, _events_from(s),
        [_within(e.received_at, start, end), *_where(KPI_EVENTS, s)], zone, bucket,
    )  # fmt: skip
    closed = await _per_bucket(
        session, t.closed_at, KPI_TICKETS,
        [_within(t.closed_at, start, end), t.close_ms.is_not(None), *_where(KPI_TICKETS, s)],
        zone, bucket,
    )  # fmt: skip
    return intake, closed


async def _per_bucket(
    session: AsyncSession,
    column: ColumnElement[Any],
    source: FromClause,
    where: list[ColumnElement[bool]],
    zone: ZoneInfo,
    bucket: Bucket,
) -> Counter[datetime]:
    # PostgreSQL truncates the local wall-clock time itself (one row per bucket); SQLite has no
    # time zones, so its (embedded-sized) moments are bucketed here with zoneinfo.
    found: Counter[datetime] = Counter()
    if session.get_bind().dialect.name == "postgresql":
        local = func.date_trunc(bucket, func.timezone(zone.key, column), type_=DateTime())
        rows = await session.execute(
            select(local, func.count()).select_from(source).where(*where).group_by(local)
        )
        for start, n in rows.all():
            found[start] += int(n)
        return found
    moments = await session.scalars(select(column).select_from(source).where(*where))
    found.update(local_bucket(m, zone, bucket) for m in moments)
    return found


async def touched_areas(
    session: AsyncSession, since: datetime
) -> set[tuple[str | None, str | None]]:
    """(district, street) of every fact written at or after `since` (for the live push)."""
    found: set[tuple[str | None, str | None]] = set()
    for table in (KPI_TICKETS, KPI_EVENTS):
        rows = await session.execute(
            select(table.c.district, table.c.street).where(table.c.touched_at >= since).distinct()
        )
        found.update((d, s) for d, s in rows.all())
    return found


# Recompute writes tuples in these orders (services/metrics/recompute.py): keep them in step.
assert (*TicketFact.COLUMNS, "touched_at") == TICKET_COLUMNS
assert TRANSITION_COLUMNS == (
    "ticket_id", "seq", "kind", "at", "passed", "score", "district", "street",
)  # fmt: skip
assert EVENT_FACT_COLUMNS == (
    "event_id", "received_at", "channel", "category", "district", "street", "joined", "touched_at",
)  # fmt: skip
