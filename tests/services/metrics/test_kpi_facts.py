"""The one derivation of KPI facts: messages folded in any order, repeated or not, give the fact
that the stored ticket and its whole timeline give."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.metrics.facts import (
    Accrual,
    TicketFact,
    channel_of,
    fold,
    from_message,
    from_timeline,
    ticket_state,
)
from shared.messages import TicketChangedV2, TicketSummary, TransitionInfo

T0 = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
TICKET = uuid.uuid4()
JOINED = uuid.uuid4()


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def summary(**changes: Any) -> TicketSummary:
    base: dict[str, Any] = {
        "id": TICKET, "category": "E0101", "priority": "normal", "status": "dispatched",
        "source": "hotline", "owner_tier": "street", "owner_code": "500103001",
        "department": "cgj@500103", "street": "500103001", "district": "500103",
        "city": "500000", "lon": 106.5, "lat": 29.5, "report_count": 1, "overdue": False,
        "rework_count": 0, "created_at": T0, "updated_at": T0, "handle_due_at": minutes(240),
        "accept_due_at": minutes(60),
    }  # fmt: skip
    return TicketSummary(**{**base, **changes})


def step(seq: int, at: float, action: str, data: dict[str, Any] | None = None) -> TransitionInfo:
    return TransitionInfo(seq=seq, at=minutes(at), actor="desk", action=action, from_status=None,
                          to_status="x", data=data or {})  # fmt: skip


# A ticket's life: opened, a repeat report joins, accepted, deferred, the scheduler records a
# missed deadline and escalates with a follow-up, resolved, rework, accepted again, closed, rated.
LIFE: list[tuple[TransitionInfo, dict[str, Any]]] = [
    (step(2, 0, "dispatch"), {}),
    (step(3, 5, "report", {"event_id": str(JOINED)}), {"report_count": 2}),
    (step(4, 20, "accept"), {"status": "accepted", "accepted_at": minutes(20)}),
    (step(5, 30, "defer", {"until": minutes(300).isoformat()}),
     {"status": "accepted", "handle_due_at": minutes(300)}),
    (step(6, 300, "overdue", {"timer": "handle_due", "due_at": minutes(300).isoformat()}),
     {"status": "accepted", "handle_due_at": minutes(300), "overdue": True}),
    (step(7, 300, "escalate"),
     {"status": "accepted", "handle_due_at": minutes(600), "overdue": True}),
    (step(8, 320, "resolve"), {"status": "resolved", "handle_due_at": minutes(600),
                               "overdue": True}),
    (step(9, 330, "verify", {"passed": False, "rework_count": 1}),
     {"status": "dispatched", "handle_due_at": minutes(900), "overdue": True,
      "rework_count": 1}),
    (step(10, 340, "accept"), {"status": "accepted", "accepted_at": minutes(340),
                               "handle_due_at": minutes(900), "overdue": True}),
    (step(11, 400, "resolve"), {"status": "resolved", "handle_due_at": minutes(900),
                                "overdue": True}),
    (step(12, 410, "verify", {"passed": True}),
     {"status": "closed", "closed_at": minutes(410), "handle_due_at": minutes(900),
      "overdue": True}),
    (step(13, 500, "callback", {"score": 4}),
     {"status": "closed", "closed_at": minutes(410), "handle_due_at": minutes(900),
      "overdue": True, "satisfaction": 4}),
]  # fmt: skip
MESSAGES = [
    TicketChangedV2(change=entry.action, ticket=summary(**changes), transition=entry)
    for entry, changes in LIFE
]


def folded(messages: list[TicketChangedV2]) -> tuple[TicketFact, set[Any], set[uuid.UUID]]:
    fact: TicketFact | None = None
    transitions: set[Any] = set()
    joined: set[uuid.UUID] = set()
    for message in messages:
        delta = from_message(message)
        fact = delta.ticket if fact is None else fold(fact, delta.ticket)
        transitions.update(delta.transitions)
        joined.update(delta.joined)
    assert fact is not None
    return fact, transitions, joined


def stored() -> tuple[TicketFact, set[Any], set[uuid.UUID]]:
    last = MESSAGES[-1].ticket
    state = ticket_state(
        ticket_id=last.id, version=13, status=last.status, merged_into=None,
        category=last.category, district=last.district, street=last.street,
        department=last.department, created_at=last.created_at,
        accept_due_at=last.accept_due_at, handle_due_at=last.handle_due_at,
        overdue=last.overdue, closed_at=last.closed_at,
    )  # fmt: skip
    entries = [step(1, 0, "create")] + [entry for entry, _ in LIFE]
    delta = from_timeline(state, entries)
    return delta.ticket, set(delta.transitions), set(delta.joined)


def test_the_facts_of_a_life() -> None:
    fact, transitions, joined = stored()
    assert (fact.status, fact.version, fact.breached, fact.merged) == ("closed", 13, True, False)
    # A missed deadline stands: the escalation's follow-up (600) and the rework's (900) do not
    # replace it; the deferral counts; the first acceptance is the one that counts.
    assert fact.accrual == Accrual(
        deferred=True, missed_due_at=minutes(300), first_accepted_at=minutes(20),
        accept_ms=20 * 60_000,
    )  # fmt: skip
    assert (fact.deadline, fact.handle_due_at) == (minutes(300), minutes(900))
    assert fact.close_ms == 410 * 60_000
    assert sorted((t.seq, t.kind, t.passed, t.score) for t in transitions) == [
        (9, "verify", False, None), (12, "verify", True, None), (13, "callback", None, 4),
    ]  # fmt: skip
    assert joined == {JOINED}


def test_messages_in_any_order_and_repeated_give_the_stored_facts() -> None:
    expected = stored()
    assert folded(MESSAGES) == expected
    assert folded(list(reversed(MESSAGES))) == expected
    shuffler = random.Random(8)
    for _ in range(200):
        messages = MESSAGES + shuffler.sample(MESSAGES, k=5)  # some delivered twice
        shuffler.shuffle(messages)
        assert folded(messages) == expected
    # Folding is associative: grouping messages into batches does not matter either.
    for cut in range(1, len(MESSAGES)):
        first, _, _ = folded(MESSAGES[:cut])
        second, _, _ = folded(MESSAGES[cut:])
        assert fold(first, second) == expected[0]
        assert fold(second, first).accrual == expected[0].accrual


def test_a_merged_ticket_is_no_closed_case() -> None:
    state = ticket_state(
        ticket_id=TICKET, version=3, status="closed", merged_into=uuid.uuid4(),
        category="E0101", district=None, street=None, department=None, created_at=T0,
        accept_due_at=None, handle_due_at=minutes(60), overdue=False, closed_at=minutes(5),
    )  # fmt: skip
    events = [uuid.uuid4(), uuid.uuid4()]
    delta = from_timeline(state, [step(3, 5, "merge", {"events": [str(e) for e in events]})])
    assert (delta.ticket.merged, delta.ticket.close_ms) == (True, None)
    assert set(delta.joined) == set(events)


def test_malformed_entries_count_nothing() -> None:
    state = ticket_state(
        ticket_id=TICKET, version=9, status="closed", merged_into=None, category="E0101",
        district=None, street=None, department=None, created_at=T0, accept_due_at=None,
        handle_due_at=minutes(60), overdue=False, closed_at=minutes(5),
    )  # fmt: skip
    odd = [
        step(2, 1, "verify", {}), step(3, 1, "callback", {"score": 9}),
        step(4, 1, "callback", {"score": True}), step(5, 1, "report", {"event_id": "nope"}),
        step(6, 1, "overdue", {"timer": "accept_due", "due_at": minutes(1).isoformat()}),
        step(7, 1, "overdue", {"timer": "handle_due", "due_at": "2026-03-10T01:00:00"}),
        step(8, 1, "merge", {"events": "all"}),
    ]  # fmt: skip
    delta = from_timeline(state, odd)
    assert (delta.transitions, delta.joined, delta.ticket.accrual) == ((), (), Accrual())


def test_channels() -> None:
    sources = ["hotline", "open311", "sensor", "grid", "api", "webhook"]
    assert [channel_of(s) for s in sources] == [
        "hotline", "hotline", "sensor", "grid", "api", "api",
    ]  # fmt: skip
