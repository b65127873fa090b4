"""Sign-in: `/auth/token` (password → access and refresh token), `/auth/refresh` (rotation),
`/auth/logout` and `/auth/password` (docs/decisions/0014-sign-in-sessions.md).

These routes manage their own transactions instead of the request's session: a reused refresh
token must stay revoked although the answer is an error, an attempt must be counted before its
password is checked, and this process's credential cache is cleared only after the commit.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from services.gateway.identity import authenticate_user, get_user, password_matches, set_password
from services.gateway.login_limits import (
    Attempt,
    LoginLimitedError,
    LoginLimits,
    begin_attempt,
    succeeded,
)
from services.gateway.sessions import (
    LOGGED_OUT,
    Issued,
    RefreshReusedError,
    login_of_refresh_token,
    open_login,
    revoke_login,
    rotate,
)
from shared.auth import MIN_PASSWORD_LENGTH, Principal, check_new_password, issue_token
from shared.errors import HubError
from shared.runtime import Runtime
from shared.web import JSON_TYPES, RuntimeDep, authenticate, forget_login, forget_user

router = APIRouter(tags=["auth"])

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FIELD = 1_000  # characters of a token or password field (the longest password allowed)


class Token(BaseModel):
    """An OAuth2 bearer token, with the refresh token that gets the next one."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(
        description="Opaque; good for one `POST /auth/refresh`, which returns the next one"
    )
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid")
    role: str
    scope: str


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Too many failed sign-ins for this user name or client address: "
        "try again after `Retry-After` seconds",
        "headers": RETRY_AFTER,
    }
}
BEARER: dict[str, Any] = {"security": [{"bearer": []}]}


def _fields_body(fields: dict[str, str], *, required: bool) -> dict[str, Any]:
    """An OpenAPI request body of string fields, as a form or as JSON."""
    schema = {
        "type": "object",
        "properties": {
            name: {"type": "string", "minLength": 1, "maxLength": MAX_FIELD, "description": text}
            for name, text in fields.items()
        },
        "required": list(fields),
    }
    content = {media: {"schema": schema} for media in (FORM_TYPES[0], "application/json")}
    return {"requestBody": {"required": required, "content": content}}


