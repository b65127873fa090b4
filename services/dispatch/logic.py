"""Pure dispatch rules (no I/O): who owns a new ticket."""

from __future__ import annotations

from typing import Literal

from shared.messages import GeotagInfo

Tier = Literal["street", "district", "city"]


def initial_owner(geotag: GeotagInfo, city_code: str) -> tuple[Tier, str]:
    """The centre that owns a new ticket: its street's, else its district's, else the city's.

    Until routing rules arrive every located ticket starts at its street centre (属地); an event
    located only to a district goes to that district, an unlocated one to the city's queue.
    """
    if geotag.street:
        return "street", geotag.street
    if geotag.district:
        return "district", geotag.district
    return "city", geotag.city or city_code
