"""Sign-in sessions: refresh tokens rotate, a reused one ends its whole sign-in, two refreshes
with one token never both succeed, sign-out and a new password end sign-ins at once, and the
websocket's checks (`principal_for_token`, `still_signed_in`) follow all of it."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select, update

from services.gateway.login_limits import LoginLimits, prune_attempts
from services.gateway.sessions import prune_logins
from shared.auth import Principal
from shared.db.models import Login, LoginAttempt, RefreshToken
from shared.errors import HubError
from shared.settings import Settings
from shared.web import principal_for_token, still_signed_in
from tests.services.gateway.sign_in import Hub, bearer, hub_with_users
from tests.support.apps import PASSWORD


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with hub_with_users(settings) as running:
        yield running


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _revoke_reason(hub: Hub, refresh_token: str) -> str | None:
    """Why the sign-in of a refresh token was ended (None while it is not)."""
    async with hub.runtime.sessions() as session:
        return await session.scalar(
            select(Login.revoke_reason)
            .join(RefreshToken, RefreshToken.login_id == Login.id)
            .where(RefreshToken.token_hash == _digest(refresh_token))
        )


async def test_sign_in_gives_a_refresh_token_stored_only_hashed(hub: Hub) -> None:
    tokens = await hub.sign_in("ana")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("chr_") and len(tokens["refresh_token"]) > 40
    assert tokens["refresh_expires_in"] == hub.settings.refresh_ttl_s
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    async with hub.runtime.sessions() as session:
        login = await session.get(Login, uuid.UUID(claims["sid"]))
        stored = (await session.scalars(select(RefreshToken.token_hash))).all()
    assert login is not None and login.username == "ana" and login.revoked_at is None
    assert stored == [_digest(tokens["refresh_token"])]  # never the token itself
    assert await hub.status(tokens) == 200


async def test_refresh_rotates_and_the_old_token_stops_working(hub: Hub) -> None:
    first = await hub.sign_in("ana")
    reply = await hub.refresh(first["refresh_token"])
    assert reply.status_code == 200, reply.text
    second = reply.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (second["role"], second["scope"]) == ("dispatcher", "district:500103")
    assert await hub.status(second) == 200
    # JSON works as well as a form, and the chain goes on.
    third = await hub.refresh(second["refresh_token"], as_json=True)
    assert third.status_code == 200, third.text
    assert await hub.status(third.json()) == 200
    # The same sign-in all along.
    sids = {
        jwt.decode(t["access_token"], options={"verify_signature": False})["sid"]
        for t in (first, second, third.json())
    }
    assert len(sids) == 1


async def test_a_reused_refresh_token_ends_the_whole_sign_in(hub: Hub) -> None:
    first = await hub.sign_in("ana")
    other = await hub.sign_in("ana")  # another device of the same user
    second = (await hub.refresh(first["refresh_token"])).json()
    third = (await hub.refresh(second["refresh_token"])).json()
    assert await hub.status(third) == 200

    stolen = await hub.refresh(first["refresh_token"])  # used already: someone kept a copy
    assert stolen.status_code == 401 and "already used" in stolen.json()["detail"]
    assert await _revoke_reason(hub, first["refresh_token"]) == "refresh_reused"
    # Every token of that sign-in fails from now on: the newest refresh token at once, and the
    # access tokens at once in this process (the cache entry was dropped).
    assert (await hub.refresh(third["refresh_token"])).status_code == 401
    assert await hub.status(third) == 401
    assert await hub.status(first) == 401
    # The other sign-in is untouched.
    assert await hub.status(other) == 200
    assert (await hub.refresh(other["refresh_token"])).status_code == 200


async def test_two_refreshes_with_one_token_never_both_succeed(hub: Hub) -> None:
    tokens = await hub.sign_in("ana")
    replies = await asyncio.gather(*(hub.refresh(tokens["refresh_token"]) for _ in range(4)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 401, 401, 401], [r.text for r in replies]
    # The others were reuse: the sign-in is over, the winner's new tokens with it.
    winner = next(r.json() for r in replies if r.status_code == 200)
    assert (await hub.refresh(winner["refresh_token"])).status_code == 401
    assert await hub.status(winner) == 401


async def test_unknown_and_expired_refresh_tokens_are_refused(hub: Hub) -> None:
    assert (await hub.refresh("chr_nothing-like-it")).status_code == 401
    tokens = await hub.sign_in("ana")
    async with hub.runtime.sessions() as session, session.begin():
        await session.execute(
            update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = await hub.refresh(tokens["refresh_token"])
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert await _revoke_reason(hub, tokens["refresh_token"]) is None  # not a theft


async def test_refresh_requests_are_checked(hub: Hub) -> None:
    missing = await hub.client.post("/auth/refresh", data={"other": "x"})
    assert missing.status_code == 422
    empty = await hub.client.post("/auth/refresh", json={"refresh_token": ""})
    assert empty.status_code == 422
    number = await hub.client.post("/auth/refresh", json={"refresh_token": 7})
    assert number.status_code == 422
    listed = await hub.client.post("/auth/refresh", json=["refresh_token"])
    assert listed.status_code == 422
    broken = await hub.client.post(
        "/auth/refresh", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    text = await hub.client.post(
        "/auth/refresh", content=b"chr_x", headers={"content-type": "text/plain"}
    )
    assert text.status_code == 415


async def test_logout_ends_the_current_sign_in_only(hub: Hub) -> None:
    current = await hub.sign_in("ana")
    other = await hub.sign_in("ana")
    reply = await hub.client.post("/auth/logout", headers=bearer(current))
    assert reply.status_code == 204
    assert await hub.status(current) == 401
    assert (await hub.refresh(current["refresh_token"])).status_code == 401
    assert await _revoke_reason(hub, current["refresh_token"]) == "logout"
    assert await hub.status(other) == 200
    # With the refresh token alone (its access token may have expired), as JSON or a form.
    by_refresh = await hub.client.post(
        "/auth/logout", json={"refresh_token": other["refresh_token"]}
    )
    assert by_refresh.status_code == 204
    assert await hub.status(other) == 401
    assert (await hub.refresh(other["refresh_token"])).status_code == 401
    # Nothing to end: no credentials, an unknown refresh token, an API key.
    assert (await hub.client.post("/auth/logout")).status_code == 401
    unknown = await hub.client.post("/auth/logout", data={"refresh_token": "chr_unknown"})
    assert unknown.status_code == 401
    keyed = await hub.client.post("/auth/logout", headers={"X-API-Key": hub.crm_key})
    assert keyed.status_code == 403


async def test_a_new_password_ends_every_sign_in_and_gives_a_fresh_one(hub: Hub) -> None:
    phone = await hub.sign_in("ana")
    screen = await hub.sign_in("ana")
    new = "a-much-better-passphrase"

    async def change(current: str, new_password: str, *, as_json: bool = False) -> int:
        fields = {"current_password": current, "new_password": new_password}
        if as_json:
            reply = await hub.client.post("/auth/password", json=fields, headers=bearer(phone))
        else:
            reply = await hub.client.post("/auth/password", data=fields, headers=bearer(phone))
        return reply.status_code

    assert await change(PASSWORD, "too-short") == 422  # 9 characters
    assert await change("not-the-password", new) == 403
    assert await hub.status(phone) == 200  # refusals change nothing
    reply = await hub.client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=bearer(phone),
    )
    assert reply.status_code == 200, reply.text
    fresh = reply.json()
    for ended in (phone, screen):
        assert await hub.status(ended) == 401
        assert (await hub.refresh(ended["refresh_token"])).status_code == 401
    assert await _revoke_reason(hub, screen["refresh_token"]) == "password_changed"
    assert await hub.status(fresh) == 200
    assert (await hub.refresh(fresh["refresh_token"])).status_code == 200
    old = await hub.client.post("/auth/token", data={"username": "ana", "password": PASSWORD})
    assert old.status_code == 401
    await hub.sign_in("ana", new)
    # Without a token, or with an API key: no password to change.
    fields = {"current_password": PASSWORD, "new_password": new}
    assert (await hub.client.post("/auth/password", data=fields)).status_code == 401
    keyed = await hub.client.post("/auth/password", data=fields, headers={"X-API-Key": hub.crm_key})
    assert keyed.status_code == 403


async def test_the_websocket_checks_follow_sign_out_and_disabling(hub: Hub) -> None:
    tokens = await hub.sign_in("ana")
    runtime = hub.runtime
    principal = await principal_for_token(runtime, tokens["access_token"])
    assert (principal.subject, principal.role, principal.via) == ("ana", "dispatcher", "token")
    assert principal.login is not None
    assert await still_signed_in(runtime, principal)
    for bad in ("", "nonsense", tokens["refresh_token"]):
        with pytest.raises(HubError) as refused:
            await principal_for_token(runtime, bad)
        assert refused.value.status_code == 401
    assert (await hub.client.post("/auth/logout", headers=bearer(tokens))).status_code == 204
    assert not await still_signed_in(runtime, principal)
    with pytest.raises(HubError) as ended:
        await principal_for_token(runtime, tokens["access_token"])
    assert ended.value.status_code == 401

    again = await principal_for_token(runtime, (await hub.sign_in("ana"))["access_token"])
    root = await hub.sign_in("root")
    disabled = await hub.client.patch(
        "/api/v1/users/ana", json={"disabled": True}, headers=bearer(root)
    )
    assert disabled.status_code == 200, disabled.text
    assert not await still_signed_in(runtime, again)
    # An API key's principal holds while the key does.
    key = Principal("crm", "integrator", principal.scope, via="api_key")
    assert await still_signed_in(runtime, key)
    deleted = await hub.client.delete("/api/v1/keys/crm", headers=bearer(root))
    assert deleted.status_code == 204
    assert not await still_signed_in(runtime, key)


async def test_expired_sessions_and_old_attempts_are_pruned(hub: Hub) -> None:
    tokens = await hub.sign_in("ana")
    await hub.refresh(tokens["refresh_token"])
    refused = await hub.client.post("/auth/token", data={"username": "ana", "password": "wrong!"})
    assert refused.status_code == 401
    sessions, now = hub.runtime.sessions, datetime.now(UTC)
    limits = LoginLimits.of(hub.settings)

    async def counts() -> tuple[int, int, int]:
        async with sessions() as session:
            return (
                len((await session.scalars(select(Login.id))).all()),
                len((await session.scalars(select(RefreshToken.id))).all()),
                len((await session.scalars(select(LoginAttempt.id))).all()),
            )

    assert await counts() == (1, 2, 2)  # the used token stays, for reuse detection
    assert await prune_logins(sessions, now) == 0
    assert await prune_attempts(sessions, limits, now) == 0
    assert await counts() == (1, 2, 2)
    later = now + timedelta(seconds=hub.settings.refresh_ttl_s + 1)
    assert await prune_logins(sessions, later) == 3
    assert await prune_attempts(sessions, limits, later) == 2
    assert await counts() == (0, 0, 0)
