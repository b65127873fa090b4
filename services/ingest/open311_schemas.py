"""The Open311 documents as the OpenAPI document declares them (JSON, and the spec's XML).

Documentation only: `open311_format` builds the answers; schemathesis checks in the test suite
that they keep to these shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


def _xml(name: str) -> ConfigDict:
    return ConfigDict(json_schema_extra={"xml": {"name": name}})


class Open311ErrorItem(BaseModel):
    """One error of the spec's error array."""

    model_config = _xml("error")

    code: int
    description: str


class Open311Endpoint(BaseModel):
    """An endpoint named by discovery."""

    model_config = _xml("endpoint")

    specification: str
    url: str
    changeset: str
    type: Literal["production", "test"]
    formats: list[str]


class Open311Discovery(BaseModel):
    """Service discovery."""

    model_config = _xml("discovery")

    changeset: str
    contact: str
    key_service: str
    endpoints: list[Open311Endpoint]


class Open311Service(BaseModel):
    """A category citizens may report."""

    model_config = _xml("service")

    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class Open311AttributeValue(BaseModel):
    """One choice of a list attribute."""

    model_config = _xml("value")

    key: str
    name: str


class Open311Attribute(BaseModel):
    """One extra question of a service."""

    model_config = _xml("attribute")

    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[Open311AttributeValue]


class Open311ServiceDefinition(BaseModel):
    """A service's extra questions."""

    model_config = _xml("service_definition")

    service_code: str
    attributes: list[Open311Attribute]


class Open311ServiceRequest(BaseModel):
    """The public view of a request (never who reported it)."""

    model_config = _xml("request")

    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str
    service_code: str
    description: str
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class Open311Receipt(BaseModel):
    """The answer to a submitted request."""

    model_config = _xml("request")

    service_request_id: str
    service_notice: str | None
    account_id: str | None


def answer(model: type[BaseModel], description: str, *, root: str | None = None) -> dict[str, Any]:
    """A `responses=` entry: JSON by `model` (a list of them under `root`, as the spec's XML
    wraps them), and the same structure as XML."""
    item = {"$ref": f"#/components/schemas/{model.__name__}"}
    if root is None:
        return {
            "model": model,
            "description": description,
            "content": {"text/xml": {"schema": item}},
        }
    xml_schema = {"type": "array", "items": item, "xml": {"name": root, "wrapped": True}}
    return {
        "model": list[model],  # type: ignore[valid-type]
        "description": description,
        "content": {"text/xml": {"schema": xml_schema}},
    }
