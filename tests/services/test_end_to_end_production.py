"""The thin path in production mode: four `cityhub serve` processes on PostgreSQL and Redis,
driven only through the gateway."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx

from shared.settings import Settings
from tests.support.processes import cli, production_env, service
from tests.support.servers import free_port


def test_four_services_as_processes(production_settings: Settings) -> None:
    ports = {name: free_port() for name in ("ingest", "dispatch", "metrics", "gateway")}
    env = production_env(
        production_settings,
        CITYHUB_INGEST_URL=f"http://127.0.0.1:{ports['ingest']}",
        CITYHUB_DISPATCH_URL=f"http://127.0.0.1:{ports['dispatch']}",
        CITYHUB_METRICS_URL=f"http://127.0.0.1:{ports['metrics']}",
    )
    assert cli(env, "migrate").returncode == 0
    added = cli(
        env,
        "users",
        "add",
        "boss",
        "--role",
        "manager",
        "--scope",
        "city",
        "--password",
        "correct-horse-battery",
    )
    assert added.returncode == 0, added.stderr
    key = cli(env, "keys", "add", "crm").stdout.strip()
    assert key.startswith("chk_")

    with ExitStack() as stack:
        for name, port in ports.items():
            stack.enter_context(
                service(
                    {**env, "CITYHUB_HTTP_PORT": str(port)},
                    "serve",
                    name,
                    health_url=f"http://127.0.0.1:{port}/healthz",
                )
            )
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        with httpx.Client(base_url=gateway, timeout=10) as client:
            health = client.get("/healthz").json()
            assert health["mode"] == "production"
            assert health["checks"] == {"database": "ok", "bus": "ok", "upstreams": "ok"}

            created = client.post(
                "/api/v1/events",
                json={
                    "category": "路灯不亮",
                    "location": {"lon": 106.5516, "lat": 29.5630},
                    "source_ref": "crm-1",
                },
                headers={"X-API-Key": key},
            )
            assert created.status_code == 201, created.text
            event = created.json()
            assert event["geotag"]["method"] in ("point", "nearest")

            deadline = time.monotonic() + 15
            ticket_id = None
            while ticket_id is None and time.monotonic() < deadline:
                time.sleep(0.05)  # poll interval while waiting for the ticket
                ticket_id = client.get(
                    f"/api/v1/events/{event['id']}", headers={"X-API-Key": key}
                ).json()["ticket_id"]
            assert ticket_id is not None, "dispatch never opened a ticket"

            token = client.post(
                "/auth/token", data={"username": "boss", "password": "correct-horse-battery"}
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            ticket = client.get(f"/api/v1/tickets/{ticket_id}", headers=auth).json()
            assert ticket["street"]["code"] == event["geotag"]["street"]
            assert ticket["district"]["code"] == event["geotag"]["district"]
            assert ticket["city"]["code"] == "500000"
            kpis = client.get("/api/v1/kpis/summary", headers=auth).json()
            assert kpis["tickets_by_status"] == {"dispatched": 1}  # a rule matched: auto-dispatch
