"""KPI formulas (pure): rates with undefined denominators, nearest-rank percentiles, the 综合评价
score and its grade. Definitions: docs/kpis.md."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from shared.settings import KpiWeights

Grade = Literal["A", "B", "C", "D", "E"]
# Lowest score of each grade, best first; anything below the last is E.
GRADE_FLOORS: tuple[tuple[float, Grade], ...] = (
    (90.0, "A"), (75.0, "B"), (60.0, "C"), (40.0, "D"),
)  # fmt: skip
SATISFIED_SCORE = 4  # a call-back score at least this high counts as satisfied (1–5 scale)
RATE_DIGITS = 4  # rates are rounded to this many decimals (0.8333)
SCORE_DIGITS = 1  # the score is rounded to one decimal, and graded as shown
SECONDS_DIGITS = 1  # mean durations in seconds, one decimal


def rate(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, rounded; None (not 0, not 1) when the denominator is zero."""
    if denominator <= 0:
        return None
    return round(numerator / denominator, RATE_DIGITS)


def mean_seconds(total_ms: int, count: int) -> float | None:
    """The mean of `count` durations summing to `total_ms` milliseconds, in seconds; None when
    there are none. Sums are integers, so the mean does not depend on the order rows were read."""
    if count <= 0:
        return None
    return round(total_ms / count / 1000, SECONDS_DIGITS)


def mean(total: int, count: int, digits: int = 2) -> float | None:
    """total / count, rounded; None when count is zero."""
    if count <= 0:
        return None
    return round(total / count, digits)


def nearest_rank(count: int, fraction: float) -> int | None:
    """The 0-based position, in ascending order, of the nearest-rank percentile of `count`
    values: the smallest value with at least `fraction` of all values at or below it."""
    if count <= 0:
        return None
    return max(1, math.ceil(fraction * count)) - 1


@dataclass(frozen=True, slots=True)
class ScoreInputs:
    """The rates the score is made of (None: no data, drops out)."""

    on_time_close_rate: float | None
    close_rate: float | None
    rework_rate: float | None
    satisfied_rate: float | None


def score(inputs: ScoreInputs, weights: KpiWeights) -> float | None:
    """综合评价 from 0 to 100: the weighted mean of on-time close, close, no rework (1 − rework
    rate) and satisfaction rates, over the rates that have data (and a weight above 0); None
    when none has."""
    no_rework = None if inputs.rework_rate is None else 1.0 - inputs.rework_rate
    parts = [
        (weights.on_time_close, inputs.on_time_close_rate),
        (weights.close, inputs.close_rate),
        (weights.no_rework, no_rework),
        (weights.satisfaction, inputs.satisfied_rate),
    ]
    present = [(w, min(max(r, 0.0), 1.0)) for w, r in parts if r is not None and w > 0]
    total = sum(w for w, _ in present)
    if total <= 0:
        return None
    return round(100.0 * sum(w * r for w, r in present) / total, SCORE_DIGITS)


def grade(value: float | None) -> Grade | None:
    """A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40, else E; None without a score."""
    if value is None:
        return None
    for floor, letter in GRADE_FLOORS:
        if value >= floor:
            return letter
    return "E"
