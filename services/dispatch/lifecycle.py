"""The ticket lifecycle as a pure state machine (数字城管 closed loop): no I/O, no clock.

`next_status(status, action, ...)` either returns the status after the action or raises
`IllegalTransitionError` naming the current status and the actions allowed there.
"""

from __future__ import annotations

from typing import Literal, get_args

from shared.errors import ConflictError

Status = Literal[
    "new", "dispatched", "accepted", "in_progress", "resolved", "closed", "parked", "rejected"
]
Action = Literal[
    "dispatch", "accept", "start", "resolve", "verify", "return", "reassign", "escalate",
    "defer", "park", "reject", "comment", "callback", "merge", "split",
]  # fmt: skip
STATUSES: tuple[Status, ...] = get_args(Status)
ACTIONS: tuple[Action, ...] = get_args(Action)
OPEN_STATUSES: frozenset[Status] = frozenset(
    {"new", "dispatched", "accepted", "in_progress", "resolved", "parked"}
)
# Where the clock runs on a ticket's handling: while someone is expected to act on it.
HANDLING_STATUSES: frozenset[Status] = frozenset({"dispatched", "accepted", "in_progress"})
# Where the accepting deadline is the one that matters (the warning colour, the desk's order).
BEFORE_ACCEPT: frozenset[Status] = frozenset({"new", "dispatched"})

_ACTIVE: frozenset[Status] = frozenset({"new", "dispatched", "accepted", "in_progress"})

# status → action → status after it ("=" keeps the status). `verify` is resolved separately.
TRANSITIONS: dict[Status, dict[Action, Status | Literal["="]]] = {
    "new": {
        "dispatch": "dispatched", "reject": "rejected", "park": "parked", "escalate": "=",
        "merge": "closed", "split": "=", "comment": "=",
    },
    "dispatched": {
        "accept": "accepted", "return": "new", "reassign": "dispatched", "escalate": "=",
        "defer": "=", "park": "parked", "merge": "closed", "split": "=", "comment": "=",
    },
    "accepted": {
        "start": "in_progress", "resolve": "resolved", "return": "new", "reassign": "dispatched",
        "escalate": "=", "defer": "=", "park": "parked", "merge": "closed", "split": "=",
        "comment": "=",
    },
    "in_progress": {
        "resolve": "resolved", "return": "new", "reassign": "dispatched", "escalate": "=",
        "defer": "=", "park": "parked", "merge": "closed", "split": "=", "comment": "=",
    },
    "resolved": {"verify": "=", "comment": "="},
    "closed": {"comment": "=", "callback": "="},
    # No `reject` here: 不予立案 is decided before dispatch, and a parked ticket may have been.
    "parked": {"dispatch": "dispatched", "escalate": "=", "comment": "="},
    "rejected": {"comment": "="},
}  # fmt: skip
assert set(TRANSITIONS) == set(STATUSES)
assert _ACTIVE <= OPEN_STATUSES


class IllegalTransitionError(ConflictError):
    """An action that the ticket's current status does not allow (HTTP 409)."""

    def __init__(self, status: Status, action: str) -> None:
        allowed = ", ".join(allowed_actions(status))
        super().__init__(f"cannot {action} a ticket that is {status}; allowed now: {allowed}")
        self.status = status
        self.action = action


def allowed_actions(status: Status) -> list[Action]:
    """The actions a ticket in `status` accepts, in a stable order."""
    return [a for a in ACTIONS if a in TRANSITIONS[status]]


def next_status(status: Status, action: str, *, passed: bool | None = None) -> Status:
    """The status after `action`; `verify` needs `passed` (True closes, False reopens: 返工)."""
    target = TRANSITIONS[status].get(action)  # type: ignore[call-overload]
    if target is None:
        raise IllegalTransitionError(status, action)
    if action == "verify":
        if passed is None:
            raise IllegalTransitionError(status, "verify without a result")
        return "closed" if passed else "dispatched"
    return status if target == "=" else target


def is_open(status: Status) -> bool:
    """True while the ticket still needs work (it counts in the backlog)."""
    return status in OPEN_STATUSES
