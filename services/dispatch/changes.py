"""What dispatch publishes: a ticket's summary and the transition that changed it."""

from __future__ import annotations

from datetime import UTC, datetime

from services.dispatch.views import warning_colour
from shared.db.models import Ticket, TicketTransition
from shared.messages import TicketChangedV2, TicketSummary, TransitionInfo


def summary(ticket: Ticket) -> TicketSummary:
    """The ticket as the screens and KPIs see it."""
    return TicketSummary(
        id=ticket.id,
        category=ticket.category,
        priority=ticket.priority,
        status=ticket.status,
        source=ticket.source,
        owner_tier=ticket.owner_tier,
        owner_code=ticket.owner_code,
        department=ticket.department,
        street=ticket.street_code,
        district=ticket.district_code,
        city=ticket.city_code,
        lon=ticket.lon,
        lat=ticket.lat,
        report_count=ticket.report_count,
        overdue=ticket.overdue,
        rework_count=ticket.rework_count,
        sensor_id=ticket.sensor_id,
        merged_into=ticket.merged_into,
        emergency=ticket.emergency,
        accept_due_at=ticket.accept_due_at,
        handle_due_at=ticket.handle_due_at,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        dispatched_at=ticket.dispatched_at,
        accepted_at=ticket.accepted_at,
        resolved_at=ticket.resolved_at,
        closed_at=ticket.closed_at,
        satisfaction=ticket.satisfaction,
    )


def transition_info(entry: TicketTransition) -> TransitionInfo:
    """A timeline entry as the bus carries it."""
    return TransitionInfo(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        from_status=entry.from_status,
        to_status=entry.to_status,
        note=entry.note,
        data=entry.data,
    )


def ticket_changed(
    ticket: Ticket, change: str, transition: TransitionInfo | None
) -> TicketChangedV2:
    """The `tickets.changed` message for a change (published through the outbox), with the
    warning colour as of now, so screens colour a marker without knowing the deadline rules."""
    now = transition.at if transition is not None else datetime.now(UTC)
    return TicketChangedV2(
        change=change,
        ticket=summary(ticket),
        transition=transition,
        colour=warning_colour(ticket, now),
    )
