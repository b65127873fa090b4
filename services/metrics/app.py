"""The metrics service as a component and as a stand-alone app."""

from __future__ import annotations

from fastapi import FastAPI

from services.metrics import alerts_api, kpis_api
from services.metrics.alerts_consumer import run_alert_consumers, run_alert_retention
from services.metrics.api import router
from services.metrics.consumers import run_change_consumer, run_event_consumer
from services.metrics.live_relay import run_live_relay
from services.metrics.push import run_kpi_push
from shared.service import Component, build_app
from shared.settings import Settings


def component() -> Component:
    """Metrics' routes and workers: KPIs, alerts and the live relay of ticket changes."""
    return Component(
        "metrics",
        routers=[router, alerts_api.router, kpis_api.router],
        workers=[
            run_live_relay,
            run_alert_consumers,
            run_alert_retention,
            run_event_consumer,
            run_change_consumer,
            run_kpi_push,
        ],
        resources={kpis_api.KPI_CONTEXT_KEY: kpis_api.open_context},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The metrics service alone (production mode)."""
    return build_app(settings or Settings(), [component()], migrate=False, title="cityhub metrics")
