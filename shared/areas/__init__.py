"""The area hierarchy (city → district → street), the demo map and the geotagger."""

from shared.areas.demo import DEFAULT_SEED, generate_demo
from shared.areas.geotag import (
    METHOD_BY_CODE,
    METHOD_NEAREST,
    METHOD_NONE,
    METHOD_POINT,
    Geotag,
    Geotagger,
    Method,
)
from shared.areas.hierarchy import Area, Hierarchy, HierarchyError, Level, load_geojson_file
from shared.areas.names import AddressMatch, AddressMatcher

__all__ = [
    "DEFAULT_SEED",
    "METHOD_BY_CODE",
    "METHOD_NEAREST",
    "METHOD_NONE",
    "METHOD_POINT",
    "AddressMatch",
    "AddressMatcher",
    "Area",
    "Geotag",
    "Geotagger",
    "Hierarchy",
    "HierarchyError",
    "Level",
    "Method",
    "generate_demo",
    "load_geojson_file",
]
