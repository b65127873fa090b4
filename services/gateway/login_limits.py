"""Failed sign-ins, limited per user name and per client address (decision 0014).

Attempts live in the database, so every gateway replica counts the same ones. An attempt is
written (and committed) *before* the password is checked and counted after: of any number of
concurrent guesses, the last to count sees all the others, so no more than the limit are ever
checked in a window, however many arrive at once. A success deletes its own rows and the user
name's earlier failures; every other outcome leaves its rows as failures. Keys are SHA-256
digests: people type passwords into the user name field, and those must not rest here in clear.
The limit applies to every user name alike, so a 429 tells nothing about which ones exist.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import LoginAttempt
from shared.db.retention import delete_older
from shared.errors import HubError
from shared.settings import Settings


@dataclass(frozen=True)
class LoginLimits:
    """How many failed sign-ins a user name and a client address may have within `window`."""

    window: timedelta
    per_user: int
    per_address: int

    @classmethod
    def of(cls, settings: Settings) -> LoginLimits:
        """The limits a hub is configured with (`CITYHUB_LOGIN_*`)."""
        return cls(
            timedelta(seconds=settings.login_window_s),
            settings.login_failures_per_user,
            settings.login_failures_per_address,
        )


class LoginLimitedError(HubError):
    """Too many failed sign-ins: answered 429 with `Retry-After` (seconds)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many failed sign-ins: try again in {retry_after_s} s", status_code=429
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt admitted by the limits: its rows, and the user name's key."""

    ids: tuple[int, ...]
    user_key: str


def attempt_key(kind: Literal["user", "address"], value: str) -> str:
    """The key attempts are counted under: a digest of what they are counted by."""
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()


def retry_after_s(
    earlier: Sequence[datetime], limit: int, window: timedelta, now: datetime
) -> int | None:
    """None when one more attempt fits beside `earlier` (the attempts within the window);
    otherwise the whole seconds until enough of them have left the window that it does."""
    if len(earlier) < limit:
        return None
    # One more fits once at most limit - 1 remain: the (len - limit + 1)th oldest must go.
    leaving = sorted(earlier)[len(earlier) - limit]
    return max(1, math.ceil((leaving + window - now).total_seconds()))


async def begin_attempt(
    sessions: async_sessionmaker[AsyncSession],
    limits: LoginLimits,
    username: str,
    address: str | None,
    now: datetime | None = None,
) -> Attempt:
    """Record a sign-in attempt for a user name (and client address, when known) and admit it,
    or take it back and raise `LoginLimitedError` when either is over its limit."""
    now = now or datetime.now(UTC)
    counted = [(attempt_key("user", username), limits.per_user)]
    if address:
        counted.append((attempt_key("address", address), limits.per_address))
    rows = [LoginAttempt(key=key, attempted_at=now) for key, _limit in counted]
    async with sessions() as session, session.begin():
        session.add_all(rows)
    ids = tuple(row.id for row in rows)
    waits: list[int] = []
    async with sessions() as session:  # after the commit: see every attempt committed so far
        for key, limit in counted:
            found = await session.execute(
                select(LoginAttempt.id, LoginAttempt.attempted_at).where(
                    LoginAttempt.key == key, LoginAttempt.attempted_at > now - limits.window
                )
            )
            earlier = [at for row_id, at in found if row_id not in ids]
            wait = retry_after_s(earlier, limit, limits.window, now)
            if wait is not None:
                waits.append(wait)
    if waits:
        async with sessions() as session, session.begin():
            await session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(ids)))
        raise LoginLimitedError(max(waits))
    return Attempt(ids, counted[0][0])


async def succeeded(session: AsyncSession, attempt: Attempt) -> None:
    """The attempt proved right: delete it, and the user name's earlier failures (not the
    address's: one valid account must not reset the count of guesses at others)."""
    await session.execute(
        delete(LoginAttempt).where(
            (LoginAttempt.id.in_(attempt.ids)) | (LoginAttempt.key == attempt.user_key)
        )
    )


async def prune_attempts(
    sessions: async_sessionmaker[AsyncSession], limits: LoginLimits, now: datetime
) -> int:
    """Delete attempts older than the window (they count no more); how many."""
    return await delete_older(sessions, LoginAttempt.attempted_at, now - limits.window)
