"""Who may read and act on a ticket: a table of callers, tickets and expected outcomes."""

from __future__ import annotations

import itertools

import pytest

from services.dispatch.lifecycle import ACTIONS, STATUSES, Action, Status
from services.dispatch.permissions import (
    DISPATCHER_ACTIONS,
    FIELD_ACTIONS,
    ForbiddenError,
    Place,
    can_read,
    check,
    check_action,
    offered_actions,
    refusal,
)
from shared.auth import Principal, Scope
from shared.errors import HubError

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


DESK = who("dispatcher", f"street:{S}")
CGJ_CREW = who("field_staff", f"district:{D}", "cgj@500103")


def test_a_field_worker_is_offered_only_its_own_work() -> None:
    assert offered_actions(CGJ_CREW, DISTRICT_TICKET, "dispatched", reports=2) == [
        "accept", "comment",
    ]  # fmt: skip
    assert offered_actions(CGJ_CREW, DISTRICT_TICKET, "accepted", reports=2) == [
        "start", "resolve", "comment",
    ]  # fmt: skip
    zjw = who("field_staff", f"district:{D}", "zjw@500103")
    assert offered_actions(zjw, DISTRICT_TICKET, "dispatched", reports=2) == []
    assert offered_actions(who("manager", "city"), STREET_TICKET, "dispatched", reports=2) == []


def test_the_owning_desk_is_offered_what_the_ticket_allows_now() -> None:
    assert offered_actions(DESK, STREET_TICKET, "dispatched", reports=2) == [
        "return", "reassign", "escalate", "defer", "park", "comment", "merge", "split",
    ]  # fmt: skip
    assert "split" not in offered_actions(DESK, STREET_TICKET, "dispatched", reports=1)
    assert offered_actions(DESK, DISTRICT_TICKET, "dispatched", reports=2) == []  # escalated
    city = who("dispatcher", "city")
    assert "escalate" not in offered_actions(city, CITY_TICKET, "new", reports=1)
    assert offered_actions(DESK, STREET_TICKET, "closed", reports=1) == ["comment", "callback"]


PRINCIPALS = [
    DESK, CGJ_CREW, who("dispatcher", f"district:{D}"), who("dispatcher", "city"),
    who("field_staff", f"street:{S}", "office@500103001"), who("manager", "city"),
    who("admin", "city"),
]  # fmt: skip
PLACES = [STREET_TICKET, DISTRICT_TICKET, CITY_TICKET, UNLOCATED]


@pytest.mark.parametrize(("status", "reports"), list(itertools.product(STATUSES, (1, 2))))
def test_offered_is_exactly_what_check_lets_through(status: Status, reports: int) -> None:
    for principal, place in itertools.product(PRINCIPALS, PLACES):
        offered = offered_actions(principal, place, status, reports=reports)
        for action in ACTIONS:
            refused = refusal(principal, place, status, action, reports=reports)
            assert (action in offered) == (refused is None)
            if refused is None:
                check(principal, place, status, action, reports=reports)
                continue
            assert refused.status_code in (403, 409)
            with pytest.raises(HubError) as caught:
                check(principal, place, status, action, reports=reports)
            assert caught.value.status_code == refused.status_code


def test_every_action_is_offered_somewhere() -> None:
    offered = {
        action
        for principal, place, status in itertools.product(PRINCIPALS, PLACES, STATUSES)
        for action in offered_actions(principal, place, status, reports=2)
    }
    assert offered == set(ACTIONS)
