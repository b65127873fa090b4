"""Plausible ranges of sensor readings per sensor type and metric.

A value outside its range is no measurement but a broken device, a unit mix-up or a forged
message: the whole reading becomes an `implausible_value` dead letter and has no effect. The
shipped ranges are data (services/ingest/sensors/data/plausible_ranges.json); the file named by
`CITYHUB_SENSOR_RANGES_FILE` has the same format and its entries replace the shipped ones one
by one (a type's metric, a metric, the fallback).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StringConstraints,
    ValidationError,
)

from services.ingest.sensors.payloads import RejectedError
from services.ingest.sensors.schemas import METRIC_PATTERN, TYPE_PATTERN
from shared.errors import ConfigError

Bound = tuple[float, float]  # (min, max), inclusive


def _ordered(bound: Bound) -> Bound:
    if bound[0] > bound[1]:
        raise ValueError(f"min {bound[0]:g} is above max {bound[1]:g}")
    return bound


BoundIn = Annotated[tuple[FiniteFloat, FiniteFloat], AfterValidator(_ordered)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN)]
TypeName = Annotated[str, StringConstraints(pattern=TYPE_PATTERN)]


class RangesFile(BaseModel):
    """The file format: `[min, max]` per metric of a type, per metric of any type, fallback."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    comment: str | None = Field(default=None, alias="$comment")
    fallback: BoundIn | None = None
    metrics: dict[MetricName, BoundIn] = Field(default_factory=dict)
    types: dict[TypeName, dict[MetricName, BoundIn]] = Field(default_factory=dict)


class PlausibleRanges:
    """Where each metric of each sensor type must lie; checks readings against it."""

    __slots__ = ("_tables", "fallback", "metrics", "types")

    def __init__(
        self,
        fallback: Bound,
        metrics: Mapping[str, Bound],
        types: Mapping[str, Mapping[str, Bound]],
    ) -> None:
        self.fallback = fallback
        self.metrics = dict(metrics)
        self.types = {name: dict(table) for name, table in types.items()}
        # One lookup per value on the hot path: each type's own ranges over the general ones.
        self._tables = {name: {**self.metrics, **table} for name, table in self.types.items()}

    def bound(self, sensor_type: str, metric: str) -> Bound:
        """The range a metric of a sensor of this type must lie in."""
        return self._tables.get(sensor_type, self.metrics).get(metric, self.fallback)

    def check(self, sensor_type: str, values: Mapping[str, float]) -> None:
        """Refuse (`implausible_value`) a reading with any value outside its range."""
        table = self._tables.get(sensor_type, self.metrics)
        fallback = self.fallback
        for metric, value in values.items():
            low, high = table.get(metric, fallback)
            if not low <= value <= high:
                kind = f"a {sensor_type} sensor" if sensor_type else "this sensor"
                raise RejectedError(
                    "implausible_value",
                    f"{metric[:64]!r} = {value:g} is outside the plausible range "
                    f"{low:g}..{high:g} for {kind}",
                )

    def replaced_by(self, override: RangesFile) -> PlausibleRanges:
        """These ranges with the override's entries put in place of theirs."""
        types = {name: dict(table) for name, table in self.types.items()}
        for name, table in override.types.items():
            types.setdefault(name, {}).update(table)
        return PlausibleRanges(
            override.fallback or self.fallback, {**self.metrics, **override.metrics}, types
        )


def parse_ranges(text: str) -> RangesFile:
    """A ranges file, validated (finite bounds, min ≤ max, metric and type names)."""
    return RangesFile.model_validate_json(text)


def shipped_ranges() -> PlausibleRanges:
    """The ranges shipped with the hub."""
    text = (files("services.ingest.sensors") / "data" / "plausible_ranges.json").read_text("utf-8")
    shipped = parse_ranges(text)
    if shipped.fallback is None:
        raise ValueError("the shipped plausible ranges need a fallback")
    return PlausibleRanges(shipped.fallback, shipped.metrics, shipped.types)


def load_ranges(path: Path | None) -> PlausibleRanges:
    """The shipped ranges, with the configured file's entries in place of theirs."""
    ranges = shipped_ranges()
    if path is None:
        return ranges
    try:
        override = parse_ranges(path.read_text("utf-8"))
    except ValidationError as exc:  # one line naming each bad entry, not pydantic's report
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise ConfigError(f"CITYHUB_SENSOR_RANGES_FILE: cannot use {path}: {problems}") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CITYHUB_SENSOR_RANGES_FILE: cannot use {path}: {exc}") from exc
    return ranges.replaced_by(override)
