"""Open311 GeoReport v2 documents and request parsing (pure: no I/O).

Builds the spec's JSON structures from hub models, serialises them as JSON or as the spec's XML
(`<services><service>`, `<service_requests><request>`, `<errors><error>` …), and parses the
form fields and query parameters clients send. Times go out in China Standard Time (+08:00).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from shared.catalogue import Category
from shared.db.models import Event, Ticket
from shared.events import NewEvent
from shared.params import check_moment

Format = Literal["json", "xml"]
Lang = Literal["zh", "en"]
Document = Literal["discovery", "services", "service_definition", "service_requests", "errors"]

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
FORMATS = ("application/json", "text/xml")
CONTENT_TYPES: dict[Format, str] = {
    "json": "application/json; charset=utf-8",
    "xml": "text/xml; charset=utf-8",
}
# Asia/Shanghai has kept +08:00 without daylight saving since 1991, so a fixed offset is exact
# and needs no tz database on the host.
OUTPUT_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
DEFAULT_WINDOW = timedelta(days=90)  # GET requests without dates: the most recent 90 days
MAX_WINDOW = timedelta(days=90)  # the spec: a start/end range "may not span more than 90 days"
MAX_RESULTS = 1000  # the spec's cap on one GET requests answer; also the largest page_size
MAX_DESCRIPTION = 4000  # characters
CLOSED_TICKET_STATUSES = frozenset({"closed", "rejected"})
# An element name per list field, the XML equivalent of a JSON array.
_XML_ITEMS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_ATTRIBUTE_FIELD = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")
# A "+hh:mm" offset in an unencoded query string arrives as " hh:mm".
_LOST_PLUS = re.compile(r"^(.*T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")

STATUS_NOTES: dict[str, tuple[str, str]] = {
    "new": ("已受理，待派遣", "received, awaiting dispatch"),
    "dispatched": ("已派遣至处置部门", "dispatched to the responsible department"),
    "accepted": ("处置部门已接单", "accepted by the responsible department"),
    "in_progress": ("正在处置", "being handled"),
    "processing": ("正在处置", "being handled"),
    "resolved": ("已处置，待核查", "handled, awaiting verification"),
    "suspended": ("暂缓处理", "on hold"),
    "parked": ("已挂账，暂缓处理", "on hold"),
    "closed": ("已办结", "closed"),
    "rejected": ("不予受理", "rejected"),
}

# Timeline actions whose note speaks to the citizen (why rejected or on hold, what was done);
# other notes (comments, merges, timers' 督办 …) are internal.
PUBLIC_NOTE_ACTIONS = frozenset({"reject", "return", "park", "resolve", "verify"})
# (the status the noting action led to, its note), as the store's `latest_notes` gives it.
TicketNote = tuple[str, str]
DepartmentNames = Callable[[str], str | None]


class Open311Error(Exception):
    """A failure to report in the spec's error format: HTTP 400, 403 or 404 with a description."""

    def __init__(self, code: int, *descriptions: str) -> None:
        super().__init__("; ".join(descriptions))
        self.code = code
        self.descriptions = descriptions


def parse_format(suffix: str | None) -> Format:
    """The format a `.json` / `.xml` suffix asks for (no suffix means JSON); 404 otherwise."""
    if suffix is None or suffix.lower() == "json":
        return "json"
    if suffix.lower() == "xml":
        return "xml"
    raise Open311Error(404, f"format {suffix!r} is not supported: use .json or .xml")


def split_resource(resource: str) -> tuple[str, Format]:
    """`C0101.xml` → (`C0101`, "xml"); a name without a format suffix is JSON."""
    stem, dot, suffix = resource.rpartition(".")
    if dot and suffix.lower() in ("json", "xml"):
        return stem, parse_format(suffix)
    return resource, "json"


def format_of_path(path: str) -> Format:
    """The format a request path asks for, for rendering its errors."""
    return "xml" if path.lower().endswith(".xml") else "json"


