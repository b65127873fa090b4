"""Sign-in sessions ("logins") and their rotating refresh tokens: every query about them.

A login is one sign-in of a user. Its refresh tokens are opaque, stored as SHA-256, and used once:
a refresh marks the token used and issues the next one in the same login. A used token presented
again means two parties hold the chain (one of them stole it), so the whole login is revoked.
See docs/decisions/0014-sign-in-sessions.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import CursorResult, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.gateway.login_limits import LoginLimits, prune_attempts
from shared.auth import KEY_ONLY_ROLES, Principal, Scope, hash_api_key, new_refresh_token
from shared.db.models import Login, RefreshToken, User
from shared.db.retention import delete_older
from shared.errors import HubError
from shared.runtime import Runtime

logger = logging.getLogger(__name__)

# Why a login was revoked (logins.revoke_reason).
LOGGED_OUT = "logout"
REFRESH_REUSED = "refresh_reused"
PASSWORD_CHANGED = "password_changed"
USER_DISABLED = "user_disabled"


@dataclass(frozen=True)
class Issued:
    """A login's current refresh token, in clear (its only appearance), and when it expires."""

    login: uuid.UUID
    refresh_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Rotation:
    """What a refresh gives: the user as stored now and the login's next refresh token."""

    principal: Principal
    issued: Issued


class RefreshReusedError(HubError):
    """A used refresh token came back: its login is revoked (committed before this is raised)."""

    def __init__(self, login: uuid.UUID) -> None:
        super().__init__(
            "this refresh token was already used: its sign-in is ended, sign in again",
            401,
        )
        self.login = login


def _rowcount(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


def _issue(session: AsyncSession, login: uuid.UUID, ttl_s: int, now: datetime) -> Issued:
    token = new_refresh_token()
    expires_at = now + timedelta(seconds=ttl_s)
    session.add(
        RefreshToken(
            token_hash=hash_api_key(token), login_id=login, issued_at=now, expires_at=expires_at
        )
    )
    return Issued(login, token, expires_at)


async def open_login(
    session: AsyncSession, username: str, ttl_s: int, now: datetime | None = None
) -> Issued:
    """Start a login for a user who just proved who they are; its first refresh token."""
    now = now or datetime.now(UTC)
    login = Login(id=uuid.uuid4(), username=username, created_at=now)
    session.add(login)
    await session.flush()  # the login row before its token's foreign key
    return _issue(session, login.id, ttl_s, now)


async def rotate(
    sessions: async_sessionmaker[AsyncSession], token: str, ttl_s: int, now: datetime | None = None
) -> Rotation:
    """Spend a refresh token for the next one in its login (one transaction); 401 when it is
    unknown, expired, its login revoked or its user unable to sign in. A token already used
    revokes its login first (committed) and raises `RefreshReusedError`."""
    now = now or datetime.now(UTC)
    digest = hash_api_key(token)
    async with sessions() as session, session.begin():
        row = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
        if row is None:
            raise HubError("unknown refresh token: sign in again", 401)
        # The conditional UPDATE is the lock: of two refreshes with one token (PostgreSQL waits
        # on the row, SQLite runs one write transaction at a time) only one finds it unused.
        spent = await session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
        )
        reused = _rowcount(spent) == 0
        if reused:
            await revoke_login(session, row.login_id, REFRESH_REUSED, now)
        else:
            return await _next(session, row, ttl_s, now)
    raise RefreshReusedError(row.login_id)


async def _next(session: AsyncSession, row: RefreshToken, ttl_s: int, now: datetime) -> Rotation:
    """The checks after a refresh token was spent, and the login's next token."""
    login = await session.get(Login, row.login_id)
    if login is None or login.revoked_at is not None:
        raise HubError("this sign-in was ended (signed out or revoked): sign in again", 401)
    if row.expires_at <= now:
        raise HubError("this refresh token has expired: sign in again", 401)
    user = await session.scalar(select(User).where(User.username == login.username))
    if user is None or user.disabled or user.role in KEY_ONLY_ROLES:
        raise HubError(f"user {login.username!r} is disabled or gone: sign in again", 401)
    principal = Principal(
        user.username,
        user.role,  # type: ignore[arg-type]  # checked on the way in
        Scope.parse(user.scope),
        user.department,
        login=str(login.id),
    )
    return Rotation(principal, _issue(session, login.id, ttl_s, now))


async def login_of_refresh_token(session: AsyncSession, token: str) -> uuid.UUID | None:
    """The login a refresh token (used or not) belongs to; None for an unknown one."""
    return await session.scalar(
        select(RefreshToken.login_id).where(RefreshToken.token_hash == hash_api_key(token))
    )


async def revoke_login(
    session: AsyncSession, login: uuid.UUID, reason: str, now: datetime | None = None
) -> bool:
    """End a login (its refresh tokens fail at once, its access tokens within a second); True
    when it was still open."""
    result = await session.execute(
        update(Login)
        .where(Login.id == login, Login.revoked_at.is_(None))
        .values(revoked_at=now or datetime.now(UTC), revoke_reason=reason)
    )
    return _rowcount(result) > 0


async def revoke_user_logins(
    session: AsyncSession, username: str, reason: str, now: datetime | None = None
) -> int:
    """End every open login of a user; how many."""
    result = await session.execute(
        update(Login)
        .where(Login.username == username, Login.revoked_at.is_(None))
        .values(revoked_at=now or datetime.now(UTC), revoke_reason=reason)
    )
    return _rowcount(result)


async def prune_logins(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Delete expired refresh tokens (a refresh refuses them anyway), then the logins left
    without any (their last access token expired long before); how many rows went."""
    deleted = await delete_older(sessions, RefreshToken.expires_at, now)
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(Login)
            .where(~exists().where(RefreshToken.login_id == Login.id))
            .execution_options(synchronize_session=False)
        )
    return deleted + _rowcount(result)


SIGN_IN_PRUNE_EVERY_S = 3600.0


async def sign_in_upkeep(runtime: Runtime) -> None:
    """Hourly: delete expired refresh tokens, logins left without any, and failed sign-ins
    past the window (the tables would grow for ever). Every replica may run it: deletes of
    rows already gone change nothing."""
    limits = LoginLimits.of(runtime.settings)
    while True:
        await asyncio.sleep(SIGN_IN_PRUNE_EVERY_S)  # not at start-up: it is busy enough
        try:
            now = datetime.now(UTC)
            await prune_logins(runtime.sessions, now)
            await prune_attempts(runtime.sessions, limits, now)
        except Exception:
            logger.exception("pruning sign-in sessions failed; trying again later")
