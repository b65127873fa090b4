"""The invariants every fault test ends with, each a function returning a `Check`: its counts
(printed in the test output) and the problems found (the test asserts there are none).

Each waits, with a generous timeout, for the pipeline to drain first (events ticketed, timers
fired, KPI facts caught up, the live client caught up), then checks once more and reports:

- `events_ticketed`: every accepted event (HTTP 201/200, an alarm from an acknowledged reading)
  is stored and linked to exactly one ticket, and so is every other stored event;
- `intake_answers`: the HTTP intake answered no 500 and refused no valid request while a part
  was down;
- `no_duplicate_tickets`: a ticket's report count is its linked events (an event counted twice
  shows there), every ticket has an event, each sensor has one open ticket, an alarm one event;
- `alarms_raised`: every acknowledged reading that crossed the threshold raised its alarm;
- `timers_fired_once`: every due timer fired, and none wrote its timeline entry twice;
- `kpis_agree`: the KPI facts the consumers kept equal those recomputed from the stored rows
  (services/metrics/recompute.py), with nothing written;
- `live_once`: the websocket client saw every `tickets` message of the live history after it
  first connected, once and in order, across its resumes with `since`; and every timeline
  entry of the test's tickets reached it exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import select

from services.metrics import store as kpi_store
from services.metrics.recompute import derive
from shared.db.engine import create_engine, create_sessionmaker
from shared.settings import Settings
from tests.faults.stack import LiveWatcher, SensorLoad, Stack

DRAIN_TIMEOUT_S = 90.0  # for the pipeline to settle after a fault on a loaded machine
POLL_S = 0.25  # between looks while waiting for it


@dataclass
class Check:
    """One invariant's counts and the problems found (none when it holds)."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the invariant holds."""
        return not self.problems

    def line(self) -> str:
        """One line for the test output."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return f"  {self.name}: {counts} -> {verdict}"


def report(title: str, lines: Sequence[str], checks: Sequence[Check]) -> None:
    """Print what the test did and every check's counts, then fail on any problem."""
    print(f"\n== {title}")
    for line in lines:
        print(f"  {line}")
    for check in checks:
        print(check.line())
    failed = [f"{c.name}: {'; '.join(c.problems)}" for c in checks if not c.ok]
    assert not failed, "\n".join(failed)


async def _settle(probe: Callable[[], Awaitable[Check]], within: float) -> Check:
    """Run `probe` until its check holds or `within` seconds passed; the last result."""
    deadline = time.monotonic() + within
    while True:
        check = await probe()
        if check.ok or time.monotonic() > deadline:
            return check
        await asyncio.sleep(POLL_S)