def parse_lang(text: str | None) -> Lang:
    """English when the client asks for it (`lang=en`, `en-US`, …); Chinese otherwise."""
    return "en" if text and text.lower().startswith("en") else "zh"


def iso(moment: datetime) -> str:
    """A timestamp as ISO-8601 with the +08:00 offset, to the second."""
    return moment.astimezone(OUTPUT_TZ).isoformat(timespec="seconds")


# ---- documents -------------------------------------------------------------------------------


def discovery(
    changeset: datetime, endpoint_url: str, contact: str, key_service: str
) -> dict[str, Any]:
    """The service discovery document naming this one production endpoint."""
    return {
        "changeset": iso(changeset),
        "contact": contact,
        "key_service": key_service,
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": endpoint_url,
                "changeset": iso(changeset),
                "type": "production",
                "formats": list(FORMATS),
            }
        ],
    }


def is_service(category: Category) -> bool:
    """Whether a category is offered as an Open311 service (sensor alarms are not)."""
    return category.group != "sensor"


def service(category: Category, lang: Lang = "zh") -> dict[str, Any]:
    """One entry of GET services."""
    return {
        "service_code": category.code,
        "service_name": category.name_en if lang == "en" else category.name_zh,
        "description": f"{category.name_zh} {category.name_en}",
        "metadata": bool(category.attributes),
        "type": "realtime",
        "keywords": ",".join(category.keywords),
        "group": category.major_en if lang == "en" else category.major_zh,
    }


def services(categories: Iterable[Category], lang: Lang = "zh") -> list[dict[str, Any]]:
    """GET services: every non-sensor category, by code."""
    chosen = sorted((c for c in categories if is_service(c)), key=lambda c: c.code)
    return [service(c, lang) for c in chosen]


def service_definition(category: Category) -> dict[str, Any]:
    """GET service definition: the category's extra questions as Open311 attributes."""
    return {
        "service_code": category.code,
        "attributes": [
            {
                "variable": True,
                "code": attribute.code,
                "datatype": attribute.datatype,
                "required": attribute.required,
                "datatype_description": None,
                "order": order,
                "description": attribute.description,
                "values": [{"key": v.key, "name": v.name} for v in attribute.values],
            }
            for order, attribute in enumerate(category.attributes, start=1)
        ],
    }


def service_notice(category: Category | None, lang: Lang = "zh") -> str | None:
    """What the city promises for a category: its acceptance and handling times."""
    if category is None:
        return None
    accept, handle = _hours(category.accept_hours), _hours(category.handle_hours)
    if lang == "en":
        return f"Accepted within {accept} h and handled within {handle} h."
    return f"{accept}小时内受理，{handle}小时内处置。"


