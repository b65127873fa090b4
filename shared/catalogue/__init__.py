"""The category catalogue (数字城管 部件/事件 classes plus sensor alarm types), as data.

The seed is `data/categories.json`; the live copy is the `categories` table (an admin may edit it),
loaded by every process at start and refreshed periodically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from importlib.resources import files
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import HubError

Group = Literal["component", "event", "sensor"]
Priority = Literal["normal", "urgent", "critical"]
PRIORITY_ZH: dict[Priority, str] = {"normal": "一般", "urgent": "紧急", "critical": "特急"}
Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
MAX_DEADLINE_H = 8_760.0  # hours (a year): the longest accept or handling time at any priority
# Relative time allowed by priority when a category gives no figure for that priority.
PRIORITY_SPEED: dict[str, float] = {"normal": 1.0, "urgent": 0.5, "critical": 0.25}
MAX_KEYWORDS = 50  # keywords per category
MAX_ATTRIBUTES = 50  # extra questions per category
MAX_VALUES = 200  # answers per list attribute

# Finite, positive and at most a year: an endless deadline is a typo, and a deadline past the
# work calendar's reach would stop tickets of the category from being opened at all.
Hours = Annotated[float, Field(gt=0, le=MAX_DEADLINE_H, allow_inf_nan=False)]
Keyword = Annotated[str, Field(min_length=1, max_length=50)]


class AttributeValue(BaseModel):
    """One allowed answer of a list attribute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)


class Attribute(BaseModel):
    """An extra question a category asks (Open311 service definition attribute)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    datatype: Datatype
    required: bool = False
    description: str = Field(max_length=1000)
    values: tuple[AttributeValue, ...] = Field(default=(), max_length=MAX_VALUES)


class DeadlineHours(BaseModel):
    """How long a ticket may take to be accepted and handled (accept ≤ handle)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    accept_hours: Hours
    handle_hours: Hours

    @model_validator(mode="after")
    def _accept_first(self) -> Self:
        _check_order(self.accept_hours, self.handle_hours)
        return self


def _check_order(accept_hours: float, handle_hours: float) -> None:
    if accept_hours > handle_hours:
        raise ValueError(
            f"accept_hours ({accept_hours:g}) must not exceed handle_hours ({handle_hours:g})"
        )


class Category(BaseModel):
    """A category: where it belongs, who handles it by default, how urgent, how fast."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    code: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    group: Group
    major: str = Field(max_length=64)
    major_zh: str = Field(max_length=100)
    major_en: str = Field(max_length=200)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=200)
    department: str = Field(
        pattern=r"^[A-Za-z0-9_]{1,32}$", description="bureau kind that handles it, e.g. cgj"
    )
    priority: Priority
    accept_hours: Hours
    handle_hours: Hours
    keywords: tuple[Keyword, ...] = Field(default=(), max_length=MAX_KEYWORDS)
    attributes: tuple[Attribute, ...] = Field(default=(), max_length=MAX_ATTRIBUTES)
    # Per-priority overrides of accept/handle hours (else scaled from the default priority's).
    deadlines: dict[Priority, DeadlineHours] = Field(default_factory=dict)
    # A breached deadline moves ownership one tier up (street → district → city) when True.
    escalate_on_breach: bool = True

    @model_validator(mode="after")
    def _hours_in_bounds(self) -> Self:
        _check_order(self.accept_hours, self.handle_hours)
        for priority in PRIORITY_ZH:
            handle = self.hours_at(priority)[1]
            if handle > MAX_DEADLINE_H:
                raise ValueError(
                    f"at {priority} priority handle_hours scales to {handle:g} h, over "
                    f"{MAX_DEADLINE_H:g}: shorten handle_hours or set deadlines.{priority}"
                )
        return self

    def hours_at(self, priority: str) -> tuple[float, float]:
        """(accept hours, handle hours) at a priority: its override, else scaled by speed."""
        override = self.deadlines.get(priority)  # type: ignore[call-overload]
        if override is not None:
            return override.accept_hours, override.handle_hours
        scale = PRIORITY_SPEED.get(priority, 1.0) / PRIORITY_SPEED.get(self.priority, 1.0)
        return self.accept_hours * scale, self.handle_hours * scale


def revised(category: Category, **changes: object) -> Category:
    """A copy of `category` with `changes`, checked like a new one (422 naming the problem)."""
    try:
        return Category.model_validate({**category.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise HubError(f"category {category.code}: {problems}", 422) from exc


class Catalogue:
    """Categories by code, with lookup by Chinese or English name too."""

    def __init__(self, categories: Iterable[Category]) -> None:
        self._by_code: dict[str, Category] = {}
        self._by_name: dict[str, Category] = {}
        for category in categories:
            if category.code in self._by_code:
                raise ValueError(f"duplicate category code {category.code!r}")
            self._by_code[category.code] = category
        for category in self._by_code.values():
            self._by_name.setdefault(category.name_zh, category)
            self._by_name.setdefault(category.name_en.lower(), category)

    def get(self, code: str) -> Category | None:
        """A category by its code."""
        return self._by_code.get(code)

    def resolve(self, text: str) -> Category | None:
        """A category by code, Chinese name or English name (hotline CRMs often send names)."""
        return self._by_code.get(text) or self._by_name.get(text) or self._by_name.get(text.lower())

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)


def default_categories() -> list[Category]:
    """The shipped seed catalogue."""
    raw = json.loads((files("shared.catalogue") / "data" / "categories.json").read_text("utf-8"))
    return [Category.model_validate(c) for c in raw["categories"]]
