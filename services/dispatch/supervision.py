"""What a fired timer means for its ticket (pure): nothing, a warning, or a breach (督办).

- A ticket that is closed, rejected, resolved or parked, or already accepted when an accept
  timer fires, is left alone: the timer was only a reminder of work that is no longer pending.
- A `*_warn` timer warns, unless the deadline it warns about has already passed (after downtime
  the breach says more than a late warning).
- A `*_due` timer is a breach: the ticket is overdue, a supervision order goes to the centre one
  tier up (the city supervises itself), and, when the category escalates on breach, ownership
  moves up one tier. A ticket escalated to the district gets a follow-up deadline there, so a
  ticket still late at the district breaches again and goes to the city.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.dispatch.deadlines import Colour, colour
from services.dispatch.routing import TIER_UP, Tier, centre_of, escalated
from shared.db.models import Ticket

Phase = Literal["accept", "handle"]
# Statuses in which each deadline still binds someone.
ACCEPT_PENDING = frozenset({"new", "dispatched"})
HANDLE_PENDING = frozenset({"new", "dispatched", "accepted", "in_progress"})
DONE = frozenset({"resolved", "closed", "rejected"})


@dataclass(frozen=True, slots=True)
class Warn:
    """Most of the allowed time has gone: tell the screens, change nothing."""

    phase: Phase
    deadline: datetime | None


@dataclass(frozen=True, slots=True)
class Breach:
    """A deadline passed: supervise from one tier up and maybe escalate ownership there."""

    phase: Phase
    supervisor: tuple[Tier, str]  # the centre that receives the 督办
    escalate_to: tuple[Tier, str] | None  # new owner, None when ownership stays
    follow_up: bool  # schedule another deadline at the new tier (it can escalate again)


def phase_of(kind: str) -> Phase:
    """Which deadline a timer kind belongs to."""
    return "accept" if kind.startswith("accept") else "handle"


def applies(kind: str, status: str) -> bool:
    """True while the deadline behind a timer still binds the ticket."""
    return status in (ACCEPT_PENDING if phase_of(kind) == "accept" else HANDLE_PENDING)


def tier_of(value: str) -> Tier:
    """A stored owner tier as a `Tier` (unknown values count as the city, the top)."""
    for tier in TIER_UP:
        if tier == value:
            return tier
    return "city"


def decide(
    kind: str, ticket: Ticket, *, escalate_on_breach: bool, city: str, now: datetime
) -> Warn | Breach | None:
    """The outcome of a fired timer for its (locked) ticket; None: nothing to do."""
    if not applies(kind, ticket.status):
        return None
    phase = phase_of(kind)
    deadline = ticket.accept_due_at if phase == "accept" else ticket.handle_due_at
    if kind.endswith("_warn"):
        if deadline is not None and deadline <= now:
            return None
        return Warn(phase, deadline)
    tier = tier_of(ticket.owner_tier)
    up = escalated(tier)
    where = (ticket.street_code, ticket.district_code, ticket.city_code or city)
    supervisor_tier: Tier = up or tier
    supervisor = (supervisor_tier, centre_of(supervisor_tier, *where))
    escalate_to = supervisor if escalate_on_breach and up is not None else None
    follow_up = escalate_to is not None and escalated(escalate_to[0]) is not None
    return Breach(phase, supervisor, escalate_to, follow_up)


def ticket_colour(ticket: Ticket, now: datetime) -> Colour:
    """The ticket's 5-level warning colour (红/橙/黄/蓝/绿) against its current deadline."""
    accepting = ticket.status in ACCEPT_PENDING and ticket.accept_due_at is not None
    return colour(
        done=ticket.status in DONE,
        overdue=bool(ticket.overdue),
        priority=ticket.priority or "normal",
        start=ticket.created_at,
        due=ticket.accept_due_at if accepting else ticket.handle_due_at,
        now=now,
    )
