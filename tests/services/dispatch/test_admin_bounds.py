"""Admin writes refuse absurd values (422): deadlines finite, positive, at most a year, accept ≤
handle; routing rules and emergency modes bounded and checked against the directory; and no model
of the dispatch or catalogue APIs admits NaN or Infinity, so none can reach a JSON answer."""

from __future__ import annotations

import math
import types
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from services.dispatch import api, deadlines_api, emergency_api, rules_api, tickets_api
from services.gateway import categories_api
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted

DEADLINES = "/api/v1/categories/C0201/deadlines"
JSON = {"content-type": "application/json"}


@pytest.fixture(params=["embedded", "production"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """The same contract on SQLite + in-process bus and on PostgreSQL + Redis."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    async with running_hub(settings) as running:
        await running.user("admin", "admin", "city")
        yield running


@pytest.fixture
async def embedded_hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    """The hub on SQLite only (checks made before anything is stored)."""
    async with running_hub(embedded_settings) as running:
        await running.user("admin", "admin", "city")
        yield running


def numbers(value: Any) -> Iterator[Any]:
    """Every leaf of a JSON document that should be a number's place: all but strings, bools
    and containers."""
    if isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)
    else:
        yield value


async def test_deadlines_are_finite_positive_bounded_and_in_order(hub: Hub) -> None:
    admin = {**hub.users["admin"], **JSON}
    for raw in (
        '{"accept_hours": 1, "handle_hours": Infinity}',
        '{"accept_hours": NaN, "handle_hours": 6}',
        '{"accept_hours": 1, "handle_hours": 1e9}',  # tickets of it could never be opened
        '{"accept_hours": 1, "handle_hours": 8760.5}',
        '{"accept_hours": -1, "handle_hours": 6}',
        '{"accept_hours": 7, "handle_hours": 6}',  # accept after the work is due
    ):
        body = '{"deadlines": {"urgent": ' + raw + "}}"
        reply = await hub.client.put(DEADLINES, content=body, headers=admin)
        assert reply.status_code == 422, (raw, reply.text)

    # The published catalogue keeps finite numbers where its schema says number.
    catalogue = await hub.client.get("/api/v1/categories", headers=admin)
    assert catalogue.status_code == 200
    lamp = next(c for c in catalogue.json() if c["code"] == "C0201")
    assert lamp["deadlines"] == {}
    timed = ("accept_hours", "handle_hours", "deadlines")
    for value in numbers([c[key] for c in catalogue.json() for key in timed]):
        assert isinstance(value, int | float) and math.isfinite(value), value

    fine = {"deadlines": {"urgent": {"accept_hours": 8760, "handle_hours": 8760}}}
    put = await hub.client.put(DEADLINES, json=fine, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["priorities"]["urgent"]["handle_hours"] == 8760
    street = hub.streets()[0]  # a ticket of it still opens, deadline a year of working hours out
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="C0201", priority="urgent", location=shifted(lon, lat))
    ticket = await hub.ticket(ticket_id, admin)
    assert ticket["handle_due_at"] is not None


async def test_routing_rules_are_bounded_and_name_departments_that_serve(embedded_hub: Hub) -> None:
    hub = embedded_hub
    admin = hub.users["admin"]
    stored = (await hub.client.get("/api/v1/routing-rules", headers=admin)).json()["rules"]
    jiangbei = {"category": "C0501", "district": "500103", "department": "cgj@500105"}
    reply = await hub.client.put(
        "/api/v1/routing-rules", json={"rules": [*stored, jiangbei]}, headers=admin
    )
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert "cgj@500105 does not serve district 500103" in detail and "'cgj'" in detail
    for bad in (
        {"category": "C0501", "district": "5" * 33, "department": "cgj"},
        {"category": "C0501", "source": "x" * 17, "department": "cgj"},
        {"category": "C0501", "department": "c" * 65},
    ):
        reply = await hub.client.put(
            "/api/v1/routing-rules", json={"rules": [*stored, bad]}, headers=admin
        )
        assert reply.status_code == 422, bad
    many = {"rules": [{"category": "C0501", "department": "cgj"}] * 5_001}
    assert (
        await hub.client.put("/api/v1/routing-rules", json=many, headers=admin)
    ).status_code == 422
    assert (await hub.client.get("/api/v1/routing-rules", headers=admin)).json()["rules"] == stored


async def test_emergency_modes_are_bounded(embedded_hub: Hub) -> None:
    hub = embedded_hub
    admin = {**hub.users["admin"], **JSON}
    flood = '{"area": "500103", "incident": "防汛", "categories": ["E0501"], "deadline_factor": %s}'
    for factor in ("Infinity", "NaN", "0.01", "1e-300"):
        reply = await hub.client.post("/api/v1/emergency", content=flood % factor, headers=admin)
        assert reply.status_code == 422, factor
    base = {"area": "500103", "incident": "防汛", "categories": ["E0501"], "deadline_factor": 0.5}
    for change in (
        {"incident": "   "},
        {"incident": "汛" * 201},
        {"categories": ["E" * 65]},
        {"area": "5" * 33},
    ):
        reply = await hub.client.post("/api/v1/emergency", json={**base, **change}, headers=admin)
        assert reply.status_code == 422, change
    assert (await hub.client.get("/api/v1/emergency", headers=admin)).json() == []
    started = await hub.client.post("/api/v1/emergency", json=base, headers=admin)
    assert started.status_code == 201, started.text


ROUTERS: list[APIRouter] = [
    api.router,
    tickets_api.router,
    rules_api.router,
    deadlines_api.router,
    emergency_api.router,
    categories_api.router,
]


def _inner(annotation: Any) -> Iterator[Any]:
    """The annotation and every type nested in it (Annotated, unions, containers)."""
    yield annotation
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _inner(get_args(annotation)[0])
    elif origin is not None or isinstance(annotation, types.UnionType):
        for arg in get_args(annotation):
            if arg is not Ellipsis:
                yield from _inner(arg)


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    for t in _inner(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            yield t


def _finite(model: type[BaseModel], field: FieldInfo, annotation: Any) -> bool:
    if model.model_config.get("allow_inf_nan") is False:
        return True
    metadata = [*field.metadata]
    for t in _inner(annotation):
        if get_origin(t) is Annotated:
            metadata += [m for a in get_args(t)[1:] for m in getattr(a, "metadata", [a])]
    return any(getattr(m, "allow_inf_nan", None) is False for m in metadata)


def floats_admitting_infinity(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[str]:
    """`Model.field` for each float field, here or nested, that would hold NaN or Infinity."""
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if any(t is float for t in _inner(annotation)) and not _finite(model, field, annotation):
            found.append(f"{model.__name__}.{name}")
        for nested in _models(annotation):
            found += floats_admitting_infinity(nested, seen)
    return found


def test_no_model_of_these_apis_admits_nan_or_infinity() -> None:
    seen: set[type[BaseModel]] = set()
    found: list[str] = []
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 12
    for route in routes:
        for hint in get_type_hints(route.endpoint, include_extras=True).values():
            for model in _models(hint):
                found += floats_admitting_infinity(model, seen)
    assert len(seen) >= 10
    assert found == []


class Probe(BaseModel):
    """Floats the walker must find, and one it must accept."""

    a: float | None
    b: list[float]
    c: Annotated[float, Field(allow_inf_nan=False)]


def test_the_walker_finds_floats_in_unions_and_containers() -> None:
    assert floats_admitting_infinity(Probe, set()) == ["Probe.a", "Probe.b"]
