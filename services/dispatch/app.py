"""The dispatch service as a component and as a stand-alone app."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatch import deadlines_api, held_api, rules_api, tickets_api
from services.dispatch.api import router
from services.dispatch.consumers import run_event_consumer, run_sweeper
from services.dispatch.context import CONTEXT_KEY, open_context, refresh_rules
from services.dispatch.emergency import EMERGENCY_KEY, open_cache
from services.dispatch.emergency_api import router as emergency_router
from services.dispatch.idempotency import action_request_upkeep
from services.dispatch.scheduler import run_scheduler, timers_due
from shared.service import Component, build_app
from shared.settings import Settings


def component() -> Component:
    """Dispatch's routes, its event consumer and sweeper, and the timer scheduler."""
    return Component(
        "dispatch",
        routers=[
            router,
            tickets_api.router,
            rules_api.router,
            deadlines_api.router,
            emergency_router,
            held_api.router,
        ],
        workers=[
            run_event_consumer,
            run_sweeper,
            run_scheduler,
            refresh_rules,
            action_request_upkeep,
        ],
        resources={CONTEXT_KEY: open_context, EMERGENCY_KEY: open_cache},
        probes=[timers_due],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The dispatch service alone (production mode)."""
    return build_app(settings or Settings(), [component()], migrate=False, title="cityhub dispatch")
