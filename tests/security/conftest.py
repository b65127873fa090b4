"""A hub seeded for the security tests: tickets, events, alerts, sensors and dead letters in two
streets of one district and one street of another, users of every role at every scope level, and
two integrators; each seeded row's id is known, so a test can tell what a caller must not see."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.hub import create_hub_app
from shared.db.models import AlertRow, DeadLetter, Event, Sensor, Ticket, TicketEvent
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving
from tests.support.factories import ticket_row
from tests.support.first_start import SQLITE_TEMPLATE
from tests.support.servers import free_port

CITY = "500000"
# Street A and A2 lie in district D1 (渝中区); street B in district D2 (江北区).
D1, D2 = "500103", "500106"
STREETS = {"A": ("500103001", D1), "A2": ("500103003", D1), "B": ("500106001", D2)}
# Each street's integrator: acme reports in D1, other in D2.
INTEGRATOR_OF = {"A": "acme", "A2": "acme", "B": "other"}
ROLES = ("admin", "manager", "dispatcher", "field_staff")
SCOPES = {"city": "city", "district": f"district:{D1}", "street": f"street:{STREETS['A'][0]}"}
# Field staff need a department serving their whole scope: the city's bureau serves the city,
# its district counterparts their district and its streets.
DEPARTMENTS = {"city": "cgj", "district": f"cgj@{D1}", "street": f"cgj@{D1}"}


@dataclass
class Seeded:
    """Ids of the rows seeded in one street."""

    street: str
    district: str
    ticket: str
    event: str
    alert: str
    sensor: str
    integrator: str

    def ids(self) -> set[str]:
        """Every id a caller outside this street must never see."""
        return {self.ticket, self.event, self.alert, self.sensor}


@dataclass
class SecurityHub:
    """The running hub, an ASGI client, each caller's headers and the seeded rows."""

    app: FastAPI
    client: httpx.AsyncClient
    callers: dict[str, dict[str, str]]  # "dispatcher@street" / "integrator:acme" → headers
    seeded: dict[str, Seeded]  # by street label (A, A2, B)
    keys: dict[str, str] = field(default_factory=dict)


def _caller_names() -> list[str]:
    users = [f"{role}@{level}" for role in ROLES for level in SCOPES]
    return [*users, "integrator:acme", "integrator:other"]


CALLERS = _caller_names()


async def _seed(app: FastAPI) -> dict[str, Seeded]:
    now = datetime.now(UTC)
    seeded: dict[str, Seeded] = {}
    async with runtime_of(app).sessions() as session, session.begin():
        for label, (street, district) in STREETS.items():
            integrator = INTEGRATOR_OF[label]
            event = Event(
                id=uuid.uuid4(), source="hotline", source_ref=f"sec-{label}", category="E0403",
                description=f"seeded in {label}", lon=106.57, lat=29.55, street_code=street,
                district_code=district, city_code=CITY, geotag_method="point",
                reported_at=now, submitted_by=integrator,
            )  # fmt: skip
            ticket = Ticket(
                **ticket_row(
                    now - timedelta(minutes=5), street_code=street, district_code=district,
                    owner_code=street, department=f"cgj@{district}", description=f"in {label}",
                )
            )  # fmt: skip
            alert = AlertRow(
                id=uuid.uuid4(), kind="breach", severity="warning", title=f"超时 {label}",
                title_en=f"breach {label}", district=district, street=street,
                ticket_id=ticket.id, at=now, details={}, source_id=uuid.uuid4(),
            )  # fmt: skip
            sensor = Sensor(
                id=f"sec-{label.lower()}-{uuid.uuid4().hex[:6]}", type="water_level",
                integrator=integrator, lon=106.57, lat=29.55, interval_s=60,
                alarm_category="S0101", rules=[],
            )  # fmt: skip
            session.add_all([event, ticket, alert, sensor])
            await session.flush()
            # Linked, or dispatch's sweep would open a ticket for the event mid-test.
            session.add(TicketEvent(event_id=event.id, ticket_id=ticket.id))
            session.add(
                DeadLetter(
                    channel="mqtt", topic=f"cityhub/v1/sensors/{sensor.id}/readings",
                    payload=f"dead-{label}", payload_bytes=9, reason="not_json",
                    detail="seeded", sensor_id=sensor.id, integrator=integrator,
                )
            )  # fmt: skip
            seeded[label] = Seeded(
                street, district, str(ticket.id), str(event.id), str(alert.id), sensor.id,
                integrator,
            )  # fmt: skip
    return seeded


@pytest.fixture
async def security_hub(tmp_path: Path) -> AsyncIterator[SecurityHub]:
    """The embedded hub (SQLite, in-process bus) with the seeded rows and every caller."""
    SQLITE_TEMPLATE.copy_into(tmp_path)
    app = create_hub_app(Settings(data_dir=tmp_path, mqtt_port=free_port()))
    async with serving(app) as client:
        callers: dict[str, dict[str, str]] = {}
        keys = {name: await add_key(app, name) for name in ("acme", "other")}
        for name in CALLERS:
            if name.startswith("integrator:"):
                callers[name] = {"X-API-Key": keys[name.split(":", 1)[1]]}
                continue
            role, level = name.split("@")
            department = DEPARTMENTS[level] if role == "field_staff" else None
            username = f"{role}-{level}"
            await add_user(app, username, role, SCOPES[level], department)
            callers[name] = await login(client, username)
        yield SecurityHub(app, client, callers, await _seed(app), keys)


def visible_streets(caller: str) -> set[str]:
    """The seeded streets (labels) whose located rows the caller may see."""
    if caller.startswith("integrator:"):
        owner = caller.split(":", 1)[1]
        return {label for label, who in INTEGRATOR_OF.items() if who == owner}
    level = caller.split("@")[1]
    if level == "city":
        return set(STREETS)
    if level == "district":
        return {label for label, (_s, d) in STREETS.items() if d == D1}
    return {"A"}


def body_text(reply: httpx.Response) -> str:
    """The answer's body as text (empty for binary bodies)."""
    try:
        return reply.text
    except UnicodeDecodeError:
        return ""


def json_ids(value: Any) -> set[str]:
    """Every string value of an `id`-like key anywhere in a JSON document."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and (key == "id" or key.endswith("_id")):
                found.add(item)
            found |= json_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= json_ids(item)
    return found
