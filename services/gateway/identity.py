"""Users and API keys: every SQL query about identity (used by the token endpoint and the CLI)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.areas import Hierarchy
from shared.auth import (
    ROLES,
    Principal,
    Scope,
    hash_api_key,
    hash_password,
    new_api_key,
    verify_password,
)
from shared.db.models import ApiKey, User
from shared.errors import ConflictError, HubError
from shared.mqtt_passwords import mosquitto_hash


def check_scope(scope: Scope, hierarchy: Hierarchy) -> None:
    """Refuse a scope naming an area that is not in the hierarchy at that level."""
    if scope.code is None:
        return
    area = hierarchy.get(scope.code)
    if area is None or area.level != scope.level:
        raise HubError(f"scope {scope}: no {scope.level} with code {scope.code!r}", 422)


async def create_user(
    session: AsyncSession,
    hierarchy: Hierarchy,
    *,
    username: str,
    password: str,
    role: str,
    scope: str,
    department: str | None = None,
) -> User:
    """Add a user; the role, scope and password are checked first."""
    if role not in ROLES:
        raise HubError(f"unknown role {role!r}: use one of {', '.join(ROLES)}", 422)
    parsed = Scope.parse(scope)
    check_scope(parsed, hierarchy)
    if role == "field_staff" and not department:
        raise HubError("field staff need a department (--department)", 422)
    if len(password) < 8:
        raise HubError("password must have at least 8 characters", 422)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        scope=str(parsed),
        department=department,
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise ConflictError(f"user {username!r} exists already") from exc
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    """All users by name."""
    return (await session.scalars(select(User).order_by(User.username))).all()


async def authenticate_user(session: AsyncSession, username: str, password: str) -> Principal:
    """The principal for a username and password; 401 otherwise (same message either way)."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled or not verify_password(user.password_hash, password):
        raise HubError("wrong username or password", 401)
    return Principal(user.username, user.role, Scope.parse(user.scope), user.department)  # type: ignore[arg-type]


async def create_api_key(session: AsyncSession, name: str) -> str:
    """Add an integrator key named `name`; returns the key (its only appearance in clear)."""
    key = new_api_key()
    try:
        async with session.begin_nested():
            session.add(
                ApiKey(
                    name=name, key_hash=hash_api_key(key), mqtt_password_hash=mosquitto_hash(key)
                )
            )
    except IntegrityError as exc:
        raise ConflictError(f"API key {name!r} exists already") from exc
    return key


async def replace_api_key(session: AsyncSession, name: str) -> str:
    """Drop the key named `name` (if any) and create a fresh one under that name."""
    await session.execute(delete(ApiKey).where(ApiKey.name == name))
    return await create_api_key(session, name)
