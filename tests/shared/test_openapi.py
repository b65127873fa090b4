"""The OpenAPI document declares one error model and every status shared code can answer; Open311
declares its own error array, and XML as XML."""

from __future__ import annotations

from typing import Any

import pytest

from services.hub import create_hub_app
from shared.openapi import ERROR_REF, Error, expected_statuses
from shared.settings import Settings


@pytest.fixture
def document(embedded_settings: Settings) -> dict[str, Any]:
    """The embedded hub's OpenAPI document (no lifespan needed)."""
    schema: dict[str, Any] = create_hub_app(embedded_settings).openapi()
    return schema


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every documented operation."""
    return [(m, p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


def test_one_error_model_for_both_kinds_of_detail(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "Error" in schemas and "HTTPValidationError" not in schemas
    Error.model_validate({"detail": "attribute 'time_of_day' is required for E0405"})
    Error.model_validate(
        {"detail": [{"loc": ["query", "before"], "msg": "too big", "type": "x", "input": "9"}]}
    )


def test_every_operation_documents_what_shared_code_answers(document: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert "503" in responses, (method, path)
        if path.startswith("/open311/"):
            assert "422" not in responses and "4XX" in responses, (method, path)
            continue
        if path.startswith("/api/v1/"):
            assert {"401", "403"} <= responses.keys(), (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= responses.keys(), (method, path)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert {"404", "422"} <= responses.keys(), (method, path)
        for status, response in responses.items():
            if status.isdigit() and int(status) >= 400 and path != "/healthz":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
        checked += 1
    assert checked >= 25


def test_sign_in_documents_its_401(document: dict[str, Any]) -> None:
    sign_in = document["paths"]["/auth/token"]["post"]
    assert "401" in sign_in["responses"]
    assert 401 in expected_statuses("post", sign_in, document["components"]["schemas"])
    assert 401 not in expected_statuses("get", document["paths"]["/healthz"]["get"], {})


def test_open311_declares_xml_as_xml(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if not path.startswith("/open311/"):
            continue
        for status, response in operation["responses"].items():
            if status == "503" or (status == "413" and method == "post"):
                continue
            content = response["content"]
            assert {"application/json", "text/xml"} <= content.keys(), (method, path, status)
            xml = content["text/xml"]["schema"]
            assert xml.get("xml", {}).get("wrapped") or "$ref" in xml, (method, path, status)
