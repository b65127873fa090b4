"""Find streets and districts named in free address text (for events that carry no point).

Each area is known by its full name and by short forms people write: without the 街道/镇/乡 or
区/县 suffix, without a parenthesised note ("两江新区(直管区)" → "两江新区"), and for ethnic
autonomous units the place name alone ("石柱土家族自治县" → "石柱"); a short form needs at least two
characters left. Matching scans the text once, looking up only the name lengths that can start
at each character, so its cost depends on the text, not on the number of names.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from shared.areas.hierarchy import Area, Hierarchy

STREET_SUFFIXES = ("街道", "镇", "乡")
DISTRICT_SUFFIXES = ("区", "县")
MIN_SHORT_NAME_CHARS = 2
# Addresses are short; longer text (a pasted complaint) is cut so one event cannot stall intake.
MAX_ADDRESS_CHARS = 1000

# Minority nationalities that appear in names of autonomous counties and ethnic townships.
ETHNIC_GROUPS = (
    "土家族", "苗族", "仡佬族", "侗族", "回族", "彝族", "藏族", "羌族",
    "壮族", "瑶族", "白族", "布依族", "蒙古族", "满族", "水族", "傣族",
)  # fmt: skip

_PARENTHESISED = re.compile(r"[(（][^)）]*[)）]")


def name_forms(name: str, suffixes: Iterable[str]) -> set[str]:
    """The full name and the short forms under which an area may be written."""
    forms = {name}
    bare = _PARENTHESISED.sub("", name).strip()
    if len(bare) >= MIN_SHORT_NAME_CHARS:
        forms.add(bare)
    for suffix in suffixes:
        if bare.endswith(suffix) and len(bare) - len(suffix) >= MIN_SHORT_NAME_CHARS:
            forms.add(bare[: -len(suffix)])
            break
    ethnic = [i for i in (bare.find(g) for g in ETHNIC_GROUPS) if i >= MIN_SHORT_NAME_CHARS]
    if ethnic:
        forms.add(bare[: min(ethnic)])
    return forms


@dataclass(frozen=True, slots=True)
class AddressMatch:
    """What an address text names: a street, or only a district, or nothing."""

    street: Area | None
    district: Area | None


@dataclass(frozen=True, slots=True)
class _Hit:
    start: int
    end: int
    form: str

    @property
    def length(self) -> int:
        return self.end - self.start


class AddressMatcher:
    """Matches street and district names (full and short forms) in address text."""

    __slots__ = ("_districts", "_hierarchy", "_lengths_by_first", "_streets")

    def __init__(self, hierarchy: Hierarchy) -> None:
        self._hierarchy = hierarchy
        streets: defaultdict[str, list[Area]] = defaultdict(list)
        districts: defaultdict[str, list[Area]] = defaultdict(list)
        for street in hierarchy.streets:
            for form in name_forms(street.name, STREET_SUFFIXES):
                streets[form].append(street)
        for district in hierarchy.districts:
            for form in name_forms(district.name, DISTRICT_SUFFIXES):
                districts[form].append(district)
        lengths: defaultdict[str, set[int]] = defaultdict(set)
        for form in (*streets, *districts):
            lengths[form[0]].add(len(form))
        self._streets = {form: tuple(areas) for form, areas in streets.items()}
        self._districts = {form: tuple(areas) for form, areas in districts.items()}
        self._lengths_by_first = {c: tuple(sorted(ls, reverse=True)) for c, ls in lengths.items()}

    def match(self, text: str) -> AddressMatch:
        """The street (and its district), or only a district, that the text names."""
        hits = self._longest_hits(text[:MAX_ADDRESS_CHARS])
        district_hits = [h for h in hits if h.form in self._districts]
        mentioned = {d.code for h in district_hits for d in self._districts[h.form]}
        # A form that also names a district ("江北", "沙坪坝") is read as the district.
        street_hits = sorted(
            (h for h in hits if h.form in self._streets and h.form not in self._districts),
            key=lambda h: (-h.length, h.start),
        )
        unresolved: list[Area] | None = None
        seen: set[str] = set()
        for hit in street_hits:
            if hit.form in seen:
                continue
            seen.add(hit.form)
            candidates = list(self._streets[hit.form])
            if mentioned:
                # A district named in the text rules out same-named streets elsewhere; it also
                # keeps a short form that happens to be an ordinary word from winning.
                candidates = [c for c in candidates if c.parent in mentioned]
            if len(candidates) == 1:
                return AddressMatch(candidates[0], self._parent(candidates[0]))
            if candidates and unresolved is None:
                unresolved = candidates
        if unresolved is not None and len({c.parent for c in unresolved}) == 1:
            return AddressMatch(None, self._parent(unresolved[0]))
        if district_hits:
            best = min(district_hits, key=lambda h: (-h.length, h.start))
            named = self._districts[best.form]
            if len(named) == 1:
                return AddressMatch(None, named[0])
        return AddressMatch(None, None)

    def _parent(self, street: Area) -> Area | None:
        return self._hierarchy.get(street.parent) if street.parent is not None else None

    def _longest_hits(self, text: str) -> list[_Hit]:
        """Every name form in the text, minus those lying inside a longer one."""
        hits: list[_Hit] = []
        lengths_by_first = self._lengths_by_first
        streets, districts = self._streets, self._districts
        # Hits come by start, longest first; one lies inside an earlier one exactly when an
        # earlier hit reaches at least as far right.
        reach = 0
        for start, char in enumerate(text):
            for length in lengths_by_first.get(char, ()):
                end = start + length
                if end <= reach:
                    break  # this and every shorter form here lie inside an earlier hit
                form = text[start:end]
                if len(form) == length and (form in streets or form in districts):
                    hits.append(_Hit(start, end, form))
                    reach = end
        return hits
