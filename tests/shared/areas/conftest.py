"""The demo hierarchy and its geotagger, built once per test session (they are read-only)."""

from __future__ import annotations

import pytest

from shared.areas import Geotagger, Hierarchy, generate_demo


@pytest.fixture(scope="session")
def demo() -> Hierarchy:
    """The default-seed Chongqing demo hierarchy."""
    return generate_demo()


@pytest.fixture(scope="session")
def geotagger(demo: Hierarchy) -> Geotagger:
    """A geotagger over the demo with the default 500 m tolerance."""
    return Geotagger(demo)