async def _rows(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def events_ticketed(
    stack: Stack, accepted: Mapping[str, str], within: float = DRAIN_TIMEOUT_S
) -> Check:
    """Every accepted event (source_ref → id) is stored, and every stored event is linked to
    exactly one ticket (`ticket_events` is keyed by the event: at most one link each)."""
    accepted_ids = {uuid.UUID(i) for i in accepted.values()}

    async def probe() -> Check:
        rows = await _rows(
            stack.db_url,
            """SELECT e.id, e.source, count(te.event_id) AS links,
                      (SELECT count(*) FROM held_events h WHERE h.event_id = e.id) AS held
                 FROM events e LEFT JOIN ticket_events te ON te.event_id = e.id
                GROUP BY e.id, e.source""",
        )
        stored = {r["id"] for r in rows}
        linked = {r["id"] for r in rows if r["links"] == 1}
        check = Check("every accepted event in exactly one ticket")
        check.counts = {
            "accepted": len(accepted_ids),
            "stored": len(stored),
            "linked": len(linked),
            "sensor events": sum(r["source"] == "sensor" for r in rows),
            "held": sum(r["held"] > 0 for r in rows),
        }
        lost = accepted_ids - stored
        if lost:
            check.problems.append(f"{len(lost)} accepted events not stored, e.g. {min(lost)}")
        unlinked = stored - linked
        if unlinked:
            check.problems.append(f"{len(unlinked)} events in no ticket, e.g. {min(unlinked)}")
        if len(set(accepted.values())) != len(accepted):
            check.problems.append("two source_refs were answered with the same event id")
        return check

    return await _settle(probe, within)


def intake_answers(answers: Counter[str]) -> Check:
    """The HTTP intake answered no 500 and refused no valid request with a 4xx (but 429): a part
    that is down is answered 502/503 (with `Retry-After`), which a sender retries. `answers`
    counts the statuses (or the error names when no answer came) of every attempt."""
    check = Check("no 500, no valid request refused")
    refused = {k: n for k, n in answers.items() if k.startswith("4") and k != "429"}
    check.counts = {
        "answers": sum(n for k, n in answers.items() if k.isdigit()),
        "5xx": sum(n for k, n in answers.items() if k.startswith("5")),
        "no answer": sum(n for k, n in answers.items() if not k.isdigit()),
    }
    if answers.get("500"):
        check.problems.append(f"{answers['500']} answers were 500")
    if refused:
        check.problems.append(f"valid requests refused: {refused}")
    return check


async def no_duplicate_tickets(stack: Stack) -> Check:
    """No ticket counts an event twice or exists without one; one open ticket per sensor; one
    event per alarm."""
    tickets = await _rows(
        stack.db_url,
        """SELECT t.id, t.report_count, t.sensor_id, t.status,
                  (SELECT count(*) FROM ticket_events te WHERE te.ticket_id = t.id) AS links,
                  (SELECT count(*) FROM ticket_transitions tt
                    WHERE tt.ticket_id = t.id AND tt.action = 'report') AS reports
             FROM tickets t""",
    )
    alarms = await _rows(
        stack.db_url,
        "SELECT event_id, count(*) AS n FROM sensor_alarms GROUP BY event_id HAVING count(*) > 1",
    )
    check = Check("no ticket duplicated")
    open_per_sensor = Counter(
        t["sensor_id"] for t in tickets if t["sensor_id"] and t["status"] != "closed"
    )
    check.counts = {
        "tickets": len(tickets),
        "reports joined": sum(t["reports"] for t in tickets),
        "sensor tickets": sum(t["sensor_id"] is not None for t in tickets),
    }
    miscounted = [t for t in tickets if t["report_count"] != t["links"]]
    if miscounted:
        t = miscounted[0]
        check.problems.append(
            f"{len(miscounted)} tickets count other reports than they link "
            f"(e.g. {t['id']}: {t['report_count']} counted, {t['links']} linked)"
        )
    twice = [s for s, n in open_per_sensor.items() if n > 1]
    if twice:
        check.problems.append(f"{len(twice)} sensors with several open tickets: {twice[:3]}")
    if alarms:
        check.problems.append(f"{len(alarms)} events raised by several alarms")
    return check


async def alarms_raised(
    stack: Stack, sensors: SensorLoad, within: float = DRAIN_TIMEOUT_S
) -> Check:
    """Every acknowledged reading over the threshold that followed an acknowledged reading under
    it raised an alarm (its deterministic reference ends in the reading's time); an
    unacknowledged one may be missing (its sender re-sends it or gives up). The acknowledgement
    a sensor gets is the broker's: ingest may still be working through the last readings when
    the load stops, so this waits for them like the other checks wait for the pipeline."""
    expected: set[tuple[str, int]] = set()
    previous: dict[str, bool] = {}  # sensor -> was its last reading acknowledged and low
    for reading in sensors.readings:
        if reading.high and reading.acked and previous.get(reading.sensor_id, True):
            expected.add((reading.sensor_id, reading.ts_ms))
        previous[reading.sensor_id] = reading.acked and not reading.high

    async def probe() -> Check:
        rows = await _rows(stack.db_url, "SELECT sensor_id, ref, event_id FROM sensor_alarms")
        raised = {(r["sensor_id"], int(r["ref"].rsplit(":", 1)[1])) for r in rows}
        check = Check("acknowledged readings raised their alarms")
        missing = expected - raised
        check.counts = {
            "readings": len(sensors.readings),
            "acknowledged": sum(r.acked for r in sensors.readings),
            "raises expected": len(expected),
            "alarms": len(rows),
            "without event": sum(r["event_id"] is None for r in rows),
        }
        if missing:
            check.problems.append(f"{len(missing)} raises missing, e.g. {min(missing)}")
        if check.counts["without event"]:
            check.problems.append(f"{check.counts['without event']} alarms without their event")
        return check

    return await _settle(probe, within)


async def timers_fired_once(
    stack: Stack, expected: Collection[int] = (), within: float = DRAIN_TIMEOUT_S
) -> Check:
    """Every timer due (a second ago or more) has fired, none wrote its timeline entry (a
    warning or an overdue) twice, and each of `expected` (timers whose ticket they bind) wrote
    exactly one."""

    async def probe() -> Check:
        timers = await _rows(
            stack.db_url,
            """SELECT id, fired_at IS NOT NULL AS fired,
                      due_at <= now() - interval '1 second' AS due
                 FROM timers""",
        )
        entries = await _rows(
            stack.db_url,
            """SELECT (data->>'timer_id')::bigint AS timer, count(*) AS n
                 FROM ticket_transitions WHERE data->>'timer_id' IS NOT NULL GROUP BY 1""",
        )
        written = {r["timer"]: r["n"] for r in entries}
        check = Check("every due timer fired exactly once")
        unfired = [t["id"] for t in timers if t["due"] and not t["fired"]]
        check.counts = {
            "timers": len(timers),
            "due": sum(t["due"] for t in timers),
            "fired": sum(t["fired"] for t in timers),
            "entries written": sum(written.values()),
            "expected to fire": len(expected),
        }
        if unfired:
            check.problems.append(f"{len(unfired)} due timers not fired, e.g. {min(unfired)}")
        twice = sorted(t for t, n in written.items() if n > 1)
        if twice:
            check.problems.append(f"{len(twice)} timers fired twice, e.g. {twice[0]}")
        silent = sorted(t for t in expected if written.get(t, 0) != 1)
        if silent:
            check.problems.append(f"{len(silent)} expected timers wrote no entry: {silent[:5]}")
        return check

    return await _settle(probe, within)


Snapshot = dict[str, set[tuple[Any, ...]]]


async def _facts(settings: Settings) -> tuple[Snapshot, Snapshot]:
    """The stored KPI facts, and those the stored events, tickets and timelines give."""
    engine = create_engine(settings)
    try:
        sessions = create_sessionmaker(engine)
        stored: Snapshot = {}
        found: Snapshot = {"kpi_events": set(), "kpi_tickets": set(), "kpi_transitions": set()}
        async with sessions() as session:
            for table in (kpi_store.KPI_EVENTS, kpi_store.KPI_TICKETS, kpi_store.KPI_TRANSITIONS):
                columns = [c for c in table.columns if c.name != "touched_at"]
                rows = (await session.execute(select(*columns))).all()
                stored[table.name] = {tuple(r) for r in rows}
            async for step in derive(session):
                for ticket in step.tickets:
                    row = ticket.row()
                    found["kpi_tickets"].add(tuple(row[c] for c in kpi_store.TICKET_COLUMNS[:-1]))
                for transition in step.transitions:
                    row = kpi_store.transition_row(transition)
                    found["kpi_transitions"].add(
                        tuple(row[c] for c in kpi_store.TRANSITION_COLUMNS)
                    )
                for event_id, fact, joined in step.events:
                    known = (
                        kpi_store.event_row(fact)
                        if fact
                        else dict.fromkeys(kpi_store.EVENT_COLUMNS)
                    )
                    row = {**known, "event_id": event_id, "joined": joined}
                    found["kpi_events"].add(
                        tuple(row[c] for c in kpi_store.EVENT_FACT_COLUMNS[:-1])
                    )
        return stored, found
    finally:
        await engine.dispose()


async def kpis_agree(stack: Stack, within: float = DRAIN_TIMEOUT_S) -> Check:
    """The KPI facts kept incrementally from the bus equal the ones recomputed from the stored
    rows (once the consumers caught up)."""
    settings = Settings(database_url=stack.db_url)

    async def probe() -> Check:
        stored, found = await _facts(settings)
        check = Check("KPIs incremental = recomputed")
        for table in sorted(found):
            check.counts[table] = len(stored[table])
            extra, missing = stored[table] - found[table], found[table] - stored[table]
            if extra or missing:
                check.problems.append(
                    f"{table}: {len(missing)} facts missing or different, {len(extra)} extra"
                )
        return check

    return await _settle(probe, within)


async def live_history(stack: Stack, stream: str = "tickets") -> list[tuple[int, dict[str, Any]]]:
    """The live history's messages of one stream: (seq, frame), in order."""
    redis = Redis.from_url(stack.endpoints.redis_url)
    try:
        entries: Any = await redis.xrange(stack.live_key)  # [(id, fields)] as bytes
    finally:
        await redis.aclose()
    found = []
    for entry_id, fields in entries:
        if fields[b"k"].decode() == stream:
            found.append((int(entry_id.decode().split("-")[0]), json.loads(fields[b"f"])))
    return found


async def live_once(stack: Stack, watcher: LiveWatcher, within: float = DRAIN_TIMEOUT_S) -> Check:
    """The client (a `LiveWatcher`) got every `tickets` message of the history after its
    baseline once, in order, through all its reconnections; and every timeline entry of every
    ticket reached it once (the history holds each change once)."""
    history = await live_history(stack)
    if history:
        await watcher.caught_up(history[-1][0], within)
    history = [(seq, frame) for seq, frame in await live_history(stack) if seq > watcher.baseline]
    got = [s for s in watcher.seqs() if s <= (history[-1][0] if history else 0)]
    # A change may write several timeline entries (opened and dispatched) and announces the
    # last; so every ticket's newest entry must have reached the client, and no entry twice.
    heads = await _rows(
        stack.db_url, "SELECT ticket_id, max(seq) AS seq FROM ticket_transitions GROUP BY 1"
    )
    changes = Counter(_change(f) for f in watcher.frames if f.get("stream") == "tickets")
    newest = {(str(r["ticket_id"]), r["seq"]) for r in heads}
    check = Check("live client saw every change once")
    check.counts = {
        "history": len(history),
        "received": len(got),
        "connections": watcher.connections,
        "resyncs": watcher.resyncs,
        "tickets": len(newest),
    }
    expected = [seq for seq, _frame in history]
    if got != expected:
        missing = sorted(set(expected) - set(got))
        doubled = sorted(s for s, n in Counter(got).items() if n > 1)
        check.problems.append(
            f"seqs differ from the history: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(doubled)} twice (e.g. {doubled[:3]}), in order: {got == sorted(got)}"
        )
    if watcher.resyncs:
        check.problems.append(f"{watcher.resyncs} resyncs")
    twice = [k for k, n in changes.items() if n > 1]
    if twice:
        copies = [f for f in watcher.frames if _change(f) == twice[0]]
        same = all(c["data"] == copies[0]["data"] for c in copies)
        check.problems.append(
            f"{len(twice)} changes received twice, e.g. {twice[0]} at seqs "
            f"{[c['seq'] for c in copies]} ({'the same' if same else 'different'} data)"
        )
    unseen = newest - set(changes)
    if unseen:
        check.problems.append(f"{len(unseen)} tickets' last change never received: {min(unseen)}")
    return check


def _change(frame: dict[str, Any]) -> tuple[str, int]:
    """The ticket and timeline entry a `tickets` frame announces."""
    return frame["data"]["id"], frame["data"]["transition"]["seq"]
