"""`/api/v1/users`: only admins manage users; what they send is checked as the CLI checks it;
disabling or a new password ends the user's sign-ins, and the changes reach a token holder
within a second, on this gateway and on another replica."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.gateway.app import create_app as create_gateway_app
from shared.settings import Settings
from tests.services.gateway.sign_in import Hub, bearer, hub_with_users
from tests.support.apps import PASSWORD, serving
from tests.support.waiting import wait_for

NEW_USER: dict[str, Any] = {
    "username": "bo",
    "password": "a-long-enough-one",
    "role": "field_staff",
    "scope": "district:500103",
    "department": "cgj@500103",
}
SWITCH_OFF_WITHIN_S = 5.0  # caches hold 1 s; the rest is slack for a loaded machine


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    async with hub_with_users(embedded_settings) as running:
        yield running


@pytest.fixture
async def admin(hub: Hub) -> dict[str, str]:
    return bearer(await hub.sign_in("root"))


async def test_only_admins_may_use_the_admin_api(hub: Hub) -> None:
    dispatcher = bearer(await hub.sign_in("ana"))
    key = {"X-API-Key": hub.crm_key}
    calls = [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", NEW_USER),
        ("GET", "/api/v1/users/ana", None),
        ("PATCH", "/api/v1/users/ana", {"role": "admin"}),
        ("GET", "/api/v1/keys", None),
        ("POST", "/api/v1/keys", {"name": "newcomer"}),
        ("DELETE", "/api/v1/keys/crm", None),
    ]
    for method, path, body in calls:
        for headers, expected in (({}, 401), (dispatcher, 403), (key, 403)):
            reply = await hub.client.request(method, path, json=body, headers=headers)
            assert reply.status_code == expected, (method, path, headers, reply.text)
    assert (await hub.status({"access_token": "x"}, "/api/v1/users")) == 401


async def test_create_list_and_read_users(hub: Hub, admin: dict[str, str]) -> None:
    created = await hub.client.post("/api/v1/users", json=NEW_USER, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("username", "role", "scope", "department", "disabled")} == {
        **{k: v for k, v in NEW_USER.items() if k != "password"},
        "disabled": False,
    }
    assert "password" not in body and "password_hash" not in body and body["created_at"]
    listed = (await hub.client.get("/api/v1/users", headers=admin)).json()
    assert [u["username"] for u in listed] == ["ana", "bo", "root"]
    one = await hub.client.get("/api/v1/users/bo", headers=admin)
    assert one.status_code == 200 and one.json() == body
    assert (await hub.client.get("/api/v1/users/nobody", headers=admin)).status_code == 404
    await hub.sign_in("bo", NEW_USER["password"])


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"password": "nine-char"}, 422),  # shorter than 10
        ({"role": "integrator", "department": None}, 422),  # integrators are keys, never users
        ({"scope": "district:999999"}, 422),
        ({"scope": "everywhere"}, 422),
        ({"department": "cgj@500105"}, 422),  # serves another district
        ({"department": None}, 422),  # field staff need one
        ({"username": "has space"}, 422),
        ({"extra": 1}, 422),
        ({"username": "ana"}, 409),  # a user has the name
        ({"username": "crm"}, 409),  # a key has the name
    ],
)
async def test_new_users_are_checked(
    hub: Hub, admin: dict[str, str], change: dict[str, Any], status: int
) -> None:
    reply = await hub.client.post("/api/v1/users", json={**NEW_USER, **change}, headers=admin)
    assert reply.status_code == status, reply.text


async def test_patch_changes_what_it_names_and_checks_it(hub: Hub, admin: dict[str, str]) -> None:
    assert (await hub.client.post("/api/v1/users", json=NEW_USER, headers=admin)).status_code == 201
    path = "/api/v1/users/bo"
    moved = await hub.client.patch(
        path, json={"scope": "street:500103001", "department": "office@500103001"}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["scope"], moved.json()["department"]) == (
        "street:500103001",
        "office@500103001",
    )
    # The department must still serve the scope, field staff keep one, nulls only clear it.
    for change in (
        {"scope": "district:500105"},
        {"department": None},
        {"role": None},
        {"disabled": None},
        {"role": "integrator"},
        {"disable": True},
        {"password": "short"},
    ):
        refused = await hub.client.patch(path, json=change, headers=admin)
        assert refused.status_code == 422, (change, refused.text)
    manager = await hub.client.patch(
        path, json={"role": "manager", "department": None}, headers=admin
    )
    assert manager.status_code == 200 and manager.json()["department"] is None
    assert (await hub.client.patch(path, json={}, headers=admin)).json() == manager.json()
    missing = await hub.client.patch(
        "/api/v1/users/nobody", json={"role": "manager"}, headers=admin
    )
    assert missing.status_code == 404
    text = await hub.client.patch(
        path, content=b"role=admin", headers={**admin, "content-type": "text/plain"}
    )
    assert text.status_code == 415


async def test_a_role_change_reaches_the_users_token_at_once(
    hub: Hub, admin: dict[str, str]
) -> None:
    ana = await hub.sign_in("ana")
    assert await hub.status(ana, "/api/v1/users") == 403
    promoted = await hub.client.patch("/api/v1/users/ana", json={"role": "admin"}, headers=admin)
    assert promoted.status_code == 200
    assert await hub.status(ana, "/api/v1/users") == 200  # the token says dispatcher still
    refreshed = await hub.refresh(ana["refresh_token"])
    assert refreshed.json()["role"] == "admin"


async def test_disabling_ends_sign_ins_and_enabling_lets_the_user_sign_in_again(
    hub: Hub, admin: dict[str, str]
) -> None:
    ana = await hub.sign_in("ana")
    disabled = await hub.client.patch("/api/v1/users/ana", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (await hub.refresh(ana["refresh_token"])).status_code == 401
    assert await hub.status(ana) == 401
    refused = await hub.client.post("/auth/token", data={"username": "ana", "password": PASSWORD})
    assert refused.status_code == 401
    enabled = await hub.client.patch("/api/v1/users/ana", json={"disabled": False}, headers=admin)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert await hub.status(await hub.sign_in("ana")) == 200
    assert await hub.status(ana) == 401  # the old sign-in stays ended


async def test_a_new_password_from_an_admin_ends_the_users_sign_ins(
    hub: Hub, admin: dict[str, str]
) -> None:
    ana = await hub.sign_in("ana")
    changed = await hub.client.patch(
        "/api/v1/users/ana", json={"password": "set-by-the-admin"}, headers=admin
    )
    assert changed.status_code == 200
    assert (await hub.refresh(ana["refresh_token"])).status_code == 401
    assert await hub.status(ana) == 401
    await hub.sign_in("ana", "set-by-the-admin")


async def test_the_last_enabled_admin_stays(hub: Hub, admin: dict[str, str]) -> None:
    for change in ({"disabled": True}, {"role": "manager"}):
        refused = await hub.client.patch("/api/v1/users/root", json=change, headers=admin)
        assert refused.status_code == 409, refused.text
    second = {**NEW_USER, "username": "deputy", "role": "admin", "scope": "city"}
    second.pop("department")
    assert (await hub.client.post("/api/v1/users", json=second, headers=admin)).status_code == 201
    demoted = await hub.client.patch("/api/v1/users/root", json={"role": "manager"}, headers=admin)
    assert demoted.status_code == 200
    assert await hub.status({"access_token": admin["Authorization"][7:]}, "/api/v1/users") == 403


async def test_disabling_on_one_gateway_reaches_another_within_a_second(
    production_settings: Settings,
) -> None:
    async with hub_with_users(production_settings) as hub:
        replica = create_gateway_app(production_settings)
        async with serving(replica) as other:
            ana = await hub.sign_in("ana")
            headers = bearer(ana)
            assert (await other.get("/api/v1/areas", headers=headers)).status_code == 200
            root = bearer(await hub.sign_in("root"))
            # The gateway serves the admin API itself (it forwards nothing of it).
            listed = await other.get("/api/v1/users", headers=root)
            assert listed.status_code == 200 and len(listed.json()) == 2
            reply = await hub.client.patch(
                "/api/v1/users/ana", json={"disabled": True}, headers=root
            )
            assert reply.status_code == 200
            # The refresh token fails at once everywhere (the database says so) ...
            refreshed = await other.post(
                "/auth/refresh", data={"refresh_token": ana["refresh_token"]}
            )
            assert refreshed.status_code == 401

            # ... and the access token once the replica's cache entry is re-read.
            async def refused() -> bool:
                return (await other.get("/api/v1/areas", headers=headers)).status_code == 401

            # (areas: a route the gateway serves itself, not forwarding it to dispatch)
            await wait_for(refused, within=SWITCH_OFF_WITHIN_S, interval=0.1)
