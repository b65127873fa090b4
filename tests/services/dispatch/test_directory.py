"""The department directory, the shipped routing rules and work calendar, rule validation."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.dispatch.departments import Directory, is_queue, load_kinds
from services.dispatch.routing import RoutingRule
from services.dispatch.rules import check_rules, default_rules
from services.dispatch.work_calendar import load_calendar, parse_calendar
from services.gateway.proxy import upstream_for
from shared.areas import Hierarchy, generate_demo
from shared.catalogue import Catalogue, default_categories
from shared.errors import ConfigError, HubError


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return generate_demo()


@pytest.fixture(scope="module")
def directory(hierarchy: Hierarchy) -> Directory:
    return Directory(hierarchy, load_kinds())


def test_directory_has_bureaus_counterparts_offices_and_queues(
    directory: Directory, hierarchy: Hierarchy
) -> None:
    cgj, yuzhong = directory.get("cgj"), directory.get("cgj@500103")
    assert cgj is not None and cgj.name == "重庆市城市管理局" and cgj.level == "city"
    assert yuzhong is not None and yuzhong.name == "渝中区城市管理局" and yuzhong.area == "500103"
    police = directory.get("gaj@500103")
    assert police is not None and police.name == "重庆市公安局渝中区分局"
    office = directory.get("office@500103001")
    assert office is not None and office.name == "七星岗街道办事处"
    town = next(s for s in hierarchy.streets if s.name.endswith("镇"))
    town_office = directory.get(f"office@{town.code}")
    assert town_office is not None and town_office.name == f"{town.name}人民政府"
    kinds = len(load_kinds())
    expected = (1 + kinds) + len(hierarchy.districts) * (1 + kinds) + 2 * len(hierarchy.streets)
    assert len(directory) == expected
    assert directory.handles("office@500103001") and not directory.handles("dispatch@500103")
    assert is_queue("dispatch@500000") and not is_queue("cgj")


def test_shipped_rules_cover_the_catalogue_but_a_few(directory: Directory) -> None:
    rules = default_rules()
    covered = {r.category for r in rules}
    codes = {c.code for c in default_categories()}
    assert covered <= codes
    assert 1 <= len(codes - covered) <= 6  # some categories are left to 属地 on purpose
    assert {r.department for r in rules} >= {"cgj", "zjw", "jtj", "sthjj", "slj", "yjj", "gaj"}
    assert {r.department for r in rules} <= set(directory.kinds)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (RoutingRule(category="X9999", department="cgj"), "unknown category"),
        (RoutingRule(category="C0201", department="nasa"), "unknown department kind"),
        (RoutingRule(category="C0201", district="500199", department="cgj"), "no district"),
        (RoutingRule(category="C0201", source="fax", department="cgj"), "source must be"),
        (RoutingRule(category="C0101", department="cgj"), "same criteria as rule 0"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(
    directory: Directory, hierarchy: Hierarchy, rule: RoutingRule, message: str
) -> None:
    catalogue = Catalogue(default_categories())
    rules = [RoutingRule(category="C0101", department="water"), rule]
    with pytest.raises(HubError) as caught:
        check_rules(rules, catalogue, hierarchy, directory)
    assert caught.value.status_code == 422 and message in caught.value.message
    with pytest.raises(HubError):
        check_rules([], catalogue, hierarchy, directory)


def test_shipped_calendar_knows_holidays_and_make_up_days() -> None:
    calendar = load_calendar(None)
    assert calendar.periods[0] == (time(9), time(12))
    assert not calendar.is_working_day(date(2026, 10, 1))  # National Day
    assert calendar.is_working_day(date(2026, 10, 10))  # a Saturday made a working day (调休)
    friday = datetime(2026, 10, 9, 17, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    # an hour left on Friday, then the make-up Saturday from 09:00
    expected = datetime(2026, 10, 10, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert calendar.add_working_time(friday, timedelta(hours=2)) == expected


def test_a_bad_calendar_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ends before"):
        parse_calendar('{"periods": [["12:00", "09:00"]]}')
    with pytest.raises(ConfigError, match="CALENDAR_FILE"):
        load_calendar(tmp_path / "missing.json")
    custom = tmp_path / "calendar.json"
    custom.write_text('{"periods": [["08:00", "17:00"]], "weekdays": [0, 1, 2, 3, 4, 5]}')
    assert load_calendar(custom).is_working_day(date(2026, 11, 21))  # a Saturday


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tickets/x/actions",
        "/api/v1/tasks/mine",
        "/api/v1/routing-rules",
        "/api/v1/departments",
        "/api/v1/categories/C0201/deadlines",
    ],
)
def test_the_production_gateway_forwards_dispatch_routes(path: str) -> None:
    assert upstream_for(path) == "dispatch"
    assert upstream_for("/api/v1/categories/C0201") is None  # the gateway serves the catalogue


def test_a_department_serves_its_own_area(directory: Directory) -> None:
    here = ("500103", "500103001")  # 渝中区, 七星岗街道
    assert directory.serves("cgj", *here)  # a city bureau serves anywhere
    assert directory.serves("cgj@500103", *here)
    assert not directory.serves("cgj@500105", *here)  # 江北区's bureau
    assert directory.serves("office@500103001", *here)
    assert not directory.serves("office@500103003", *here)
    assert not directory.serves("dispatch@500103", *here)  # a queue handles nothing
    assert not directory.serves("nasa", *here)
    assert not directory.serves("cgj@500103", None, None)  # unlocated: city bureaus only
    assert directory.serves("cgj@500103", "500103", None)  # placed in a district, no street
    kinds = set(directory.kinds)
    serving = [d.code for d in directory.serving(*here)]
    assert serving[0] == "office@500103001" and len(serving) == 1 + 2 * len(kinds)
    assert set(serving) == {"office@500103001"} | {f"{k}@500103" for k in kinds} | kinds
    assert {d.code for d in directory.serving(None, None)} == kinds