def _hours(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def request_status(ticket: Ticket | None) -> Literal["open", "closed"]:
    """Open311 knows two states: closed once the ticket is closed or rejected."""
    return "closed" if ticket is not None and ticket.status in CLOSED_TICKET_STATUSES else "open"


def status_notes(
    ticket: Ticket | None, lang: Lang = "zh", note: TicketNote | None = None
) -> str | None:
    """The ticket's latest public note while it still describes the ticket's state, else its
    state in words; None until dispatch opened a ticket."""
    if ticket is None:
        return None
    if note is not None:
        led_to, text = note
        # A closed ticket keeps its resolve note when the verify that closed it had none; a
        # note from an earlier state (a return reason, once re-dispatched) is out of date.
        if text.strip() and (
            led_to == ticket.status or (led_to == "resolved" and ticket.status == "closed")
        ):
            return text
    notes = STATUS_NOTES.get(ticket.status)
    if notes is None:
        return ticket.status
    return notes[1] if lang == "en" else notes[0]


def agency_responsible(
    ticket: Ticket | None, names: DepartmentNames = lambda code: None
) -> str | None:
    """The name of the department handling the ticket (its code when `names` does not know it),
    once dispatched; a dispatcher queue is no agency."""
    department: str | None = getattr(ticket, "department", None)
    if getattr(ticket, "dispatched_at", None) is None or department is None:
        return None
    if department.startswith("dispatch@"):
        return None
    return names(department) or department


def service_request(
    event: Event,
    ticket: Ticket | None,
    category: Category | None,
    lang: Lang = "zh",
    *,
    note: TicketNote | None = None,
    names: DepartmentNames = lambda code: None,
) -> dict[str, Any]:
    """One entry of GET requests: the public view of an event (never who reported it)."""
    expected: datetime | None = getattr(ticket, "handle_due_at", None)
    if expected is None and category is not None:
        expected = event.reported_at + timedelta(hours=category.handle_hours)
    updated: datetime = ticket.updated_at if ticket is not None else event.received_at
    if category is None:
        name = event.category
    else:
        name = category.name_en if lang == "en" else category.name_zh
    return {
        "service_request_id": str(event.id),
        "status": request_status(ticket),
        "status_notes": status_notes(ticket, lang, note),
        "service_name": name,
        "service_code": event.category,
        "description": event.description,
        "agency_responsible": agency_responsible(ticket, names),
        "service_notice": service_notice(category, lang),
        "requested_datetime": iso(event.reported_at),
        "updated_datetime": iso(updated),
        "expected_datetime": iso(expected) if expected is not None else None,
        "address": event.address,
        "address_id": None,
        "zipcode": None,
        "lat": event.lat,
        "long": event.lon,
        "media_url": event.attachments[0] if event.attachments else None,
    }


def receipt(
    event: Event | NewEvent, category: Category | None, lang: Lang = "zh"
) -> list[dict[str, Any]]:
    """The answer to POST requests: the new request's id and the city's notice."""
    return [
        {
            "service_request_id": str(event.id),
            "service_notice": service_notice(category, lang),
            "account_id": None,
        }
    ]


def errors(code: int, *descriptions: str) -> list[dict[str, Any]]:
    """The spec's error array."""
    return [{"code": code, "description": d} for d in descriptions]


# ---- serialisation ---------------------------------------------------------------------------


def render(document: Document, body: Mapping[str, Any] | Sequence[Any], fmt: Format) -> bytes:
    """A document as UTF-8 JSON, or as the spec's XML with its declaration."""
    if fmt == "json":
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    root = ET.Element(str(document))
    _fill(root, body)
    return _XML_DECLARATION + ET.tostring(
        root, encoding="unicode", short_empty_elements=False
    ).encode("utf-8")


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list | tuple):
        tag = _XML_ITEMS[element.tag]
        for item in value:
            _fill(ET.SubElement(element, tag), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


# ---- request parsing -------------------------------------------------------------------------


def blank(value: str | None) -> str | None:
    """None for a missing or whitespace-only form value (HTML forms send empty fields)."""
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def parse_csv(text: str | None) -> list[str]:
    """The items of a comma-separated parameter, blanks dropped."""
    if text is None:
        return []
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_datetime(text: str | None, name: str) -> datetime | None:
    """An ISO-8601 timestamp with a time zone (Z or ±hh:mm), None when absent; 400 otherwise."""
    value = blank(text)
    if value is None:
        return None
    lost_plus = _LOST_PLUS.match(value)
    if lost_plus:
        value = f"{lost_plus.group(1)}+{lost_plus.group(2)}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Open311Error(400, f"{name} must be an ISO-8601 date and time: {text!r}") from None
    if moment.tzinfo is None:
        raise Open311Error(400, f"{name} needs a time zone (Z or an offset such as +08:00)")
    try:
        # Bounded so that the 90-day window and the database's UTC conversion cannot overflow.
        return check_moment(moment)
    except ValueError as exc:
        raise Open311Error(400, f"{name} {exc}") from None


def parse_status(text: str | None) -> bool | None:
    """The status filter: True for only closed, False for only open, None for both."""
    wanted = {s.lower() for s in parse_csv(text)}
    unknown = wanted - {"open", "closed"}
    if unknown:
        raise Open311Error(400, f"status must be open or closed, not {', '.join(sorted(unknown))}")
    if len(wanted) == 1:
        return wanted == {"closed"}
    return None


def parse_positive_int(text: str | None, name: str, default: int, maximum: int) -> int:
    """A whole number between 1 and `maximum`, or the default when absent; 400 otherwise."""
    given = blank(text)
    if given is None:
        return default
    try:
        value = int(given)
    except ValueError:
        raise Open311Error(400, f"{name} must be a whole number") from None
    if not 1 <= value <= maximum:
        raise Open311Error(400, f"{name} must be between 1 and {maximum}")
    return value


def date_window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The requested_datetime range to search: 90 days ending now, after `start` or before `end`
    when only one is given; a given range may not be reversed or span more than 90 days."""
    if start is None and end is None:
        return now - DEFAULT_WINDOW, now
    if start is None:
        assert end is not None
        return end - DEFAULT_WINDOW, end
    if end is None:
        return start, start + DEFAULT_WINDOW
    if end < start:
        raise Open311Error(400, "end_date is before start_date")
    if end - start > MAX_WINDOW:
        raise Open311Error(400, "start_date and end_date may not span more than 90 days")
    return start, end


def parse_coordinate(text: str, name: str, limit: float) -> float:
    """A latitude or longitude in decimal degrees within ±limit; 400 otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, f"{name} must be a number in decimal degrees") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise Open311Error(400, f"{name} must be between {-limit:g} and {limit:g}")
    return value


