"""`/api/v1/users`: people who sign in, managed by admins (the CLI's `users` commands over HTTP)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.gateway.identity import (
    KEEP,
    UserChange,
    create_user,
    get_user,
    list_users,
    update_user,
)
from shared.auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Principal
from shared.db.models import User
from shared.params import Code
from shared.web import RuntimeDep, SessionDep, forget_user, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["users"], dependencies=[Depends(require_json)])

Admin = Annotated[Principal, Depends(require_roles("admin"))]
# A name that fits a URL path, a Mosquitto password file and an ACL line alike (users and keys
# share one namespace: events remember their sender by name).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
UserRole = Literal["admin", "dispatcher", "field_staff", "manager"]  # never integrator: keys
ScopeText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=80),
    Field(description="city, district:<code> or street:<code>"),
]
Password = Annotated[
    str,
    StringConstraints(max_length=MAX_PASSWORD_LENGTH),
    Field(description=f"At least {MIN_PASSWORD_LENGTH} characters"),
]
# Any stored name (the CLI allows more than the API creates), bounded.
UsernamePath = Annotated[str, Path(min_length=1, max_length=100)]


class UserRead(BaseModel):
    """A user as admins see it (never the password hash)."""

    username: str
    role: str
    scope: str
    department: str | None
    disabled: bool
    created_at: datetime


class UserCreate(BaseModel):
    """A new user; role, scope and department are checked as `cityhub users add` checks them."""

    model_config = ConfigDict(extra="forbid")

    username: Name
    password: Password
    role: UserRole
    scope: ScopeText
    department: Code | None = Field(
        default=None, description="Required for field_staff; must serve the scope"
    )


class UserUpdate(BaseModel):
    """What to change: any of the fields (a new password or `disabled: true` ends the user's
    sign-ins; `department: null` removes it)."""

    model_config = ConfigDict(extra="forbid")

    role: UserRole | None = None
    scope: ScopeText | None = None
    department: Code | None = None
    disabled: bool | None = None
    password: Password | None = None

    @model_validator(mode="after")
    def _null_only_for_department(self) -> Self:
        for name in ("role", "scope", "disabled", "password"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null (leave it out to keep it)")
        return self

    def change(self) -> UserChange:
        """The change for `update_user`: what was sent, the rest kept."""
        given = self.model_fields_set
        return UserChange(
            role=self.role if self.role is not None else KEEP,
            scope=self.scope if self.scope is not None else KEEP,
            department=self.department if "department" in given else KEEP,
            disabled=self.disabled if self.disabled is not None else KEEP,
            password=self.password if self.password is not None else KEEP,
        )


def _read(user: User) -> UserRead:
    return UserRead(
        username=user.username,
        role=user.role,
        scope=user.scope,
        department=user.department,
        disabled=user.disabled,
        created_at=user.created_at,
    )


@router.get("/users")
async def list_all_users(_admin: Admin, session: SessionDep) -> list[UserRead]:
    """Every user by name, disabled ones included (admins)."""
    return [_read(user) for user in await list_users(session)]


@router.post("/users", status_code=201)
async def add_user(
    body: UserCreate, _admin: Admin, session: SessionDep, runtime: RuntimeDep
) -> UserRead:
    """Add a user (admins); 409 when the name is taken by a user or an API key."""
    user = await create_user(
        session,
        runtime.hierarchy,
        username=body.username,
        password=body.password,
        role=body.role,
        scope=body.scope,
        department=body.department,
    )
    return _read(user)


@router.get("/users/{username}")
async def read_user(username: UsernamePath, _admin: Admin, session: SessionDep) -> UserRead:
    """One user (admins)."""
    return _read(await get_user(session, username))


@router.patch("/users/{username}")
async def change_user(
    username: UsernamePath, body: UserUpdate, _admin: Admin, runtime: RuntimeDep
) -> UserRead:
    """Change a user's role, scope, department, password or `disabled` (admins). Disabling or a
    new password ends the user's sign-ins: refresh tokens fail at once, access tokens and open
    websockets within a second. 409 for demoting or disabling the last enabled admin."""
    # Its own transaction: the cached answers about the user are dropped after the commit.
    async with runtime.sessions() as session, session.begin():
        user, _ended = await update_user(session, runtime.hierarchy, username, body.change())
    forget_user(runtime, username)
    return _read(user)
