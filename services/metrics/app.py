"""The metrics service as a component and as a stand-alone app."""

from __future__ import annotations

from fastapi import FastAPI

from services.metrics.api import router
from shared.service import Component, build_app
from shared.settings import Settings


def component() -> Component:
    """Metrics' routes."""
    return Component("metrics", routers=[router])


def create_app(settings: Settings | None = None) -> FastAPI:
    """The metrics service alone (production mode)."""
    return build_app(settings or Settings(), [component()], migrate=False, title="cityhub metrics")
