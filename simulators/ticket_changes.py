"""A realistic stream of `tickets.changed` messages without the services that would make them:
tickets open in streets drawn by population, each walks the closed loop (created → dispatched →
accepted → in progress → resolved → closed), and a change is either a new ticket or the next step
of an open one. For benchmarks of what consumes the changes (`cityhub bench live`)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.areas import Area, Hierarchy
from shared.catalogue import Catalogue, Category
from shared.messages import TicketChangedV2, TicketSummary, TransitionInfo
from simulators.city import point_in, street_weight

# action, status after it; a new ticket starts at "new".
STEPS: tuple[tuple[str, str], ...] = (
    ("dispatch", "dispatched"),
    ("accept", "accepted"),
    ("start", "in_progress"),
    ("resolve", "resolved"),
    ("verify", "closed"),
)
Colour = Literal["red", "orange", "yellow", "blue", "green"]
COLOURS: tuple[Colour, ...] = ("green", "blue", "yellow", "orange", "red")
COLOUR_WEIGHTS = (70, 15, 8, 5, 2)  # most tickets are comfortably within their deadlines
SOURCES = ("hotline", "grid", "sensor", "api")
SOURCE_WEIGHTS = (50, 35, 10, 5)


@dataclass
class _Open:
    summary: TicketSummary
    step: int  # index into STEPS of the next action
    seq: int  # timeline entries written so far


class TicketFlow:
    """Ticket changes over a city, `open_target` tickets open at a time."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        catalogue: Catalogue,
        *,
        seed: int = 8,
        open_target: int = 5_000,
    ) -> None:
        self._rng = random.Random(seed)
        self._streets: list[Area] = hierarchy.streets
        self._weights = [street_weight(s.name) for s in self._streets]
        self._categories: list[Category] = list(catalogue)
        self._open: list[_Open] = []
        self._target = open_target
        self.city = hierarchy.city.code

    def next(self, at: datetime) -> TicketChangedV2:
        """The next change, happening at `at` (zone-aware)."""
        if not self._open or (len(self._open) < self._target and self._rng.random() < 0.5):
            return self._create(at)
        index = self._rng.randrange(len(self._open))
        ticket = self._open[index]
        action, status = STEPS[ticket.step]
        before = ticket.summary
        ticket.step += 1
        ticket.seq += 1
        summary = replace_summary(before, status=status, updated_at=at, closed=status == "closed")
        ticket.summary = summary
        if status == "closed":  # leaves the pool: swap-remove
            self._open[index] = self._open[-1]
            self._open.pop()
        return self._message(action, summary, ticket.seq, before.status, at)

    def _create(self, at: datetime) -> TicketChangedV2:
        rng = self._rng
        street = rng.choices(self._streets, weights=self._weights, k=1)[0]
        category = rng.choice(self._categories)
        accept_h, handle_h = category.hours_at(category.priority)
        lon, lat = point_in(street.geometry, rng)
        summary = TicketSummary(
            id=uuid.uuid4(),
            category=category.code,
            priority=category.priority,
            status="new",
            source=rng.choices(SOURCES, weights=SOURCE_WEIGHTS, k=1)[0],
            owner_tier="street",
            owner_code=street.code,
            department=category.department,
            street=street.code,
            district=street.parent,
            city=self.city,
            lon=lon,
            lat=lat,
            report_count=1,
            overdue=False,
            rework_count=0,
            accept_due_at=at + timedelta(hours=accept_h),
            handle_due_at=at + timedelta(hours=handle_h),
            created_at=at,
            updated_at=at,
        )
        self._open.append(_Open(summary, 0, 1))
        return self._message("created", summary, 1, None, at)

    def _message(
        self, change: str, summary: TicketSummary, seq: int, before: str | None, at: datetime
    ) -> TicketChangedV2:
        step = TransitionInfo(
            seq=seq,
            at=at,
            actor="bench",
            action="create" if change == "created" else change,
            from_status=before,
            to_status=summary.status,
        )
        colour = self._rng.choices(COLOURS, weights=COLOUR_WEIGHTS, k=1)[0]
        return TicketChangedV2(change=change, ticket=summary, transition=step, colour=colour)


def replace_summary(
    summary: TicketSummary, *, status: str, updated_at: datetime, closed: bool
) -> TicketSummary:
    """The summary after a step (frozen models are copied, not changed)."""
    fields: dict[str, object] = {"status": status, "updated_at": updated_at}
    if status == "dispatched":
        fields["dispatched_at"] = updated_at
    elif status == "accepted":
        fields["accepted_at"] = updated_at
    elif status == "resolved":
        fields["resolved_at"] = updated_at
    if closed:
        fields["closed_at"] = updated_at
    return summary.model_copy(update=fields)