@dataclass(frozen=True)
class Place:
    """Where a posted request is: a point, an address, or both."""

    lat: float | None
    lon: float | None
    address: str | None


def parse_place(
    lat: str | None, lon: str | None, address_string: str | None, address_id: str | None
) -> Place:
    """lat+long, or address_string, or address_id (kept as the address text); 400 otherwise."""
    lat, lon = blank(lat), blank(lon)
    address = blank(address_string) or blank(address_id)
    if (lat is None) != (lon is None):
        raise Open311Error(400, "lat and long must be given together")
    if lat is None and address is None:
        raise Open311Error(400, "a location is required: lat and long, or address_string")
    if lat is None or lon is None:
        return Place(None, None, address)
    return Place(parse_coordinate(lat, "lat", 90), parse_coordinate(lon, "long", 180), address)


def collect_attributes(fields: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """`attribute[CODE]=v` and `attribute[CODE][]=v` form fields as lists of values by code."""
    found: dict[str, list[str]] = {}
    for name, value in fields:
        match = _ATTRIBUTE_FIELD.match(name)
        if match is None:
            continue
        given = blank(value)
        values = found.setdefault(match.group(1), [])
        if given is not None:
            values.append(given)
    return {code: values for code, values in found.items() if values}


def shape_attributes(
    category: Category, answers: Mapping[str, list[str]]
) -> dict[str, str | float | list[str]]:
    """Answers in the shape the intake checks: lists for multivaluelist, numbers for number,
    single strings otherwise (an unknown code is passed on for the intake to refuse)."""
    known = {a.code: a for a in category.attributes}
    shaped: dict[str, str | float | list[str]] = {}
    for code, values in answers.items():
        attribute = known.get(code)
        if attribute is not None and attribute.datatype == "multivaluelist":
            shaped[code] = list(values)
            continue
        if len(values) > 1:
            raise Open311Error(400, f"attribute {code!r} takes one value")
        value = values[0]
        if attribute is not None and attribute.datatype == "number":
            try:
                number = float(value)
            except ValueError:
                raise Open311Error(400, f"attribute {code!r} must be a number") from None
            if not math.isfinite(number):
                raise Open311Error(400, f"attribute {code!r} must be a number")
            shaped[code] = number
        else:
            shaped[code] = value
    return shaped


def reporter_name(first_name: str | None, last_name: str | None) -> str | None:
    """A display name: family name first without a space for Chinese names."""
    first, last = blank(first_name), blank(last_name)
    if first is None or last is None:
        return first or last
    if _is_cjk(first) and _is_cjk(last):
        return f"{last}{first}"
    return f"{first} {last}"


def _is_cjk(text: str) -> bool:
    return all("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)
