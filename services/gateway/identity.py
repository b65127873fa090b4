"""Users and API keys: every SQL query about identity (used by the token endpoint and the CLI)."""

from __future__ import annotations

import asyncio
import difflib
import enum
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.departments import DISPATCH, Directory, load_kinds
from services.gateway.sessions import PASSWORD_CHANGED, USER_DISABLED, revoke_user_logins
from shared.areas import Hierarchy
from shared.auth import (
    KEY_ONLY_ROLES,
    ROLES,
    Principal,
    Scope,
    check_new_password,
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


def check_user_role(role: str) -> None:
    """Refuse (422) an unknown role, and the key-only ones: integrators are never users."""
    if role not in ROLES:
        raise HubError(f"unknown role {role!r}: use one of {', '.join(ROLES)}", 422)
    if role in KEY_ONLY_ROLES:
        raise HubError(
            f"a {role} does not sign in with a password: it authenticates with an API key "
            "(cityhub keys add NAME), which sees only what that integrator submitted and owns",
            422,
        )


async def _hash_new_password(password: str) -> str:
    """The argon2 hash of a new password, checked first; hashed in a thread, since argon2 takes
    tens of milliseconds of CPU by design and the event loop serves everyone else meanwhile."""
    check_new_password(password)
    return await asyncio.to_thread(hash_password, password)


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
    check_user_role(role)
    parsed = Scope.parse(scope)
    check_scope(parsed, hierarchy)
    check_department(department or None, role, parsed, hierarchy)
    password_hash = await _hash_new_password(password)
    if await session.scalar(select(ApiKey.id).where(ApiKey.name == username)) is not None:
        # events remember their sender by name: a user and a key must not share one
        raise ConflictError(f"an API key is named {username!r}: choose another user name")
    user = User(
        username=username,
        password_hash=password_hash,
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


@functools.cache
def _stand_in_hash() -> str:
    """A hash to check passwords of unknown users against, so that they take as long to refuse
    as a wrong password does (the time would otherwise tell which user names exist)."""
    return hash_password(secrets.token_hex(16))


async def password_matches(user: User | None, password: str) -> bool:
    """True when `password` is this user's; as slow for no user (argon2 runs in a thread)."""
    stored = user.password_hash if user is not None else _stand_in_hash()
    matches = await asyncio.to_thread(verify_password, stored, password)
    return matches and user is not None


async def authenticate_user(session: AsyncSession, username: str, password: str) -> Principal:
    """The principal for a username and password; 401 otherwise (same message either way), 403
    for an integrator user made before integrators lost password sign-in."""
    user = await session.scalar(select(User).where(User.username == username))
    if not await password_matches(user, password) or user is None or user.disabled:
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


async def get_user(session: AsyncSession, username: str, *, lock: bool = False) -> User:
    """The user named `username` (404 otherwise); `lock`: FOR UPDATE, to change it."""
    query = select(User).where(User.username == username)
    user = await session.scalar(query.with_for_update() if lock else query)
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


async def set_user_disabled(session: AsyncSession, username: str, disabled: bool) -> bool:
    """Disable or enable a user; True when that changed anything (404 for an unknown user).
    Disabling ends the user's sign-ins: enabled again, it signs in afresh."""
    user = await get_user(session, username, lock=True)
    changed = user.disabled != disabled
    user.disabled = disabled
    if disabled:
        await revoke_user_logins(session, username, USER_DISABLED)
    return changed


class Keep(enum.Enum):
    """`update_user`'s marker for a field the change leaves as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class UserChange:
    """What an admin changes about a user; `KEEP` leaves a field as it is."""

    role: str | Keep = KEEP
    scope: str | Keep = KEEP
    department: str | Keep | None = KEEP  # None: no department
    disabled: bool | Keep = KEEP
    password: str | Keep = KEEP


async def update_user(
    session: AsyncSession, hierarchy: Hierarchy, username: str, change: UserChange
) -> tuple[User, bool]:
    """Apply `change` to a user, checked as creation checks (404 unknown, 422 invalid, 409 when
    it would leave no enabled admin); returns the user and whether its sign-ins were ended (it
    was disabled, or got a new password)."""
    # Hashed before the row is locked (on SQLite: before the write lock is taken).
    password_hash = None if change.password is KEEP else await _hash_new_password(change.password)
    user = await get_user(session, username, lock=True)
    role = user.role if change.role is KEEP else change.role
    scope = user.scope if change.scope is KEEP else change.scope
    department = user.department if change.department is KEEP else change.department
    if (change.role, change.scope, change.department) != (KEEP, KEEP, KEEP):
        check_user_role(role)
        parsed = Scope.parse(scope)
        check_scope(parsed, hierarchy)
        check_department(department or None, role, parsed, hierarchy)
        scope = str(parsed)
    disabled = user.disabled if change.disabled is KEEP else change.disabled
    if user.role == "admin" and not user.disabled and (role != "admin" or disabled):
        await _keep_an_admin(session, username)
    user.role, user.scope, user.department = role, scope, department or None
    ended = disabled and not user.disabled
    user.disabled = disabled
    if password_hash is not None:
        user.password_hash = password_hash
    if ended or password_hash is not None:
        reason = USER_DISABLED if ended else PASSWORD_CHANGED
        await revoke_user_logins(session, username, reason)
    return user, ended or password_hash is not None


async def _keep_an_admin(session: AsyncSession, leaving: str) -> None:
    """Refuse (409) to demote or disable the last enabled admin: nobody could undo it over HTTP."""
    others = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == "admin", User.disabled.is_(False), User.username != leaving)
    )
    if not others:
        raise ConflictError(f"{leaving!r} is the last enabled admin: make another user admin first")


async def set_password(session: AsyncSession, username: str, password: str) -> None:
    """Give a user a new password (checked first) and end its sign-ins."""
    password_hash = await _hash_new_password(password)
    user = await get_user(session, username, lock=True)
    user.password_hash = password_hash
    await revoke_user_logins(session, username, PASSWORD_CHANGED)


async def get_api_key(session: AsyncSession, name: str) -> ApiKey:
    """The API key named `name` (404 otherwise)."""
    key = await session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFoundError(f"no API key named {name!r}")
    return key


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
