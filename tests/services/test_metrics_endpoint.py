"""Production mode: each `cityhub serve` process answers `/metrics` with its own registry, logs
JSON lines, and the request id of a POST at the gateway reaches dispatch's log line (through the
gateway's proxy to ingest, then the Redis bus)."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from contextlib import ExitStack
from typing import IO, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import Settings
from tests.support.processes import cli, production_env, service
from tests.support.servers import free_port

SERVICES = ("ingest", "dispatch", "metrics", "gateway")
WAIT_S = 60.0  # generous: the machine is shared
TEST_TIMEOUT_S = 300  # four processes start one after another: 19 s here, 110 s at load 19
BANNERS = ("database: ", "cityhub dispatch is running at ")  # printed by `cityhub serve`


def _follow(stream: IO[str], into: queue.Queue[str]) -> threading.Thread:
    """Copy a process's output lines into a queue (a pipe read must not block the test)."""

    def pump() -> None:
        for line in stream:
            into.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _json_line(into: queue.Queue[str], seen: list[str], match: dict[str, str]) -> dict[str, Any]:
    """The first JSON log line whose fields include `match` (every line must be JSON)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            raw = into.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(raw)
        if raw.startswith(BANNERS):
            continue  # the CLI's own words to a person, not log records
        line = json.loads(raw)  # every log record: one JSON object on one line
        if all(line.get(k) == v for k, v in match.items()):
            return dict(line)
    raise AssertionError(f"no log line with {match}; last lines:\n{''.join(seen[-20:])}")


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_metrics_and_a_request_id_across_processes(production_settings: Settings) -> None:
    ports = {name: free_port() for name in SERVICES}
    env = production_env(
        production_settings,
        CITYHUB_INGEST_URL=f"http://127.0.0.1:{ports['ingest']}",
        CITYHUB_DISPATCH_URL=f"http://127.0.0.1:{ports['dispatch']}",
        CITYHUB_METRICS_URL=f"http://127.0.0.1:{ports['metrics']}",
        CITYHUB_LOG_LEVEL="debug",  # dispatch's line per event is a debug line
    )
    assert cli(env, "migrate").returncode == 0
    key = cli(env, "keys", "add", "crm").stdout.strip()
    assert key.startswith("chk_")

    with ExitStack() as stack:
        procs = {
            name: stack.enter_context(
                service(
                    {**env, "CITYHUB_HTTP_PORT": str(port)},
                    "serve",
                    name,
                    health_url=f"http://127.0.0.1:{port}/healthz",
                )
            )
            for name, port in ports.items()
        }
        dispatch_out = procs["dispatch"].stdout
        assert dispatch_out is not None  # piped: not a terminal, so JSON by default
        dispatch_lines: queue.Queue[str] = queue.Queue()
        _follow(dispatch_out, dispatch_lines)

        request_id = f"gw-{uuid.uuid4().hex[:16]}"
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        created = httpx.post(
            f"{gateway}/api/v1/events",
            json={"category": "路灯不亮", "location": {"lon": 106.5516, "lat": 29.5630}},
            headers={"X-API-Key": key, "X-Request-ID": request_id},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        assert created.headers.get_list("x-request-id") == [request_id]
        event_id = created.json()["id"]

        line = _json_line(
            dispatch_lines, [], {"logger": "services.dispatch.consumers", "event_id": event_id}
        )
        assert line["request_id"] == request_id
        assert {"timestamp", "level", "message"} <= line.keys()

        pages = {
            name: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
            for name, port in ports.items()
        }
    for name, page in pages.items():
        assert page.status_code == 200, (name, page.text)
        assert page.headers["content-type"].startswith("text/plain"), name
        families = {f.name: f for f in text_string_to_metric_families(page.text)}
        assert "cityhub_http_request_duration_seconds" in families, name
        assert "cityhub_bus_pending_messages" in families, name  # read from Redis at scrape
    # Each process counts its own requests: the POST under the proxy's prefix at the gateway,
    # under ingest's own route template at ingest.
    assert _count(pages["gateway"].text, "/api/v1/events/*", "201") == 1
    assert _count(pages["ingest"].text, "/api/v1/events", "201") == 1
    assert _count(pages["dispatch"].text, "/api/v1/events", "201") == 0


def _count(page: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if (
                s.name == "cityhub_http_request_duration_seconds_count"
                and s.labels.get("route") == route
                and s.labels.get("method") == "POST"
                and s.labels.get("status") == status
            ):
                return float(s.value)
    return 0.0
