"""When a held event is tried again, and how its failure is told (pure).

A held event is one dispatch could not turn into a ticket (a poison event). Retrying it costs a
transaction, so the wait doubles with every failure: a minute, two, four… up to four hours. A
fix (a corrected row, a new release) is picked up by that retry, by the sweep at process start,
or at once through `POST /api/v1/held-events/{id}/retry`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FIRST_RETRY_S = 60.0  # wait after the first failure (seconds)
MAX_RETRY_S = 4 * 3600.0  # the wait stops doubling here (seconds)
REASON_MAX_CHARS = 1_000  # the stored reason is cut to this length


def retry_delay(attempts: int) -> timedelta:
    """The wait before the next try of an event that has failed `attempts` times (≥ 1)."""
    doublings = min(max(attempts, 1) - 1, 32)  # 2**32 minutes is far past the cap anyway
    return timedelta(seconds=min(FIRST_RETRY_S * 2**doublings, MAX_RETRY_S))


def retry_at(now: datetime, attempts: int) -> datetime:
    """When an event that has now failed `attempts` times is due again."""
    return now + retry_delay(attempts)


def reason_of(exc: BaseException) -> str:
    """The failure as admins read it: exception type and message, bounded in length."""
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return bounded(text)


def bounded(reason: str) -> str:
    """A reason cut to REASON_MAX_CHARS (with an ellipsis when cut)."""
    if len(reason) <= REASON_MAX_CHARS:
        return reason
    return reason[: REASON_MAX_CHARS - 1] + "…"
