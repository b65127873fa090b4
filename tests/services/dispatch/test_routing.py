"""Routing table: tier rules, the most specific rule, 属地 fallback, unlocated tickets."""

from __future__ import annotations

from typing import TypedDict

from services.dispatch.routing import RoutingRule, match_rule, route

RULES = [
    RoutingRule(category="E0401", department="cgj"),
    RoutingRule(category="E0401", district="500103", department="scjgj"),
    RoutingRule(category="E0403", department="gaj"),
    RoutingRule(category="E0403", source="sensor", department="jtj"),
    RoutingRule(category="E0403", source="sensor", priority="urgent", department="yjj"),
]


class Where(TypedDict):
    street: str | None
    district: str | None
    city: str


WHERE: Where = {"street": "500103001", "district": "500103", "city": "500000"}


def test_ordinary_goes_to_the_street_centre_with_the_district_bureau() -> None:
    r = route(RULES, category="E0401", priority="normal", source="hotline", **WHERE)
    assert (r.tier, r.centre, r.department) == ("street", "500103001", "scjgj@500103")
    other = route(RULES, category="E0401", priority="normal", source="hotline",
                  street="500101001", district="500101", city="500000")  # fmt: skip
    assert other.department == "cgj@500101"


def test_urgent_and_repeated_go_to_the_district() -> None:
    urgent = route(RULES, category="E0403", priority="urgent", source="hotline", **WHERE)
    assert (urgent.tier, urgent.centre, urgent.department) == ("district", "500103", "gaj@500103")
    repeated = route(
        RULES, category="E0403", priority="normal", source="hotline", report_count=3, **WHERE
    )
    assert repeated.tier == "district"


def test_critical_goes_to_the_city_bureau() -> None:
    r = route(RULES, category="E0403", priority="critical", source="hotline", **WHERE)
    assert (r.tier, r.centre, r.department) == ("city", "500000", "gaj")


def test_most_specific_rule_wins() -> None:
    assert match_rule(RULES, "E0403", "500103", "urgent", "sensor").department == "yjj"  # type: ignore[union-attr]
    assert match_rule(RULES, "E0403", "500103", "normal", "sensor").department == "jtj"  # type: ignore[union-attr]
    assert match_rule(RULES, "E0403", "500103", "normal", "hotline").department == "gaj"  # type: ignore[union-attr]


def test_no_rule_falls_back_to_the_street_office() -> None:
    r = route(RULES, category="C0201", priority="normal", source="hotline", **WHERE)
    assert (r.tier, r.department, r.rule) == ("street", "office@500103001", None)


def test_unlocated_goes_to_the_city_queue() -> None:
    r = route(RULES, category="C0201", priority="normal", source="hotline",
              street=None, district=None, city="500000")  # fmt: skip
    assert (r.tier, r.centre, r.department) == ("city", "500000", "dispatch@500000")


def test_located_to_a_district_only() -> None:
    r = route(RULES, category="E0401", priority="normal", source="hotline",
              street=None, district="500101", city="500000")  # fmt: skip
    assert (r.tier, r.centre, r.department) == ("district", "500101", "cgj@500101")


def test_emergency_mode_raises_the_tier_but_never_lowers_it() -> None:
    r = route(RULES, category="E0401", priority="normal", source="hotline",
              at_least="district", **WHERE)  # fmt: skip
    assert (r.tier, r.centre) == ("district", "500103")
    critical = route(RULES, category="E0401", priority="critical", source="hotline",
                     at_least="district", **WHERE)  # fmt: skip
    assert (critical.tier, critical.centre) == ("city", "500000")
    nowhere = route(RULES, category="E0401", priority="normal", source="hotline",
                    street=None, district=None, city="500000", at_least="district")  # fmt: skip
    assert (nowhere.tier, nowhere.centre) == ("city", "500000")
