"""KPI facts (pure): ONE derivation from an event, a ticket's state and its timeline entries,
used by the incremental path (bus messages) and by `cityhub kpis recompute` (stored rows), so
both produce the same facts by construction (docs/decisions/0015-kpi-facts.md).

A ticket's fact is its latest state (the one with the highest timeline seq wins, so an older,
redelivered message never overwrites a newer one) plus what its timeline accumulated, merged by
rules that ignore order and repetition: `deferred` (any deferral), `missed_due_at` (the earliest
handling deadline the scheduler saw pass), `first_accepted_at` (the earliest acceptance).
`fold` is that merge; `services/metrics/store.py` applies the same rules in SQL when it upserts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol, get_args

from shared.messages import TicketChangedV2

Channel = Literal["hotline", "sensor", "grid", "api"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
# Event sources as ingest names them → intake channels (Open311 requests arrive as `hotline`).
SOURCE_CHANNELS: Mapping[str, Channel] = {
    "hotline": "hotline", "open311": "hotline", "sensor": "sensor", "grid": "grid",
}  # fmt: skip
OPEN_STATUSES = frozenset({"new", "dispatched", "accepted", "in_progress", "resolved", "parked"})
# Timeline actions that contribute to a fact; every other action changes only the state.
COUNTED_ACTIONS = frozenset({"accept", "defer", "overdue", "verify", "callback", "report", "merge"})
HANDLE_TIMER = "handle_due"  # the scheduler's timer kind for a handling deadline
MS = timedelta(milliseconds=1)
TransitionKind = Literal["verify", "callback"]


def channel_of(source: str) -> Channel:
    """The intake channel of an event source; anything else came in through the API."""
    return SOURCE_CHANNELS.get(source, "api")


def _ms(start: datetime, end: datetime) -> int:
    """Whole milliseconds from start to end (integers add up exactly in any order)."""
    return (end - start) // MS


class EntryLike(Protocol):
    """A timeline entry: a `ticket_transitions` row or the `TransitionInfo` a message carries."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def action(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class EventFact:
    """One event as the KPIs count it (`joined` is the ticket side's, see `Contribution`)."""

    event_id: uuid.UUID
    received_at: datetime
    channel: Channel
    category: str
    district: str | None
    street: str | None


def event_fact(
    event_id: uuid.UUID,
    source: str,
    category: str,
    district: str | None,
    street: str | None,
    received_at: datetime,
) -> EventFact:
    """The fact of a stored event (the columns of `store.EVENT_SOURCE`, in order)."""
    return EventFact(event_id, received_at, channel_of(source), category, district, street)


@dataclass(frozen=True, slots=True)
class Accrual:
    """What a ticket's timeline accumulates; merged regardless of order or repetition."""

    deferred: bool = False
    missed_due_at: datetime | None = None
    first_accepted_at: datetime | None = None
    accept_ms: int | None = None

    def merge(self, other: Accrual) -> Accrual:
        """Both accruals together (commutative, associative, idempotent)."""
        first, accept_ms = self.first_accepted_at, self.accept_ms
        if other.first_accepted_at is not None and (
            first is None or other.first_accepted_at < first
        ):
            first, accept_ms = other.first_accepted_at, other.accept_ms
        return Accrual(
            self.deferred or other.deferred,
            _earliest(self.missed_due_at, other.missed_due_at),
            first,
            accept_ms,
        )


EMPTY = Accrual()


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class TransitionFact:
    """A verification or a call-back, counted in the window it happened in."""

    ticket_id: uuid.UUID
    seq: int
    kind: TransitionKind
    at: datetime
    passed: bool | None
    score: int | None
    district: str | None
    street: str | None


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one timeline entry adds: to its ticket's accrual, as a counted transition, and to
    the events it names (they joined an existing ticket)."""

    accrual: Accrual = EMPTY
    transition: TransitionFact | None = None
    joined: tuple[uuid.UUID, ...] = ()


NOTHING = Contribution()


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def contribution(
    ticket_id: uuid.UUID,
    filed_at: datetime,
    district: str | None,
    street: str | None,
    entry: EntryLike,
) -> Contribution:
    """What a timeline entry contributes to the KPIs (NOTHING for most actions)."""
    action, data = entry.action, entry.data
    if action == "accept":
        return Contribution(Accrual(first_accepted_at=entry.at, accept_ms=_ms(filed_at, entry.at)))
    if action == "defer":
        return Contribution(Accrual(deferred=True))
    if action == "overdue":
        missed = _moment(data.get("due_at")) if data.get("timer") == HANDLE_TIMER else None
        return Contribution(Accrual(missed_due_at=missed)) if missed is not None else NOTHING
    if action == "verify":
        passed = data.get("passed")
        if not isinstance(passed, bool):
            return NOTHING
        fact = TransitionFact(
            ticket_id, entry.seq, "verify", entry.at, passed, None, district, street
        )
        return Contribution(transition=fact)
    if action == "callback":
        score = data.get("score")
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            return NOTHING
        fact = TransitionFact(
            ticket_id, entry.seq, "callback", entry.at, None, score, district, street
        )
        return Contribution(transition=fact)
    if action == "report":
        event = _uuid(data.get("event_id"))
        return Contribution(joined=(event,)) if event is not None else NOTHING
    if action == "merge":
        events = data.get("events")
        ids = [_uuid(e) for e in events] if isinstance(events, list) else []
        return Contribution(joined=tuple(e for e in ids if e is not None))
    return NOTHING


@dataclass(frozen=True, slots=True)
class TicketFact:
    """One ticket as the KPIs count it: its state at `version` plus its timeline's accrual."""

    ticket_id: uuid.UUID
    version: int
    status: str
    merged: bool
    category: str
    district: str | None
    street: str | None
    department: str | None
    filed_at: datetime
    accept_due_at: datetime | None
    handle_due_at: datetime | None
    breached: bool
    closed_at: datetime | None
    close_ms: int | None
    accrual: Accrual = EMPTY

    @property
    def deadline(self) -> datetime | None:
        """The KPI handling deadline: a missed one stands (an escalation's follow-up deadline
        never makes a late ticket on time); otherwise the current one, deferrals included."""
        return self.accrual.missed_due_at or self.handle_due_at

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "ticket_id", "version", "status", "merged", "category", "district", "street",
        "department", "filed_at", "accept_due_at", "handle_due_at", "breached", "closed_at",
        "close_ms", "deferred", "missed_due_at", "first_accepted_at", "accept_ms", "deadline",
    )  # fmt: skip

    def values(self) -> tuple[Any, ...]:
        """The `kpi_tickets` columns (without `touched_at`), in `COLUMNS` order."""
        a = self.accrual
        return (
            self.ticket_id, self.version, self.status, self.merged, self.category,
            self.district, self.street, self.department, self.filed_at, self.accept_due_at,
            self.handle_due_at, self.breached, self.closed_at, self.close_ms, a.deferred,
            a.missed_due_at, a.first_accepted_at, a.accept_ms, self.deadline,
        )  # fmt: skip

    def row(self) -> dict[str, Any]:
        """The `kpi_tickets` columns (without `touched_at`) by name."""
        return dict(zip(self.COLUMNS, self.values(), strict=True))


