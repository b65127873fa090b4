"""Who may see and act on a ticket (pure, table-driven).

- Reading is geographic: a scope sees the tickets located inside it, whoever owns them (a street
  centre keeps seeing a ticket escalated to its district, read-only). Invisible means 404.
- Acting depends on the role: field staff accept, start, resolve and comment on tickets of their
  own department; dispatchers do everything else, but only for tickets their own centre owns
  (责任主体唯一: one owner acts). A centre above reaches a lower one's ticket through the
  lower one escalating it, or through a breach escalating it; until then it reads and
  supervises (督办). Managers and admins read only. Forbidden means 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dispatch.lifecycle import Action
from shared.auth import Principal, Role
from shared.errors import HubError

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


def can_read(principal: Principal, place: Place) -> bool:
    """True when the caller may see the ticket (else it answers 404)."""
    return principal.role in READERS and principal.scope.covers(place.district, place.street)


def owns(principal: Principal, place: Place) -> bool:
    """True when the caller's centre is the ticket's owner."""
    scope = principal.scope
    if scope.level == "city":
        return place.owner_tier == "city"
    return place.owner_tier == scope.level and place.owner_code == scope.code


def check_action(principal: Principal, place: Place, action: Action) -> None:
    """Raise 403 naming the reason unless the caller may do `action` (it can read the ticket)."""
    if action not in ROLE_ACTIONS.get(principal.role, frozenset()):
        raise ForbiddenError(f"a {principal.role} may not {action} tickets")
    if principal.role == "field_staff":
        if principal.department is None or principal.department != place.department:
            raise ForbiddenError(
                f"the ticket is assigned to {place.department or 'no department'}, "
                f"not to your department {principal.department or '(none)'}"
            )
        return
    if not owns(principal, place):
        raise ForbiddenError(
            f"the ticket is owned by the {place.owner_tier} centre {place.owner_code}: "
            f"read-only for {principal.scope}"
        )
