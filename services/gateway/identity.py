"""Users and API keys: every SQL query about identity (used by the token endpoint and the CLI)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.departments import DISPATCH, Directory, load_kinds
from shared.areas import Hierarchy
from shared.auth import (
    KEY_ONLY_ROLES,
    ROLES,
    Principal,
    Scope,
    hash_api_key,
    hash_password,
    new_api_key,
    verify_password,
)
from shared.db.models import ApiKey, User
from shared.errors import ConflictError, HubError, NotFoundError
from shared.mqtt_passwords import mosquitto_hash


def check_scope(scope: Scope, hierarchy: Hierarchy) -> None:
    """Refuse a scope naming an area that is not in the hierarchy at that level."""
    if scope.code is None:
        return
    area = hierarchy.get(scope.code)
    if area is None or area.level != scope.level:
        raise HubError(f"scope {scope}: no {scope.level} with code {scope.code!r}", 422)


def scope_place(scope: Scope, hierarchy: Hierarchy) -> tuple[str | None, str | None]:
    """The (district, street) a scope covers: both None for the city, no street for a district."""
    if scope.level == "city":
        return None, None
    if scope.level == "district":
        return scope.code, None
    street = hierarchy.get(scope.code or "")
    return (street.parent if street else None), scope.code


def check_department(department: str | None, role: str, scope: Scope, hierarchy: Hierarchy) -> None:
    """Refuse a department that is not a handling department of the directory, or that does not
    serve the user's whole scope (its staff would never see a task there): the same rule as
    dispatching a ticket to it (`Directory.serves`). Field staff need a department."""
    if department is None:
        if role == "field_staff":
            raise HubError("field staff need a department (--department)", 422)
        return
    directory = Directory(hierarchy, load_kinds())
    found = directory.get(department)
    if found is None or not directory.handles(department):
        codes = [d.code for d in directory if d.group != DISPATCH]
        close = difflib.get_close_matches(department, codes, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise HubError(
            f"no department {department!r}{hint}: codes are a city bureau (cgj), its district "
            "counterpart (cgj@500103) or a street office (office@500103001); "
            "GET /api/v1/departments lists them",
            422,
        )
    district, street = scope_place(scope, hierarchy)
    if not directory.serves(department, district, street):
        serving = directory.serving(district, street)
        fitting = [d.code for d in serving if d.kind == found.kind] or [d.code for d in serving[:3]]
        raise HubError(
            f"department {department} ({found.name}) serves {found.level} {found.area} only, "
            f"not scope {scope}: use {' or '.join(fitting)}, or give the user a scope inside "
            f"{found.area}",
            422,
        )


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
    """Add a user; the role, scope, department and password are checked first."""
    if role not in ROLES:
        raise HubError(f"unknown role {role!r}: use one of {', '.join(ROLES)}", 422)
    if role in KEY_ONLY_ROLES:
        raise HubError(
            f"a {role} does not sign in with a password: it authenticates with an API key "
            "(cityhub keys add NAME), which sees only what that integrator submitted and owns",
            422,
        )
    parsed = Scope.parse(scope)
    check_scope(parsed, hierarchy)
    check_department(department or None, role, parsed, hierarchy)
    if len(password) < 8:
        raise HubError("password must have at least 8 characters", 422)
    if await session.scalar(select(ApiKey.id).where(ApiKey.name == username)) is not None:
        # events remember their sender by name: a user and a key must not share one
        raise ConflictError(f"an API key is named {username!r}: choose another user name")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        scope=str(parsed),
        department=department or None,
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
    """The principal for a username and password; 401 otherwise (same message either way), 403
    for an integrator user made before integrators lost password sign-in."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled or not verify_password(user.password_hash, password):
        raise HubError("wrong username or password", 401)
    if user.role in KEY_ONLY_ROLES:
        raise HubError(
            f"a {user.role} authenticates with its API key (X-API-Key), not a password", 403
        )
    return Principal(user.username, user.role, Scope.parse(user.scope), user.department)  # type: ignore[arg-type]


async def create_api_key(session: AsyncSession, name: str) -> str:
    """Add an integrator key named `name`; returns the key (its only appearance in clear)."""
    if await session.scalar(select(User.id).where(User.username == name)) is not None:
        # events remember their sender by name: a user and a key must not share one
        raise ConflictError(f"a user is named {name!r}: choose another key name")
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


async def set_user_disabled(session: AsyncSession, username: str, disabled: bool) -> bool:
    """Disable or enable a user; True when that changed anything (404 for an unknown user)."""
    user = await session.scalar(select(User).where(User.username == username).with_for_update())
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    changed = user.disabled != disabled
    user.disabled = disabled
    return changed


async def list_api_keys(session: AsyncSession) -> Sequence[ApiKey]:
    """All API keys by name, revoked ones included."""
    return (await session.scalars(select(ApiKey).order_by(ApiKey.name))).all()


async def revoke_api_key(session: AsyncSession, name: str) -> datetime | None:
    """Revoke the key named `name` from now on; the earlier revocation time when it already was
    (404 for an unknown key)."""
    key = await session.scalar(select(ApiKey).where(ApiKey.name == name).with_for_update())
    if key is None:
        raise NotFoundError(f"no API key named {name!r}")
    if key.revoked_at is not None:
        return key.revoked_at
    key.revoked_at = datetime.now(UTC)
    return None
