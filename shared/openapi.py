"""The OpenAPI document made true: one error model, and every status an operation can answer.

FastAPI documents an operation's success and its own validation error. Every other error comes
from code shared by all routes (authentication, role checks, the JSON-only check, the body limit,
the database-busy handler, 404 for what lies outside a scope), so `document_errors` adds those
statuses in one place, from what the operation is: its security, method, body and parameters.
Routes declare only the unusual ones with `responses=` (a status without content gets the error
model here). Every error body is `{"detail": message}`, or for FastAPI's validation errors
`{"detail": [issue, ...]}`: one `Error` model declares both.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SCHEMAS = "#/components/schemas/"
ERROR_REF = SCHEMAS + "Error"
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
# What each status means when shared code answers it.
DESCRIPTIONS = {
    400: "The body could not be parsed",
    401: "No valid credentials: a bearer token or X-API-Key (sign-in: wrong name or password)",
    403: "The caller's role may not do this",
    404: "Not found, or outside the caller's scope",
    409: "The request clashes with the current state",
    413: "The request body is too large",
    415: "The body's media type is not accepted",
    422: "The request is invalid: a message, or the list of validation issues",
    429: "Too many requests from this user or API key: try again after `Retry-After` seconds",
    503: "The database is busy or unavailable: nothing was stored, try again",
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
}
# FastAPI's own validation error schemas, replaced by `Error`.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ValidationIssue(BaseModel):
    """One reason FastAPI refused a request (`input` and `ctx` may come along)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class Error(BaseModel):
    """Every error answer: a message, or (422 from validation) the list of issues."""

    detail: str | list[ValidationIssue]


def error_schemas() -> dict[str, Any]:
    """The `Error` model and what it refers to, as components/schemas entries."""
    schema = Error.model_json_schema(ref_template=SCHEMAS + "{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {"Error": schema, **definitions}


def _has_parameters(operation: dict[str, Any], where: str | None = None) -> bool:
    return any(where is None or p.get("in") == where for p in operation.get("parameters", ()))


def _reads_credentials(operation: dict[str, Any], components: dict[str, Any]) -> bool:
    """A sign-in form: a request body with a password field."""
    for media in operation.get("requestBody", {}).get("content", {}).values():
        schema = media.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith(SCHEMAS):
            schema = components.get(ref.removeprefix(SCHEMAS), {})
        if "password" in schema.get("properties", {}):
            return True
    return False


def expected_statuses(
    method: str, operation: dict[str, Any], components: dict[str, Any] | None = None
) -> set[int]:
    """The error statuses shared code may answer for this operation (`components`: the
    document's schemas, to look into a referenced body)."""
    statuses = {503}  # any operation may meet a busy or unavailable database
    body = "requestBody" in operation
    if body:
        statuses |= {413}  # the body limit answers before any route
    if "4XX" in operation.get("responses", {}):
        return statuses  # the route renders its own client errors (Open311)
    if operation.get("security"):
        statuses |= {401, 403, 429}  # 429: the gateway's rate limits (per user, per API key)
        if method in WRITE_METHODS:
            statuses.add(409)
    if body:
        statuses |= {400, 415, 422}
        if _reads_credentials(operation, components or {}):
            statuses |= {401, 403}
    if _has_parameters(operation):
        statuses.add(422)
    if _has_parameters(operation, "path"):
        statuses.add(404)
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response


def document_errors(schema: dict[str, Any]) -> None:
    """Declare, on every operation of an OpenAPI document, each error status it can answer with
    the `Error` model (in place)."""
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status in expected_statuses(method, operation, components):
                responses.setdefault(str(status), _error_response(status))
            for key, response in responses.items():
                if not key.isdigit() or int(key) < 400:
                    continue
                content = response.get("content", {})
                json_schema = content.get("application/json", {}).get("schema", {})
                if not content or json_schema.get("$ref", "").endswith("/HTTPValidationError"):
                    # Declared by the route without a body, or FastAPI's own 422.
                    response["content"] = _error_response(int(key))["content"]
    for name in FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    components.update(error_schemas())