async def _read_fields(
    request: Request, names: tuple[str, ...], *, required: bool = True
) -> dict[str, str] | None:
    """String fields from a form or a JSON object (None: no body, where one is optional);
    400 for unparsable JSON, 415 for another media type, 422 for a missing or empty field."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if not body and not required:
        return None
    data: Any
    if media in JSON_TYPES:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise HubError(f"the body is not JSON: {exc}", 400) from exc
        if not isinstance(data, dict):
            raise HubError("send a JSON object", 422)
    elif media in FORM_TYPES:
        data = await request.form()
    else:
        raise HubError(f"unsupported content type {media or 'none'!r}: send a form or JSON", 415)
    fields: dict[str, str] = {}
    for name in names:
        value = data.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD or not _encodable(value):
            raise HubError(f"{name}: a string of 1 to {MAX_FIELD} characters is required", 422)
        fields[name] = value
    return fields


def _encodable(text: str) -> bool:
    # JSON may carry lone surrogates, which no hash (nor database) can take as UTF-8.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _client_address(request: Request) -> str | None:
    # uvicorn puts the proxy's X-Forwarded-For here for FORWARDED_ALLOW_IPS (decision 0014).
    return request.client.host if request.client else None


def _too_many(exc: LoginLimitedError) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.message},
        status_code=429,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def _token(runtime: Runtime, principal: Principal, issued: Issued, now: datetime) -> Token:
    ttl = runtime.settings.token_ttl_s
    access = issue_token(principal, runtime.jwt_secret, ttl, now=now, login=str(issued.login))
    return Token(
        access_token=access,
        expires_in=ttl,
        refresh_token=issued.refresh_token,
        refresh_expires_in=int((issued.expires_at - now).total_seconds()),
        role=principal.role,
        scope=str(principal.scope),
    )


async def _signed_in(runtime: Runtime, principal: Principal, attempt: Attempt) -> Token:
    """Open a login for a user who just proved who they are; settle the attempt."""
    now = datetime.now(UTC)
    async with runtime.sessions() as session, session.begin():
        issued = await open_login(session, principal.subject, runtime.settings.refresh_ttl_s, now)
        await succeeded(session, attempt)
    return _token(runtime, principal, issued, now)


@router.post("/auth/token", response_model=Token, responses=LIMITED)
async def token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    runtime: RuntimeDep,
) -> Token | JSONResponse:
    """Sign in (OAuth2 password form): an access token and a refresh token. 401 alike for an
    unknown user and a wrong password; 429 with `Retry-After` after too many failures for the
    user name or the client address (counted whether or not the user exists)."""
    limits = LoginLimits.of(runtime.settings)
    try:
        attempt = await begin_attempt(
            runtime.sessions, limits, form.username, _client_address(request)
        )
    except LoginLimitedError as exc:
        return _too_many(exc)
    async with runtime.sessions() as session:
        principal = await authenticate_user(session, form.username, form.password)
    return await _signed_in(runtime, principal, attempt)


@router.post(
    "/auth/refresh",
    response_model=Token,
    responses={401: {"description": "The refresh token is unknown, expired, used or revoked"}},
    openapi_extra=_fields_body({"refresh_token": "The last refresh token issued"}, required=True),
)
async def refresh(request: Request, runtime: RuntimeDep) -> Token:
    """A new access token and a new refresh token for the last refresh token (form or JSON
    `refresh_token`); that one stops working. Presenting a used one again ends its sign-in."""
    fields = await _read_fields(request, ("refresh_token",))
    assert fields is not None
    now = datetime.now(UTC)
    try:
        rotation = await rotate(
            runtime.sessions, fields["refresh_token"], runtime.settings.refresh_ttl_s, now
        )
    except RefreshReusedError as exc:
        forget_login(runtime, str(exc.login))
        raise
    return _token(runtime, rotation.principal, rotation.issued, now)


@router.post(
    "/auth/logout",
    status_code=204,
    openapi_extra=BEARER
    | _fields_body(
        {"refresh_token": "Its sign-in is ended (instead of the bearer's)"}, required=False
    ),
)
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    """End the current sign-in: the one of the `refresh_token` sent (form or JSON), else the
    bearer token's. Its refresh tokens fail at once, its access tokens within a second."""
    fields = await _read_fields(request, ("refresh_token",), required=False)
    if fields is not None:
        async with runtime.sessions() as session, session.begin():
            login = await login_of_refresh_token(session, fields["refresh_token"])
            if login is None:
                raise HubError("unknown refresh token", 401)
            await revoke_login(session, login, LOGGED_OUT)
    else:
        principal = await authenticate(request)
        if principal.via != "token":
            raise HubError("an API key has no sign-in to end (admins revoke keys)", 403)
        if principal.login is None:  # a token from before sign-in sessions: nothing to end
            return Response(status_code=204)
        login = uuid.UUID(principal.login)  # checked by `authenticate`
        async with runtime.sessions() as session, session.begin():
            await revoke_login(session, login, LOGGED_OUT)
    forget_login(runtime, str(login))
    return Response(status_code=204)


@router.post(
    "/auth/password",
    response_model=Token,
    responses={
        **LIMITED,
        403: {"description": "The current password is wrong, or the caller has no password"},
        422: {"description": f"The new password is shorter than {MIN_PASSWORD_LENGTH} characters"},
    },
    openapi_extra=BEARER
    | _fields_body(
        {"current_password": "The password now", "new_password": "At least 10 characters"},
        required=True,
    ),
)
async def change_password(request: Request, runtime: RuntimeDep) -> Token | JSONResponse:
    """Change the signed-in user's password (form or JSON `current_password`, `new_password`).
    Every sign-in of the user ends; the answer is a fresh one for the caller. A wrong current
    password is 403 (the bearer token is fine) and counts as a failed sign-in."""
    principal = await authenticate(request)
    if principal.via != "token":
        raise HubError("an API key has no password", 403)
    fields = await _read_fields(request, ("current_password", "new_password"))
    assert fields is not None
    check_new_password(fields["new_password"])
    limits = LoginLimits.of(runtime.settings)
    try:
        attempt = await begin_attempt(
            runtime.sessions, limits, principal.subject, _client_address(request)
        )
    except LoginLimitedError as exc:
        return _too_many(exc)
    async with runtime.sessions() as session:
        user = await get_user(session, principal.subject)
    if not await password_matches(user, fields["current_password"]):
        raise HubError("the current password is wrong", 403)
    async with runtime.sessions() as session, session.begin():
        await set_password(session, principal.subject, fields["new_password"])
    forget_user(runtime, principal.subject)
    return await _signed_in(runtime, principal, attempt)
