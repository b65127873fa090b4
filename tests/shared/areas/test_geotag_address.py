"""Geotagging by address text: street and district names, full and short."""

from __future__ import annotations

import pytest

from shared.areas import Geotag, Geotagger, Hierarchy
from shared.areas.names import DISTRICT_SUFFIXES, STREET_SUFFIXES, name_forms


def _street(demo: Hierarchy, name: str, district: str) -> Geotag:
    street = next(s for s in demo.children(district) if s.name == name)
    return Geotag(street, demo.get(district), demo.city, "address")


def _district(demo: Hierarchy, code: str) -> Geotag:
    return Geotag(None, demo.get(code), demo.city, "address")


def test_name_forms() -> None:
    assert name_forms("解放碑街道", STREET_SUFFIXES) == {"解放碑街道", "解放碑"}
    assert name_forms("龙沙镇", STREET_SUFFIXES) == {"龙沙镇", "龙沙"}
    assert name_forms("石桥苗族土家族乡", STREET_SUFFIXES) >= {"石桥苗族土家族乡", "石桥"}
    assert name_forms("忠县", DISTRICT_SUFFIXES) == {"忠县"}  # one character is too short
    assert name_forms("石柱土家族自治县", DISTRICT_SUFFIXES) >= {"石柱土家族自治县", "石柱"}
    assert name_forms("两江新区(直管区)", DISTRICT_SUFFIXES) >= {"两江新区", "两江新"}


@pytest.mark.parametrize(
    ("text", "name", "district"),
    [
        ("重庆市渝中区解放碑街道民族路188号", "解放碑街道", "500103"),
        ("解放碑步行街", "解放碑街道", "500103"),
        ("石柱县西沱镇老街", "西沱镇", "500240"),
        ("奉节县兴隆镇", "兴隆镇", "500236"),
        ("酉阳兴隆", "兴隆镇", "500242"),
        ("地宝乡政府旁", "地宝土家族乡", "500101"),
        ("两江新区金山大道", "金山街道", "LJXQ"),  # 金山镇 elsewhere is ruled out by the zone
    ],
)
def test_address_names_a_street(
    demo: Hierarchy, geotagger: Geotagger, text: str, name: str, district: str
) -> None:
    assert geotagger.locate_address(text) == _street(demo, name, district)


@pytest.mark.parametrize(
    ("text", "district"),
    [
        ("万州区某某路100号", "500101"),
        ("江北嘴", "500105"),  # "江北" names the district, not 涪陵's 江北街道
        ("沙坪坝三峡广场", "500106"),
        ("两江新区某某路", "LJXQ"),
        ("石柱", "500240"),
    ],
)
def test_address_names_only_a_district(
    demo: Hierarchy, geotagger: Geotagger, text: str, district: str
) -> None:
    assert geotagger.locate_address(text) == _district(demo, district)


def test_ambiguous_street_name(demo: Hierarchy, geotagger: Geotagger) -> None:
    # 兴隆镇 exists in four districts: without a district it names nothing certain.
    assert geotagger.locate_address("兴隆镇") == Geotag(None, None, demo.city, "none")
    # A district that has no 兴隆镇 still locates the event to that district.
    assert geotagger.locate_address("渝中区兴隆镇") == _district(demo, "500103")
    # 南坪 is short for two streets, both in 南岸区: the district is certain.
    assert geotagger.locate_address("南坪") == _district(demo, "500108")
    assert geotagger.locate_address("南坪街道") == _street(demo, "南坪街道", "500108")


def test_longest_match_wins(demo: Hierarchy, geotagger: Geotagger) -> None:
    # "双河口" (双河口街道/双河口镇) is longer than the "双河" inside it.
    tag = geotagger.locate_address("万州区双河口街道")
    assert tag == _street(demo, "双河口街道", "500101")


@pytest.mark.parametrize("text", ["", "hello world ###", "北京市朝阳区", "重", "🙂" * 5000])
def test_garbage_is_unlocated(demo: Hierarchy, geotagger: Geotagger, text: str) -> None:
    assert geotagger.locate_address(text) == Geotag(None, None, demo.city, "none")
