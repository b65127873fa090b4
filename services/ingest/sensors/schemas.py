"""Request and response models of the sensor registry API (and of CSV import rows)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.ingest.schemas import Location
from services.ingest.sensors.rules import Op

METRIC_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
TYPE_PATTERN = r"^[a-z0-9_]{1,32}$"
MAX_RULES = 32
MAX_INTERVAL_S = 86_400
OP_WORDS: dict[str, Op] = {"above": ">", "below": "<", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class RuleIn(BaseModel):
    """A threshold: `metric op value`, cleared `hysteresis` back, held `for_s` before raising."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(pattern=METRIC_PATTERN, examples=["water_level_cm"])
    op: Op = Field(description='">", ">=", "<", "<=" (or "above", "below")')
    value: float = Field(allow_inf_nan=False)
    hysteresis: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    for_s: float = Field(default=0.0, ge=0, le=MAX_INTERVAL_S, allow_inf_nan=False)
    category: str = Field(
        min_length=1, max_length=100, description="A sensor alarm category (S0101..S0108) or name"
    )

    @field_validator("op", mode="before")
    @classmethod
    def _op_words(cls, value: object) -> object:
        return OP_WORDS.get(value, value) if isinstance(value, str) else value


class SensorPut(BaseModel):
    """A sensor as its integrator (or an admin naming the integrator) registers it."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=TYPE_PATTERN, examples=["water_level"])
    location: Location
    interval_s: int = Field(ge=1, le=MAX_INTERVAL_S, description="Expected reporting interval")
    rules: list[RuleIn] = Field(default_factory=list, max_length=MAX_RULES)
    integrator: str | None = Field(
        default=None, max_length=100, description="The owner; admins must name it"
    )
    name: str | None = Field(default=None, max_length=200)
    alarm_category: str | None = Field(
        default=None,
        max_length=100,
        description="Category of alarms the device raises itself; defaults from the type",
    )

    @model_validator(mode="after")
    def _unique_rules(self) -> SensorPut:
        keys = [f"{r.metric}{r.op}{r.value:g}" for r in self.rules]
        if len(set(keys)) != len(keys):
            raise ValueError("two rules have the same metric, op and value")
        return self


class SensorRead(BaseModel):
    """A registered sensor."""

    id: str
    type: str
    integrator: str
    name: str | None
    location: Location
    interval_s: int
    alarm_category: str
    rules: list[dict[str, Any]]
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SensorPage(BaseModel):
    """Sensors by id; pass the last id as `after` for the next page."""

    items: list[SensorRead]


class AlarmRead(BaseModel):
    """One alarm of a sensor."""

    id: uuid.UUID
    state: Literal["raised", "cleared"]
    rule_key: str
    kind: str
    category: str
    event_id: uuid.UUID | None
    metric: str | None
    threshold: float | None
    severity: str | None
    message: str
    raised_at: datetime
    value: float | None
    count: int
    last_value: float | None
    last_at: datetime
    cleared_at: datetime | None
    clear_value: float | None
    clear_reason: str | None
