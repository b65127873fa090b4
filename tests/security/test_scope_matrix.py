"""The role × scope matrix on every endpoint: each role (admin, manager, dispatcher, field staff,
integrator key) at each scope (city, a district, a street) calls every operation of the OpenAPI
document; the status each gets is the one the table below expects, and no answer ever names a
seeded row (ticket, event, alert, sensor) of a street outside the caller's scope. A new operation
without a row in the table fails the test: its expectations must be written down first."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.security.conftest import (
    CALLERS,
    STREETS,
    SecurityHub,
    body_text,
    json_ids,
    visible_streets,
)

Expect = Callable[[str, str], set[int]]  # (caller, street of the path's row) → statuses allowed


def _role(caller: str) -> str:
    return "integrator" if caller.startswith("integrator:") else caller.split("@")[0]


def anyone(*statuses: int) -> Expect:
    """Every caller gets one of `statuses`."""
    return lambda _caller, _street: set(statuses)


def roles(allowed: set[str], ok: set[int], refused: set[int] | None = None) -> Expect:
    """Callers whose role is in `allowed` get `ok`; the others `refused` (403 by default)."""
    return lambda caller, _street: ok if _role(caller) in allowed else (refused or {403})


def located(allowed: set[str], refused: set[int] | None = None) -> Expect:
    """Callers in `allowed` get 200 for a row of a street they see and 404 for any other (an
    invisible row is not found); the others `refused` (403 by default)."""

    def expect(caller: str, street: str) -> set[int]:
        if _role(caller) not in allowed:
            return refused or {403}
        return {200} if street in visible_streets(caller) else {404}

    return expect


USERS = {"admin", "manager", "dispatcher", "field_staff"}
EVERYONE = USERS | {"integrator"}
# Open311 reads are public by design (GeoReport v2; decision 0006 strips reporters and private
# fields): they are not scoped, so the leak check does not apply to them.
PUBLIC_PREFIXES = ("/open311/",)
# Query parameters an operation needs to answer at all (the rest is called bare).
QUERIES = {
    "GET /api/v1/areas/outlines": "level=district",
    "GET /api/v1/kpis/ranking": "level=street",
    "GET /api/v1/geotag": "lon=106.5516&lat=29.5630",
}
# Every operation of the document, with what each caller gets when it calls it with the path
# filled from one street's seeded rows (`_fill`), the query above and, for writes, an empty JSON
# body: the role refusals (403), the scope refusals (404) and the validation that only an
# allowed caller reaches (422).
COMMENTERS = {"dispatcher@street": {"A"}, "field_staff@district": {"A", "A2"},
              "field_staff@street": {"A"}}  # fmt: skip
BODIES = {"POST /api/v1/tickets/{ticket_id}/actions": {"action": "comment", "note": "matrix"}}
MATRIX: dict[str, Expect] = {
    # public: no credentials needed
    "GET /healthz": anyone(200),
    "GET /files/{name}": anyone(404),
    "GET /open311/v2/discovery.{fmt}": anyone(200),
    "GET /open311/v2/services.{fmt}": anyone(200),
    "GET /open311/v2/services/{resource}": anyone(200),
    "GET /open311/v2/requests.{fmt}": anyone(200),
    "GET /open311/v2/requests/{resource}": anyone(400, 404),
    "POST /open311/v2/requests.{fmt}": roles({"integrator"}, {400}, {400, 403}),
    "POST /auth/token": anyone(422),
    "POST /auth/refresh": anyone(422),
    # reference data: the hierarchy inside the caller's scope, the catalogue for everyone
    "GET /api/v1/areas": anyone(200),
    "GET /api/v1/areas/outlines": anyone(200),
    # integrators are limited by ownership, not by area: they may read the whole hierarchy
    "GET /api/v1/areas/{code}": lambda caller, street: (
        {200} if caller.startswith("integrator:") else located(USERS)(caller, street)
    ),
    "GET /api/v1/geotag": anyone(200),
    "GET /api/v1/categories": anyone(200),
    "GET /api/v1/categories/{code}": anyone(200),
    "GET /api/v1/departments": anyone(200),
    "GET /api/v1/routing-rules": roles({"admin"}, {200}),
    "GET /api/v1/categories/{code}/deadlines": roles({"admin"}, {200}),
    "GET /api/v1/emergency": roles(USERS, {200}),
    # located or owned data: filtered (and checked for leaks below)
    "GET /api/v1/tickets": roles(USERS, {200}),
    "GET /api/v1/tickets/{ticket_id}": located(USERS),
    "GET /api/v1/tasks/mine": roles({"field_staff"}, {200}),
    "GET /api/v1/events/{event_id}": located(EVERYONE),
    "GET /api/v1/alerts": roles(USERS, {200}),
    "GET /api/v1/kpis": roles({"admin", "manager", "dispatcher"}, {200}),
    "GET /api/v1/kpis/summary": roles({"admin", "manager", "dispatcher"}, {200}),
    "GET /api/v1/kpis/ranking": roles({"admin", "manager", "dispatcher"}, {200}),
    "GET /api/v1/sensors": roles({"admin", "integrator"}, {200}),
    # the sensor registry is owned, not located: an admin sees every sensor, an integrator its own
    "GET /api/v1/sensors/{sensor_id}": lambda caller, street: (
        {200} if caller.startswith("admin@") else located({"integrator"})(caller, street)
    ),
    "GET /api/v1/sensors/{sensor_id}/alarms": lambda caller, street: (
        {200} if caller.startswith("admin@") else located({"integrator"})(caller, street)
    ),
    "GET /api/v1/dead-letters": roles({"admin", "integrator"}, {200}),
    "GET /api/v1/held-events": roles({"admin"}, {200}),
    # administration
    "GET /api/v1/users": roles({"admin"}, {200}),
    "GET /api/v1/users/{username}": roles({"admin"}, {200}),
    "GET /api/v1/keys": roles({"admin"}, {200}),
    "POST /api/v1/users": roles({"admin"}, {422}),
    "PATCH /api/v1/users/{username}": roles({"admin"}, {200, 422}),
    "POST /api/v1/keys": roles({"admin"}, {422}),
    "DELETE /api/v1/keys/{name}": roles({"admin"}, {404}),
    "PUT /api/v1/routing-rules": roles({"admin"}, {422}),
    "PUT /api/v1/categories/{code}": roles({"admin"}, {422}),
    "PUT /api/v1/categories/{code}/deadlines": roles({"admin"}, {422}),
    # 平急转换: a dispatcher of a centre switches emergency mode (for its own area)
    "POST /api/v1/emergency": roles({"admin", "dispatcher"}, {422}),
    "DELETE /api/v1/emergency/{emergency_id}": lambda caller, _street: (
        {404}
        if caller in ("admin@city", "admin@district", "admin@street", "dispatcher@city")
        else {403}
    ),
    "POST /api/v1/held-events/{event_id}/retry": roles({"admin"}, {404}),
    # writes of the intake and of the closed loop
    "POST /api/v1/events": roles(EVERYONE - {"manager"}, {422}),
    "POST /api/v1/events/batch": roles(EVERYONE - {"manager"}, {422}),
    "POST /api/v1/grid-reports": roles(EVERYONE - {"manager"}, {422}),
    "POST /api/v1/photos": roles(EVERYONE - {"manager"}, {422}),
    "PUT /api/v1/sensors/{sensor_id}": roles({"admin", "integrator"}, {422}),
    # sent as a comment: invisible 404; visible, then only the owning centre's dispatcher and
    # the handling department's field staff may (the department serves D1's streets)
    "POST /api/v1/tickets/{ticket_id}/actions": lambda caller, street: (
        (
            ({200} if caller in COMMENTERS and street in COMMENTERS[caller] else {403})
            if street in visible_streets(caller)
            else {404}
        )
        if _role(caller) in USERS
        else {403}
    ),
    "POST /auth/logout": anyone(422),
    "POST /auth/password": roles(USERS, {422}),
}


def _operations(document: dict[str, Any]) -> list[str]:
    return [f"{m.upper()} {path}" for path, ops in document["paths"].items() for m in ops]


def _fill(template: str, hub: SecurityHub, street: str) -> str:
    """The path with its parameters taken from the seeded rows of `street`."""
    seeded = hub.seeded[street]
    values = {
        "ticket_id": seeded.ticket, "event_id": seeded.event, "sensor_id": seeded.sensor,
        "code": seeded.street if "/areas/" in template else "E0403", "fmt": "json",
        "resource": "C0104.json" if "services" in template else f"{seeded.ticket}.json",
        "name": "no-such-file" if template.startswith("/files") else "no-such-key",
        "username": "manager-street", "emergency_id": "00000000-0000-4000-8000-000000000000",
    }  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


async def test_the_matrix_covers_every_operation(security_hub: SecurityHub) -> None:
    document = (await security_hub.client.get("/openapi.json")).json()
    operations = _operations(document)
    missing = sorted(set(operations) - set(MATRIX))
    assert not missing, f"operations without a row in the role × scope matrix: {missing}"
    assert not sorted(set(MATRIX) - set(operations)), "rows for operations that are gone"


async def test_every_caller_gets_what_the_matrix_says_and_sees_only_its_scope(
    security_hub: SecurityHub,
) -> None:
    hub = security_hub
    document = (await hub.client.get("/openapi.json")).json()
    wrong: list[str] = []
    leaks: list[str] = []
    calls = 0
    # Logging out ends the sign-in: done last, after every other operation.
    operations = sorted(_operations(document), key=lambda op: op == "POST /auth/logout")
    for caller in CALLERS:
        headers = hub.callers[caller]
        inside = visible_streets(caller)
        outside_ids = set().union(*(hub.seeded[s].ids() for s in STREETS if s not in inside))
        if caller.startswith("admin@"):
            # The sensor registry and its dead letters are the admins' and the integrators'
            # (not located by area): an admin sees every sensor, whatever its scope.
            outside_ids -= {seeded.sensor for seeded in hub.seeded.values()}
        for operation in operations:
            method, template = operation.split(" ", 1)
            # Detail paths are tried with a row of every street: inside 200, outside 404.
            streets = list(STREETS) if "{" in template else ["A"]
            for street in streets:
                path = _fill(template, hub, street)
                if operation in QUERIES:
                    path += "?" + QUERIES[operation]
                body = None if method in ("GET", "DELETE") else BODIES.get(operation, {})
                reply = await hub.client.request(method, path, headers=headers, json=body)
                calls += 1
                expected = MATRIX[operation](caller, street)
                if reply.status_code not in expected:
                    wrong.append(f"{caller} {method} {path}: {reply.status_code} not in {expected}")
                text = body_text(reply)
                # The id the caller sent may come back (a 404 naming what was not found).
                public = template.startswith(PUBLIC_PREFIXES)
                seen = {i for i in outside_ids if i in text and i not in path and not public}
                if seen:
                    leaks.append(f"{caller} {method} {path} named {sorted(seen)}")
    print(f"role × scope matrix: {calls} calls by {len(CALLERS)} callers")
    assert not leaks, "\n".join(leaks)
    assert not wrong, "\n".join(wrong)


async def test_lists_show_what_is_inside_the_scope(security_hub: SecurityHub) -> None:
    """The leak check is not vacuous: each caller's lists hold its own streets' rows."""
    hub = security_hub
    lists = {
        "ticket": "/api/v1/tickets",
        "alert": "/api/v1/alerts",
        "sensor": "/api/v1/sensors",
    }
    for caller in CALLERS:
        inside = visible_streets(caller)
        for kind, path in lists.items():
            reply = await hub.client.get(path, headers=hub.callers[caller])
            if reply.status_code == 403:
                continue
            assert reply.status_code == 200, (caller, path, reply.text)
            ids = json_ids(reply.json())
            for label, seeded in hub.seeded.items():
                own = getattr(seeded, kind)
                if caller.startswith("integrator:") or kind != "sensor":
                    assert (own in ids) == (label in inside), (caller, path, label)
        for label, seeded in hub.seeded.items():
            for path in (f"/api/v1/tickets/{seeded.ticket}", f"/api/v1/events/{seeded.event}"):
                reply = await hub.client.get(path, headers=hub.callers[caller])
                if reply.status_code == 403:
                    continue
                assert reply.status_code == (200 if label in inside else 404), (
                    caller, path, reply.status_code
                )  # fmt: skip
