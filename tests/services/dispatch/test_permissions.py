"""Who may read and act on a ticket: a table of callers, tickets and expected outcomes."""

from __future__ import annotations

import pytest

from services.dispatch.lifecycle import ACTIONS, Action
from services.dispatch.permissions import (
    DISPATCHER_ACTIONS,
    FIELD_ACTIONS,
    ForbiddenError,
    Place,
    can_read,
    check_action,
)
from shared.auth import Principal, Scope

S, S2, D, D2 = "500103001", "500103003", "500103", "500104"
STREET_TICKET = Place(D, S, "street", S, "office@500103001")
DISTRICT_TICKET = Place(D, S, "district", D, "cgj@500103")  # escalated, or urgent
CITY_TICKET = Place(D, S, "city", "500000", "cgj")
UNLOCATED = Place(None, None, "city", "500000", "dispatch@500000")


def who(role: str, scope: str, department: str | None = None) -> Principal:
    return Principal(role, role, Scope.parse(scope), department)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("principal", "place", "visible"),
    [
        (who("dispatcher", f"street:{S}"), STREET_TICKET, True),
        (who("dispatcher", f"street:{S}"), DISTRICT_TICKET, True),  # escalated: still seen
        (who("dispatcher", f"street:{S2}"), STREET_TICKET, False),
        (who("dispatcher", f"district:{D}"), STREET_TICKET, True),
        (who("dispatcher", f"district:{D2}"), STREET_TICKET, False),
        (who("manager", "city"), UNLOCATED, True),
        (who("dispatcher", f"district:{D}"), UNLOCATED, False),
        (who("field_staff", f"street:{S}", "office@500103001"), STREET_TICKET, True),
        (who("integrator", "city"), STREET_TICKET, False),
    ],
)
def test_reading_is_geographic(principal: Principal, place: Place, visible: bool) -> None:
    assert can_read(principal, place) is visible


ALLOWED = None
CASES: list[tuple[Principal, Place, Action, str | None]] = [
    # dispatchers act only on what their own centre owns (责任主体唯一), above or below alike
    (who("dispatcher", f"street:{S}"), STREET_TICKET, "dispatch", ALLOWED),
    (who("dispatcher", f"street:{S}"), STREET_TICKET, "escalate", ALLOWED),
    (who("dispatcher", f"street:{S}"), DISTRICT_TICKET, "dispatch", "owned by the district"),
    (who("dispatcher", f"street:{S}"), DISTRICT_TICKET, "comment", "read-only"),
    (who("dispatcher", f"district:{D}"), STREET_TICKET, "escalate", "owned by the street"),
    (who("dispatcher", f"district:{D}"), DISTRICT_TICKET, "verify", ALLOWED),
    (who("dispatcher", f"district:{D}"), CITY_TICKET, "reassign", "owned by the city"),
    (who("dispatcher", "city"), STREET_TICKET, "merge", "owned by the street"),
    (who("dispatcher", "city"), CITY_TICKET, "merge", ALLOWED),
    (who("dispatcher", "city"), UNLOCATED, "dispatch", ALLOWED),
    (who("dispatcher", "city"), STREET_TICKET, "accept", "dispatcher may not accept"),
    # field staff act on their own department's tickets only
    (who("field_staff", f"district:{D}", "cgj@500103"), DISTRICT_TICKET, "accept", ALLOWED),
    (who("field_staff", f"district:{D}", "cgj@500103"), DISTRICT_TICKET, "resolve", ALLOWED),
    (who("field_staff", f"district:{D}", "zjw@500103"), DISTRICT_TICKET, "accept", "not to your"),
    (who("field_staff", f"district:{D}", "cgj@500103"), DISTRICT_TICKET, "dispatch", "may not"),
    (who("field_staff", f"street:{S}", "office@500103001"), STREET_TICKET, "comment", ALLOWED),
    # managers and admins read only
    (who("manager", "city"), STREET_TICKET, "comment", "manager may not"),
    (who("admin", "city"), STREET_TICKET, "dispatch", "admin may not"),
]


@pytest.mark.parametrize(("principal", "place", "action", "refusal"), CASES)
def test_who_may_act(
    principal: Principal, place: Place, action: Action, refusal: str | None
) -> None:
    if refusal is None:
        check_action(principal, place, action)
        return
    with pytest.raises(ForbiddenError) as caught:
        check_action(principal, place, action)
    assert caught.value.status_code == 403
    assert refusal in caught.value.message


def test_every_action_belongs_to_a_role() -> None:
    assert set(ACTIONS) == DISPATCHER_ACTIONS | FIELD_ACTIONS
    assert frozenset({"comment"}) == DISPATCHER_ACTIONS & FIELD_ACTIONS
