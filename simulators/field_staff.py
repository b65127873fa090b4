"""Simulated street staff and dispatchers for `cityhub run --simulate`: the people who close the
loop, so a newcomer watching the wall sees tickets accepted, worked on, resolved and verified
(or sent back: 返工), their colours change and the KPIs move.

Everything goes through the hub's real API, as each person's own signed-in user:
- in a few demo streets, a crew of every department that serves the street (its street office
  and the district's bureaus) reads its tasks (`GET /api/v1/tasks/mine`) and accepts, starts and
  resolves them (with a note and a photo it uploads) after realistic short delays;
- the street's centre and its district's centre (dispatchers) dispatch new tickets they own and
  verify resolved ones: most pass, some fail and go back to the crew;
- the crews also patrol: now and then one reports a problem it found (a grid report with a
  photo), so the demo streets always have work.
A watcher follows `/ws/live` and wakes the person whose turn it is; everyone also looks again
every `Pace.poll_s` in case a message was missed. Each action carries an `Idempotency-Key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import websockets
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.departments import Directory, load_kinds
from services.gateway.identity import check_department, check_scope, check_user_role
from services.gateway.sessions import PASSWORD_CHANGED, revoke_user_logins
from shared.areas import Hierarchy
from shared.auth import Scope, hash_password
from shared.db.models import User
from simulators.city import Street, next_gap, point_in
from simulators.grid import photo
from simulators.runner import Tally
from simulators.texts import complaint

logger = logging.getLogger(__name__)

# The demo streets: the first street of four central districts (渝中, 江北, 沙坪坝, 南岸), spread
# over the map so the wall shows the loop in several places.
DEMO_DISTRICTS = ("500103", "500105", "500106", "500108")
PREFIX = "sim-"  # every simulated user's name starts with it
CREW_ACTIONS = ("accept", "start", "resolve")
RESOLVE_NOTES = ("已处置完毕，现场已恢复", "已清理完成", "已联系责任单位整改到位", "已劝离并复查")
FAIL_NOTES = ("现场复核未达标，请返工", "照片与现场不符，请重新处置")
RECONNECT_S = 2.0  # seconds before the watcher reconnects to /ws/live
LIST_LIMIT = 200

Role = Literal["field_staff", "dispatcher", "manager"]


@dataclass(frozen=True, slots=True)
class Account:
    """One simulated person: a user of the hub."""

    username: str
    role: Role
    scope: str
    department: str | None = None


@dataclass(frozen=True)
class Pace:
    """How long each step takes, in seconds (drawn uniformly between the bounds)."""

    accept_s: tuple[float, float] = (5.0, 30.0)
    start_s: tuple[float, float] = (5.0, 20.0)
    resolve_s: tuple[float, float] = (20.0, 90.0)
    verify_s: tuple[float, float] = (10.0, 40.0)
    dispatch_s: tuple[float, float] = (5.0, 20.0)
    poll_s: float = 30.0  # a person looks again this often even when nothing woke them
    start_jitter_s: float = 10.0  # sign-ins are spread over this long at start
    report_every_s: float = 90.0  # mean gap between one street's own reports (0: none)
    pass_rate: float = 0.85  # verifications that pass

    def delay(self, action: str, rng: random.Random) -> float:
        """How long before doing `action`."""
        low, high = {
            "accept": self.accept_s, "start": self.start_s, "resolve": self.resolve_s,
            "verify": self.verify_s, "dispatch": self.dispatch_s,
        }[action]  # fmt: skip
        return rng.uniform(low, high)


@dataclass(frozen=True)
class Roster:
    """Who works the demo streets: crews by (street, department), desks by centre code with the
    demo streets each one looks after."""

    streets: tuple[str, ...]
    crews: dict[tuple[str, str], Account]
    desks: dict[str, Account]
    beats: dict[str, tuple[str, ...]]
    watcher: Account

    @property
    def accounts(self) -> list[Account]:
        """Every simulated account."""
        return [*self.crews.values(), *self.desks.values(), self.watcher]


def demo_streets(hierarchy: Hierarchy, districts: Iterable[str] = DEMO_DISTRICTS) -> list[str]:
    """The first street (by code) of each demo district; in a hierarchy without them (an
    imported city), of its first districts by code."""
    wanted = [d for d in districts if hierarchy.get(d) is not None]
    if not wanted:
        every = sorted(hierarchy.children(hierarchy.city.code), key=lambda a: a.code)
        wanted = [d.code for d in every[: len(DEMO_DISTRICTS)]]
    streets = []
    for district in wanted:
        children = sorted(hierarchy.children(district), key=lambda a: a.code)
        if children:
            streets.append(children[0].code)
    return streets


def roster(hierarchy: Hierarchy, streets: Iterable[str]) -> Roster:
    """Crews of every department serving each street but the city bureaus (the street office
    and the district's bureaus, scoped to the street), each street's desk, each district's
    desk, and a city-wide watcher. Pure: no accounts are created here."""
    directory = Directory(hierarchy, load_kinds())
    crews: dict[tuple[str, str], Account] = {}
    desks: dict[str, Account] = {}
    beats: dict[str, tuple[str, ...]] = {}
    codes = tuple(streets)
    for code in codes:
        area = hierarchy.get(code)
        assert area is not None and area.parent is not None, code
        district = area.parent
        for department in directory.serving(district, code):
            if department.level == "city":
                continue
            kind = department.code.partition("@")[0]
            crews[(code, department.code)] = Account(
                f"{PREFIX}{kind}-{code}", "field_staff", f"street:{code}", department.code
            )
        desks[code] = Account(f"{PREFIX}desk-{code}", "dispatcher", f"street:{code}")
        desks[district] = Account(f"{PREFIX}desk-{district}", "dispatcher", f"district:{district}")
        beats[code] = (code,)
        beats[district] = (*beats.get(district, ()), code)
    watcher = Account(f"{PREFIX}watch", "manager", "city")
    return Roster(codes, crews, desks, beats, watcher)


@dataclass(frozen=True)
class Staff:
    """The simulated staff of one run and the password they share."""

    team: Roster
    password: str


async def enlist_demo_staff(session: AsyncSession, hierarchy: Hierarchy) -> Staff:
    """The demo streets' staff, created (or refreshed) with a new random password."""
    team = roster(hierarchy, demo_streets(hierarchy))
    password = secrets.token_urlsafe(18)
    await enlist(session, hierarchy, team.accounts, password)
    return Staff(team, password)


async def enlist(
    session: AsyncSession, hierarchy: Hierarchy, accounts: Iterable[Account], password: str
) -> None:
    """Create the simulated users, or bring existing ones back to these settings with this
    password (their old sign-ins end). Checked like any user; one argon2 hash for them all."""
    wanted = {a.username: a for a in accounts}
    for account in wanted.values():
        check_user_role(account.role)
        scope = Scope.parse(account.scope)
        check_scope(scope, hierarchy)
        check_department(account.department, account.role, scope, hierarchy)
    password_hash = await asyncio.to_thread(hash_password, password)
    found = await session.scalars(select(User).where(User.username.in_(list(wanted))))
    existing = {user.username: user for user in found}
    for name, account in wanted.items():
        user = existing.get(name)
        if user is None:
            session.add(
                User(
                    username=name, password_hash=password_hash, role=account.role,
                    scope=account.scope, department=account.department,
                )
            )  # fmt: skip
            continue
        user.password_hash = password_hash
        user.role, user.scope, user.department = account.role, account.scope, account.department
        user.disabled = False
        await revoke_user_logins(session, name, PASSWORD_CHANGED)


class Person:
    """One simulated person's session with the hub: signs in when first needed, refreshes its
    token before it expires, signs in again if the sign-in ended."""

    def __init__(self, client: httpx.AsyncClient, account: Account, password: str) -> None:
        self.client = client
        self.account = account
        self.password = password
        self.access = ""
        self.refresh = ""
        self.expires = 0.0

    async def token(self) -> str:
        """A valid access token."""
        if self.access and time.monotonic() < self.expires - 60:
            return self.access
        reply = None
        if self.refresh:
            reply = await self.client.post("/auth/refresh", json={"refresh_token": self.refresh})
        if reply is None or reply.status_code != 200:
            reply = await self.client.post(
                "/auth/token", data={"username": self.account.username, "password": self.password}
            )
        reply.raise_for_status()
        body = reply.json()
        self.access, self.refresh = body["access_token"], body["refresh_token"]
        self.expires = time.monotonic() + body["expires_in"]
        return self.access

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An API request as this person (signed in again once on a 401)."""
        headers = dict(kwargs.pop("headers", {}))
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {await self.token()}"
            reply = await self.client.request(method, path, headers=headers, **kwargs)
            if reply.status_code != 401 or attempt:
                return reply
            self.access = self.refresh = ""
        raise AssertionError("unreachable")

    async def act(self, ticket_id: str, body: dict[str, Any]) -> int:
        """POST one action (with its own Idempotency-Key); the status code."""
        reply = await self.request(
            "POST",
            f"/api/v1/tickets/{ticket_id}/actions",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return reply.status_code


Ticket = dict[str, Any]


@dataclass
class Actor:
    """A person who looks at tickets, decides what is due, and does it when its time comes."""

    person: Person
    candidates: Callable[[Person], Awaitable[list[Ticket]]]
    choose: Callable[[Ticket], str | None]
    perform: Callable[[Person, Ticket, str], Awaitable[int]]
    pace: Pace
    rng: random.Random
    tally: Tally
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    due: dict[str, tuple[str, float]] = field(default_factory=dict)  # id → (action, when)

    async def round(self) -> float:
        """Look at the tickets once, do what is due; seconds until the next step is due."""
        now = time.monotonic()
        seen = set()
        for ticket in await self.candidates(self.person):
            action = self.choose(ticket)
            if action is None:
                continue
            seen.add(ticket["id"])
            planned = self.due.get(ticket["id"])
            if planned is None or planned[0] != action:
                self.due[ticket["id"]] = (action, now + self.pace.delay(action, self.rng))
            elif planned[1] <= now:
                status = await self.perform(self.person, ticket, action)
                self.tally.counts[f"{action}:{status}"] += 1
                del self.due[ticket["id"]]
        for gone in set(self.due) - seen:
            del self.due[gone]
        waits = [when - time.monotonic() for _action, when in self.due.values()]
        return max(0.0, min([self.pace.poll_s, *waits]))

    async def run(self) -> None:
        """Work until cancelled; a failed round is counted and retried later."""
        await asyncio.sleep(self.rng.uniform(0, self.pace.start_jitter_s))
        while True:
            self.wake.clear()
            try:
                wait = await self.round()
            except Exception as exc:  # a simulator reports failures, it does not stop on them
                self.tally.counts[type(exc).__name__] += 1
                logger.debug("%s: round failed", self.person.account.username, exc_info=True)
                wait = self.pace.poll_s
            with contextlib.suppress(TimeoutError):  # woken, or time to look again
                await asyncio.wait_for(self.wake.wait(), timeout=wait)


def _crew_choice(ticket: Ticket) -> str | None:
    allowed = ticket.get("allowed_actions", ())
    return next((a for a in CREW_ACTIONS if a in allowed), None)


def _desk_choice(ticket: Ticket) -> str | None:
    allowed = ticket.get("allowed_actions", ())
    if "verify" in allowed:
        return "verify"
    department = ticket.get("department") or ""
    if "dispatch" in allowed and department and not department.startswith("dispatch@"):
        return "dispatch"  # to the department routing suggested (属地: the street office)
    return None


async def _my_tasks(person: Person) -> list[Ticket]:
    reply = await person.request("GET", "/api/v1/tasks/mine", params={"limit": LIST_LIMIT})
    reply.raise_for_status()
    tasks: list[Ticket] = reply.json()
    return tasks


def _centre_tickets(streets: tuple[str, ...]) -> Callable[[Person], Awaitable[list[Ticket]]]:
    async def candidates(person: Person) -> list[Ticket]:
        found: list[Ticket] = []
        for street in streets:
            reply = await person.request(
                "GET",
                "/api/v1/tickets",
                params={"street": street, "status": ["new", "resolved"], "limit": LIST_LIMIT},
            )
            reply.raise_for_status()
            found += reply.json()["items"]
        return found

    return candidates


def _crew_work(rng: random.Random) -> Callable[[Person, Ticket, str], Awaitable[int]]:
    async def perform(person: Person, ticket: Ticket, action: str) -> int:
        body: dict[str, Any] = {"action": action}
        if action == "resolve":
            files = {"photo": ("site.png", photo(rng), "image/png")}
            stored = await person.request("POST", "/api/v1/photos", files=files)
            if stored.status_code == 201:
                body["photos"] = [stored.json()["path"]]
            body["note"] = rng.choice(RESOLVE_NOTES)
        return await person.act(ticket["id"], body)

    return perform


def _desk_work(pace: Pace, rng: random.Random) -> Callable[[Person, Ticket, str], Awaitable[int]]:
    async def perform(person: Person, ticket: Ticket, action: str) -> int:
        body: dict[str, Any] = {"action": action}
        if action == "verify":
            body["passed"] = rng.random() < pace.pass_rate
            body["note"] = "核查通过" if body["passed"] else rng.choice(FAIL_NOTES)
        return await person.act(ticket["id"], body)

    return perform


async def _watch(
    base_url: str, watcher: Person, on_ticket: Callable[[Ticket], None], tally: Tally
) -> None:
    """Follow /ws/live (the watcher's city scope) and hand every ticket change to `on_ticket`."""
    ws_base = base_url.rstrip("/").replace("http", "ws", 1)
    while True:
        try:
            query = urlencode({"streams": "tickets"})
            async with websockets.connect(f"{ws_base}/ws/live?{query}") as socket:
                # The token in the first message, not the URL: servers log URLs.
                await socket.send(json.dumps({"type": "auth", "token": await watcher.token()}))
                async for raw in socket:
                    message = json.loads(raw)
                    if message.get("type") == "hello":
                        tally.counts["live:connected"] += 1
                    elif message.get("stream") == "tickets":
                        on_ticket(message["data"])
                    elif message.get("type") == "resync":
                        on_ticket({})  # something was missed: everyone looks
        except (OSError, httpx.HTTPError, websockets.WebSocketException):
            logger.debug("field staff: live stream dropped; reconnecting", exc_info=True)
        await asyncio.sleep(RECONNECT_S)


async def _patrol(
    person: Person, street: Street, pace: Pace, rng: random.Random, tally: Tally
) -> None:
    """A crew's own reports of what it finds in its street, with a photo."""
    while True:
        await asyncio.sleep(next_gap(1.0 / pace.report_every_s, rng))
        code, text = complaint(street.name, rng)
        lon, lat = point_in(street.polygon, rng)
        data = {
            "category": code, "description": text, "lon": str(lon), "lat": str(lat),
            "source_ref": str(uuid.uuid4()),
        }  # fmt: skip
        files = [("photos", ("patrol.png", photo(rng), "image/png"))]
        try:
            reply = await person.request("POST", "/api/v1/grid-reports", data=data, files=files)
            tally.counts[f"report:{reply.status_code}"] += 1
        except httpx.HTTPError as exc:
            tally.counts[type(exc).__name__] += 1


async def run(
    client: httpx.AsyncClient,
    team: Roster,
    password: str,
    streets: list[Street],
    *,
    pace: Pace | None = None,
    seed: int = 9_000,
    tally: Tally | None = None,
) -> Tally:
    """Work the demo streets until cancelled; outcomes (`action:status`) counted in `tally`."""
    pace = pace or Pace()
    tally = tally if tally is not None else Tally()
    rng = random.Random(seed)
    people = {a.username: Person(client, a, password) for a in team.accounts}
    crews = {
        key: Actor(
            people[a.username], _my_tasks, _crew_choice, _crew_work(random.Random(rng.random())),
            pace, random.Random(rng.random()), tally,
        )
        for key, a in team.crews.items()
    }  # fmt: skip
    desks: dict[str, Actor] = {}
    for centre, account in team.desks.items():
        desks[centre] = Actor(
            people[account.username], _centre_tickets(team.beats[centre]), _desk_choice,
            _desk_work(pace, random.Random(rng.random())), pace, random.Random(rng.random()),
            tally,
        )  # fmt: skip

    def on_ticket(data: Ticket) -> None:
        if not data:
            for actor in (*crews.values(), *desks.values()):
                actor.wake.set()
            return
        street = data.get("street_code")
        crew = crews.get((street, data.get("department")))  # type: ignore[arg-type]
        if crew is not None:
            crew.wake.set()
        desk = desks.get(data.get("owner_code") or "")
        if desk is not None:
            desk.wake.set()

    by_code = {s.code: s for s in streets}
    patrols = []
    if pace.report_every_s > 0:
        for code in team.streets:
            office = team.crews.get((code, f"office@{code}"))
            if office is not None and code in by_code:
                patrols.append(
                    _patrol(
                        people[office.username],
                        by_code[code],
                        pace,
                        random.Random(rng.random()),
                        tally,
                    )
                )
    await asyncio.gather(
        _watch(str(client.base_url), people[team.watcher.username], on_ticket, tally),
        *(actor.run() for actor in (*crews.values(), *desks.values())),
        *patrols,
    )
    return tally
