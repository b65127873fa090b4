"""Transactional outbox: a message is written in the same transaction as the change it announces,
then a relay publishes it to the bus after commit and deletes the row.

A crash between publish and delete publishes the message again; consumers are idempotent (they
record message ids in the inbox), so at-least-once is enough. Several relays (one per replica) can
run: on PostgreSQL each claims rows with `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningDelete

from shared.bus import Bus
from shared.bus.base import stop_if_cancelled
from shared.db.models import OutboxMessage
from shared.messages import Message, encode
from shared.telemetry.metrics import OUTBOX_PUBLISHED
from shared.telemetry.request_id import with_request_id

logger = logging.getLogger(__name__)

RELAY_BATCH = 500  # rows published per transaction
RELAY_POLL_S = 1.0  # how often to look for rows other processes committed
RELAY_BACKOFF_S = 1.0  # pause after the bus or database failed
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]


def _claim(*, row_locks: bool) -> ReturningDelete[int, str, bytes]:
    """Delete the oldest batch of rows, returning them; with row locks, rows another relay holds
    are skipped (several relays, one per replica, share the table without waiting)."""
    oldest = select(_OUTBOX.c.id).order_by(_OUTBOX.c.id).limit(RELAY_BATCH)
    if row_locks:
        oldest = oldest.with_for_update(skip_locked=True)
    return (
        delete(_OUTBOX)
        .where(_OUTBOX.c.id.in_(oldest.scalar_subquery()))
        .returning(_OUTBOX.c.id, _OUTBOX.c.stream, _OUTBOX.c.payload)
    )


def add_to_outbox(session: AsyncSession, message: Message) -> None:
    """Queue a message in the caller's transaction; it is published once that commits. A
    message made while a request is handled carries that request's id (when its model has one)."""
    message = with_request_id(message)
    session.add(OutboxMessage(stream=message.stream, payload=encode(message)))


async def outbox_depth(sessions: async_sessionmaker[AsyncSession]) -> int:
    """How many committed messages wait to be published (for /metrics)."""
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(_OUTBOX)) or 0)


class OutboxRelay:
    """Publishes committed outbox rows; `wake()` after a commit makes it publish at once."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], bus: Bus, *, row_locks: bool
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._claim = _claim(row_locks=row_locks)
        self._wakeup = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Signal that new rows were committed."""
        self._wakeup.set()

    async def relay_once(self) -> int:
        """Publish and delete one batch of rows, oldest first; returns how many."""
        async with self._sessions() as session, session.begin():
            # Core, on the session's connection: the ORM's bulk-delete machinery cost more than
            # the statement itself on the intake hot path.
            connection = await session.connection()
            rows = sorted((await connection.execute(self._claim)).all())
            # Published before the delete commits: a crash in between publishes again, which
            # idempotent consumers absorb; a failed publish rolls the delete back.
            await self._bus.publish_many([(r.stream, r.payload) for r in rows])
        self.published += len(rows)
        OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)

    async def run(self) -> None:
        """Relay until cancelled."""
        while True:
            self._wakeup.clear()  # before reading, so a commit during the read is not missed
            try:
                published = await self.relay_once()
                stop_if_cancelled()
                if published == RELAY_BATCH:
                    continue  # more waiting: don't sleep
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox relay failed; retrying")
                await asyncio.sleep(RELAY_BACKOFF_S)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the event being set, and the relay would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELAY_POLL_S):
                    await self._wakeup.wait()
