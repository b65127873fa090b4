"""`cityhub bench live` runs the live path for real (PostgreSQL, Redis, metrics, gateway, the bare
server, client processes) and reports deliveries and latencies for both servers."""

from __future__ import annotations

import json
import math

import numpy as np

from shared.areas import generate_demo
from simulators.bench_live import Offered, Ramp, Window, plan_screens
from tests.support.processes import cli


def test_screens_cover_every_level_and_the_fanout_counts_them() -> None:
    hierarchy = generate_demo()
    plan = plan_screens(hierarchy, 1_000)
    levels = [s.scope.partition(":")[0] for s in plan.screens]
    assert (levels.count("city"), levels.count("district"), levels.count("street")) == (
        50, 200, 750,
    )  # fmt: skip
    assert set(plan.districts) == {d.code for d in hierarchy.districts}
    street = next(iter(plan.streets))
    district = hierarchy.get(street).parent  # type: ignore[union-attr]
    covering = [
        s for s in plan.screens if s.scope in ("city", f"district:{district}", f"street:{street}")
    ]
    assert plan.fanout(district, street) == len(covering)
    assert {s.user for s in plan.screens} == set(plan.users)  # every user signs in, none idle


def _ramp_through(ramp: Ramp, sustained_up_to: float) -> list[float]:
    tried = []
    while ramp.next is not None:
        rate = ramp.next
        tried.append(rate)
        empty = np.zeros(0)
        step = Window(
            "bare", "step", rate, 1.0, Offered(), 0, 0, empty, empty, {}, {}, {}, {}, 0, 0, {}, {}
        )
        ramp.record(step, rate <= sustained_up_to)
    return tried


def test_the_ramp_climbs_until_a_step_fails_then_bisects() -> None:
    ramp = Ramp(100, 2, refine=2)
    tried = _ramp_through(ramp, sustained_up_to=300)
    assert tried[:3] == [100, 200, 400]
    assert math.isclose(tried[3], math.sqrt(200 * 400))  # 283: sustained
    assert math.isclose(tried[4], math.sqrt(tried[3] * 400))  # 336: not
    assert len(tried) == 5 and ramp.best is not None and ramp.best.rate == tried[3]


def test_the_ramp_steps_down_when_its_first_step_fails() -> None:
    ramp = Ramp(100, 2, refine=1)
    tried = _ramp_through(ramp, sustained_up_to=30)
    assert tried[:3] == [100, 50, 25]
    assert math.isclose(tried[3], math.sqrt(25 * 50)) and len(tried) == 4
    assert ramp.best is not None and ramp.best.rate == 25 and ramp.failed == tried[3]


def test_a_tiny_run_reports_deliveries_and_latencies(pg_server_url: str, redis_url: str) -> None:
    done = cli(
        {}, "bench", "live", "--clients", "20", "--rate", "20", "--seconds", "2",
        "--real-rate", "5", "--real-seconds", "2", "--no-saturation", "--json",
        "--postgres", pg_server_url, "--redis", redis_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3_000:]
    figures = json.loads(done.stdout)
    assert "gateway" in done.stderr and "p99" in done.stderr  # the table
    for server in ("gateway", "bare"):
        window = figures["steady"][server]
        assert window["ticket_deliveries"] > 0
        assert window["ticket_deliveries"] == window["expected_ticket_deliveries"]
        assert window["clients_open_after"] == 20 and not window["closes"]
        latency = window["latency_ms"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 5_000
        assert window["resources"][server]["rss_max_mb"] > 0
    real = figures["real"]  # tickets made by dispatch from events posted to ingest
    assert real["changes_per_s"] > 0 and real["ticket_deliveries"] > 0
    assert real["latency_ms"]["p50"] > 0 and real["history_latency_ms"]["p50"] > 0
    assert figures["verdict"]["p99_ms"]["target"] == 100.0
