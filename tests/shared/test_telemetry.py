"""Operability in embedded mode: `/metrics` counts what happens (requests by route template, bus
groups, dead letters, fired timers, KPI lag), the request id is validated, echoed, stamped on the
bus messages a request causes and written on dispatch's JSON log line for its event."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select

from services.dispatch import scheduler_store
from services.dispatch.calendar import WorkCalendar
from services.hub import create_hub_app
from services.ingest.sensors.processor import INTAKE_KEY, SensorIntake
from shared.catalogue import Catalogue, default_categories
from shared.db.models import OutboxMessage
from shared.logs import CHATTY_LOGGERS, configure_logging
from shared.messages import (
    EVENTS_INGESTED,
    TICKETS_CHANGED,
    EventIngestedV1,
    GeotagInfo,
    TicketChangedV2,
    decode,
    encode,
)
from shared.outbox import add_to_outbox, outbox_depth
from shared.settings import Settings
from shared.telemetry.request_id import (
    MAX_LENGTH,
    request_scope,
    valid_request_id,
    with_request_id,
)
from tests.support.apps import add_key, runtime_of, serving
from tests.support.factories import add_ticket, open_db
from tests.support.waiting import wait_for

Labels = dict[str, str]


def sample(text: str, name: str, labels: Labels | None = None) -> float:
    """The value of one sample in a /metrics page (0 when absent: a counter not yet touched)."""
    wanted = labels or {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items()):
                return float(s.value)
    return 0.0


async def scrape(client: httpx.AsyncClient) -> str:
    reply = await client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.text


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The hub's JSON logging into a buffer, at DEBUG (dispatch's line per event); the
    process's logging restored after."""
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    buffer = io.StringIO()
    handler = configure_logging("debug", "json", stream=buffer)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, each parsed as one JSON object."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def event_body(ref: str) -> dict[str, Any]:
    return {
        "source": "hotline",
        "source_ref": ref,
        "category": "路灯不亮",
        "location": {"lon": 106.5516, "lat": 29.5630},
    }


# -- the request id, on its own ----------------------------------------------------------------


def test_only_short_safe_request_ids_are_taken() -> None:
    assert valid_request_id(b"abc-123_X.y:z") == "abc-123_X.y:z"
    assert valid_request_id("a" * MAX_LENGTH) == "a" * MAX_LENGTH
    for bad in (b"", b"a" * (MAX_LENGTH + 1), b"a b", b"a\r\nX-Evil: 1", b"<script>", "编号"):
        assert valid_request_id(bad) is None, bad
    assert valid_request_id(None) is None


def test_messages_carry_a_request_id_only_when_one_is_set() -> None:
    message = EventIngestedV1(
        event_id=uuid.uuid4(),
        source="hotline",
        category="E0403",
        geotag=GeotagInfo(),
        reported_at=datetime.now(UTC),
    )
    assert b"request_id" not in encode(message)  # unchanged for consumers older than the field
    assert with_request_id(message) is message  # no request being handled
    with request_scope("req-1"):
        stamped = with_request_id(message)
    assert decode(encode(stamped)).request_id == "req-1"  # type: ignore[union-attr]
    assert decode(encode(message)).request_id is None  # type: ignore[union-attr]
    assert with_request_id(stamped, "req-2") is stamped  # an id already set stays


