"""Open311 GeoReport v2 server under /open311/v2: discovery, services, requests (JSON and XML).

Reads are public (the city's view of its service requests, without who reported them); POST
requests needs an integrator API key. Every failure under /open311, FastAPI's own validation
errors included, is answered in the spec's error format, in the format the path asks for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.dispatch.departments import department_name
from services.ingest import open311_format as fmt
from services.ingest import store
from services.ingest.intake import submit
from services.ingest.logic import check_attributes
from services.ingest.open311_format import Format, Open311Error
from services.ingest.open311_schemas import (
    Open311Discovery,
    Open311ErrorItem,
    Open311Receipt,
    Open311Service,
    Open311ServiceDefinition,
    Open311ServiceRequest,
    answer,
)
from services.ingest.schemas import EventCreate
from shared.catalogue import Category
from shared.db.models import Event, Ticket
from shared.errors import HubError
from shared.limits import BodyTooLargeError
from shared.params import MAX_TEXT
from shared.runtime import Runtime
from shared.web import RuntimeDep, SessionDep, principal_for_api_key

CONTACT = "12345 市民服务热线 / 12345 city service hotline"
KEY_SERVICE = "API keys are issued by the hub's administrators (`cityhub keys add NAME`)."
SUBMITTER_ROLES = frozenset({"integrator", "admin", "dispatcher", "field_staff"})
IDEMPOTENCY_FIELD = "external_id"  # the one client-side id we honour; see decision 0006
MAX_EXTERNAL_ID = 100  # characters, leaving room for the key name in source_ref (200)
# Lengths of query and path parameters (characters): longer ones are refused with 400.
MAX_SHORT_PARAM = 64  # dates, status, page numbers, lang, jurisdiction_id
MAX_CODES_PARAM = 2_000  # a comma list of service codes
MAX_IDS_PARAM = 37 * 1_000  # a comma list of up to MAX_RESULTS (1000) request ids
MAX_RESOURCE = 100  # `CODE.json`, `ID.xml`
# Ids and codes are printable ASCII: this keeps the longest lists inside the 64 KiB an HTTP server
# accepts for a request line (other characters would take up to 12 bytes each, percent-encoded).
ASCII_TEXT = r"^[ -~]*$"
ShortParam = Annotated[str | None, Query(max_length=MAX_SHORT_PARAM)]
IdList = Annotated[str | None, Query(max_length=MAX_IDS_PARAM, pattern=ASCII_TEXT)]
CodeList = Annotated[str | None, Query(max_length=MAX_CODES_PARAM, pattern=ASCII_TEXT)]
Resource = Annotated[str, Path(max_length=MAX_RESOURCE)]
# The fields of EventCreate as an Open311 client names them, for error messages.
_FIELD_NAMES = {
    "attachments": "media_url",
    "address": "address_string",
    "source_ref": IDEMPOTENCY_FIELD,
    "reporter": "contact details",
}


def _error_response(code: int, descriptions: tuple[str, ...], path: str) -> Response:
    return _respond("errors", fmt.errors(code, *descriptions), fmt.format_of_path(path), code)


def _respond(document: fmt.Document, body: Any, form: Format, status_code: int = 200) -> Response:
    return Response(
        fmt.render(document, body, form),
        status_code=status_code,
        media_type=fmt.CONTENT_TYPES[form],
    )


def _open311_status(status_code: int) -> int | None:
    """The spec's status for one of ours: 403 for authentication, 404, else 400 (None: a 5xx)."""
    if status_code in (401, 403):
        return 403
    if status_code == 404:
        return 404
    if status_code < 500:
        return 400
    return None


def _validation_messages(errors: Any) -> tuple[str, ...]:
    """One line per pydantic/FastAPI error, naming the field as the client sent it."""
    lines = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        if loc:
            loc[0] = _FIELD_NAMES.get(loc[0], loc[0])
        where = ".".join(loc)
        lines.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return tuple(lines) or ("invalid request",)


