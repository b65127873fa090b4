"""How the API shows tickets: areas by name, the warning colour, linked events, the timeline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from services.dispatch.deadlines import Colour, colour
from services.dispatch.departments import Directory
from services.dispatch.lifecycle import BEFORE_ACCEPT
from services.dispatch.permissions import offered_actions, place
from services.dispatch.schemas import (
    AreaRef,
    LinkedEvent,
    TicketDetail,
    TicketRead,
    TimelineEntry,
)
from shared.areas import Hierarchy
from shared.auth import Principal
from shared.db.models import Event, Ticket, TicketTransition

DONE = frozenset({"resolved", "closed", "rejected"})


def _area(hierarchy: Hierarchy, code: str | None) -> AreaRef | None:
    area = hierarchy.get(code) if code else None
    return AreaRef(code=area.code, name=area.name) if area else None


def warning_colour(ticket: Ticket, now: datetime) -> Colour:
    """红/橙/黄/蓝/绿 against the deadline that matters now (accept before acceptance, else
    handling); parked tickets run no clock."""
    due = ticket.accept_due_at if ticket.status in BEFORE_ACCEPT else ticket.handle_due_at
    return colour(
        done=ticket.status in DONE or ticket.status == "parked",
        overdue=ticket.overdue,
        priority=ticket.priority or "normal",
        start=ticket.created_at,
        due=due,
        now=now,
    )


def ticket_read(
    ticket: Ticket,
    event_ids: list[uuid.UUID],
    hierarchy: Hierarchy,
    directory: Directory | None,
    principal: Principal,
    now: datetime,
) -> TicketRead:
    """The API view of a ticket, offering what `principal` may do to it now."""
    department = directory.get(ticket.department) if directory and ticket.department else None
    return TicketRead(
        id=ticket.id,
        category=ticket.category,
        priority=ticket.priority,
        status=ticket.status,
        owner_tier=ticket.owner_tier,
        owner_code=ticket.owner_code,
        description=ticket.description,
        lon=ticket.lon,
        lat=ticket.lat,
        street=_area(hierarchy, ticket.street_code),
        district=_area(hierarchy, ticket.district_code),
        city=_area(hierarchy, ticket.city_code),
        geotag_method=ticket.geotag_method,
        report_count=ticket.report_count,
        event_ids=event_ids,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        source=ticket.source,
        department=ticket.department,
        department_name=department.name if department else None,
        sensor_id=ticket.sensor_id,
        accept_due_at=ticket.accept_due_at,
        handle_due_at=ticket.handle_due_at,
        overdue=ticket.overdue,
        colour=warning_colour(ticket, now),
        rework_count=ticket.rework_count,
        merged_into=ticket.merged_into,
        emergency=ticket.emergency,
        dispatched_at=ticket.dispatched_at,
        accepted_at=ticket.accepted_at,
        resolved_at=ticket.resolved_at,
        closed_at=ticket.closed_at,
        satisfaction=ticket.satisfaction,
        allowed_actions=offered_actions(
            principal,
            place(ticket),
            ticket.status,  # type: ignore[arg-type]
            reports=ticket.report_count,
        ),
    )


def ticket_detail(
    ticket: Ticket,
    events: Sequence[Event],
    entries: Sequence[TicketTransition],
    hierarchy: Hierarchy,
    directory: Directory | None,
    principal: Principal,
    now: datetime,
) -> TicketDetail:
    """A ticket with its linked events (no reporter details) and its timeline."""
    base = ticket_read(ticket, [e.id for e in events], hierarchy, directory, principal, now)
    return TicketDetail(
        **base.model_dump(),
        events=[
            LinkedEvent(id=e.id, source=e.source, category=e.category, reported_at=e.reported_at)
            for e in events
        ],
        timeline=[
            TimelineEntry(
                seq=t.seq,
                at=t.at,
                actor=t.actor,
                action=t.action,
                from_status=t.from_status,
                to_status=t.to_status,
                note=t.note,
                data=t.data,
            )
            for t in entries
        ],
    )
