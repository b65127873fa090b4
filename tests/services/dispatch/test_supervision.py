"""What a fired timer means (pure): which deadlines still bind, warnings, breaches, who
supervises and who owns next, the warning colour; and which emergency mode governs a ticket."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.dispatch.emergency import ActiveMode, pick
from services.dispatch.supervision import Breach, Warn, applies, decide, ticket_colour
from shared.db.models import Ticket
from tests.support.factories import CITY, DISTRICT, STREET, ticket_row

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def ticket(**fields: Any) -> Ticket:
    fields.setdefault("accept_due_at", NOW + timedelta(minutes=10))
    fields.setdefault("handle_due_at", NOW + timedelta(hours=3))
    return Ticket(**ticket_row(NOW - timedelta(hours=1), **fields))


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [("accept_due", "new", True), ("accept_due", "dispatched", True),
     ("accept_due", "accepted", False), ("handle_due", "in_progress", True),
     ("handle_warn", "resolved", False), ("handle_due", "parked", False),
     ("accept_warn", "closed", False), ("handle_due", "rejected", False)],
)  # fmt: skip
def test_which_deadlines_still_bind(kind: str, status: str, expected: bool) -> None:
    assert applies(kind, status) is expected


def test_a_warning_before_the_deadline_and_none_after_it() -> None:
    assert decide("accept_warn", ticket(), escalate_on_breach=True, city=CITY, now=NOW) == Warn(
        "accept", NOW + timedelta(minutes=10)
    )
    late = ticket(accept_due_at=NOW - timedelta(minutes=1))
    assert decide("accept_warn", late, escalate_on_breach=True, city=CITY, now=NOW) is None


@pytest.mark.parametrize(
    ("tier", "owner", "escalates", "expected"),
    [("street", STREET, True,
      Breach("handle", ("district", DISTRICT), ("district", DISTRICT), follow_up=True)),
     ("district", DISTRICT, True,
      Breach("handle", ("city", CITY), ("city", CITY), follow_up=False)),
     ("city", CITY, True, Breach("handle", ("city", CITY), None, follow_up=False)),
     ("street", STREET, False, Breach("handle", ("district", DISTRICT), None, follow_up=False))],
)  # fmt: skip
def test_a_breach_is_supervised_one_tier_up(
    tier: str, owner: str, escalates: bool, expected: Breach
) -> None:
    late = ticket(owner_tier=tier, owner_code=owner)
    assert decide("handle_due", late, escalate_on_breach=escalates, city=CITY, now=NOW) == expected


def test_an_unlocated_ticket_escalates_to_the_city() -> None:
    nowhere = ticket(street_code=None, district_code=None, city_code=None, owner_tier="district",
                     owner_code="dispatch@500000")  # fmt: skip
    breach = decide("accept_due", nowhere, escalate_on_breach=True, city=CITY, now=NOW)
    assert isinstance(breach, Breach) and breach.escalate_to == ("city", CITY)


def test_the_colour_follows_the_current_deadline() -> None:
    assert ticket_colour(ticket(), NOW) == "orange"  # 10 of 70 minutes left to accept
    assert ticket_colour(ticket(status="accepted"), NOW) == "blue"  # 3 of 4 hours left
    assert ticket_colour(ticket(status="accepted", overdue=True), NOW) == "red"
    assert ticket_colour(ticket(status="closed"), NOW) == "green"


def mode(area: str, city_wide: bool, started_min: int, categories: set[str]) -> ActiveMode:
    return ActiveMode(uuid.uuid4(), area, city_wide, f"{area}@{started_min}",
                      frozenset(categories), 0.5, NOW + timedelta(minutes=started_min))  # fmt: skip


def test_the_district_mode_wins_over_the_city_wide_one_and_the_latest_among_equals() -> None:
    whole = mode(CITY, True, 0, {"E0501", "S0101"})
    local = mode(DISTRICT, False, -5, {"E0501"})
    newer = mode(DISTRICT, False, 5, {"E0501"})
    assert pick([whole, local], DISTRICT, "E0501") is local
    assert pick([whole, local, newer], DISTRICT, "E0501") is newer
    assert pick([whole, local], DISTRICT, "S0101") is whole
    assert pick([whole, local], None, "E0501") is whole  # unlocated: only city-wide modes
    assert pick([local], "500104", "E0501") is None
    assert pick([whole], DISTRICT, "E0101") is None
