"""Who may see and act on a ticket (pure, table-driven).

- Reading is geographic: a scope sees the tickets located inside it, whoever owns them (a street
  centre keeps seeing a ticket escalated to its district, read-only). Invisible means 404.
- Acting depends on the role: field staff accept, start, resolve and comment on tickets of their
  own department; dispatchers do everything else, but only for tickets their own centre owns
  (责任主体唯一: one owner acts). A centre above reaches a lower one's ticket through the
  lower one escalating it, or through a breach escalating it; until then it reads and
  supervises (督办). Managers and admins read only. Forbidden means 403.
- Acting also needs the ticket's state to allow it (`lifecycle`), and two more facts about the
  ticket: the city centre cannot escalate further, and a ticket of one report cannot be split.
  Refused for that means 409.
- `offered_actions` is the same check run for every action: what the ticket shows a caller as
  `allowed_actions` is exactly what `check` (the action endpoint) lets through.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dispatch.lifecycle import (
    ACTIONS,
    TRANSITIONS,
    Action,
    IllegalTransitionError,
    Status,
)
from services.dispatch.routing import TIER_UP
from shared.auth import Principal, Role
from shared.db.models import Ticket
from shared.errors import ConflictError, HubError

READERS: frozenset[Role] = frozenset({"admin", "dispatcher", "field_staff", "manager"})
FIELD_ACTIONS: frozenset[Action] = frozenset({"accept", "start", "resolve", "comment"})
DISPATCHER_ACTIONS: frozenset[Action] = frozenset(
    {
        "dispatch", "return", "reassign", "escalate", "defer", "park", "reject", "verify",
        "merge", "split", "comment", "callback",
    }
)  # fmt: skip
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    "dispatcher": DISPATCHER_ACTIONS,
    "field_staff": FIELD_ACTIONS,
    "manager": frozenset(),
    "admin": frozenset(),
    "integrator": frozenset(),
}
ESCALATABLE = frozenset(tier for tier, up in TIER_UP.items() if up is not None)


class ForbiddenError(HubError):
    """The caller sees the ticket but may not do this to it (HTTP 403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403)


@dataclass(frozen=True, slots=True)
class Place:
    """What the rules look at on a ticket: where it is, who owns it, who handles it."""

    district: str | None
    street: str | None
    owner_tier: str
    owner_code: str
    department: str | None


def place(ticket: Ticket) -> Place:
    """What the permission rules look at on a ticket."""
    return Place(
        district=ticket.district_code,
        street=ticket.street_code,
        owner_tier=ticket.owner_tier,
        owner_code=ticket.owner_code,
        department=ticket.department,
    )


def can_read(principal: Principal, place: Place) -> bool:
    """True when the caller may see the ticket (else it answers 404)."""
    return principal.role in READERS and principal.scope.covers(place.district, place.street)


def owns(principal: Principal, place: Place) -> bool:
    """True when the caller's centre is the ticket's owner."""
    scope = principal.scope
    if scope.level == "city":
        return place.owner_tier == "city"
    return place.owner_tier == scope.level and place.owner_code == scope.code


def forbidden(principal: Principal, place: Place, action: Action) -> ForbiddenError | None:
    """Why the caller's role, centre or department may not do `action` (403), or None."""
    if action not in ROLE_ACTIONS.get(principal.role, frozenset()):
        return ForbiddenError(f"a {principal.role} may not {action} tickets")
    if principal.role == "field_staff":
        if principal.department is None or principal.department != place.department:
            return ForbiddenError(
                f"the ticket is assigned to {place.department or 'no department'}, "
                f"not to your department {principal.department or '(none)'}"
            )
        return None
    if not owns(principal, place):
        return ForbiddenError(
            f"the ticket is owned by the {place.owner_tier} centre {place.owner_code}: "
            f"read-only for {principal.scope}"
        )
    return None


def check_action(principal: Principal, place: Place, action: Action) -> None:
    """Raise 403 naming the reason unless the caller may do `action` (it can read the ticket)."""
    error = forbidden(principal, place, action)
    if error is not None:
        raise error


def refusal(
    principal: Principal, place: Place, status: Status, action: Action, *, reports: int
) -> HubError | None:
    """Why the caller may not do `action` to a ticket it can read, as it stands now: 403 (role,
    centre, department), 409 (status, already at the city, one report to split), or None."""
    error: HubError | None = forbidden(principal, place, action)
    if error is not None:
        return error
    if action not in TRANSITIONS[status]:
        return IllegalTransitionError(status, action)
    if action == "escalate" and place.owner_tier not in ESCALATABLE:
        return ConflictError("the ticket is already owned by the city centre")
    if action == "split" and reports < 2:
        return ConflictError("a ticket with a single report cannot be split")
    return None


def check(
    principal: Principal, place: Place, status: Status, action: Action, *, reports: int
) -> None:
    """Raise the `refusal` (403 or 409) unless the caller may do `action` now."""
    error = refusal(principal, place, status, action, reports=reports)
    if error is not None:
        raise error


def offered_actions(
    principal: Principal, place: Place, status: Status, *, reports: int
) -> list[Action]:
    """The actions `check` lets this caller do now, in a stable order (`allowed_actions`)."""
    return [a for a in ACTIONS if refusal(principal, place, status, a, reports=reports) is None]
