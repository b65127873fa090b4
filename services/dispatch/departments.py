"""The department directory: city bureaus, their district counterparts, street offices and each
centre's dispatcher queue, generated from the area hierarchy and `data/departments.json`.

Codes: a city bureau is its kind (`cgj`), its district counterpart `cgj@500103`, a street office
`office@<street code>` (街道办事处 / 镇乡人民政府), a centre's dispatcher queue `dispatch@<centre>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from shared.areas import Area, Hierarchy

Group = Literal["bureau", "utility", "office", "dispatch"]
Level = Literal["city", "district", "street"]
OFFICE: Final = "office"
DISPATCH: Final = "dispatch"


class DepartmentKind(BaseModel):
    """A kind of bureau or utility, as the data file lists it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    group: Literal["bureau", "utility"]
    name: str
    district_name: str  # "{district}城市管理局"
    name_en: str


@dataclass(frozen=True, slots=True)
class Department:
    """One handling department or dispatcher queue."""

    code: str
    name: str
    group: Group
    kind: str  # bureau kind, "office" or "dispatch"
    level: Level
    area: str  # code of the area it serves


def load_kinds() -> list[DepartmentKind]:
    """The shipped bureau and utility kinds."""
    raw = json.loads((files("services.dispatch") / "data" / "departments.json").read_text("utf-8"))
    return [DepartmentKind.model_validate(k) for k in raw["kinds"]]


@cache
def shipped_kinds() -> Mapping[str, DepartmentKind]:
    """The shipped kinds by kind, read once per process."""
    return {k.kind: k for k in load_kinds()}


def department_name(
    code: str, hierarchy: Hierarchy, kinds: Mapping[str, DepartmentKind] | None = None
) -> str | None:
    """The name `Directory` gives a department code, without building the directory (for
    readers outside dispatch, such as Open311); None for a code it would not list."""
    known = shipped_kinds() if kinds is None else kinds
    head, at, area_code = code.partition("@")
    if not at:
        kind = known.get(head)
        return kind.name if kind is not None else None
    area = hierarchy.get(area_code)
    if area is None:
        return None
    if head == DISPATCH:
        return queue_name(area)
    if head == OFFICE:
        return office_name(area) if area.level == "street" else None
    kind = known.get(head)
    if kind is None or area.level != "district":
        return None
    return kind.district_name.format(district=area.name)


def office_name(street: Area) -> str:
    """街道办事处 for a subdistrict, 人民政府 for a town or township."""
    return street.name + ("办事处" if street.name.endswith("街道") else "人民政府")


def queue_name(area: Area) -> str:
    """The dispatcher desk of an area's operations centre."""
    return f"{area.name}城市运行管理中心（派遣席）"


class Directory:
    """Every department by code, in a stable order (city, then each district and its streets)."""

    def __init__(self, hierarchy: Hierarchy, kinds: list[DepartmentKind]) -> None:
        self.kinds = {k.kind: k for k in kinds}
        items: list[Department] = []
        city = hierarchy.city
        items.append(
            Department(
                f"{DISPATCH}@{city.code}", queue_name(city), DISPATCH, DISPATCH, "city", city.code
            )
        )
        for k in kinds:
            items.append(Department(k.kind, k.name, k.group, k.kind, "city", city.code))
        for district in hierarchy.districts:
            items.append(
                Department(
                    f"{DISPATCH}@{district.code}",
                    queue_name(district),
                    DISPATCH,
                    DISPATCH,
                    "district",
                    district.code,
                )
            )
            for k in kinds:
                name = k.district_name.format(district=district.name)
                items.append(
                    Department(
                        f"{k.kind}@{district.code}",
                        name,
                        k.group,
                        k.kind,
                        "district",
                        district.code,
                    )
                )
            for street in hierarchy.children(district.code):
                items.append(
                    Department(
                        f"{DISPATCH}@{street.code}",
                        queue_name(street),
                        DISPATCH,
                        DISPATCH,
                        "street",
                        street.code,
                    )
                )
                items.append(
                    Department(
                        f"{OFFICE}@{street.code}",
                        office_name(street),
                        OFFICE,
                        OFFICE,
                        "street",
                        street.code,
                    )
                )
        self._by_code = {d.code: d for d in items}

    def get(self, code: str) -> Department | None:
        """A department by code."""
        return self._by_code.get(code)

    def handles(self, code: str) -> bool:
        """True for a department that handles tickets (not a dispatcher queue)."""
        found = self._by_code.get(code)
        return found is not None and found.group != DISPATCH

    def serves(self, code: str, district: str | None, street: str | None) -> bool:
        """True when department `code` handles tickets located there: a city bureau anywhere, a
        district bureau in its district, a street office in its street (their staff's scope)."""
        found = self._by_code.get(code)
        return found is not None and found.group != DISPATCH and _serves(found, district, street)

    def serving(self, district: str | None, street: str | None) -> list[Department]:
        """The handling departments that serve a place: its street office, its district's
        bureaus, the city bureaus (only those for a ticket located in no district)."""
        codes = [f"{OFFICE}@{street}"] if street else []
        if district:
            codes += [f"{kind}@{district}" for kind in self.kinds]
        codes += list(self.kinds)
        return [
            d for code in codes if (d := self._by_code.get(code)) and _serves(d, district, street)
        ]

    def __iter__(self) -> Iterator[Department]:
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)


def _serves(department: Department, district: str | None, street: str | None) -> bool:
    if department.level == "city":
        return True
    return department.area == (district if department.level == "district" else street)


def is_queue(code: str | None) -> bool:
    """True for a centre's dispatcher queue (`dispatch@<centre>`)."""
    return code is not None and code.startswith(f"{DISPATCH}@")


def queue_of(centre: str) -> str:
    """The dispatcher queue code of a centre."""
    return f"{DISPATCH}@{centre}"
