"""A ticket's append-only timeline, each entry chained to the previous one by SHA-256.

An entry's hash covers its ticket, sequence number, time, actor, action, statuses, note, data and
the previous entry's hash, so editing or deleting any row breaks every later link — `verify_chain`
(and `cityhub audit verify`) finds it. Entries are written in the same transaction as the change
they record; the ticket row is locked by the caller, so sequence numbers never race.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Ticket, TicketTransition

GENESIS = ""  # prev_hash of a ticket's first entry


def entry_hash(
    *,
    ticket_id: uuid.UUID,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None,
    to_status: str,
    note: str,
    data: dict[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of an entry's content and its predecessor's hash."""
    fields = [str(ticket_id), seq, at.astimezone(UTC).isoformat(), actor, action, from_status]
    fields += [to_status, note, data, prev_hash]
    canonical = json.dumps(
        fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def entry_row(
    ticket_id: uuid.UUID,
    seq: int,
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None,
    to_status: str,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The row of the entry after (`seq` - 1, `prev_hash`), for callers that insert in bulk."""
    payload = data or {}
    row: dict[str, Any] = {
        "ticket_id": ticket_id, "seq": seq, "at": at, "actor": actor, "action": action,
        "from_status": from_status, "to_status": to_status, "note": note, "data": payload,
        "prev_hash": prev_hash,
    }  # fmt: skip
    row["hash"] = entry_hash(**row)
    return row


async def append(
    session: AsyncSession,
    ticket_id: uuid.UUID,
    *,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None,
    to_status: str,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> TicketTransition:
    """Add the next entry to a ticket's timeline (caller holds the ticket's row lock; `data`
    must be JSON-ready)."""
    last = await session.scalar(
        select(TicketTransition)
        .where(TicketTransition.ticket_id == ticket_id)
        .order_by(TicketTransition.seq.desc())
        .limit(1)
    )
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    entry = TicketTransition(
        **entry_row(
            ticket_id, seq, prev, at=at, actor=actor, action=action,
            from_status=from_status, to_status=to_status, note=note, data=data,
        )
    )  # fmt: skip
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where a ticket's chain stops adding up, and why."""

    ticket_id: uuid.UUID
    seq: int
    reason: str


def verify_chain(entries: Sequence[TicketTransition]) -> ChainBreak | None:
    """Check one ticket's entries (in seq order); the first break, or None when intact."""
    prev = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            return ChainBreak(entry.ticket_id, entry.seq, f"expected entry {expected_seq}")
        if entry.prev_hash != prev:
            return ChainBreak(entry.ticket_id, entry.seq, "link to the previous entry broken")
        recomputed = entry_hash(
            ticket_id=entry.ticket_id, seq=entry.seq, at=entry.at, actor=entry.actor,
            action=entry.action, from_status=entry.from_status, to_status=entry.to_status,
            note=entry.note, data=entry.data, prev_hash=entry.prev_hash,
        )  # fmt: skip
        if recomputed != entry.hash:
            return ChainBreak(entry.ticket_id, entry.seq, "content does not match its hash")
        prev = entry.hash
    return None


async def verify_all(session: AsyncSession, batch: int = 5_000) -> Iterable[ChainBreak]:
    """Every broken chain in the database (streams entries ticket by ticket), including chains
    whose last entries were deleted: each ticket records the hash of its latest entry."""
    rows = await session.execute(select(Ticket.id, Ticket.timeline_head))
    heads = {ticket_id: head for ticket_id, head in rows}
    breaks: list[ChainBreak] = []

    def check(entries: list[TicketTransition]) -> None:
        found = verify_chain(entries)
        head = heads.pop(entries[0].ticket_id, None)
        if found is None and head is not None and head != entries[-1].hash:
            found = ChainBreak(entries[0].ticket_id, entries[-1].seq + 1, "later entries missing")
        if found is not None:
            breaks.append(found)

    current: list[TicketTransition] = []
    result = await session.stream_scalars(
        select(TicketTransition)
        .order_by(TicketTransition.ticket_id, TicketTransition.seq)
        .execution_options(yield_per=batch)
    )
    async for entry in result:
        if current and entry.ticket_id != current[0].ticket_id:
            check(current)
            current = []
        current.append(entry)
    if current:
        check(current)
    breaks += [ChainBreak(t, 1, "every entry missing") for t, head in heads.items() if head]
    return breaks
