"""`POST /auth/token`: exchange a username and password for a short-lived JWT."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from services.gateway.identity import authenticate_user
from shared.auth import issue_token
from shared.web import RuntimeDep, SessionDep

router = APIRouter(tags=["auth"])


class Token(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str
    scope: str


@router.post("/auth/token")
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    runtime: RuntimeDep,
) -> Token:
    """Sign in (OAuth2 password form) and get a bearer token."""
    principal = await authenticate_user(session, form.username, form.password)
    ttl = runtime.settings.token_ttl_s
    return Token(
        access_token=issue_token(principal, runtime.jwt_secret, ttl),
        expires_in=ttl,
        role=principal.role,
        scope=str(principal.scope),
    )
