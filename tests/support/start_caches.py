"""Per-process caches of the pure work every hub start repeats, for the tests only.

A production process starts once, so the product caches none of this; a test session starts
hundreds of hubs on the same demo areas. Installed for the whole session by `tests/conftest.py`,
on the names `shared.runtime` calls at start:

* `generate_demo` (deterministic per seed): generated once.
* `load_hierarchy`: areas rows equal to rows loaded before (same values, same order) give the
  hierarchy built from those then (validating one costs 0.05-0.2 s), and equal hierarchies are one
  object, so that
* `Geotagger`, read-only once built, is built once per hierarchy and tolerance.

Password hashing uses cheap argon2 parameters (same algorithm and format): every user a test
adds and signs in costs two hashes, about 0.1 s each with the production parameters.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import pytest
import shapely
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import shared.auth
import shared.runtime
from shared import areas
from shared.areas import DEFAULT_SEED, Geotagger, Hierarchy
from shared.areas.geotag import DEFAULT_TOLERANCE_M
from shared.db import areas as db_areas
from shared.db.models import AreaRow

# The cheapest argon2id argon2-cffi accepts: tests check what is hashed, not how slowly.
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def fingerprint(hierarchy: Hierarchy) -> bytes:
    """A digest of every area (code, name, level, parent, exact geometry) in hierarchy order."""
    listed = list(hierarchy)
    digest = hashlib.sha256()
    for area, wkb in zip(listed, shapely.to_wkb([a.geometry for a in listed]), strict=True):
        digest.update(repr((area.code, area.name, area.level, area.parent)).encode())
        digest.update(wkb)
    return digest.digest()


class StartCaches:
    """The cached hierarchies, demo and geotaggers of this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hierarchies: dict[bytes, Hierarchy] = {}
        self._demos: dict[int, Hierarchy] = {}
        self._stored: dict[bytes, Hierarchy] = {}  # digest of the areas rows → their hierarchy
        self._geotaggers: dict[tuple[int, float], Geotagger] = {}

    def canonical(self, hierarchy: Hierarchy) -> Hierarchy:
        """The first hierarchy seen with exactly these areas."""
        key = fingerprint(hierarchy)
        with self._lock:
            return self._hierarchies.setdefault(key, hierarchy)

    async def stored(self, session: AsyncSession) -> Hierarchy | None:
        """The hierarchy stored in the database (None when none is), built once per content."""
        rows = (await session.execute(select(AreaRow.__table__))).all()
        if not rows:
            return None
        digest = hashlib.sha256()
        for row in rows:  # in the order the product's query reads them: the order counts
            digest.update(repr(tuple(row)).encode())
        key = digest.digest()
        with self._lock:
            found = self._stored.get(key)
        if found is None:
            loaded = await db_areas.load_hierarchy(session)
            assert loaded is not None, "the areas rows vanished within one transaction"
            found = self.canonical(loaded)
            with self._lock:
                found = self._stored.setdefault(key, found)
        return found

    def demo(self, generate: Callable[[int], Hierarchy], seed: int) -> Hierarchy:
        """The demo hierarchy of this seed, generated once."""
        with self._lock:
            found = self._demos.get(seed)
        if found is None:
            found = self.canonical(generate(seed))
            with self._lock:
                found = self._demos.setdefault(seed, found)
        return found

    def geotagger(self, hierarchy: Hierarchy, tolerance_m: float) -> Geotagger:
        """The geotagger of this hierarchy and tolerance, built once."""
        hierarchy = self.canonical(hierarchy)
        # The canonical hierarchy lives as long as the cache, so its id is never reused.
        key = (id(hierarchy), float(tolerance_m))
        with self._lock:
            found = self._geotaggers.get(key)
        if found is None:
            found = Geotagger(hierarchy, tolerance_m=tolerance_m)
            with self._lock:
                found = self._geotaggers.setdefault(key, found)
        return found


def install(monkeypatch: pytest.MonkeyPatch) -> StartCaches:
    """Route `shared.runtime`'s start-up work through a new set of caches; cheap password hashes."""
    caches = StartCaches()

    def generate_demo(seed: int = DEFAULT_SEED) -> Hierarchy:
        return caches.demo(areas.generate_demo, seed)

    async def load_hierarchy(session: AsyncSession) -> Hierarchy | None:
        return await caches.stored(session)

    def geotagger(hierarchy: Hierarchy, tolerance_m: float = DEFAULT_TOLERANCE_M) -> Geotagger:
        return caches.geotagger(hierarchy, tolerance_m)

    monkeypatch.setattr(shared.runtime, "generate_demo", generate_demo)
    monkeypatch.setattr(shared.runtime, "load_hierarchy", load_hierarchy)
    monkeypatch.setattr(shared.runtime, "Geotagger", geotagger)
    monkeypatch.setattr(shared.auth, "_hasher", TEST_HASHER)
    return caches
