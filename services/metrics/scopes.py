"""Which facts a KPI request covers (pure): the area or department asked for, checked against
the caller's scope (outside it: 404, as for tickets), and the units a ranking lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.dispatch.departments import Department, Directory
from services.metrics.schemas import Level
from services.metrics.store import Group, Slice
from shared.areas import Hierarchy
from shared.auth import Scope
from shared.errors import HubError, NotFoundError

AreaLevel = Literal["city", "district", "street"]
SCOPE_FORMS = "city, district:<code>, street:<code> or department:<code>"


@dataclass(frozen=True, slots=True)
class Place:
    """An area of the hierarchy (or a scope's code the hierarchy no longer has)."""

    level: AreaLevel
    code: str
    name: str
    district: str | None  # the district it is or lies in (None for the city)

    def slice(self, *, group: Group | None = None, department: str | None = None) -> Slice:
        """The facts located here."""
        street = self.code if self.level == "street" else None
        return Slice(district=self.district, street=street, department=department, group=group)

    def __str__(self) -> str:
        return "city" if self.level == "city" else f"{self.level}:{self.code}"


@dataclass(frozen=True, slots=True)
class KpiScope:
    """What one KPI request counts: an area, or a department's tickets inside an area."""

    place: Place
    department: Department | None = None

    @property
    def label(self) -> str:
        """As the `scope` parameter spells it."""
        return str(self.place) if self.department is None else f"department:{self.department.code}"

    @property
    def name(self) -> str:
        """The area's or the department's name."""
        return self.place.name if self.department is None else self.department.name

    def slice(self) -> Slice:
        """The facts it counts."""
        return self.place.slice(department=self.department.code if self.department else None)


def place_of(hierarchy: Hierarchy, level: AreaLevel, code: str | None) -> Place | None:
    """The area `level:code` names (the city needs no code); None when there is none."""
    if level == "city":
        city = hierarchy.city
        return Place("city", city.code, city.name, None)
    area = hierarchy.get(code or "")
    if area is None or area.level != level:
        return None
    return Place(level, area.code, area.name, area.code if level == "district" else area.parent)


def caller_place(scope: Scope, hierarchy: Hierarchy) -> Place:
    """The area a caller's scope names (kept by code when the hierarchy no longer has it)."""
    found = place_of(hierarchy, scope.level, scope.code)
    if found is not None:
        return found
    code = scope.code or hierarchy.city.code
    return Place(scope.level, code, code, code if scope.level == "district" else None)


def inside(outer: Place, inner: Place) -> bool:
    """True when `inner` lies within `outer`."""
    if outer.level == "city":
        return True
    if outer.level == "district":
        return inner.level != "city" and inner.district == outer.code
    return inner.level == "street" and inner.code == outer.code


def serves_in(department: Department, place: Place, hierarchy: Hierarchy) -> bool:
    """True when a handling department serves somewhere inside `place`: a city bureau serves
    everywhere, a district bureau its district, a street office its street."""
    if department.group == "dispatch":
        return False
    if place.level == "city" or department.level == "city":
        return True
    if department.level == "district":
        return department.area == place.district
    if place.level == "street":
        return department.area == place.code
    street = hierarchy.get(department.area)
    return street is not None and street.parent == place.code


def resolve(
    text: str | None, caller: Scope, hierarchy: Hierarchy, directory: Directory
) -> KpiScope:
    """The scope a request asks for (default: the caller's own); 422 when malformed, 404 when
    unknown or outside the caller's scope."""
    own = caller_place(caller, hierarchy)
    if text is None:
        return KpiScope(own)
    kind, colon, code = text.partition(":")
    if text != "city" and (kind not in ("district", "street", "department") or not code):
        raise HubError(f"invalid scope {text!r}: use {SCOPE_FORMS}", 422)
    if kind == "department":
        department = directory.get(code)
        if department is None or not serves_in(department, own, hierarchy):
            raise NotFoundError(f"department {code} not found in your scope ({caller})")
        return KpiScope(own, department)
    place = place_of(hierarchy, kind, code if colon else None)  # type: ignore[arg-type]
    if place is None or not inside(own, place):
        raise NotFoundError(f"scope {text} not found in your scope ({caller})")
    return KpiScope(place)


def units(
    level: Level, place: Place, hierarchy: Hierarchy, directory: Directory
) -> list[tuple[str, str]]:
    """(code, name) of every district, street or handling department inside `place`."""
    if level == "department":
        return [(d.code, d.name) for d in directory if serves_in(d, place, hierarchy)]
    areas = hierarchy.districts if level == "district" else hierarchy.streets
    found = [place_of(hierarchy, level, a.code) for a in areas]
    return [(p.code, p.name) for p in found if p is not None and inside(place, p)]