class Open311Route(APIRoute):
    """A route whose failures are rendered as the spec's error array, never as {"detail": …}."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            path = request.url.path
            try:
                return await handler(request)
            except Open311Error as exc:
                return _error_response(exc.code, exc.descriptions, path)
            except RequestValidationError as exc:
                return _error_response(400, _validation_messages(exc.errors()), path)
            except HubError as exc:
                code = _open311_status(exc.status_code)
                if code is None:
                    raise
                return _error_response(code, (exc.message,), path)
            except BodyTooLargeError:
                raise  # 413 as everywhere else: the body limit answers before any route does
            except StarletteHTTPException as exc:
                code = _open311_status(exc.status_code)
                if code is None:
                    raise
                return _error_response(code, (str(exc.detail),), path)

        return guarded


# Every client error is the spec's error array, in the format the path asks for ("4XX" also
# tells shared/openapi.py that these routes render their own client errors: no 422 here).
router = APIRouter(
    prefix="/open311",
    tags=["open311"],
    route_class=Open311Route,
    responses={
        code: answer(Open311ErrorItem, f"The spec's error array: {meaning}", root="errors")
        for code, meaning in (
            (400, "bad request"),
            (403, "no valid api_key"),
            (404, "not found"),
            ("4XX", "any other client error"),
        )
    },
)


async def suffix_format(request: Request) -> Format:
    """The format the path's `.json` / `.xml` suffix asks for (JSON without one)."""
    suffix: str | None = request.path_params.get("fmt")
    return fmt.parse_format(suffix)


FormatDep = Annotated[Format, Depends(suffix_format)]
# `{fmt}` is read by `suffix_format`, so FastAPI does not know it: document it here.
_FMT_PARAM: dict[str, Any] = {
    "parameters": [
        {
            "name": "fmt",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": ["json", "xml"]},
        }
    ]
}


def _category(runtime: Runtime, code: str) -> Category:
    category = runtime.catalogue.get(code)
    if category is None or not fmt.is_service(category):
        raise Open311Error(404, f"service_code {code!r} not found")
    return category


# ---- discovery and services ------------------------------------------------------------------


@router.get("/v2/discovery", include_in_schema=False)
@router.get(
    "/v2/discovery.{fmt}",
    openapi_extra=_FMT_PARAM,
    responses={200: answer(Open311Discovery, "Service discovery")},
)
async def discovery(request: Request, form: FormatDep, session: SessionDep) -> Response:
    """Service discovery: this endpoint, its formats and when the service list last changed."""
    changeset = await store.catalogue_changed_at(session) or datetime(2026, 1, 1, tzinfo=UTC)
    return _respond(
        "discovery", fmt.discovery(changeset, _endpoint_url(request), CONTACT, KEY_SERVICE), form
    )


def _endpoint_url(request: Request) -> str:
    """This endpoint's base URL as the client reached it (behind a proxy: its forwarded host)."""
    base = request.base_url
    host = request.headers.get("x-forwarded-host")
    proto = request.headers.get("x-forwarded-proto")
    if host:
        base = base.replace(netloc=host.split(",")[0].strip())
    if proto:
        base = base.replace(scheme=proto.split(",")[0].strip())
    return str(base).rstrip("/") + "/open311/v2"


@router.get("/v2/services", include_in_schema=False)
@router.get(
    "/v2/services.{fmt}",
    openapi_extra=_FMT_PARAM,
    responses={200: answer(Open311Service, "The services", root="services")},
)
async def list_services(
    form: FormatDep,
    runtime: RuntimeDep,
    jurisdiction_id: ShortParam = None,
    lang: ShortParam = None,
) -> Response:
    """Every category citizens may report (sensor alarms excepted) as an Open311 service."""
    return _respond("services", fmt.services(runtime.catalogue, fmt.parse_lang(lang)), form)


@router.get(
    "/v2/services/{resource}",
    responses={200: answer(Open311ServiceDefinition, "The service definition")},
)
async def get_service_definition(
    resource: Resource, runtime: RuntimeDep, jurisdiction_id: ShortParam = None
) -> Response:
    """A service definition (`CODE.json` / `CODE.xml`): the category's extra questions."""
    code, form = fmt.split_resource(resource)
    category = _category(runtime, code)
    return _respond("service_definition", fmt.service_definition(category), form)


# ---- requests --------------------------------------------------------------------------------


