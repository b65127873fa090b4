"""Actions with an `Idempotency-Key`: a retry replays the first answer (one timeline entry), a new
key acts again, a key reused for another request is refused, a failed request leaves its key
free, concurrent retries act once, and old keys are pruned."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch.idempotency import KEY_RETENTION, prune_action_requests
from shared.db.models import ActionRequestRecord
from shared.settings import Settings
from tests.support.tickets import Headers, Hub, running_hub

DISTRICT = "500103"  # 渝中区
OFFICE_CATEGORY = "E0402"  # 店外经营: no routing rule, so the street office handles it (属地)


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        yield running


async def crew_and_ticket(hub: Hub, name: str = "crew") -> tuple[Headers, str]:
    """A street office's field crew and a ticket its street centre dispatched to it."""
    street = hub.streets(DISTRICT)[0]
    crew = await hub.user(name, "field_staff", f"street:{street.code}", f"office@{street.code}")
    desk = await hub.user(f"{name}-desk", "dispatcher", f"street:{street.code}")
    lon, lat = hub.point(street)
    ticket_id = await hub.report(
        source="hotline", category=OFFICE_CATEGORY, location={"lon": lon, "lat": lat}
    )
    await hub.ok(ticket_id, desk, "dispatch")  # no routing rule: the desk sends it (属地)
    ticket = await hub.ticket(ticket_id, crew)
    assert (ticket["status"], ticket["department"]) == ("dispatched", f"office@{street.code}")
    return crew, ticket_id


async def send(
    hub: Hub, ticket_id: str, headers: Headers, key: str | None, **body: Any
) -> httpx.Response:
    """POST an action, with an Idempotency-Key when given."""
    extra = {"Idempotency-Key": key} if key is not None else {}
    return await hub.client.post(
        f"/api/v1/tickets/{ticket_id}/actions", json=body, headers={**headers, **extra}
    )


async def entries(hub: Hub, ticket_id: str, headers: Headers, action: str) -> int:
    """How many timeline entries of `action` the ticket has."""
    timeline = (await hub.ticket(ticket_id, headers))["timeline"]
    return sum(1 for entry in timeline if entry["action"] == action)


async def test_a_retry_replays_the_first_answer(hub: Hub) -> None:
    crew, ticket_id = await crew_and_ticket(hub)
    key = str(uuid.uuid4())
    first = await send(hub, ticket_id, crew, key, action="accept")
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = await send(hub, ticket_id, crew, key, action="accept")
    assert again.status_code == 200, again.text  # not 409: the ticket is accepted already
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await entries(hub, ticket_id, crew, "accept") == 1

    # Field order and spelled-out defaults do not make it another request.
    note = {"action": "comment", "note": "到达现场", "photos": []}
    key = str(uuid.uuid4())
    assert (await send(hub, ticket_id, crew, key, **note)).status_code == 200
    same = await hub.client.post(
        f"/api/v1/tickets/{ticket_id}/actions",
        content='{"photos": [], "note": "到达现场", "action": "comment"}',
        headers={**crew, "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert same.status_code == 200, same.text
    assert same.headers["idempotent-replayed"] == "true"
    assert await entries(hub, ticket_id, crew, "comment") == 1


async def test_a_new_key_is_a_new_action(hub: Hub) -> None:
    crew, ticket_id = await crew_and_ticket(hub)
    assert (await send(hub, ticket_id, crew, "k-1", action="accept")).status_code == 200
    twice = await send(hub, ticket_id, crew, "k-2", action="accept")
    assert twice.status_code == 409, twice.text  # acted on afresh: the state refuses it
    assert "accepted" in twice.json()["detail"]
    for key in ("c-1", "c-2"):
        reply = await send(hub, ticket_id, crew, key, action="comment", note="同一句话")
        assert reply.status_code == 200, reply.text
    assert await entries(hub, ticket_id, crew, "comment") == 2
    # Without a key nothing changes: every request acts.
    assert (await send(hub, ticket_id, crew, None, action="comment", note="x")).status_code == 200
    assert await entries(hub, ticket_id, crew, "comment") == 3


async def test_a_key_reused_for_another_request_is_refused(hub: Hub) -> None:
    crew, ticket_id = await crew_and_ticket(hub)
    assert (await send(hub, ticket_id, crew, "once", action="accept")).status_code == 200
    other_body = await send(hub, ticket_id, crew, "once", action="comment", note="到场")
    assert other_body.status_code == 422, other_body.text
    assert "Idempotency-Key" in other_body.json()["detail"]
    other_ticket = await send(hub, str(uuid.uuid4()), crew, "once", action="accept")
    assert other_ticket.status_code == 422, other_ticket.text
    assert await entries(hub, ticket_id, crew, "comment") == 0
    # Keys belong to their user: a colleague's same key is a request of its own.
    street = hub.streets(DISTRICT)[0]
    mate = await hub.user("mate", "field_staff", f"street:{street.code}", f"office@{street.code}")
    assert (await send(hub, ticket_id, crew, "note", action="comment", note="a")).status_code == 200
    assert (await send(hub, ticket_id, mate, "note", action="comment", note="a")).status_code == 200
    assert await entries(hub, ticket_id, crew, "comment") == 2


async def test_a_refused_request_leaves_its_key_free(hub: Hub) -> None:
    crew, ticket_id = await crew_and_ticket(hub)
    early = await send(hub, ticket_id, crew, "start-1", action="start")
    assert early.status_code == 409, early.text  # not accepted yet: nothing done, nothing kept
    assert (await send(hub, ticket_id, crew, "accept-1", action="accept")).status_code == 200
    later = await send(hub, ticket_id, crew, "start-1", action="start")
    assert later.status_code == 200, later.text
    assert "idempotent-replayed" not in later.headers
    assert later.json()["ticket"]["status"] == "in_progress"


async def test_concurrent_retries_act_once(hub: Hub) -> None:
    crew, ticket_id = await crew_and_ticket(hub)
    key = str(uuid.uuid4())
    replies = await asyncio.gather(
        *(send(hub, ticket_id, crew, key, action="comment", note="并发重试") for _ in range(6))
    )
    assert [r.status_code for r in replies] == [200] * 6, [r.text for r in replies]
    assert sum(1 for r in replies if "idempotent-replayed" not in r.headers) == 1
    assert len({r.text for r in replies}) == 1
    assert await entries(hub, ticket_id, crew, "comment") == 1


async def test_keys_are_checked_and_pruned_after_a_week(hub: Hub) -> None:
    crew, ticket_id = await crew_and_ticket(hub)
    for bad in ("has space", "x" * 201, "中文"):
        reply = await hub.client.post(
            f"/api/v1/tickets/{ticket_id}/actions",
            json={"action": "comment", "note": "n"},
            headers=[
                *((k.encode(), v.encode()) for k, v in crew.items()),
                (b"Idempotency-Key", bad.encode()),
            ],
        )
        assert reply.status_code == 422, (bad, reply.text)
    assert (await send(hub, ticket_id, crew, "old", action="comment", note="n")).status_code == 200

    async def stored() -> int:
        async with hub.runtime.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(ActionRequestRecord))
            return int(count or 0)

    assert await stored() == 1
    assert await prune_action_requests(hub.runtime) == 0  # young keys stay
    later = datetime.now(UTC) + KEY_RETENTION + timedelta(minutes=1)
    assert await prune_action_requests(hub.runtime, now=later) == 1
    assert await stored() == 0
    # Forgotten: the same key acts again.
    again = await send(hub, ticket_id, crew, "old", action="comment", note="n")
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    assert await entries(hub, ticket_id, crew, "comment") == 2
