"""deploy/compose.yaml against the compose specification (offline, check-jsonschema's vendored
schema), and the shape issue 10 asks of it: migration first, health conditions, AOF, broker ACL."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.deploy.files import (
    COMPOSE_ENV_EXAMPLE,
    DEPLOY,
    K8S_BASE,
    Doc,
    cityhub_services,
    compose,
    compose_raw,
    read_env_file,
)


@cache
def _compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text())
    return schema


def _errors(doc: Doc) -> list[str]:
    validator_class = jsonschema.validators.validator_for(_compose_schema())
    validator = validator_class(_compose_schema())
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_compose_file_follows_the_compose_specification() -> None:
    assert _errors(compose_raw()) == []
    assert _errors(compose()) == []  # and with the example env file's values filled in


def test_the_schema_check_catches_a_broken_file() -> None:
    broken = copy.deepcopy(compose_raw())
    broken["services"]["gateway"]["depends_on"]["ingest"]["condition"] = "service_ready"
    broken["services"]["redis"]["healthchek"] = broken["services"]["redis"].pop("healthcheck")
    errors = _errors(broken)
    assert any(e.startswith("services/gateway") for e in errors), errors
    assert any(e.startswith("services/redis") and "healthchek" in e for e in errors), errors


def test_example_env_file_sets_every_required_variable() -> None:
    compose(read_env_file(COMPOSE_ENV_EXAMPLE))  # raises on a `${NAME:?...}` left unset
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        compose({})


def test_services_start_after_the_migration_and_their_dependencies() -> None:
    doc = compose()
    services = doc["services"]
    cityhub = cityhub_services(doc)
    serving = {n: s for n, s in cityhub.items() if s["command"][1:2] == ["serve"]}
    assert {s["command"][2] for s in serving.values()} == {
        "ingest",
        "dispatch",
        "metrics",
        "gateway",
    }
    assert services["migrate"]["command"] == ["cityhub", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name, service in serving.items():
        needs = service["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), name
        if name != "gateway":
            assert needs["postgres"] == needs["redis"] == {"condition": "service_healthy"}, name
    assert services["ingest"]["depends_on"]["mosquitto"] == {"condition": "service_healthy"}
    for upstream in ("ingest", "dispatch", "metrics"):
        assert services["gateway"]["depends_on"][upstream] == {"condition": "service_healthy"}
    for backend in ("postgres", "redis", "mosquitto"):
        assert "healthcheck" in services[backend], backend


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_broker_logins_and_acl_come_from_the_hub() -> None:
    services = compose()["services"]
    export = services["mqtt-auth"]
    assert export["command"][:3] == ["cityhub", "mqtt", "export-auth"]
    assert export["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    broker = services["mosquitto"]
    assert broker["depends_on"]["mqtt-auth"] == {"condition": "service_completed_successfully"}
    auth_dir = next(v.split(":")[1] for v in broker["volumes"] if v.startswith("mqtt-auth:"))
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert f"password_file {auth_dir}/passwd" in conf
    assert f"acl_file {auth_dir}/acl" in conf
    written = export["command"][export["command"].index("--passwords") + 1]
    assert any(
        v.startswith("mqtt-auth:") and written.startswith(v.split(":")[1] + "/")
        for v in export["volumes"]
    )


def test_kubernetes_runs_the_same_broker_configuration() -> None:
    compose_conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_bytes()
    assert (K8S_BASE / "mosquitto.conf").read_bytes() == compose_conf


def test_simulators_are_an_optional_profile() -> None:
    services = compose()["services"]
    simulators = {n: s for n, s in services.items() if s.get("command", [""])[1:2] == ["simulate"]}
    assert {s["command"][2] for s in simulators.values()} == {"hotline", "grid", "sensors"}
    for name, service in simulators.items():
        assert service["profiles"] == ["simulators"], name
    assert all("profiles" not in s for n, s in services.items() if n not in simulators)
