"""Process kills under steady load (docs/faults.md): `kill -9` of dispatch, of ingest while MQTT
readings flow, of one of two gateways with live clients attached, and of one of two dispatch
replicas in the middle of a batch; then the invariants of tests/faults/checks.py, printed
(`pytest -s`) and asserted."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest

from tests.faults import checks
from tests.faults.checks import Check
from tests.faults.stack import (
    Endpoints,
    HotlineLoad,
    LiveWatcher,
    SensorLoad,
    Stack,
    production_stack,
)
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.mqtt,
    pytest.mark.timeout(180),  # each test aims at under 60 s; the bound is for hangs
]
STEP_EVENTS = 30  # accepted events that mark "the load went on for a while" between steps
STEP_TIMEOUT_S = 60.0  # for that many to be accepted on a loaded machine


@dataclass
class Load:
    """What drives a stack during a test."""

    stack: Stack
    hotline: HotlineLoad
    sensors: SensorLoad
    watcher: LiveWatcher
    marks: list[tuple[str, float]] = field(default_factory=list)  # (step, monotonic time)

    def mark(self, step: str) -> None:
        """Note when a step happened (printed with the counts)."""
        self.marks.append((step, time.monotonic()))

    async def more_events(self, count: int = STEP_EVENTS) -> None:
        """Let the load run until `count` more hotline events were accepted."""
        target = len(self.hotline.accepted) + count

        async def enough() -> bool:
            return len(self.hotline.accepted) >= target

        await wait_for(enough, within=STEP_TIMEOUT_S, interval=0.1)

    async def invariants(self, *, timers: list[int] | None = None) -> list[Check]:
        """Every check of tests/faults/checks.py, after the load stopped."""
        self.mark("load stopped")
        unacked = await self.sensors.wait_acked()
        assert unacked == 0, f"{unacked} readings never acknowledged by the broker"
        found = [
            await checks.events_ticketed(self.stack, self.hotline.accepted),
            await checks.alarms_raised(self.stack, self.sensors),
            await checks.no_duplicate_tickets(self.stack),
            await checks.timers_fired_once(self.stack, timers or []),
            await checks.kpis_agree(self.stack),
            await checks.live_once(self.stack, self.watcher),
            checks.intake_answers(self.hotline.answers),
        ]
        self.mark("checked")
        return found

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The hotline and the sensors publish for the duration of the block."""
        self.mark("load started")
        async with self.hotline.running(), self.sensors.running():
            yield

    def lines(self) -> list[str]:
        """What the load did, and when each step came (seconds after the load started)."""
        start = self.marks[0][1] if self.marks else 0.0
        steps = ", ".join(f"{step} {at - start:.1f}" for step, at in self.marks)
        return [
            f"stack started in {self.stack.started_in:.1f} s; steps (s): {steps}",
            self.hotline.line(),
            self.sensors.line(),
        ]


@asynccontextmanager
async def loaded(
    stack: Stack, *, rate_per_s: float = 20.0, sensors: int = 4, period_s: float = 0.5
) -> AsyncIterator[Load]:
    """The hotline, the sensors and a live client on the stack (the client connects first, so
    it must see every change the test makes); the hotline and the sensors publish while
    `load.running()`, the client and the broker connection stay until the block ends."""
    watcher = await LiveWatcher.start(stack, stack.token("boss"))
    async with AsyncExitStack() as cleanup:
        cleanup.push_async_callback(watcher.stop)
        fleet = await SensorLoad.start(stack, sensors=sensors, period_s=period_s)
        cleanup.push_async_callback(fleet.close)
        yield Load(stack, HotlineLoad(stack, rate_per_s=rate_per_s), fleet, watcher)


async def test_kill_dispatch_and_restart(endpoints: Endpoints) -> None:
    """Dispatch dies (kill -9) with timers falling due; after its restart every event has its
    ticket and every timer that fell due meanwhile fired once."""
    async with production_stack(endpoints) as stack, loaded(stack) as load:
        async with load.running():
            await load.more_events()
            timers = await stack.bring_timers_due(tickets=10, within_s=4)
            stack.kill("dispatch-1")
            load.mark("dispatch killed")
            await load.more_events()  # events pile up on the bus, timers fall due
            await stack.restart("dispatch-1")
            load.mark("dispatch healthy")
            await load.more_events()
        found = await load.invariants(timers=timers)
        checks.report(
            "kill -9 dispatch, restart",
            [*load.lines(), f"timers brought due: {len(timers)}"],
            found,
        )


