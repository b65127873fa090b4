"""Idempotent lifecycle actions: a phone that lost its connection retries an action with the same
`Idempotency-Key` header, and the hub answers the retry with the answer the first one got
instead of acting twice.

- The first request with a key claims it: a row (user, key, ticket, fingerprint of the body) is
  inserted in a savepoint of the request's transaction before the action runs, and the answer is
  stored on it in that same transaction. A request that fails (4xx) rolls back with its claim:
  nothing was done, so the key stays free and a retry is judged afresh.
- A repeat by the same user with the same key replays the stored answer (same status, same
  body, header `Idempotent-Replayed: true`) without acting.
- The same key with another ticket or body: 422, as draft-ietf-httpapi-idempotency-key-header
  has it. Keys belong to their user: another user's key never collides.
- Concurrent requests with one key: the unique constraint on (user, key) decides. On PostgreSQL
  the second insert waits for the first transaction; once that commits, the second replays its
  answer (once it rolls back, the second goes ahead). On SQLite write transactions run one at a
  time (`BEGIN IMMEDIATE`), so the second finds the first's row.
- Keys are kept `KEY_RETENTION` (a week: a phone back from a dead zone retries within hours),
  then pruned; a retry after that would act again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.schemas import ActionRequest, ActionResult
from shared.db.models import ActionRequestRecord
from shared.db.retention import delete_older
from shared.errors import ConflictError, HubError
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

KEY_RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 3600.0
MAX_KEY_LENGTH = 200  # characters; a UUID is 36
REPLAYED = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[!-~]+$",  # visible ASCII, as a header carries it unchanged
        description="A key the client chose for this action (a UUID): a retry with the same key "
        "replays the first answer (with `Idempotent-Replayed: true`) instead of acting again; "
        "the same key with another ticket or body is refused with 422. Keys are per user and "
        "kept 7 days.",
    ),
]
REPLAY_HEADERS = {
    REPLAYED: {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on a replayed answer: the action was done by an earlier "
        "request with the same Idempotency-Key",
    }
}


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer of an earlier request with the same key."""

    status_code: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        """The answer again, marked as a replay."""
        return JSONResponse(self.body, status_code=self.status_code, headers={REPLAYED: "true"})


def fingerprint(ticket_id: uuid.UUID, req: ActionRequest) -> str:
    """SHA-256 of the ticket and the action as validated (field order and defaults do not
    matter: the same action written two ways is the same request)."""
    canonical = json.dumps(
        {"ticket": str(ticket_id), "body": req.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _find(session: AsyncSession, subject: str, key: str) -> ActionRequestRecord | None:
    return await session.scalar(
        select(ActionRequestRecord).where(
            ActionRequestRecord.subject == subject, ActionRequestRecord.key == key
        )
    )


def _replay_of(record: ActionRequestRecord, ticket_id: uuid.UUID, print_: str) -> Replay:
    if record.ticket_id != ticket_id or record.fingerprint != print_:
        raise HubError(
            f"Idempotency-Key {record.key!r} was already used for another request (ticket "
            f"{record.ticket_id}, another body): send a new key with each new action",
            422,
        )
    if record.status_code is None or record.response is None:  # only its own transaction sees it
        raise ConflictError("a request with this Idempotency-Key is still in progress: retry")
    return Replay(record.status_code, record.response)


async def claim(
    session: AsyncSession, subject: str, key: str, ticket_id: uuid.UUID, print_: str
) -> ActionRequestRecord | Replay:
    """Claim `key` for this request (a new row, its answer still unset), or the earlier answer
    to replay; 422 when the key was used for another request."""
    earlier = await _find(session, subject, key)
    if earlier is not None:
        return _replay_of(earlier, ticket_id, print_)
    record = ActionRequestRecord(
        subject=subject,
        key=key,
        ticket_id=ticket_id,
        fingerprint=print_,
        created_at=datetime.now(UTC),
    )
    try:
        async with session.begin_nested():
            session.add(record)
    except IntegrityError:
        # A concurrent request with this key committed first (PostgreSQL waited for it).
        earlier = await _find(session, subject, key)
        if earlier is None:  # pruned in between: vanishingly rare
            raise ConflictError(
                "a request with this Idempotency-Key raced another: retry"
            ) from None
        return _replay_of(earlier, ticket_id, print_)
    return record


async def act_once(
    session: AsyncSession,
    subject: str,
    key: str,
    ticket_id: uuid.UUID,
    req: ActionRequest,
    apply: Callable[[], Awaitable[ActionResult]],
) -> ActionResult | JSONResponse:
    """Run `apply` once per (user, key): the first time its result is stored with the key in the
    request's transaction; a retry gets that stored answer back."""
    claimed = await claim(session, subject, key, ticket_id, fingerprint(ticket_id, req))
    if isinstance(claimed, Replay):
        return claimed.response()
    result = await apply()
    claimed.status_code = 200
    claimed.response = result.model_dump(mode="json")
    return result


async def prune_action_requests(runtime: Runtime, now: datetime | None = None) -> int:
    """Delete keys older than `KEY_RETENTION`; how many."""
    cutoff = (now or datetime.now(UTC)) - KEY_RETENTION
    return await delete_older(runtime.sessions, ActionRequestRecord.created_at, cutoff)


async def action_request_upkeep(runtime: Runtime) -> None:
    """Prune old idempotency keys hourly (the table would grow for ever)."""
    while True:
        await asyncio.sleep(PRUNE_EVERY_S)
        try:
            await prune_action_requests(runtime)
        except Exception:
            logger.exception("pruning idempotency keys failed; trying again later")
