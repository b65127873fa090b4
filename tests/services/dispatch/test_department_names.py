"""`department_name` names every code exactly as the directory does, and no other code."""

from __future__ import annotations

from services.dispatch.departments import Directory, department_name, load_kinds
from shared.areas import generate_demo


def test_department_name_agrees_with_the_directory() -> None:
    hierarchy = generate_demo()
    directory = Directory(hierarchy, load_kinds())
    assert [department_name(d.code, hierarchy) for d in directory] == [d.name for d in directory]
    assert department_name("cgj@500103", hierarchy) == "渝中区城市管理局"
    street = hierarchy.children("500103")[0].code
    for unknown in ("nobody", "nobody@500103", "cgj@999999", f"cgj@{street}", "office@500103"):
        assert department_name(unknown, hierarchy) is None, unknown
