"""Let the apps a test started be freed once it ends.

FastAPI classifies each endpoint and dependency callable once and keeps the answer in
`functools.lru_cache`s keyed by the callable (up to 4096 each, `fastapi.dependencies.models`). Our
endpoints and dependencies are closures over their app, so those caches kept the last hundred or
so apps of a test session alive, each with its runtime: gigabytes by the end of the suite, slower
garbage collections all along, and minutes of collection when the interpreter exits. A process that
builds its app once, as the product does, never notices.
"""

from __future__ import annotations

import functools

import fastapi.dependencies.models


def forget_app_callables() -> None:
    """Empty FastAPI's per-callable caches (they refill from the next app's own callables)."""
    for value in vars(fastapi.dependencies.models).values():
        if isinstance(value, functools._lru_cache_wrapper):
            value.cache_clear()
