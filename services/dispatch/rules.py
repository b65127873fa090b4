"""Routing rules as data: the shipped seed and the checks an edited list must pass (pure)."""

from __future__ import annotations

import json
from importlib.resources import files

from services.dispatch.departments import Directory
from services.dispatch.routing import RoutingRule
from shared.areas import Hierarchy
from shared.catalogue import Catalogue
from shared.errors import HubError

SOURCES = ("hotline", "sensor", "grid", "api")  # the intake channels an event comes from
MAX_RULES = 5_000


def default_rules() -> list[RoutingRule]:
    """The seed of the routing_rules table (`data/routing_rules.json`)."""
    raw = json.loads(
        (files("services.dispatch") / "data" / "routing_rules.json").read_text("utf-8")
    )
    return [RoutingRule.model_validate(r) for r in raw["rules"]]


def _not_a_kind(rule: RoutingRule, directory: Directory) -> str:
    """Why a rule's department is refused: a rule names a bureau kind, which routing places at
    the owning tier (`cgj@<district>` in the ticket's own district, `cgj` at the city), so the
    department always serves the ticket's area; one department's code would not."""
    known = ", ".join(sorted(directory.kinds))
    found = directory.get(rule.department)
    if found is None or found.kind not in directory.kinds:
        return f"unknown department kind {rule.department!r} ({known})"
    district = rule.district or "<district>"
    outside = (
        f"{found.code} does not serve district {rule.district}; "
        if rule.district and not directory.serves(found.code, rule.district, None)
        else ""
    )
    return (
        f"{outside}give the bureau kind {found.kind!r}, not one department: routing picks "
        f"the bureau at the owning tier ({found.kind}@{district} or {found.kind})"
    )


def check_rules(
    rules: list[RoutingRule], catalogue: Catalogue, hierarchy: Hierarchy, directory: Directory
) -> None:
    """Refuse (422, naming the rule) a list with unknown codes or two rules for the same case."""
    if not rules:
        raise HubError("give at least one routing rule (categories without one go to 属地)", 422)
    if len(rules) > MAX_RULES:
        raise HubError(f"at most {MAX_RULES} routing rules", 422)
    seen: dict[tuple[str, str | None, str | None, str | None], int] = {}
    for n, rule in enumerate(rules):
        where = f"rule {n} ({rule.category} → {rule.department})"
        if catalogue.get(rule.category) is None:
            raise HubError(f"{where}: unknown category {rule.category!r}", 422)
        if rule.district is not None:
            area = hierarchy.get(rule.district)
            if area is None or area.level != "district":
                raise HubError(f"{where}: no district with code {rule.district!r}", 422)
        if rule.department not in directory.kinds:
            raise HubError(f"{where}: {_not_a_kind(rule, directory)}", 422)
        if rule.source is not None and rule.source not in SOURCES:
            raise HubError(f"{where}: source must be one of {', '.join(SOURCES)}", 422)
        key = (rule.category, rule.district, rule.priority, rule.source)
        if key in seen:
            raise HubError(f"{where}: same criteria as rule {seen[key]}", 422)
        seen[key] = n
