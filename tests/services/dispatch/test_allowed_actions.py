"""`allowed_actions` is what the caller may do to the ticket now: for every caller × ownership ×
status of a realistic fixture, each offered action is accepted by POST .../actions (with a valid
body) and each other action is refused (403 or 409), leaving the ticket as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shapely.geometry import Point

from services.dispatch.lifecycle import ACTIONS
from shared.areas import Area
from shared.auth import Principal, Scope, issue_token
from shared.db.models import User
from shared.settings import Settings
from tests.support.tickets import Hub, running_hub, shifted

DISTRICT = "500103"  # 渝中区
SPACING_M = 130.0  # tickets of one category further apart than the merge distance (100 m)
EDGE_M = 40.0  # points stay this far inside the street, so they geotag to it

# Who reads the tickets of one street: (role, scope, department); "{S}" is the street's code.
CALLERS: dict[str, tuple[str, str, str | None]] = {
    "street-desk": ("dispatcher", "street:{S}", None),  # owns what the street centre owns
    "district-desk": ("dispatcher", f"district:{DISTRICT}", None),
    "city-desk": ("dispatcher", "city", None),
    "cgj-crew": ("field_staff", f"district:{DISTRICT}", f"cgj@{DISTRICT}"),
    "office-crew": ("field_staff", "street:{S}", "office@{S}"),
    "zjw-crew": ("field_staff", f"district:{DISTRICT}", f"zjw@{DISTRICT}"),
    "manager": ("manager", "city", None),
    "admin": ("admin", "city", None),
}
Step = tuple[str, str, dict[str, Any]]  # (caller, action, body)
ACCEPT: Step = ("cgj-crew", "accept", {})
RETURN: Step = ("street-desk", "return", {"reason": "不属于本部门"})
ESCALATE: Step = ("street-desk", "escalate", {})
# Each scenario: a category (routed to cgj@500103 and dispatched at creation, or 属地: new) and the
# steps from creation to the state under test. Every ticket has two reports, so it can be split.
DISPATCHED, LOCAL = "dispatched", "local"
SCENARIOS: dict[str, tuple[str, tuple[Step, ...]]] = {
    "new (returned)": (DISPATCHED, (RETURN,)),
    "new (属地)": (LOCAL, ()),
    "dispatched": (DISPATCHED, ()),
    "accepted": (DISPATCHED, (ACCEPT,)),
    "in_progress": (DISPATCHED, (ACCEPT, ("cgj-crew", "start", {}))),
    "resolved": (DISPATCHED, (ACCEPT, ("cgj-crew", "resolve", {"note": "已处理"}))),
    "closed": (
        DISPATCHED,
        (
            ACCEPT,
            ("cgj-crew", "resolve", {"note": "已处理"}),
            ("street-desk", "verify", {"passed": True}),
        ),
    ),
    "parked": (DISPATCHED, (("street-desk", "park", {"reason": "待专项整治"}),)),
    "rejected": (DISPATCHED, (RETURN, ("street-desk", "reject", {"reason": "不予立案"}))),
    "owned by the district": (DISPATCHED, (ESCALATE,)),
    "owned by the city": (DISPATCHED, (ESCALATE, ("district-desk", "escalate", {}))),
}
TIER_OF = {"owned by the district": 1, "owned by the city": 2}  # escalations of a merge target
# Categories that never merge with each other: several per kind multiply the free places.
CATEGORIES = {
    DISPATCHED: ["E0101", "E0102", "E0103", "C0201", "C0301"],  # → cgj, street tier
    LOCAL: ["C0501", "E0203"],  # no rule: 属地, waits as new with its street office
}


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    """The hub on SQLite: permissions and the lifecycle do not depend on the backend (the
    actions' own tests run on both)."""
    async with running_hub(embedded_settings) as running:
        yield running


def places(street: Area) -> Iterator[tuple[float, float]]:
    """Points well inside a street, `SPACING_M` apart."""
    inside = street.geometry
    west, south, east, north = inside.bounds
    lon, lat = inside.representative_point().coords[0]
    step_lon = shifted(lon, lat, SPACING_M)["lon"] - lon
    step_lat = shifted(lon, lat, 0, SPACING_M)["lat"] - lat
    edge = EDGE_M / 111_000
    y = south
    while y <= north:
        x = west
        while x <= east:
            if inside.contains(Point(x, y).buffer(edge)):
                yield x, y
            x += step_lon
        y += step_lat


@dataclass
class Fixture:
    """The running hub, its callers, and free places to open tickets at."""

    hub: Hub
    street: str
    free: dict[str, Iterator[tuple[str, tuple[float, float]]]]

    def as_(self, caller: str) -> dict[str, str]:
        """A caller's headers."""
        return self.hub.users[caller]

    async def open(self, kinds: list[str]) -> list[str]:
        """Open one ticket of two reports per kind; their ids, in order."""
        spots = [next(self.free[kind]) for kind in kinds]
        firsts = [
            await self.hub.post_event(source="hotline", category=c, location=_at(p))
            for c, p in spots
        ]
        ids = [await self.hub.ticket_of(e["id"]) for e in firsts]
        seconds = [
            await self.hub.post_event(source="grid", category=c, location=_at(p)) for c, p in spots
        ]
        for event, ticket_id in zip(seconds, ids, strict=True):
            assert await self.hub.ticket_of(event["id"]) == ticket_id
        return ids

    async def drive(self, ticket_id: str, steps: tuple[Step, ...]) -> dict[str, Any]:
        """Take a ticket through the steps of its scenario; the ticket after them."""
        ticket = await self.hub.ticket(ticket_id, self.as_("street-desk"))
        for caller, action, body in steps:
            ticket = await self.hub.ok(ticket_id, self.as_(caller), action, **body)
        return ticket

    async def build(self, scenarios: list[str]) -> list[str]:
        """A fresh ticket in each scenario's state."""
        ids = await self.open([SCENARIOS[s][0] for s in scenarios])
        for ticket_id, scenario in zip(ids, scenarios, strict=True):
            await self.drive(ticket_id, SCENARIOS[scenario][1])
        return ids

    async def targets(self, escalations: list[int]) -> list[str]:
        """Open tickets to merge into, owned by the street, district or city centre."""
        ids = await self.open([DISPATCHED] * len(escalations))
        for ticket_id, times in zip(ids, escalations, strict=True):
            await self.drive(ticket_id, SCENARIOS["owned by the city"][1][:times])
        return ids


def _at(point: tuple[float, float]) -> dict[str, float]:
    return {"lon": point[0], "lat": point[1]}


def valid_body(action: str, ticket: dict[str, Any], target: str | None) -> dict[str, Any]:
    """A body the action accepts on this ticket (refusals then come from who and when only)."""
    other = f"zjw@{DISTRICT}" if ticket["department"] != f"zjw@{DISTRICT}" else f"cgj@{DISTRICT}"
    until = datetime.now(UTC) + timedelta(days=30)
    bodies: dict[str, dict[str, Any]] = {
        "dispatch": {"department": f"cgj@{DISTRICT}"},
        "resolve": {"note": "已处理", "photos": ["/files/" + "b" * 64 + ".jpg"]},
        "verify": {"passed": True},
        "return": {"reason": "不属于本部门"},
        "reassign": {"department": other},
        "defer": {"until": until.isoformat()},
        "park": {"reason": "待专项整治"},
        "reject": {"reason": "不予立案"},
        "comment": {"note": "请尽快处理"},
        "callback": {"score": 4},
        "merge": {"into": target},
        "split": {"event_ids": ticket["event_ids"][:1]},
    }
    return bodies.get(action, {})


# Scenarios grouped so that each test stays well inside the per-test timeout.
GROUPS: dict[str, list[str]] = {
    "new": ["new (returned)", "new (属地)"],
    "dispatched": ["dispatched", "parked"],
    "accepted": ["accepted"],
    "working": ["in_progress", "resolved"],
    "finished": ["closed", "rejected"],
    "escalated": ["owned by the district", "owned by the city"],
}
assert sorted(s for group in GROUPS.values() for s in group) == sorted(SCENARIOS)
# What some callers must be offered (the issue: a field worker reading its own ticket was
# offered return, reassign, merge, split, escalate, defer and park).
EXPECTED: dict[tuple[str, str], list[str]] = {
    ("dispatched", "cgj-crew"): ["accept", "comment"],
    ("dispatched", "zjw-crew"): [],
    ("dispatched", "manager"): [],
    ("dispatched", "district-desk"): [],  # the street centre owns it
    ("dispatched", "street-desk"): [
        "return", "reassign", "escalate", "defer", "park", "comment", "merge", "split",
    ],
    ("new (属地)", "office-crew"): ["comment"],
    ("accepted", "cgj-crew"): ["start", "resolve", "comment"],
    ("in_progress", "cgj-crew"): ["resolve", "comment"],
    ("resolved", "street-desk"): ["verify", "comment"],
    ("closed", "street-desk"): ["comment", "callback"],
    ("rejected", "admin"): [],
    ("owned by the district", "street-desk"): [],  # escalated: read-only below
    ("owned by the city", "city-desk"): [
        "return", "reassign", "defer", "park", "comment", "merge", "split",
    ],  # no escalate above the city
}  # fmt: skip


async def sign_in(hub: Hub, street: str) -> None:
    """Store every caller as a user and give it a bearer token (what POST /auth/token issues,
    without hashing eight passwords)."""
    runtime = hub.runtime
    for name, (role, scope, department) in CALLERS.items():
        scope, department = scope.format(S=street), department and department.format(S=street)
        async with runtime.sessions() as session, session.begin():
            session.add(
                User(username=name, password_hash="!", role=role, scope=scope,
                     department=department)
            )  # fmt: skip
        who = Principal(name, role, Scope.parse(scope), department)  # type: ignore[arg-type]
        token = issue_token(who, runtime.jwt_secret, 900)
        hub.users[name] = {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("group", list(GROUPS))
async def test_offered_actions_are_exactly_the_accepted_ones(hub: Hub, group: str) -> None:
    scenarios = GROUPS[group]
    street = hub.streets()[0]
    await sign_in(hub, street.code)
    points = list(places(street))
    free = {
        kind: iter([(c, p) for c in categories for p in points])
        for kind, categories in CATEGORIES.items()
    }
    fx = Fixture(hub, street.code, free)

    # Each scenario once: what every caller is offered, and every other action refused.
    probes = dict(zip(scenarios, await fx.build(scenarios), strict=True))
    [elsewhere] = await fx.targets([0])  # an open ticket to name in refused merges
    offers: dict[tuple[str, str], list[str]] = {}
    for scenario, ticket_id in probes.items():
        before = await hub.ticket(ticket_id, fx.as_("city-desk"))
        for caller in CALLERS:
            ticket = await hub.ticket(ticket_id, fx.as_(caller))
            offered = offers[scenario, caller] = ticket["allowed_actions"]
            for action in ACTIONS:
                if action in offered:
                    continue
                body = valid_body(action, ticket, target=elsewhere)
                reply = await hub.act(ticket_id, fx.as_(caller), action, **body)
                assert reply.status_code in (403, 409), (scenario, caller, action, reply.text)
        after = await hub.ticket(ticket_id, fx.as_("city-desk"))
        assert (after["status"], after["owner_code"], after["department"], after["timeline"]) == (
            before["status"], before["owner_code"], before["department"], before["timeline"],
        )  # fmt: skip
    for (scenario, caller), expected in EXPECTED.items():
        if scenario in scenarios:
            assert sorted(offers[scenario, caller]) == sorted(expected), (scenario, caller)

    # Each offered action, on a fresh ticket in the same state, is accepted.
    cases = [(s, c, a) for (s, c), actions in offers.items() for a in actions]
    fresh = iter(await fx.build([s for s, _c, _a in cases]))
    merges = [TIER_OF.get(s, 0) for s, _c, a in cases if a == "merge"]
    targets = iter(await fx.targets(merges))
    for scenario, caller, offered_action in cases:
        ticket_id = next(fresh)
        ticket = await hub.ticket(ticket_id, fx.as_(caller))
        assert offered_action in ticket["allowed_actions"], (scenario, caller, offered_action)
        target = next(targets) if offered_action == "merge" else None
        body = valid_body(offered_action, ticket, target)
        reply = await hub.act(ticket_id, fx.as_(caller), offered_action, **body)
        assert reply.status_code == 200, (scenario, caller, offered_action, reply.text)


async def test_lists_tasks_and_answers_offer_per_caller(hub: Hub) -> None:
    street = hub.streets()[0]
    await sign_in(hub, street.code)
    crew, desk = hub.users["cgj-crew"], hub.users["street-desk"]
    lon, lat = hub.point(street)
    ticket_id = await hub.report(category="E0101", location=shifted(lon, lat))
    [task] = (await hub.client.get("/api/v1/tasks/mine", headers=crew)).json()
    assert (task["id"], task["allowed_actions"]) == (ticket_id, ["accept", "comment"])
    page = (await hub.client.get("/api/v1/tickets", headers=desk)).json()["items"]
    assert [t["allowed_actions"] for t in page if t["id"] == ticket_id] == [
        ["return", "reassign", "escalate", "defer", "park", "comment", "merge"]
    ]  # one report: nothing to split off
    accepted = await hub.ok(ticket_id, crew, "accept")
    assert accepted["allowed_actions"] == ["start", "resolve", "comment"]  # the answer, too
