"""Dead letters: input the hub could not accept, stored with why (all their SQL lives here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.db.models import DeadLetter
from shared.telemetry.metrics import DEAD_LETTERS

Reason = Literal[
    "not_json",  # payload is not JSON (or not UTF-8)
    "bad_shape",  # JSON, but not the documented object
    "bad_value",  # a value is not a finite number (NaN, Infinity, text)
    "implausible_value",  # a number outside its metric's plausible range (sensors/ranges.py)
    "bad_timestamp",  # ts unreadable, without a zone, or before 2000
    "future_timestamp",  # ts too far ahead of the hub's clock
    "oversize",  # payload larger than the limit
    "bad_topic",  # not <root>/sensors/<id>/readings|alarms|status
    "unknown_sensor",  # no sensor registered under that id
    "forbidden_topic",  # embedded broker: not under one of the publisher's sensors (theirs to see)
    "alarm_rejected",  # the alarm's event was refused (e.g. its category was deleted)
    "internal_error",  # a bug: the message could not be evaluated
]
REASONS: tuple[Reason, ...] = get_args(Reason)
MAX_STORED_PAYLOAD = 4096  # bytes of a payload kept in the table
MAX_DETAIL = 500  # characters


def as_text(raw: bytes | str, limit: int) -> str:
    """Printable text for a column: at most `limit` bytes, bad UTF-8 and NUL escaped as \\xNN."""
    text = raw[:limit].decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    return text[:limit].replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


def dead_letter_row(
    *,
    channel: str,
    topic: str,
    payload: bytes,
    reason: Reason,
    detail: str,
    received_at: datetime,
    sensor_id: str | None = None,
    integrator: str | None = None,
) -> dict[str, Any]:
    """The column values of a dead letter, payload truncated."""
    return {
        "channel": channel,
        "topic": as_text(topic, 1000),
        "payload": as_text(payload, MAX_STORED_PAYLOAD),
        "payload_bytes": len(payload),
        "reason": reason,
        "detail": as_text(detail, MAX_DETAIL),
        "sensor_id": sensor_id,
        "integrator": integrator,
        "received_at": received_at,
    }


async def store_dead_letters(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert dead letters (one executemany) in the caller's transaction; counted on /metrics
    once that commits (a batch retried after a failure is counted once)."""
    if rows:
        await session.execute(insert(DeadLetter), rows)
        reasons = Counter(row["reason"] for row in rows)

        def count(_session: Session) -> None:
            for reason, n in reasons.items():
                DEAD_LETTERS.labels(reason).inc(n)

        event.listen(session.sync_session, "after_commit", count, once=True)


async def list_dead_letters(
    session: AsyncSession,
    *,
    integrator: str | None,
    reason: str | None,
    limit: int,
    before: int | None = None,
) -> Sequence[DeadLetter]:
    """Newest first; only one integrator's when `integrator` is given."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if integrator is not None:
        query = query.where(DeadLetter.integrator == integrator)
    if reason is not None:
        query = query.where(DeadLetter.reason == reason)
    if before is not None:
        query = query.where(DeadLetter.id < before)
    return (await session.scalars(query)).all()


async def count_by_reason(session: AsyncSession, *, integrator: str | None) -> dict[str, int]:
    """How many dead letters there are per reason."""
    query = select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason)
    if integrator is not None:
        query = query.where(DeadLetter.integrator == integrator)
    return {reason: count for reason, count in (await session.execute(query)).all()}