@router.post("/v2/requests", include_in_schema=False)
@router.post(
    "/v2/requests.{fmt}",
    status_code=201,
    responses={
        201: answer(Open311Receipt, "Submitted", root="service_requests"),
        200: answer(Open311Receipt, "Repeated external_id: the original", root="service_requests"),
    },
    openapi_extra={
        **_FMT_PARAM,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["api_key", "service_code"],
                        "properties": {
                            name: {"type": "string"}
                            for name in (
                                "api_key",
                                "service_code",
                                "lat",
                                "long",
                                "address_string",
                                "address_id",
                                "description",
                                "media_url",
                                "email",
                                "device_id",
                                "account_id",
                                "first_name",
                                "last_name",
                                "phone",
                                IDEMPOTENCY_FIELD,
                                "attribute[CODE]",
                            )
                        },
                    }
                }
            },
        },
    },
)
async def create_request(
    request: Request,
    form: FormatDep,
    runtime: RuntimeDep,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key", max_length=MAX_TEXT)] = None,
) -> Response:
    """Submit a service request (form-encoded or multipart); 201, or 200 for a repeated
    `external_id` with the original request. Stored through the group-commit writer, like
    `POST /api/v1/events`."""
    received = (await request.form()).multi_items()
    text = [(k, v) for k, v in received if isinstance(v, str)]  # uploaded files are ignored

    def first(name: str) -> str | None:
        return next((fmt.blank(v) for k, v in text if k == name and fmt.blank(v)), None)

    key = first("api_key") or fmt.blank(request.query_params.get("api_key")) or fmt.blank(x_api_key)
    if key is None:
        raise Open311Error(403, "api_key was not provided")
    try:
        principal = await principal_for_api_key(runtime, key)
    except HubError:
        raise Open311Error(403, "api_key is invalid") from None
    if principal.role not in SUBMITTER_ROLES:
        raise Open311Error(403, f"api_key of role {principal.role!r} may not submit requests")

    code = first("service_code")
    if code is None:
        raise Open311Error(400, "service_code was not provided")
    category = _category(runtime, code)
    place = fmt.parse_place(
        first("lat"), first("long"), first("address_string"), first("address_id")
    )
    description = first("description") or ""
    if len(description) > fmt.MAX_DESCRIPTION:
        raise Open311Error(400, f"description is longer than {fmt.MAX_DESCRIPTION} characters")
    attributes = fmt.shape_attributes(category, fmt.collect_attributes(text))
    try:
        check_attributes(category, attributes)
    except HubError as exc:
        raise Open311Error(400, exc.message) from None
    external_id = first(IDEMPOTENCY_FIELD)
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID:
        raise Open311Error(400, f"{IDEMPOTENCY_FIELD} is longer than {MAX_EXTERNAL_ID} characters")

    contact = {
        "name": fmt.reporter_name(first("first_name"), first("last_name")),
        "phone": first("phone"),
        "account": "; ".join(v for v in (first("account_id"), first("email")) if v) or None,
    }
    try:
        payload = EventCreate.model_validate(
            {
                "source": "hotline",
                "source_ref": f"open311:{principal.subject}:{external_id}" if external_id else None,
                "category": category.code,
                "description": description,
                "location": {"lon": place.lon, "lat": place.lat} if place.lat is not None else None,
                "address": place.address,
                "reporter": contact if any(contact.values()) else None,
                "attributes": attributes,
                "attachments": [v for k, v in text if k == "media_url" and fmt.blank(v)],
            }
        )
    except ValidationError as exc:
        raise Open311Error(400, *_validation_messages(exc.errors())) from None

    event, created = await submit(runtime, payload, principal.subject)
    lang = fmt.parse_lang(first("lang"))
    return _respond(
        "service_requests",
        fmt.receipt(event, runtime.catalogue.get(event.category), lang),
        form,
        201 if created else 200,
    )


