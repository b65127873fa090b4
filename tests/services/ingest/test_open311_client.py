"""A public Open311 client (PyPI `georeport`) reads our server, run as `cityhub run` on a real port.

`georeport` only reads (services, definitions, requests); it cannot post, so the requests are
posted as the form a CRM sends, with plain httpx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from georeport import GeoReport

from tests.support.processes import cli, service
from tests.support.servers import free_port


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    return {
        "CITYHUB_DATA_DIR": str(tmp_path),
        "CITYHUB_HTTP_PORT": str(free_port()),
        "CITYHUB_MQTT_PORT": str(free_port()),
        "CITYHUB_DATABASE_URL": "",
        "CITYHUB_REDIS_URL": "",
        "CITYHUB_MQTT_URL": "",
    }


@pytest.mark.parametrize("output_format", ["json", "xml"])
def test_georeport_reads_services_and_requests(tmp_path: Path, output_format: str) -> None:
    env = _embedded_env(tmp_path)
    assert cli(env, "migrate").returncode == 0  # keys are added to an existing hub database
    added = cli(env, "keys", "add", "crm")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    base = f"http://127.0.0.1:{env['CITYHUB_HTTP_PORT']}"
    with service(env, "run", health_url=f"{base}/healthz"):
        posted: list[str] = []
        for code, description in (("C0104", "人行道井盖丢失"), ("C0201", "路灯不亮")):
            form = {
                "api_key": key,
                "service_code": code,
                "lat": "29.5630",
                "long": "106.5516",
                "description": description,
                "first_name": "三",
                "last_name": "张",
                "phone": "13800138000",
            }
            reply = httpx.post(f"{base}/open311/v2/requests.json", data=form, timeout=10)
            assert reply.status_code == 201, reply.text
            posted.append(reply.json()[0]["service_request_id"])

        client = GeoReport(
            f"{base}/open311/v2/", jurisdiction="cq.gov.cn", output_format=output_format
        )
        services: list[dict[str, Any]] = client.get_service_list()
        by_code = {s["service_code"]: s for s in services}
        assert len(by_code) >= 40
        assert by_code["C0104"]["service_name"] == "井盖缺失"
        assert str(by_code["C0104"]["metadata"]).lower() == "true"

        definition: dict[str, Any] = client.get_service_definition("C0104")
        attributes = definition["attributes"]
        attribute = attributes[0] if output_format == "json" else attributes["attribute"]
        assert attribute["code"] == "cover_type"

        listed: list[dict[str, Any]] = client.get_service_requests(
            service_code="C0104,C0201", status="open"
        )
        assert [r["service_request_id"] for r in listed] == posted[::-1]  # newest first
        chosen = client.get_service_requests(service_request_id=posted[0])
        chosen_ids = (
            [r["service_request_id"] for r in chosen]
            if isinstance(chosen, list)
            else [chosen["service_request_id"]]  # xmltodict: a lone element is not a list
        )
        assert chosen_ids == [posted[0]]

        one: dict[str, Any] = client.get_service_request(posted[1])
        assert (one["service_code"], one["status"], one["description"]) == (
            "C0201",
            "open",
            "路灯不亮",
        )
        assert one["requested_datetime"].endswith("+08:00")
        assert "13800138000" not in str(listed) + str(one)
