"""`cityhub bench e2e` starts the production stack as processes, drives it with hotline, grid and
sensor load, and reports intake, event → websocket latency, timer lag and each process's CPU
and memory, as a table and as JSON."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from simulators.bench_e2e import EPISODE_MEAN, SensorPlan
from tests.support.processes import cli
from tests.support.servers import Servers


def _plan(**given: float) -> SensorPlan:
    args = {"sensors": 10_000, "sensor_interval": 60.0, "sensor_speed": 1.0,
            "alarm_share": 0.005, "speed": 100.0, **given}  # fmt: skip
    return SensorPlan.of(argparse.Namespace(**args))


def test_the_compressed_day_keeps_readings_real_and_compresses_alarms() -> None:
    plan = _plan()
    assert plan.readings_per_s == pytest.approx(10_000 / 60)
    # 0.5 % of a real day's readings over the line, in episodes, a hundred times faster
    assert plan.alarms_per_s_asked == pytest.approx(10_000 / 60 * 0.005 / EPISODE_MEAN * 100)
    assert plan.alarms_per_s_planned == pytest.approx(plan.alarms_per_s_asked)
    # compressing the readings too leaves the alarms where they were
    both = _plan(sensor_speed=100.0)
    assert both.readings_per_s == pytest.approx(100 * plan.readings_per_s)
    assert both.alarms_per_s_planned == pytest.approx(plan.alarms_per_s_asked)
    # more alarms than the readings can carry: the plan says how many it can give
    capped = _plan(speed=10_000.0)
    assert capped.alarms_per_s_planned < capped.alarms_per_s_asked


@pytest.mark.timeout(90)
def test_a_tiny_chongqing_run_reports_every_figure(
    servers: Servers, pg_server_url: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "e2e.json"
    # A day compressed 2,000 times: 1-hour accept deadlines fall due after 1.8 s (warnings
    # after 1.4 s), so timers fire within the few seconds of load.
    done = cli(
        {}, "bench", "e2e", "--profile", "chongqing", "--replicas", "1", "--duration", "5",
        "--speed", "2000", "--tickets-per-day", "250", "--sensors", "100",
        "--sensor-speed", "20", "--alarm-share", "0.002", "--json", str(out),
        "--postgres", pg_server_url, "--redis", redis_url,
        "--mqtt", f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3_000:] + done.stdout[-3_000:]
    assert "event → screen" in done.stdout and "timer lag" in done.stdout  # the table
    figures = json.loads(out.read_text())

    intake = figures["intake"]
    assert intake["answers"]["hotline"].get("201", 0) > 0
    assert intake["answers"]["grid"].get("201", 0) > 0
    assert intake["accepted_per_s"] >= intake["http_accepted_per_s"] > 0
    assert intake["readings_published"] > 0
    stored = figures["events_stored"]
    assert stored["hotline"] > 0 and stored["grid"] > 0
    # every event stored reached a ticket and the screen
    assert figures["events_missing"] == 0
    assert figures["events_shown"] == figures["events_linked"] == sum(stored.values())
    assert 0 < figures["tickets_opened"] <= sum(stored.values())

    for key in ("latency_ms", "to_ticket_ms"):
        lat = figures[key]
        assert lat["samples"] == sum(stored.values())
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 60_000
    # each stage after the one before: linked, on the bus, in the live history, on the screen
    stages = ["to_ticket_ms", "to_bus_ms", "to_history_ms", "latency_ms"]
    p50s = [figures[stage]["p50"] for stage in stages]
    assert 0 < p50s[0] <= p50s[1] <= p50s[2] <= p50s[3], p50s
    assert intake["answer_ms"]["samples"] == sum(
        sum(answers.values()) for answers in intake["answers"].values()
    )

    lag = figures["timer_lag_ms"]
    assert lag["fired"] > 0 and lag["by_kind"]
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"] < 60_000

    resources = figures["resources"]
    for name in ("ingest-1", "dispatch-1", "gateway-1", "metrics", "driver", "screens"):
        assert resources[name]["rss_max_mb"] > 0, name
        assert not math.isnan(resources[name]["cpu_mean"]), name
    assert figures["setup"]["deadlines_compressed"] is True
    assert set(figures["verdict"]) == {"p99_event_to_screen_ms", "timer_lag_p99_ms",
                                       "nothing_missing"}  # fmt: skip
    assert figures["machine"]["cores"] >= 1


@pytest.mark.timeout(90)
def test_a_tiny_capacity_run_climbs_its_steps(
    servers: Servers, pg_server_url: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "e2e.json"
    done = cli(
        {}, "bench", "e2e", "--profile", "capacity", "--steps", "10,20",
        "--step-seconds", "3", "--p99-limit-ms", "60000", "--json", str(out),
        "--postgres", pg_server_url, "--redis", redis_url,
        "--mqtt", f"mqtt://{servers.mqtt_host}:{servers.mqtt_port}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3_000:] + done.stdout[-3_000:]
    assert "highest rate held: 20" in done.stdout  # the table
    figures = json.loads(out.read_text())
    assert figures["best_rate_held"] == 20 and figures["intake_path"] == "batch"
    assert [s["rate_asked"] for s in figures["steps"]] == [10, 20]
    for step in figures["steps"]:
        assert step["held"] is True
        # every event of the step was sent, accepted, ticketed and shown
        assert step["answers"]["api"]["201"] == step["rate_asked"] * 3
        assert step["events_stored"]["hotline"] == step["rate_asked"] * 3
        assert step["events_missing"] == 0 and step["tickets_opened"] > 0
        lat = step["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 60_000
        # the bus and the live history (Redis) have each ticket before the screen does
        assert 0 < step["to_bus_ms"]["p50"] <= step["to_history_ms"]["p50"] <= lat["p50"]
        assert step["resources"]["gateway-1"]["rss_max_mb"] > 0
    assert figures["verdict"]["capacity_events_per_s"]["met"] is False  # 20 < 1,000