def ticket_state(
    *,
    ticket_id: uuid.UUID,
    version: int,
    status: str,
    merged_into: uuid.UUID | None,
    category: str,
    district: str | None,
    street: str | None,
    department: str | None,
    created_at: datetime,
    accept_due_at: datetime | None,
    handle_due_at: datetime | None,
    overdue: bool,
    closed_at: datetime | None,
    accrual: Accrual | None = None,
) -> TicketFact:
    """A ticket's state as the KPIs count it, with what its timeline accumulated."""
    merged = merged_into is not None
    closed = status == "closed" and closed_at is not None
    return TicketFact(
        ticket_id=ticket_id, version=version, status=status, merged=merged, category=category,
        district=district, street=street, department=department, filed_at=created_at,
        accept_due_at=accept_due_at, handle_due_at=handle_due_at, breached=overdue,
        closed_at=closed_at,
        close_ms=_ms(created_at, closed_at) if closed and not merged and closed_at else None,
        accrual=EMPTY if accrual is None else accrual,
    )  # fmt: skip


def fold(a: TicketFact, b: TicketFact) -> TicketFact:
    """Two facts of one ticket together: the newer state (a tie keeps `a`, as the upsert keeps
    the stored row), the merged accrual."""
    newer = b if b.version > a.version else a
    return replace(newer, accrual=a.accrual.merge(b.accrual))


@dataclass(frozen=True, slots=True)
class TicketDelta:
    """What a ticket change (or a whole stored timeline) contributes."""

    ticket: TicketFact
    transitions: tuple[TransitionFact, ...]
    joined: tuple[uuid.UUID, ...]


def from_message(message: TicketChangedV2) -> TicketDelta:
    """The facts a `tickets.changed` message carries: the state after the change (versioned by
    its timeline seq) and the contribution of its timeline entry."""
    t, entry = message.ticket, message.transition
    part = (
        NOTHING if entry is None else contribution(t.id, t.created_at, t.district, t.street, entry)
    )
    state = ticket_state(
        ticket_id=t.id, version=entry.seq if entry is not None else 0, status=t.status,
        merged_into=t.merged_into, category=t.category, district=t.district, street=t.street,
        department=t.department, created_at=t.created_at, accept_due_at=t.accept_due_at,
        handle_due_at=t.handle_due_at, overdue=t.overdue, closed_at=t.closed_at,
        accrual=part.accrual,
    )  # fmt: skip
    counted = () if part.transition is None else (part.transition,)
    return TicketDelta(state, counted, part.joined)


@dataclass(frozen=True, slots=True)
class Timeline:
    """What a ticket's stored timeline contributes, all entries together."""

    accrual: Accrual
    transitions: tuple[TransitionFact, ...]
    joined: tuple[uuid.UUID, ...]


def accumulate(
    ticket_id: uuid.UUID,
    filed_at: datetime,
    district: str | None,
    street: str | None,
    entries: Iterable[EntryLike],
) -> Timeline:
    """The contributions of a ticket's timeline entries, merged (the same `contribution` each
    message's entry gets on the incremental path)."""
    accrual = EMPTY
    transitions: list[TransitionFact] = []
    joined: list[uuid.UUID] = []
    for entry in entries:
        part = contribution(ticket_id, filed_at, district, street, entry)
        if part is NOTHING:
            continue
        if part.accrual is not EMPTY:
            accrual = accrual.merge(part.accrual)
        if part.transition is not None:
            transitions.append(part.transition)
        joined.extend(part.joined)
    return Timeline(accrual, tuple(transitions), tuple(joined))


def from_timeline(state: TicketFact, entries: Iterable[EntryLike]) -> TicketDelta:
    """The facts of a stored ticket: its current state (`state`, versioned by its last seq) and
    the contributions of its timeline entries."""
    found = accumulate(state.ticket_id, state.filed_at, state.district, state.street, entries)
    fact = replace(state, accrual=state.accrual.merge(found.accrual))
    return TicketDelta(fact, found.transitions, found.joined)
