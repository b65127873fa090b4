"""Every Prometheus metric of the hub, defined once at import on the default registry.

One registry per process: a production process serves one service, the embedded process all
four, and `/metrics` shows whatever this process did. Defining each metric once, here, is what
lets tests build hundreds of apps in one process without "Duplicated timeseries": apps share the
process's counters (tests compare before and after). Names and labels: docs/observability.md.
Label values are bounded sets (route templates, reasons, outcomes), never ids or raw paths.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds; intake answers in milliseconds, screens' KPI reads in tens of them.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds; timers and KPI updates are judged against 1 s targets (issue 10's benchmarks).
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

# -- HTTP (shared/telemetry/http.py) -----------------------------------------------------------
HTTP_REQUEST_SECONDS = Histogram(
    "cityhub_http_request_duration_seconds",
    "HTTP requests by route template, method and status, and how long they took "
    "(the _count series counts requests)",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)

# -- bus (shared/telemetry/scrape.py reads the groups; shared/bus/consumer.py counts) ---------
BUS_PENDING = Gauge(
    "cityhub_bus_pending_messages",
    "Messages delivered to a consumer group and not yet acknowledged (read at scrape time)",
    ["stream", "group"],
)
BUS_LAG = Gauge(
    "cityhub_bus_lag_messages",
    "Messages in a stream not yet delivered to a consumer group (read at scrape time)",
    ["stream", "group"],
)
BUS_MESSAGES = Counter(
    "cityhub_bus_messages",
    "Bus messages this process's consumers finished with, by outcome "
    "(handled, failed: will be retried, dead_lettered)",
    ["stream", "group", "outcome"],
)

# -- outbox (shared/outbox.py) ------------------------------------------------------------------
OUTBOX_DEPTH = Gauge(
    "cityhub_outbox_messages", "Committed messages waiting in the outbox (read at scrape time)"
)
OUTBOX_PUBLISHED = Counter(
    "cityhub_outbox_published", "Outbox messages this process's relay published to the bus"
)

# -- ingest -------------------------------------------------------------------------------------
EVENTS_STORED = Counter(
    "cityhub_ingest_events",
    "Events submitted through the group-commit writer, by outcome (created, duplicate)",
    ["outcome"],
)
MQTT_MESSAGES = Counter(
    "cityhub_mqtt_messages",
    "Sensor messages evaluated, by outcome (accepted, stale, alarm_raised, alarm_cleared, "
    "dead_lettered)",
    ["outcome"],
)
MQTT_CONNECTED = Gauge(
    "cityhub_mqtt_connected", "1 while ingest's MQTT client is connected to the broker"
)
MQTT_CONNECTS = Counter(
    "cityhub_mqtt_connects", "Successful connections of ingest's MQTT client to the broker"
)
DEAD_LETTERS = Counter(
    "cityhub_dead_letters",
    "Refused input stored as a dead letter, by reason (services/ingest/dead_letters.py)",
    ["reason"],
)

# -- dispatch timers (services/dispatch/scheduler.py) ------------------------------------------
TIMERS_FIRED = Counter(
    "cityhub_timers_fired",
    "Deadline timers fired, by kind (accept_warn, accept_due, handle_warn, handle_due)",
    ["kind"],
)
TIMER_LAG_SECONDS = Histogram(
    "cityhub_timer_lag_seconds",
    "How late a timer fired after its due time",
    buckets=LAG_BUCKETS,
)
TIMERS_DUE = Gauge(
    "cityhub_timers_due",
    "Unfired timers whose due time has passed (read at scrape time; near 0 when healthy)",
)

# -- KPIs (services/metrics/consumers.py) -------------------------------------------------------
KPI_UPDATE_LAG_SECONDS = Histogram(
    "cityhub_kpi_update_lag_seconds",
    "Seconds from a bus message's creation to the commit of the KPI facts it changed",
    ["stream"],
    buckets=LAG_BUCKETS,
)

# -- live websockets (wired by services/gateway/live_ws.py and live_hub.py) ---------------------
WEBSOCKET_CONNECTIONS = Gauge(
    "cityhub_websocket_connections", "Open /ws/live connections on this gateway process"
)
WEBSOCKET_SLOW_CLIENTS_DROPPED = Counter(
    "cityhub_websocket_slow_clients_dropped",
    "/ws/live clients dropped (told to resync) because they fell behind",
)
