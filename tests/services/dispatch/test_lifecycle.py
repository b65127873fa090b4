"""The lifecycle state machine: every path stays defined; closed tickets take only comments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.lifecycle import (
    ACTIONS,
    STATUSES,
    IllegalTransitionError,
    Status,
    allowed_actions,
    is_open,
    next_status,
)


def test_the_closed_loop() -> None:
    status: Status = "new"
    for action in ("dispatch", "accept", "start", "resolve"):
        status = next_status(status, action)
    assert status == "resolved"
    assert next_status(status, "verify", passed=False) == "dispatched"  # 返工
    assert next_status("resolved", "verify", passed=True) == "closed"


def test_illegal_transition_names_state_and_allowed_actions() -> None:
    with pytest.raises(IllegalTransitionError) as err:
        next_status("closed", "dispatch")
    assert err.value.status_code == 409
    assert "closed" in err.value.message
    assert "allowed now: comment, callback" in err.value.message


def test_reject_only_before_dispatch() -> None:
    assert next_status("new", "reject") == "rejected"
    for status in ("dispatched", "accepted", "in_progress", "parked", "resolved"):
        with pytest.raises(IllegalTransitionError):
            next_status(status, "reject")  # parked: it may have been dispatched before


def test_verify_needs_a_result() -> None:
    with pytest.raises(IllegalTransitionError):
        next_status("resolved", "verify")


@settings(max_examples=500)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.booleans()), max_size=40))
def test_no_sequence_reaches_an_undefined_state(steps: list[tuple[str, bool]]) -> None:
    status: Status = "new"
    for action, passed in steps:
        try:
            status = next_status(status, action, passed=passed)
        except IllegalTransitionError as exc:
            assert action not in allowed_actions(status) or action == "verify"
            assert exc.status == status
        assert status in STATUSES


@given(st.sampled_from(ACTIONS), st.booleans())
def test_closed_tickets_accept_only_comment_and_callback(action: str, passed: bool) -> None:
    if action in ("comment", "callback"):
        assert next_status("closed", action, passed=passed) == "closed"
    else:
        with pytest.raises(IllegalTransitionError):
            next_status("closed", action, passed=passed)


def test_every_open_status_can_still_end() -> None:
    # From any open status some sequence of actions reaches closed or rejected.
    for start in STATUSES:
        seen, frontier = {start}, [start]
        while frontier:
            status = frontier.pop()
            for action in allowed_actions(status):
                for passed in (True, False):
                    try:
                        after = next_status(status, action, passed=passed)
                    except IllegalTransitionError:
                        continue
                    if after not in seen:
                        seen.add(after)
                        frontier.append(after)
        assert seen & {"closed", "rejected"} or not is_open(start), start