async def test_outbox_depth_and_messages_stamped_inside_a_request(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = await open_db(request, tmp_path, "sqlite")
    message = EventIngestedV1(
        event_id=uuid.uuid4(),
        source="hotline",
        category="E0403",
        geotag=GeotagInfo(),
        reported_at=datetime.now(UTC),
    )
    try:
        async with db.sessions() as session, session.begin():
            with request_scope("req-outbox"):
                add_to_outbox(session, message)
            add_to_outbox(session, message)
        assert await outbox_depth(db.sessions) == 2
        async with db.sessions() as session:
            payloads = (await session.scalars(select(OutboxMessage.payload))).all()
        ids = sorted(str(decode(p).request_id) for p in payloads)  # type: ignore[union-attr]
        assert ids == ["None", "req-outbox"]
    finally:
        await db.engine.dispose()


async def test_due_timers_are_counted(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db = await open_db(request, tmp_path, "sqlite")
    catalogue = Catalogue(default_categories())
    created = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    try:
        async with db.sessions() as session, session.begin():
            _ticket, deadlines = await add_ticket(session, catalogue, WorkCalendar(), created)
        async with db.sessions() as session:
            assert await scheduler_store.count_due(session, created) == 0
            after_all = max(due for _kind, due in deadlines.timers()) + timedelta(seconds=1)
            assert await scheduler_store.count_due(session, after_all) == 4
    finally:
        await db.engine.dispose()


# -- HTTP: route templates, request ids ---------------------------------------------------------


async def test_requests_are_counted_by_route_template_and_status(
    embedded_settings: Settings,
) -> None:
    app = create_hub_app(embedded_settings)
    template = {"route": "/api/v1/tickets/{ticket_id}", "method": "GET", "status": "401"}
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    count = "cityhub_http_request_duration_seconds_count"
    async with serving(app) as client:
        before = await scrape(client)
        ticket = uuid.uuid4()
        for _ in range(3):
            assert (await client.get(f"/api/v1/tickets/{ticket}")).status_code == 401
        assert (await client.get(f"/no/such/{ticket}")).status_code == 404
        after = await scrape(client)
    assert sample(after, count, template) - sample(before, count, template) == 3
    assert sample(after, count, unmatched) - sample(before, count, unmatched) == 1
    assert str(ticket) not in after  # raw paths never become labels
    assert 'route="/metrics"' not in after  # scrapes do not count themselves


async def test_request_id_is_echoed_when_safe_and_replaced_when_not(
    embedded_settings: Settings,
) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        kept = await client.get("/healthz", headers={"X-Request-ID": "crm-42.a:b"})
        assert kept.headers["x-request-id"] == "crm-42.a:b"
        made = await client.get("/healthz")
        for bad in ("x" * (MAX_LENGTH + 1), "a b", "<script>alert(1)</script>"):
            replaced = await client.get("/healthz", headers={"X-Request-ID": bad})
            assert replaced.headers["x-request-id"] != bad
            assert len(replaced.headers["x-request-id"]) == 32
            assert replaced.headers.get_list("x-request-id") == [replaced.headers["x-request-id"]]
    assert len(made.headers["x-request-id"]) == 32
    int(made.headers["x-request-id"], 16)  # 32 hex digits


# -- the request id travels: gateway → ingest → bus → dispatch (one process) -----------------


async def test_request_id_travels_to_dispatchs_log_line_and_ticket_message(
    embedded_settings: Settings, json_log: io.StringIO
) -> None:
    app = create_hub_app(embedded_settings)
    count = "cityhub_kpi_update_lag_seconds_count"
    async with serving(app) as client:
        runtime = runtime_of(app)
        await runtime.bus.create_group(TICKETS_CHANGED, "test-watch")
        key = await add_key(app, "crm")
        before = await scrape(client)
        request_id = f"crm-{uuid.uuid4().hex[:12]}"
        created = await client.post(
            "/api/v1/events",
            json=event_body("req-1"),
            headers={"X-API-Key": key, "X-Request-ID": request_id},
        )
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"] == request_id
        event_id = created.json()["id"]

        async def dispatch_line() -> dict[str, Any] | None:
            return next(
                (
                    line
                    for line in lines(json_log)
                    if line["logger"] == "services.dispatch.consumers"
                    and line.get("event_id") == event_id
                ),
                None,
            )

        line = await wait_for(dispatch_line, within=30)
        assert line is not None
        assert line["request_id"] == request_id
        assert line["level"] == "DEBUG" and line["ticket_id"] in line["message"]
        datetime.fromisoformat(line["timestamp"])

        async def ticket_message() -> list[TicketChangedV2]:
            read = await runtime.bus.read(
                TICKETS_CHANGED, "test-watch", "t", count=100, block_ms=100
            )
            found = [decode(d.data) for d in read]
            return [m for m in found if isinstance(m, TicketChangedV2)]

        changes = await wait_for(ticket_message, within=30)
        assert changes[0].ticket.id == uuid.UUID(line["ticket_id"])
        assert changes[0].request_id == request_id

        async def kpis_updated() -> bool:
            page = await scrape(client)
            stream = {"stream": EVENTS_INGESTED}
            return sample(page, count, stream) > sample(before, count, stream)

        await wait_for(kpis_updated, within=30)


# -- scrape-time and counted metrics ------------------------------------------------------------


async def test_bus_groups_dead_letters_and_fired_timers_show_on_metrics(
    embedded_settings: Settings,
) -> None:
    app = create_hub_app(embedded_settings)
    catalogue = Catalogue(default_categories())
    fired = "cityhub_timers_fired_total"
    dead = "cityhub_dead_letters_total"
    mqtt = "cityhub_mqtt_messages_total"
    async with serving(app) as client:
        runtime = runtime_of(app)
        before = await scrape(client)

        # A group that read one message and did not acknowledge it, with one more waiting.
        group = {"stream": EVENTS_INGESTED, "group": "test-slow"}
        await runtime.bus.create_group(EVENTS_INGESTED, "test-slow")
        await runtime.bus.publish(EVENTS_INGESTED, b"{}")
        await runtime.bus.read(EVENTS_INGESTED, "test-slow", "c", count=1, block_ms=100)
        await runtime.bus.publish(EVENTS_INGESTED, b"{}")

        # A reading for a sensor nobody registered: a dead letter, once committed.
        intake: SensorIntake = runtime.extras[INTAKE_KEY]
        topic = f"{runtime.settings.mqtt_topic_root}/sensors/nobody/readings"
        intake.submit(intake.receive(topic, b'{"level": 1}'))

        # A ticket opened a month ago: its timers are all due, the scheduler fires them.
        async with runtime.sessions() as session, session.begin():
            await add_ticket(
                session, catalogue, WorkCalendar(), datetime.now(UTC) - timedelta(days=30)
            )

        async def all_seen() -> str | None:
            page = await scrape(client)
            due = {"kind": "handle_due"}
            reason = {"reason": "unknown_sensor"}
            done = (
                sample(page, "cityhub_bus_pending_messages", group) == 1
                and sample(page, "cityhub_bus_lag_messages", group) == 1
                and sample(page, dead, reason) - sample(before, dead, reason) == 1
                and sample(page, fired, due) > sample(before, fired, due)
            )
            return page if done else None

        page = await wait_for(all_seen, within=30)
        assert page is not None
    refused = {"outcome": "dead_lettered"}
    assert sample(page, mqtt, refused) - sample(before, mqtt, refused) == 1
    assert sample(page, "cityhub_timer_lag_seconds_count") > 0
    for gauge in ("cityhub_outbox_messages", "cityhub_timers_due"):
        assert f"\n{gauge} " in page, gauge  # the probes answered
    for defined in ("cityhub_websocket_connections", "cityhub_websocket_slow_clients_dropped"):
        assert f"# TYPE {defined}" in page


async def test_metrics_ask_for_the_scrapers_token_when_one_is_set(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings.model_copy(update={"metrics_token": SecretStr("s3cret-scrape")})
    async with serving(create_hub_app(settings)) as client:
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "cityhub_" not in refused.text + wrong.text
    assert right.status_code == 200 and "cityhub_http_request_duration_seconds" in right.text