@router.get("/v2/requests", include_in_schema=False)
@router.get(
    "/v2/requests.{fmt}",
    openapi_extra=_FMT_PARAM,
    responses={200: answer(Open311ServiceRequest, "The requests", root="service_requests")},
)
async def list_requests(
    form: FormatDep,
    session: SessionDep,
    runtime: RuntimeDep,
    service_request_id: IdList = None,
    service_code: CodeList = None,
    start_date: ShortParam = None,
    end_date: ShortParam = None,
    status: ShortParam = None,
    page: ShortParam = None,
    page_size: ShortParam = None,
    lang: ShortParam = None,
    jurisdiction_id: ShortParam = None,
) -> Response:
    """Service requests, newest first: by ids (comma list; then nothing else applies), or by
    service_code, status and requested time (default: the last 90 days), 1000 at most a page."""
    language = fmt.parse_lang(lang)
    if fmt.blank(service_request_id) is not None:
        wanted = fmt.parse_csv(service_request_id)
        if len(wanted) > fmt.MAX_RESULTS:
            raise Open311Error(400, f"at most {fmt.MAX_RESULTS} service_request_id at once")
        ids = [i for i in (_uuid(t) for t in wanted) if i is not None]
        rows = await store.events_with_tickets(session, ids=ids, limit=fmt.MAX_RESULTS)
    else:
        size = fmt.parse_positive_int(page_size, "page_size", fmt.MAX_RESULTS, fmt.MAX_RESULTS)
        number = fmt.parse_positive_int(page, "page", 1, 1_000_000)
        closed = fmt.parse_status(status)
        start = fmt.parse_datetime(start_date, "start_date")
        end = fmt.parse_datetime(end_date, "end_date")
        since, until = fmt.date_window(start, end, datetime.now(UTC))
        rows = await store.events_with_tickets(
            session,
            categories=fmt.parse_csv(service_code),
            reported_from=since,
            reported_to=until,
            closed=closed,
            closed_statuses=fmt.CLOSED_TICKET_STATUSES,
            offset=(number - 1) * size,
            limit=size,
        )
    notes = await _notes(session, rows)
    names = _department_names(runtime)
    body = [
        fmt.service_request(
            event,
            ticket,
            runtime.catalogue.get(event.category),
            language,
            note=notes.get(ticket.id) if ticket is not None else None,
            names=names,
        )
        for event, ticket in rows
    ]
    return _respond("service_requests", body, form)


@router.get(
    "/v2/requests/{resource}",
    responses={
        200: answer(Open311ServiceRequest, "The request, alone in a list", root="service_requests")
    },
)
async def get_request(
    resource: Resource,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: ShortParam = None,
    jurisdiction_id: ShortParam = None,
) -> Response:
    """One service request (`ID.json` / `ID.xml`) as a one-element array; 404 when unknown."""
    text, form = fmt.split_resource(resource)
    request_id = _uuid(text)
    rows = await store.events_with_tickets(session, ids=[request_id]) if request_id else []
    if not rows:
        raise Open311Error(404, f"service_request_id {text!r} not found")
    event, ticket = rows[0]
    category = runtime.catalogue.get(event.category)
    notes = await _notes(session, rows)
    body = [
        fmt.service_request(
            event,
            ticket,
            category,
            fmt.parse_lang(lang),
            note=notes.get(ticket.id) if ticket is not None else None,
            names=_department_names(runtime),
        )
    ]
    return _respond("service_requests", body, form)


async def _notes(
    session: AsyncSession, rows: Sequence[tuple[Event, Ticket | None]]
) -> dict[uuid.UUID, fmt.TicketNote]:
    """The latest public note of each ticket on the page, in one query."""
    ticket_ids = {ticket.id for _, ticket in rows if ticket is not None}
    return await store.latest_notes(session, ticket_ids, fmt.PUBLIC_NOTE_ACTIONS)


def _department_names(runtime: Runtime) -> fmt.DepartmentNames:
    """Names department codes from the shipped directory data and this process's areas (a
    pure lookup: ingest needs no dispatch context for it)."""
    return partial(department_name, hierarchy=runtime.hierarchy)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


@router.api_route(
    "/{rest:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def not_found(request: Request, rest: str) -> Response:
    """Anything else under /open311: 405 (with `Allow`) for a known path, 404 otherwise, in the
    spec's format."""
    allowed: set[str] = set()
    for route in router.routes:
        if not isinstance(route, APIRoute) or route.endpoint is not_found:
            continue
        if route.matches(request.scope)[0] == Match.PARTIAL:
            allowed |= route.methods or set()
    if allowed:
        response = _error_response(
            405, (f"{request.method} is not allowed here",), request.url.path
        )
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    raise Open311Error(404, f"{request.url.path} not found: see /open311/v2/discovery.json")
