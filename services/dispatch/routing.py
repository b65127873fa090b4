"""Routing as data: which department handles a ticket and which centre (tier) owns it. Pure.

责任主体唯一 — every ticket has exactly one owning centre and one handling department:
- a rule matches category (and optionally district, priority, source) → a bureau kind (城管, 住建…);
  the most specific matching rule wins, ties go to the earlier rule;
- the tier follows priority and scope: 特急 or located to no district → city; 紧急, or repeated
  (report count ≥ the threshold) → district; otherwise → the street centre;
- the department is that bureau at the owning tier (the city bureau, or its district
  counterpart); with no matching rule the street office of the location handles it (属地).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.catalogue import Priority

Tier = Literal["street", "district", "city"]
TIER_UP: dict[Tier, Tier | None] = {"street": "district", "district": "city", "city": None}
TIER_RANK: dict[Tier, int] = {"street": 0, "district": 1, "city": 2}
REPEAT_THRESHOLD = 3  # reports of one problem that make it a district matter


class RoutingRule(BaseModel):
    """Category (and optional narrowing) → the kind of bureau that handles it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str = Field(min_length=1, max_length=64)
    district: str | None = Field(default=None, min_length=1, max_length=32)
    priority: Priority | None = None
    source: str | None = Field(
        default=None, max_length=16, description="hotline, sensor, grid or api"
    )
    department: str = Field(
        min_length=1,
        max_length=64,
        description="bureau kind, e.g. cgj: the rule routes to that bureau at the owning tier "
        "(cgj@<district> in a district, cgj at the city)",
    )

    def matches(self, category: str, district: str | None, priority: str, source: str) -> bool:
        """True when every criterion the rule sets holds."""
        return (
            self.category == category
            and self.district in (None, district)
            and self.priority in (None, priority)
            and self.source in (None, source)
        )

    @property
    def specificity(self) -> int:
        """How many optional criteria the rule sets."""
        return sum(v is not None for v in (self.district, self.priority, self.source))


@dataclass(frozen=True, slots=True)
class Route:
    """Where a ticket goes."""

    tier: Tier
    centre: str  # code of the owning centre: a street, a district centre or the city
    department: str  # code of the handling department
    rule: RoutingRule | None  # None: 属地 fallback or unlocated


def match_rule(
    rules: list[RoutingRule], category: str, district: str | None, priority: str, source: str
) -> RoutingRule | None:
    """The most specific rule matching the ticket (earlier rules win ties)."""
    best: RoutingRule | None = None
    for rule in rules:
        if rule.matches(category, district, priority, source) and (
            best is None or rule.specificity > best.specificity
        ):
            best = rule
    return best


def owning_tier(
    priority: str, street: str | None, district: str | None, report_count: int,
    repeat_threshold: int = REPEAT_THRESHOLD,
) -> Tier:  # fmt: skip
    """The tier that owns a ticket by priority, location and repetition."""
    if priority == "critical" or district is None:
        return "city"
    if priority == "urgent" or report_count >= repeat_threshold or street is None:
        return "district"
    return "street"


def centre_of(tier: Tier, street: str | None, district: str | None, city: str) -> str:
    """The centre code of a tier for a location."""
    if tier == "street" and street:
        return street
    if tier in ("street", "district") and district:
        return district
    return city


def department_code(kind: str, tier: Tier, district: str | None) -> str:
    """A bureau kind at a tier: the city bureau (`cgj`) or its district counterpart (`cgj@D`)."""
    return kind if tier == "city" or district is None else f"{kind}@{district}"


def street_office(street: str) -> str:
    """The department code of a street office (街道办/乡镇政府)."""
    return f"office@{street}"


def route(
    rules: list[RoutingRule],
    *,
    category: str,
    priority: str,
    source: str,
    street: str | None,
    district: str | None,
    city: str,
    report_count: int = 1,
    at_least: Tier | None = None,
) -> Route:
    """Decide tier, centre and department for a ticket. `at_least` raises the tier the rules
    give (emergency mode: district; a hand escalation: the tier above), never lowers it: a
    特急 ticket stays with the city, and one located in no district can only go to the city."""
    tier = owning_tier(priority, street, district, report_count)
    if at_least is not None and TIER_RANK[at_least] > TIER_RANK[tier]:
        tier = at_least
    centre = centre_of(tier, street, district, city)
    rule = match_rule(rules, category, district, priority, source)
    if rule is not None:
        return Route(tier, centre, department_code(rule.department, tier, district), rule)
    if street is not None:
        return Route(tier, centre, street_office(street), None)
    return Route(tier, centre, "dispatch@" + centre, None)  # the centre's own dispatcher queue


def escalated(tier: Tier) -> Tier | None:
    """The tier above, or None at the city."""
    return TIER_UP[tier]
