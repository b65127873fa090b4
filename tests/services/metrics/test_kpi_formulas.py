"""KPI formulas: rates with zero denominators, nearest-rank percentiles, score and grade."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.metrics.figures import window_start
from services.metrics.formulas import (
    ScoreInputs,
    grade,
    mean_seconds,
    nearest_rank,
    rate,
    score,
)
from shared.settings import KpiWeights, Settings

DEFAULT = KpiWeights()


def test_a_rate_with_a_zero_denominator_is_none_never_0_or_1() -> None:
    assert rate(0, 0) is None
    assert rate(3, 0) is None
    assert rate(0, 4) == 0.0
    assert rate(4, 4) == 1.0
    assert rate(1, 3) == 0.3333


def test_means_and_the_nearest_rank() -> None:
    assert mean_seconds(0, 0) is None
    assert mean_seconds(5_400, 2) == 2.7
    assert nearest_rank(0, 0.9) is None
    assert nearest_rank(1, 0.9) == 0
    assert nearest_rank(2, 0.9) == 1
    assert nearest_rank(10, 0.9) == 8  # the 9th smallest of 10
    assert nearest_rank(11, 0.9) == 9


def test_score_weights_and_a_missing_rate_drops_out() -> None:
    every = ScoreInputs(on_time_close_rate=0.25, close_rate=0.75, rework_rate=0.5,
                        satisfied_rate=0.5)  # fmt: skip
    # (40·0.25 + 20·0.75 + 20·0.5 + 20·0.5) / 100
    assert score(every, DEFAULT) == 45.0
    no_callbacks = ScoreInputs(0.25, 0.75, 0.5, None)
    assert score(no_callbacks, DEFAULT) == 43.8  # 35 / 80, re-weighted
    only_rework = ScoreInputs(None, None, 0.0, None)
    assert score(only_rework, DEFAULT) == 100.0
    assert score(ScoreInputs(None, None, None, None), DEFAULT) is None
    custom = KpiWeights(on_time_close=1, close=0, no_rework=0, satisfaction=0)
    assert score(every, custom) == 25.0
    assert score(ScoreInputs(None, 0.75, 0.5, 0.5), custom) is None  # no weighted rate left


def test_grades_at_their_boundaries() -> None:
    assert [grade(v) for v in (100.0, 90.0, 89.9, 75.0, 74.9, 60.0, 59.9, 40.0, 39.9, 0.0)] == [
        "A", "A", "B", "B", "C", "C", "D", "D", "E", "E",
    ]  # fmt: skip
    assert grade(None) is None


def test_weights_and_time_zone_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_KPI__WEIGHTS__ON_TIME_CLOSE", "70")
    monkeypatch.setenv("CITYHUB_KPI__WEIGHTS__SATISFACTION", "0")
    monkeypatch.setenv("CITYHUB_TIMEZONE", "Europe/Berlin")
    settings = Settings()
    assert settings.kpi.weights == KpiWeights(on_time_close=70, close=20, no_rework=20,
                                              satisfaction=0)  # fmt: skip
    assert settings.timezone == "Europe/Berlin"
    assert Settings.model_fields["timezone"].default == "Asia/Shanghai"
    with pytest.raises(ValidationError):
        KpiWeights(on_time_close=0, close=0, no_rework=0, satisfaction=0)
    monkeypatch.setenv("CITYHUB_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError):
        Settings()


def test_today_starts_at_local_midnight() -> None:
    now = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    assert window_start("today", now, ZoneInfo("Asia/Shanghai")) == datetime(
        2026, 3, 9, 16, 0, tzinfo=UTC
    )
    late = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # 01:00 on the 11th in Shanghai
    assert window_start("today", late, ZoneInfo("Asia/Shanghai")) == datetime(
        2026, 3, 10, 16, 0, tzinfo=UTC
    )
    assert window_start("24h", now, ZoneInfo("Asia/Shanghai")) == datetime(
        2026, 3, 9, 4, 0, tzinfo=UTC
    )
    assert window_start("30d", now, ZoneInfo("UTC")) == datetime(2026, 2, 8, 4, 0, tzinfo=UTC)
