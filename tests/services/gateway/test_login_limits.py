"""Failed sign-ins are limited per user name and per client address: 429 with `Retry-After`
before the password is checked, alike for user names that exist and those that do not, never
more guesses than the limit however many arrive at once, and shared by gateway replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.gateway.app import create_app as create_gateway_app
from services.gateway.login_limits import retry_after_s
from shared.settings import Settings
from tests.services.gateway.sign_in import Hub, bearer, hub_with_users
from tests.support.apps import PASSWORD, serving
from tests.support.waiting import wait_for

WINDOW_S = 900
PER_USER = 5
PER_ADDRESS = 12  # above two user names' worth, so the user name tests meet only theirs


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    settings = embedded_settings.model_copy(
        update={"login_failures_per_user": PER_USER, "login_failures_per_address": PER_ADDRESS}
    )
    async with hub_with_users(settings) as running:
        yield running


async def _sign_in(
    client: httpx.AsyncClient, username: str, password: str = "wrong-password"
) -> httpx.Response:
    return await client.post("/auth/token", data={"username": username, "password": password})


def _from(hub: Hub, address: str) -> httpx.AsyncClient:
    """A client of the same hub arriving from another address."""
    transport = httpx.ASGITransport(app=hub.app, client=(address, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://hub")


def test_retry_after_counts_to_the_attempt_that_must_leave_the_window() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    window = timedelta(seconds=WINDOW_S)
    ago = [now - timedelta(seconds=s) for s in (800, 600, 400, 200, 10)]
    assert retry_after_s(ago[1:], 5, window, now) is None  # four: a fifth fits
    assert retry_after_s(ago, 5, window, now) == 100  # the oldest leaves in 100 s
    assert retry_after_s(ago, 4, window, now) == 300  # two must leave: the second oldest
    assert retry_after_s([now - window + timedelta(seconds=0.2)], 1, window, now) == 1


async def test_a_user_name_is_limited_whether_or_not_it_exists(hub: Hub) -> None:
    for username in ("ana", "nobody-by-this-name"):
        first = await _sign_in(hub.client, username)
        for _ in range(PER_USER - 1):
            assert (await _sign_in(hub.client, username)).status_code == 401
        limited = await _sign_in(hub.client, username)
        assert limited.status_code == 429, limited.text
        retry = int(limited.headers["retry-after"])
        assert WINDOW_S - 30 <= retry <= WINDOW_S
        assert first.json() == {"detail": "wrong username or password"}
    # Checked before the password: the right one is refused too while the limit holds, and the
    # answers for a real and an unknown name are the same.
    right = await _sign_in(hub.client, "ana", PASSWORD)
    unknown = await _sign_in(hub.client, "nobody-by-this-name", PASSWORD)
    assert right.status_code == unknown.status_code == 429
    assert right.json()["detail"].split(":")[0] == unknown.json()["detail"].split(":")[0]
    # Another user name from the same address is not affected (under the address limit).
    await hub.sign_in("root")


async def test_a_success_clears_the_user_names_failures(hub: Hub) -> None:
    for _ in range(PER_USER - 1):
        assert (await _sign_in(hub.client, "ana")).status_code == 401
    await hub.sign_in("ana")
    for _ in range(PER_USER - 1):
        assert (await _sign_in(hub.client, "ana")).status_code == 401
    await hub.sign_in("ana")


async def test_a_client_address_is_limited_across_user_names(hub: Hub) -> None:
    async with _from(hub, "203.0.113.7") as guesser, _from(hub, "198.51.100.1") as office:
        for n in range(PER_ADDRESS):
            assert (await _sign_in(guesser, f"user-{n}")).status_code == 401
        limited = await _sign_in(guesser, "ana", PASSWORD)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        # Signing in well elsewhere does not reset the guesser's address.
        ok = await _sign_in(office, "ana", PASSWORD)
        assert ok.status_code == 200
        assert (await _sign_in(guesser, "root", PASSWORD)).status_code == 429


async def test_concurrent_guesses_never_exceed_the_limit(hub: Hub) -> None:
    replies = await asyncio.gather(*(_sign_in(hub.client, "ana") for _ in range(3 * PER_USER)))
    statuses = [r.status_code for r in replies]
    assert statuses.count(401) <= PER_USER and set(statuses) <= {401, 429}, statuses
    assert all("retry-after" in r.headers for r in replies if r.status_code == 429)


async def test_wrong_current_passwords_count_as_failed_sign_ins(hub: Hub) -> None:
    tokens = await hub.sign_in("ana")
    fields = {"current_password": "a-wrong-guess", "new_password": "another-long-one"}
    for _ in range(PER_USER):
        reply = await hub.client.post("/auth/password", data=fields, headers=bearer(tokens))
        assert reply.status_code == 403
    reply = await hub.client.post("/auth/password", data=fields, headers=bearer(tokens))
    assert reply.status_code == 429 and "retry-after" in reply.headers
    assert (await _sign_in(hub.client, "ana", PASSWORD)).status_code == 429


async def test_the_limit_lifts_when_the_window_has_passed(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(
        update={"login_window_s": 2, "login_failures_per_user": 2}
    )
    async with hub_with_users(settings) as hub:
        for _ in range(2):
            assert (await _sign_in(hub.client, "ana")).status_code == 401
        limited = await _sign_in(hub.client, "ana", PASSWORD)
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 2

        async def signed_in() -> bool:
            return (await _sign_in(hub.client, "ana", PASSWORD)).status_code == 200

        await wait_for(signed_in, within=10, interval=0.2)


async def test_gateway_replicas_share_the_count(production_settings: Settings) -> None:
    async with hub_with_users(production_settings) as hub:  # migrates, adds the users
        replica = create_gateway_app(production_settings)
        async with serving(replica) as other:
            for client in (hub.client, other) * 2 + (hub.client,):
                assert (await _sign_in(client, "ana")).status_code == 401
            assert (await _sign_in(other, "ana", PASSWORD)).status_code == 429
            assert (await _sign_in(hub.client, "ana", PASSWORD)).status_code == 429


async def test_the_openapi_document_declares_429_with_retry_after(hub: Hub) -> None:
    document = (await hub.client.get("/openapi.json")).json()
    for path in ("/auth/token", "/auth/password"):
        limited = document["paths"][path]["post"]["responses"]["429"]
        assert "Retry-After" in limited["headers"], path
