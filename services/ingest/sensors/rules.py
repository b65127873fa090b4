"""Threshold rules with hysteresis and a minimum duration: a pure state machine (no I/O).

A rule `metric op value` *holds* for a reading that crosses the threshold (`>`: above it). The
alarm is raised once the rule has held continuously for `for_s` seconds of reading time (at once
when `for_s` is 0). While raised, readings that still cross are *repeats* (they update the same
alarm), readings inside the hysteresis band (`>`: between value − hysteresis and value) change
nothing, and the first reading at or beyond the band's far edge (`>`: ≤ value − hysteresis)
clears the alarm. A reading that no longer crosses resets a pending minimum duration.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal

Op = Literal[">", ">=", "<", "<="]
OPS: tuple[Op, ...] = (">", ">=", "<", "<=")


class Outcome(enum.Enum):
    """What one reading did to one rule."""

    NORMAL = "normal"  # not crossing, nothing raised
    PENDING = "pending"  # crossing, but not yet for `for_s`
    RAISE = "raise"  # the alarm starts
    REPEAT = "repeat"  # still crossing while raised
    HOLD = "hold"  # raised, inside the hysteresis band
    CLEAR = "clear"  # back beyond the band: the alarm ends


@dataclass(frozen=True, slots=True)
class Rule:
    """One threshold on one metric, and the alarm category it raises."""

    metric: str
    op: Op
    value: float
    category: str
    hysteresis: float = 0.0
    for_s: float = 0.0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {', '.join(OPS)}")
        for name in ("value", "hysteresis", "for_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number")
        if self.hysteresis < 0 or self.for_s < 0:
            raise ValueError("hysteresis and for_s must not be negative")

    @property
    def key(self) -> str:
        """Names the rule within its sensor, e.g. `water_level_cm>30`."""
        return f"{self.metric}{self.op}{self.value:g}"

    def crosses(self, reading: float) -> bool:
        """True when the reading is on the alarm side of the threshold."""
        if self.op == ">":
            return reading > self.value
        if self.op == ">=":
            return reading >= self.value
        if self.op == "<":
            return reading < self.value
        return reading <= self.value

    def clears(self, reading: float) -> bool:
        """True when the reading is back beyond the hysteresis band (never while it crosses)."""
        if self.op == ">":
            return reading <= self.value - self.hysteresis
        if self.op == ">=":
            return reading < self.value - self.hysteresis
        if self.op == "<":
            return reading >= self.value + self.hysteresis
        return reading > self.value + self.hysteresis


@dataclass(frozen=True, slots=True)
class RuleState:
    """A rule that is not simply normal: pending since a time, or raised at one (epoch seconds)."""

    since: float  # when the rule started holding
    raised_at: float | None = None

    @property
    def raised(self) -> bool:
        """True once the alarm is raised."""
        return self.raised_at is not None


def step(
    rule: Rule, state: RuleState | None, reading: float, ts: float
) -> tuple[RuleState | None, Outcome]:
    """The rule's next state and what happened, for a reading at `ts` (None = normal).

    Readings must come in time order; the caller drops older ones.
    """
    if state is not None and state.raised:
        if rule.clears(reading):
            return None, Outcome.CLEAR
        return state, Outcome.REPEAT if rule.crosses(reading) else Outcome.HOLD
    if not rule.crosses(reading):
        return None, Outcome.NORMAL
    since = ts if state is None else state.since
    if ts - since >= rule.for_s:
        return RuleState(since, raised_at=ts), Outcome.RAISE
    return RuleState(since), Outcome.PENDING
