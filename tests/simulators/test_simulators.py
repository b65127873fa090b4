"""Simulators produce realistic, valid load that the hub accepts."""

from __future__ import annotations

import random
from collections import Counter

import shapely
from sqlalchemy import func, select

from services.hub import create_hub_app
from shared.db.models import Event
from shared.settings import Settings
from simulators import grid, hotline
from simulators.city import fetch_streets, hourly_weight, pick_street, point_in, street_weight
from simulators.texts import complaint
from tests.support.apps import add_key, runtime_of, serving


def test_hourly_profile_keeps_the_daily_mean_and_peaks_by_day() -> None:
    weights = [hourly_weight(h) for h in range(24)]
    assert abs(sum(weights) / 24 - 1.0) < 1e-9
    assert max(weights[8:18]) > 3 * max(weights[0:5])


def test_streets_drawn_by_population_weight() -> None:
    assert street_weight("解放碑街道") > street_weight("某某镇") > street_weight("某某乡")
    square = shapely.box(0, 0, 1, 1)
    from simulators.city import Street

    streets = [Street("a", "甲街道", "d", square, 4.0), Street("b", "乙乡", "d", square, 0.4)]
    rng = random.Random(3)
    drawn = Counter(pick_street(streets, rng).code for _ in range(5000))
    assert 8 < drawn["a"] / drawn["b"] < 12
    assert all(shapely.contains_xy(square, *point_in(square, rng)) for _ in range(100))


def test_complaints_name_a_catalogue_category_and_the_street() -> None:
    rng = random.Random(1)
    for _ in range(50):
        code, text = complaint("解放碑街道", rng)
        assert code[0] in "CE" and len(code) == 5
        assert len(text) > 8


async def test_grid_simulator_reports_are_accepted(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        key = await add_key(app, "sim")
        headers = {"X-API-Key": key}
        streets = await fetch_streets(client, headers)
        assert len(streets) == 1031
        tally = await grid.run(
            client, headers, streets, rate_per_s=500, count=20, shaped=False, progress=False
        )
        assert tally.counts == {"201": 20}
        async with runtime_of(app).sessions() as session:
            rows = (await session.execute(select(Event.source, Event.geotag_method))).all()
        assert len(rows) == 20
        assert {r.source for r in rows} == {"grid"} and {r.geotag_method for r in rows} == {"point"}


async def test_hotline_simulator_posts_through_open311(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        key = await add_key(app, "crm")
        streets = await fetch_streets(client, {"X-API-Key": key})
        tally = await hotline.run(
            client, key, streets, rate_per_s=500, count=20, shaped=False, progress=False
        )
        assert set(tally.counts) <= {"200", "201"} and tally.total == 20, tally.counts
        async with runtime_of(app).sessions() as session:
            hotline_events = await session.scalar(
                select(func.count()).select_from(Event).where(Event.source == "hotline")
            )
        assert hotline_events == 20
