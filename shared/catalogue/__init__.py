"""The category catalogue (数字城管 部件/事件 classes plus sensor alarm types), as data.

The seed is `data/categories.json`; the live copy is the `categories` table (an admin may edit it),
loaded by every process at start and refreshed periodically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Group = Literal["component", "event", "sensor"]
Priority = Literal["normal", "urgent", "critical"]
PRIORITY_ZH: dict[Priority, str] = {"normal": "一般", "urgent": "紧急", "critical": "特急"}
Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]


class AttributeValue(BaseModel):
    """One allowed answer of a list attribute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    name: str


class Attribute(BaseModel):
    """An extra question a category asks (Open311 service definition attribute)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    datatype: Datatype
    required: bool = False
    description: str
    values: tuple[AttributeValue, ...] = ()


class DeadlineHours(BaseModel):
    """How long a ticket may take to be accepted and handled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accept_hours: float = Field(gt=0)
    handle_hours: float = Field(gt=0)


class Category(BaseModel):
    """A category: where it belongs, who handles it by default, how urgent, how fast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    group: Group
    major: str
    major_zh: str
    major_en: str
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=200)
    department: str
    priority: Priority
    accept_hours: float = Field(gt=0)
    handle_hours: float = Field(gt=0)
    keywords: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    # Per-priority overrides of accept/handle hours (else scaled from the default priority's).
    deadlines: dict[Priority, DeadlineHours] = Field(default_factory=dict)
    # A breached deadline moves ownership one tier up (street → district → city) when True.
    escalate_on_breach: bool = True


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
