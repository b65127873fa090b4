"""The OpenAPI document describes the API: schemathesis generates requests for every operation of
the embedded hub (the gateway's routes, called in-process through ASGI), signed in as an admin and
as an integrator, with valid and with invalid data, and every answer must be no 5xx, a documented
status and media type, and a body that keeps to its declared schema. At least 2,000 requests in all
(issue 10, security tests)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import PASSWORD, add_key, add_user
from tests.support.first_start import SQLITE_TEMPLATE
from tests.support.servers import free_port

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Generated cases per operation in each (caller, mode) run; four runs over the 55 operations
# make over 2,000 requests (the floor), each run in well under a minute in-process.
EXAMPLES_PER_OPERATION = 12
MIN_REQUESTS_PER_RUN = 400
MIN_REQUESTS = 2_000  # over the four runs
RUNS = 4
# Security headers are ours (a real token or key), never generated: a random credential would
# only ever test the 401 path.
CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
# Signing out ends the sign-in it is sent with: the admin runs sign out spare sign-ins of their
# own, so that the rest of each run keeps the admin's token.
SIGNS_OUT = "POST /auth/logout"


@dataclass
class Hub:
    """The served hub, its schema as schemathesis loaded it, and each caller's headers."""

    client: asgi.ASGIClient  # in-process, sharing the lifespan schemathesis started
    schema: OpenApiSchema
    headers: dict[str, dict[str, str]]
    spare: list[dict[str, str]]  # admin sign-ins for SIGNS_OUT, one per admin run


@dataclass
class Report:
    """What one fuzzing run sent and what broke."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests answered (those that failed a check included)."""
        return sum(self.statuses.values())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One embedded hub for the module (its lifespan run by schemathesis's in-process client, on
    schemathesis's event loop), with an admin and an integrator key."""
    data_dir = tmp_path_factory.mktemp("hub")
    SQLITE_TEMPLATE.copy_into(data_dir)
    app = create_hub_app(Settings(data_dir=data_dir, mqtt_port=free_port()))
    # Starts the lifespan, kept until the shutdown below (FastAPI's ASGI signature is a wider
    # mapping than schemathesis declares).
    with asgi.get_client(app) as client:  # type: ignore[arg-type]
        try:
            portal = asgi._get_portal()  # the loop the app's runtime lives on
            portal.call(add_user, app, "root", "admin", "city")
            key = portal.call(add_key, app, "crm")
            tokens = []
            for _ in range(3):
                reply = client.post("/auth/token", data={"username": "root", "password": PASSWORD})
                assert reply.status_code == 200, reply.text
                tokens.append(reply.json()["access_token"])
            token, *spare = tokens
            # One real service request, so that the Open311 lists have something to check.
            posted = client.post(
                "/open311/v2/requests.json",
                data={"api_key": key, "service_code": "C0104", "lat": "29.5630",
                      "long": "106.5516", "attribute[cover_type]": "sewage",
                      "description": "井盖丢失"},
            )  # fmt: skip
            assert posted.status_code == 201, posted.text
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
            yield Hub(
                client,
                schema,
                {"admin": {"Authorization": f"Bearer {token}"}, "integrator": {"X-API-Key": key}},
                [{"Authorization": f"Bearer {t}"} for t in spare],
            )
        finally:
            asgi.shutdown_lifespans()


def fuzz(
    schema: OpenApiSchema, caller: dict[str, str], mode: GenerationMode, spare: list[dict[str, str]]
) -> Report:
    """Generate requests for every operation and check each answer; collect what fails."""
    report = Report()
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            pytest.fail(f"schemathesis cannot read an operation: {result.err()}")
        operation = result.ok()
        signs_out = operation.label == SIGNS_OUT and "Authorization" in caller
        _fuzz_one(operation, spare.pop() if signs_out else caller, mode, report)
    return report


def _fuzz_one(
    operation: APIOperation[Any, Any, Any, Any],
    headers: dict[str, str],
    mode: GenerationMode,
    report: Report,
) -> None:
    """Generate requests for one operation and check each answer; note what fails."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,  # no example database: every run starts from the same state
        derandomize=True,  # the same requests on every run: a failure is reproducible
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case[Any]) -> None:
        for name in CREDENTIAL_HEADERS:
            case.headers.pop(name, None)
        response = case.call(headers=headers)
        report.statuses[response.status_code] += 1
        case.validate_response(
            response, checks=CHECKS, headers=headers, transport_kwargs={"headers": headers}
        )

    try:
        check()
    except Unsatisfiable:
        pass  # nothing to make invalid (an operation without parameters or body)
    except (Exception, BaseExceptionGroup) as exc:
        report.failures.append(f"{operation.label} ({mode.value}):\n{str(exc)[:3000]}")


SENT: list[int] = []  # requests of each run so far, for the total


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: str(m.value)
)
@pytest.mark.parametrize("caller", ["admin", "integrator"])
def test_every_answer_keeps_to_the_schema(hub: Hub, caller: str, mode: GenerationMode) -> None:
    started = time.monotonic()
    report = fuzz(hub.schema, hub.headers[caller], mode, hub.spare)
    took = time.monotonic() - started
    SENT.append(report.requests)
    print(f"{caller}/{mode.value}: {report.requests} requests in {took:.0f} s {report.statuses}")
    assert not report.failures, "\n\n".join(report.failures)
    assert report.requests >= MIN_REQUESTS_PER_RUN, report.statuses


def test_at_least_2000_requests_in_all() -> None:
    if len(SENT) < RUNS:
        pytest.skip("needs the four fuzzing runs above in the same session")
    print(f"schemathesis: {sum(SENT)} requests in {len(SENT)} runs")
    assert sum(SENT) >= MIN_REQUESTS, SENT


def _sample(name: str) -> str:
    """A path parameter value the route accepts as such (the method, not the value, is wrong)."""
    return {"fmt": "json"}.get(name, str(uuid.uuid4()) if name.endswith("_id") else "C0101")


def test_wrong_methods_are_405_with_allow(hub: Hub) -> None:
    client = hub.client
    document: dict[str, Any] = client.get("/openapi.json").json()
    checked = 0
    for template, operations in document["paths"].items():
        declared = {m.upper() for m in operations}
        wrong = next(m for m in ("PATCH", "DELETE", "PUT", "POST") if m not in declared)
        path = template
        for name in (p["name"] for o in operations.values() for p in o.get("parameters", [])):
            path = path.replace("{" + name + "}", _sample(name))
        reply = client.request(wrong, path, headers=hub.headers["admin"])
        assert reply.status_code == 405, (wrong, path, reply.status_code, reply.text)
        allowed = {m.strip() for m in reply.headers.get("allow", "").split(",")}
        assert declared <= allowed, (wrong, path, reply.headers.get("allow"))
        checked += 1
    assert checked >= 30
