"""The pure rule engine: thresholds, hysteresis, minimum duration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.sensors.rules import Op, Outcome, Rule, RuleState, step

WATER = Rule("water_level_cm", ">", 30.0, "S0101", hysteresis=5.0)


def run(rule: Rule, readings: list[tuple[float, float]]) -> list[Outcome]:
    """Outcomes of (ts, value) readings fed in order."""
    state: RuleState | None = None
    outcomes = []
    for ts, value in readings:
        state, outcome = step(rule, state, value, ts)
        outcomes.append(outcome)
    return outcomes


def test_raise_once_repeat_hold_and_clear_beyond_the_band() -> None:
    readings = [(0, 10), (1, 35), (2, 36), (3, 28), (4, 31), (5, 25.5), (6, 25), (7, 31)]
    assert run(WATER, [(float(t), float(v)) for t, v in readings]) == [
        Outcome.NORMAL,
        Outcome.RAISE,
        Outcome.REPEAT,
        Outcome.HOLD,  # inside the band 25..30: still raised, no chatter
        Outcome.REPEAT,
        Outcome.HOLD,
        Outcome.CLEAR,  # at the band's far edge (30 - 5)
        Outcome.RAISE,
    ]


def test_below_rules_mirror_above_rules() -> None:
    low_battery = Rule("battery_v", "<", 3.3, "S0108", hysteresis=0.1)
    readings = [(0.0, 3.6), (1.0, 3.2), (2.0, 3.35), (3.0, 3.4)]
    assert run(low_battery, readings) == [
        Outcome.NORMAL,
        Outcome.RAISE,
        Outcome.HOLD,
        Outcome.CLEAR,
    ]


def test_inclusive_ops() -> None:
    assert Rule("x", ">=", 10, "S0101").crosses(10)
    assert not Rule("x", ">", 10, "S0101").crosses(10)
    assert Rule("x", "<=", 10, "S0101").crosses(10)
    assert Rule("x", ">=", 10, "S0101").clears(9.9)
    assert not Rule("x", ">=", 10, "S0101").clears(10)


def test_minimum_duration_needs_the_condition_to_hold_throughout() -> None:
    rule = Rule("tilt_deg", ">", 15.0, "S0102", for_s=60.0)
    assert run(rule, [(0, 20), (30, 20), (59, 20), (60, 20), (61, 20)]) == [
        Outcome.PENDING,
        Outcome.PENDING,
        Outcome.PENDING,
        Outcome.RAISE,
        Outcome.REPEAT,
    ]
    # A dip below the threshold resets the clock.
    assert run(rule, [(0, 20), (50, 10), (70, 20), (100, 20), (130, 20)]) == [
        Outcome.PENDING,
        Outcome.NORMAL,
        Outcome.PENDING,
        Outcome.PENDING,
        Outcome.RAISE,
    ]


def test_key_names_the_rule() -> None:
    assert WATER.key == "water_level_cm>30"
    assert Rule("pm25", "<=", 2.5, "S0105").key == "pm25<=2.5"


@pytest.mark.parametrize(
    "change",
    [{"op": "=="}, {"value": float("nan")}, {"hysteresis": -1.0}, {"for_s": float("inf")}],
)
def test_bad_rules_are_refused(change: dict[str, object]) -> None:
    fields: dict[str, object] = {"metric": "m", "op": ">", "value": 1.0, "category": "S0101"}
    with pytest.raises(ValueError):
        Rule(**{**fields, **change})  # type: ignore[arg-type]


OPS_LIST: list[Op] = [">", ">=", "<", "<="]
ops = st.sampled_from(OPS_LIST)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
rules = st.builds(
    Rule,
    metric=st.just("m"),
    op=ops,
    value=finite,
    category=st.just("S0101"),
    hysteresis=st.floats(min_value=0, max_value=1e3),
    for_s=st.sampled_from([0.0, 0.0, 5.0, 30.0]),
)
series = st.lists(
    st.tuples(st.floats(min_value=0, max_value=10, allow_nan=False), finite), max_size=60
).map(lambda steps: _timeline(steps))


def _timeline(steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Gaps → monotonic timestamps."""
    ts, out = 0.0, []
    for gap, value in steps:
        ts += gap
        out.append((ts, value))
    return out


@given(rules, series)
def test_raises_and_clears_alternate(rule: Rule, readings: list[tuple[float, float]]) -> None:
    raised = False
    for outcome in run(rule, readings):
        if outcome is Outcome.RAISE:
            assert not raised, "raised twice without a clear"
            raised = True
        elif outcome is Outcome.CLEAR:
            assert raised, "cleared what was not raised"
            raised = False
        elif outcome in (Outcome.REPEAT, Outcome.HOLD):
            assert raised
        else:
            assert not raised


@given(rules, series)
def test_outcomes_follow_the_values(rule: Rule, readings: list[tuple[float, float]]) -> None:
    for (_ts, value), outcome in zip(readings, run(rule, readings), strict=True):
        if outcome in (Outcome.RAISE, Outcome.REPEAT, Outcome.PENDING):
            assert rule.crosses(value)
        if outcome is Outcome.CLEAR:
            assert rule.clears(value)
        if outcome is Outcome.HOLD:
            assert not rule.crosses(value) and not rule.clears(value)


@given(rules, series)
def test_raise_only_after_holding_for_the_minimum_duration(
    rule: Rule, readings: list[tuple[float, float]]
) -> None:
    since: float | None = None  # when the current unbroken run of crossing readings began
    raised = False
    for (ts, value), outcome in zip(readings, run(rule, readings), strict=True):
        if raised:
            raised = outcome is not Outcome.CLEAR
            since = None
            continue
        if rule.crosses(value):
            since = ts if since is None else since
            should_raise = ts - since >= rule.for_s
            assert (outcome is Outcome.RAISE) == should_raise
            raised = should_raise
        else:
            since = None
            assert outcome is Outcome.NORMAL