async def test_kill_ingest_while_readings_flow(endpoints: Endpoints) -> None:
    """Ingest dies (kill -9) while sensors publish: readings the broker acknowledged wait in
    ingest's persistent session and raise their alarms after the restart; HTTP events answered
    before the kill are kept, those refused meanwhile are retried by the sender."""
    # 8 sensors, 10 readings a second each: half of them raise an alarm (a stored event), so
    # the kill lands with messages in flight between the broker and a commit.
    async with (
        production_stack(endpoints) as stack,
        loaded(stack, sensors=8, period_s=0.1) as load,
    ):
        async with load.running():
            await load.more_events()
            before = len(load.sensors.readings)
            stack.kill("ingest-1")
            load.mark("ingest killed")
            await wait_for(
                _readings_since(load.sensors, before, 100), within=STEP_TIMEOUT_S, interval=0.1
            )
            await stack.restart("ingest-1")
            load.mark("ingest healthy")
            during = len(load.sensors.readings) - before
            await load.more_events()
        found = await load.invariants()
        checks.report(
            "kill -9 ingest with MQTT readings flowing",
            [*load.lines(), f"readings published from the kill until ingest was healthy: {during}"],
            found,
        )


async def test_kill_one_of_two_gateways(endpoints: Endpoints) -> None:
    """One of two gateways dies (kill -9) with a live client on it: the client resumes on the
    other with `since`, later moves back to the restarted one, and sees every change once."""
    async with production_stack(endpoints, replicas={"gateway": 2}) as stack, loaded(stack) as load:
        other = await LiveWatcher.start(stack, stack.token("boss"), url=stack.url("gateway-2"))
        try:
            async with load.running():
                await load.more_events()
                stack.kill("gateway-1")
                load.mark("gateway-1 killed")
                await load.more_events()  # through gateway-2 only
                assert load.watcher.url == stack.url("gateway-2")
                await stack.restart("gateway-1")
                load.mark("gateway-1 healthy")
                await load.more_events()
                await load.watcher.move_to(stack.url("gateway-1"))
                load.mark("client moved back")
                await load.more_events()
            found = await load.invariants()
            survivor = await checks.live_once(stack, other)
        finally:
            await other.stop()
        survivor.name = "live client on the surviving gateway saw every change once"
        connections = load.watcher.connections
        checks.report(
            "kill -9 one of two gateways with live clients",
            [*load.lines(), f"connections of the client that moved: {connections}"],
            [*found, survivor],
        )
        assert connections >= 3, "the client did not resume on the other gateway and back"


async def test_kill_one_of_two_dispatchers_mid_batch(endpoints: Endpoints) -> None:
    """Two dispatch replicas; a backlog builds while both are paused, one is let go and killed
    (kill -9) while it holds a batch it read but did not acknowledge; the other re-claims those
    deliveries once idle (CITYHUB_DISPATCH__CLAIM_IDLE_S) and every event gets one ticket. The
    sweep is pushed far out, so only the re-claim can recover the batch in time."""
    env = {"CITYHUB_DISPATCH__SWEEP_GRACE_S": "600"}
    async with (
        production_stack(endpoints, replicas={"dispatch": 2}, env=env) as stack,
        loaded(stack, rate_per_s=40) as load,
    ):
        async with load.running():
            await load.more_events()
            stack.pause("dispatch-1")
            stack.pause("dispatch-2")
            load.mark("dispatchers paused")
            await load.more_events(150)  # the backlog
            victim = stack.pid("dispatch-1")
            stack.resume("dispatch-1")

            seen: list[dict[int, int]] = []

            async def holds_a_batch() -> bool:
                seen.append(await stack.pending())
                return seen[-1].get(victim, 0) >= 50

            try:
                await wait_for(holds_a_batch, within=STEP_TIMEOUT_S, interval=0.005)
            except AssertionError:
                raise AssertionError(f"victim {victim}, pending seen: {seen[::20]}") from None
            stack.kill("dispatch-1")
            load.mark("dispatch-1 killed")
            in_flight = (await stack.pending())[victim]
            stack.resume("dispatch-2")
            await load.more_events()

            async def reclaimed() -> bool:
                return (await stack.pending()).get(victim, 0) == 0

            await wait_for(reclaimed, within=STEP_TIMEOUT_S, interval=0.2)
            load.mark("batch re-claimed")
        found = await load.invariants()
        checks.report(
            "two dispatchers, one killed mid-batch",
            [*load.lines(), f"deliveries held by the killed replica: {in_flight} (re-claimed)"],
            found,
        )


def _readings_since(sensors: SensorLoad, before: int, count: int) -> Callable[[], Awaitable[bool]]:
    """A probe: `count` more readings were published since there were `before`."""

    async def probe() -> bool:
        return len(sensors.readings) - before >= count

    return probe
