"""Response models of the dispatch API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.dispatch.deadlines import Colour
from services.dispatch.lifecycle import Action
from services.dispatch.routing import RoutingRule
from services.dispatch.rules import MAX_RULES
from shared.catalogue import DeadlineHours, Priority

# Every model here refuses NaN and Infinity: JSON has no such numbers (they would be served as
# null, breaking the published schema), so building a response with one fails loudly instead.
FINITE = ConfigDict(allow_inf_nan=False)


class AreaRef(BaseModel):
    """An area by code and name."""

    model_config = FINITE

    code: str
    name: str


class TicketRead(BaseModel):
    """A ticket with where it is and who owns it."""

    model_config = FINITE

    id: uuid.UUID
    category: str
    priority: str | None
    status: str
    owner_tier: str
    owner_code: str
    description: str
    lon: float | None
    lat: float | None
    street: AreaRef | None
    district: AreaRef | None
    city: AreaRef | None
    geotag_method: str
    report_count: int
    event_ids: list[uuid.UUID]
    created_at: datetime
    updated_at: datetime
    source: str
    department: str | None
    department_name: str | None
    sensor_id: str | None
    accept_due_at: datetime | None
    handle_due_at: datetime | None
    overdue: bool
    colour: Colour = Field(description="warning colour: red, orange, yellow, blue or green")
    rework_count: int
    merged_into: uuid.UUID | None
    emergency: str | None
    dispatched_at: datetime | None
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    satisfaction: int | None
    allowed_actions: list[Action] = Field(
        description="what the caller may do to the ticket now (its role, centre and department, "
        "the ticket's status): exactly the actions POST .../actions would not refuse with 403 "
        "or 409"
    )


class LinkedEvent(BaseModel):
    """An event linked to a ticket (never who reported it)."""

    model_config = FINITE

    id: uuid.UUID
    source: str
    category: str
    reported_at: datetime


class TimelineEntry(BaseModel):
    """One entry of a ticket's timeline."""

    model_config = FINITE

    seq: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    note: str
    data: dict[str, Any]


class TicketDetail(TicketRead):
    """A ticket with its linked events and its timeline."""

    events: list[LinkedEvent]
    timeline: list[TimelineEntry]


class TicketPage(BaseModel):
    """A page of tickets, newest first; pass `next_cursor` back as `cursor` for the next."""

    model_config = FINITE

    items: list[TicketRead]
    next_cursor: str | None


# Fields each action needs (beyond `action`); `reason` may also be given as `note`.
REQUIRED: dict[str, tuple[str, ...]] = {
    "reassign": ("department",),
    "verify": ("passed",),
    "return": ("reason",),
    "park": ("reason",),
    "reject": ("reason",),
    "defer": ("until",),
    "callback": ("score",),
    "merge": ("into",),
    "split": ("event_ids",),
}


class ActionRequest(BaseModel):
    """One lifecycle action on a ticket."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    action: Action
    note: str = Field(default="", max_length=4000)
    reason: str | None = Field(default=None, max_length=4000)
    department: str | None = Field(default=None, max_length=64)
    photos: list[str] = Field(default_factory=list, max_length=10)
    passed: bool | None = None
    until: AwareDatetime | None = Field(
        default=None,
        description="defer: the new handling deadline, later than the current one and at most "
        "CITYHUB_DISPATCH__MAX_DEFER_DAYS (default 90) days ahead",
    )
    score: int | None = Field(default=None, ge=1, le=5)
    into: uuid.UUID | None = None
    event_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _needs(self) -> Self:
        if self.reason is not None:
            self.reason = self.reason.strip() or None  # a blank reason is no reason
        if (
            self.reason is None
            and self.note.strip()
            and self.action in ("return", "park", "reject")
        ):
            self.reason = self.note.strip()
        missing = [f for f in REQUIRED.get(self.action, ()) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{self.action} needs {', '.join(missing)}")
        if self.until is not None:
            try:  # a far-off offset can push an extreme date out of datetime's range
                self.until = self.until.astimezone(UTC)
            except OverflowError:
                raise ValueError("until is out of range") from None
        if self.action == "comment" and not (self.note or self.photos):
            raise ValueError("comment needs a note or photos")
        for photo in self.photos:
            if not photo.startswith(("/files/", "http://", "https://")):
                raise ValueError(f"photo {photo[:80]!r}: give a /files/... path or an http(s) URL")
        return self


class ActionResult(BaseModel):
    """The ticket after the action (and the ticket a split opened)."""

    model_config = FINITE

    ticket: TicketDetail
    new_ticket_id: uuid.UUID | None = None


class RoutingRules(BaseModel):
    """The whole routing table, most specific rule wins, earlier rules win ties."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RoutingRule] = Field(max_length=MAX_RULES)


class DepartmentRead(BaseModel):
    """A handling department or a centre's dispatcher queue."""

    model_config = FINITE

    code: str
    name: str
    group: Literal["bureau", "utility", "office", "dispatch"]
    kind: str
    level: Literal["city", "district", "street"]
    area: str


class PriorityDeadlines(BaseModel):
    """Allowed hours at one priority, and whether they are set or scaled from the default."""

    model_config = FINITE

    accept_hours: float
    handle_hours: float
    overridden: bool


class CategoryDeadlines(BaseModel):
    """A category's deadlines at every priority."""

    model_config = FINITE

    category: str
    default_priority: Priority
    priorities: dict[Priority, PriorityDeadlines]


class DeadlinesUpdate(BaseModel):
    """Per-priority accept/handle hours; priorities left out are scaled from the default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    deadlines: dict[Priority, DeadlineHours]
