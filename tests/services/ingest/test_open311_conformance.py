"""Open311 GeoReport v2 conformance: every field and error shape, in JSON and in XML."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from services.hub import create_hub_app
from shared.catalogue import Attribute, AttributeValue, Catalogue, Category
from shared.catalogue.store import save_category
from shared.db.models import Event, Ticket, TicketEvent
from shared.settings import Settings
from tests.support.apps import add_key, runtime_of, serving
from tests.support.waiting import wait_for

FORMATS = ["json", "xml"]
CONTENT_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
LISTS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}
ISO_CST = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
POINT = {"lat": "29.5630", "long": "106.5516"}
REPORTER = {
    "first_name": "三",
    "last_name": "张",
    "phone": "13800138000",
    "email": "zhang.san@example.org",
    "account_id": "acct-778899",
    "device_id": "device-42",
}


@dataclass
class Hub:
    app: FastAPI
    client: httpx.AsyncClient
    key: str


@pytest.fixture
async def hub(embedded_settings: Settings) -> AsyncIterator[Hub]:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        yield Hub(app, client, await add_key(app, "crm"))


def from_xml(element: ET.Element) -> Any:
    """An XML document as the JSON structure it mirrors, every leaf as text."""
    if element.tag in LISTS:
        assert all(child.tag == LISTS[element.tag] for child in element), element.tag
        return [from_xml(child) for child in element]
    if len(element):
        tags = [child.tag for child in element]
        assert len(tags) == len(set(tags)), tags
        return {child.tag: from_xml(child) for child in element}
    return element.text or ""


def as_text(value: Any) -> Any:
    """A JSON document with every leaf as the text XML would carry."""
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_text(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read(reply: httpx.Response, fmt: str, root: str) -> Any:
    """The document in either format, as text leaves; checks content type, encoding and root."""
    assert reply.headers["content-type"] == CONTENT_TYPES[fmt], reply.headers
    if fmt == "json":
        return as_text(reply.json())
    assert reply.content.startswith(XML_DECLARATION), reply.content[:60]
    element = ET.fromstring(reply.content)
    assert element.tag == root
    return from_xml(element)


def assert_error(reply: httpx.Response, fmt: str, code: int, *needles: str) -> None:
    """The spec's error array with the HTTP status as its code."""
    assert reply.status_code == code, reply.text
    errors = read(reply, fmt, "errors")
    assert isinstance(errors, list) and errors, errors
    for error in errors:
        assert list(error) == ["code", "description"]
        assert error["code"] == str(code)
        assert error["description"]
    if fmt == "json":
        assert all(isinstance(e["code"], int) for e in reply.json())
    text = " ".join(e["description"] for e in errors)
    for needle in needles:
        assert needle in text, text


async def post(hub: Hub, fmt: str, **fields: str) -> httpx.Response:
    form = {"api_key": hub.key, **fields}
    return await hub.client.post(f"/open311/v2/requests.{fmt}", data=form)


async def created_id(hub: Hub, **fields: str) -> str:
    reply = await post(hub, "json", **fields)
    assert reply.status_code == 201, reply.text
    request_id: str = reply.json()[0]["service_request_id"]
    return request_id


# ---- discovery and services ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_discovery(hub: Hub, fmt: str) -> None:
    reply = await hub.client.get(f"/open311/v2/discovery.{fmt}")
    assert reply.status_code == 200
    doc = read(reply, fmt, "discovery")
    assert list(doc) == ["changeset", "contact", "key_service", "endpoints"]
    assert ISO_CST.match(doc["changeset"]) and doc["contact"] and doc["key_service"]
    assert doc["endpoints"] == [
        {
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": "http://hub/open311/v2",
            "changeset": doc["changeset"],
            "type": "production",
            "formats": ["application/json", "text/xml"],
        }
    ]
    proxied = await hub.client.get(
        f"/open311/v2/discovery.{fmt}",
        headers={"X-Forwarded-Host": "311.cq.gov.cn", "X-Forwarded-Proto": "https"},
    )
    assert (
        read(proxied, fmt, "discovery")["endpoints"][0]["url"] == "https://311.cq.gov.cn/open311/v2"
    )


async def test_no_suffix_means_json(hub: Hub) -> None:
    for path in ("discovery", "services", "services/C0104", "requests"):
        reply = await hub.client.get(f"/open311/v2/{path}")
        assert reply.status_code == 200, path
        assert reply.headers["content-type"] == CONTENT_TYPES["json"]
    assert (await post(hub, "json", service_code="C0201", **POINT)).status_code == 201
    plain = await hub.client.post(
        "/open311/v2/requests", data={"api_key": hub.key, "service_code": "C0201", **POINT}
    )
    assert plain.status_code == 201 and plain.headers["content-type"] == CONTENT_TYPES["json"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_services_are_the_non_sensor_categories(hub: Hub, fmt: str) -> None:
    catalogue = runtime_of(hub.app).catalogue
    reply = await hub.client.get(f"/open311/v2/services.{fmt}?jurisdiction_id=chongqing.gov.cn")
    assert reply.status_code == 200
    services = read(reply, fmt, "services")
    expected = sorted(c.code for c in catalogue if c.group != "sensor")
    assert [s["service_code"] for s in services] == expected
    assert len(expected) >= 40
    by_code = {s["service_code"]: s for s in services}
    assert by_code["C0104"] == {
        "service_code": "C0104",
        "service_name": "井盖缺失",
        "description": "井盖缺失 Missing manhole cover",
        "metadata": "true",
        "type": "realtime",
        "keywords": "井盖,缺失,丢失",
        "group": "公共设施",
    }
    assert by_code["C0101"]["metadata"] == "false"
    if fmt == "json":
        assert all(isinstance(s["metadata"], bool) for s in reply.json())

    english = read(await hub.client.get(f"/open311/v2/services.{fmt}?lang=en"), fmt, "services")
    lamp = next(s for s in english if s["service_code"] == "C0201")
    assert (lamp["service_name"], lamp["group"]) == ("Street lamp out", "Traffic facilities")


@pytest.mark.parametrize("fmt", FORMATS)
async def test_service_definition(hub: Hub, fmt: str) -> None:
    reply = await hub.client.get(f"/open311/v2/services/C0104.{fmt}")
    assert reply.status_code == 200
    assert read(reply, fmt, "service_definition") == {
        "service_code": "C0104",
        "attributes": [
            {
                "variable": "true",
                "code": "cover_type",
                "datatype": "singlevaluelist",
                "required": "false",
                "datatype_description": "",
                "order": "1",
                "description": "井盖类型 Cover type",
                "values": [
                    {"key": "water", "name": "上水"},
                    {"key": "sewage", "name": "污水"},
                    {"key": "storm", "name": "雨水"},
                    {"key": "unknown", "name": "不清楚"},
                ],
            }
        ],
    }
    if fmt == "json":
        attribute = reply.json()["attributes"][0]
        assert (attribute["variable"], attribute["required"], attribute["order"]) == (
            True,
            False,
            1,
        )
        assert attribute["datatype_description"] is None

    required = read(
        await hub.client.get(f"/open311/v2/services/E0405.{fmt}"), fmt, "service_definition"
    )
    assert required["attributes"][0]["required"] == "true"
    number = read(
        await hub.client.get(f"/open311/v2/services/E0501.{fmt}"), fmt, "service_definition"
    )
    assert number["attributes"][0]["datatype"] == "number"
    assert number["attributes"][0]["values"] == []
    plain = read(
        await hub.client.get(f"/open311/v2/services/C0101.{fmt}"), fmt, "service_definition"
    )
    assert plain == {"service_code": "C0101", "attributes": []}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_unknown_and_sensor_services_are_404(hub: Hub, fmt: str) -> None:
    sensor = next(c.code for c in runtime_of(hub.app).catalogue if c.group == "sensor")
    for code in ("X9999", sensor):
        reply = await hub.client.get(f"/open311/v2/services/{code}.{fmt}")
        assert_error(reply, fmt, 404, code)


# ---- POST requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_post_request_stores_an_event(hub: Hub, fmt: str) -> None:
    reply = await post(
        hub,
        fmt,
        service_code="C0104",
        description="人行道井盖丢失",
        media_url="https://photos.example.org/cover.jpg",
        **{"attribute[cover_type]": "sewage"},
        **POINT,
        **REPORTER,
    )
    assert reply.status_code == 201, reply.text
    receipt = read(reply, fmt, "service_requests")
    assert len(receipt) == 1 and list(receipt[0]) == [
        "service_request_id",
        "service_notice",
        "account_id",
    ]
    assert receipt[0]["service_notice"] == "1小时内受理，4小时内处置。"
    assert receipt[0]["account_id"] == ""
    if fmt == "json":
        assert reply.json()[0]["account_id"] is None
    event_id = uuid.UUID(receipt[0]["service_request_id"])
    async with runtime_of(hub.app).sessions() as session:
        event = await session.get(Event, event_id)
    assert event is not None
    assert (event.source, event.source_ref, event.category) == ("hotline", None, "C0104")
    assert (event.lat, event.lon, event.geotag_method) == (29.563, 106.5516, "point")
    assert event.description == "人行道井盖丢失"
    assert event.attributes == {"cover_type": "sewage"}
    assert event.attachments == ["https://photos.example.org/cover.jpg"]
    assert event.submitted_by == "crm"
    assert event.reporter == {
        "name": "张三",
        "phone": "13800138000",
        "account": "acct-778899; zhang.san@example.org",
    }


async def test_post_accepts_multipart_the_header_key_and_an_address(hub: Hub) -> None:
    reply = await hub.client.post(
        "/open311/v2/requests.json",
        headers={"X-API-Key": hub.key},
        files={"service_code": (None, "E0101"), "address_string": (None, "解放碑步行街 8 号")},
    )
    assert reply.status_code == 201, reply.text
    assert reply.request.headers["content-type"].startswith("multipart/form-data")
    async with runtime_of(hub.app).sessions() as session:
        event = await session.get(Event, uuid.UUID(reply.json()[0]["service_request_id"]))
    assert event is not None and event.address == "解放碑步行街 8 号" and event.lon is None


async def test_post_with_address_id_only(hub: Hub) -> None:
    request_id = await created_id(hub, service_code="E0101", address_id="CQ-500103-0001")
    async with runtime_of(hub.app).sessions() as session:
        event = await session.get(Event, uuid.UUID(request_id))
    assert event is not None and event.address == "CQ-500103-0001"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_external_id_makes_posting_idempotent(hub: Hub, fmt: str) -> None:
    fields = {"service_code": "C0201", "external_id": "crm-2026-0001", **POINT}
    first = await post(hub, fmt, **fields)
    again = await post(hub, fmt, **fields, description="second call about the same lamp")
    assert (first.status_code, again.status_code) == (201, 200)
    first_id = read(first, fmt, "service_requests")[0]["service_request_id"]
    assert read(again, fmt, "service_requests")[0]["service_request_id"] == first_id
    other_key = await add_key(hub.app, "other-crm")
    other = await hub.client.post(
        f"/open311/v2/requests.{fmt}", data={**fields, "api_key": other_key}
    )
    assert other.status_code == 201  # ids are the integrator's own: scoped to its key
    without = [await post(hub, fmt, service_code="C0201", **POINT) for _ in range(2)]
    assert [r.status_code for r in without] == [201, 201]
    async with runtime_of(hub.app).sessions() as session:
        refs = (await session.scalars(select(Event.source_ref).order_by(Event.source_ref))).all()
    assert sorted(r or "" for r in refs) == [
        "",
        "",
        "open311:crm:crm-2026-0001",
        "open311:other-crm:crm-2026-0001",
    ]


async def test_multivaluelist_attributes(hub: Hub) -> None:
    runtime = runtime_of(hub.app)
    extra = Category(
        code="T0001",
        group="event",
        major="T00",
        major_zh="测试",
        major_en="Test",
        name_zh="多选测试",
        name_en="Multiple choice test",
        department="cgj",
        priority="normal",
        accept_hours=2,
        handle_hours=24.5,
        attributes=(
            Attribute(
                code="kinds",
                datatype="multivaluelist",
                required=True,
                description="种类 Kinds",
                values=(AttributeValue(key="a", name="甲"), AttributeValue(key="b", name="乙")),
            ),
        ),
    )
    async with runtime.sessions() as session, session.begin():
        await save_category(session, extra)
    runtime.catalogue = Catalogue([*runtime.catalogue, extra])

    definition = (await hub.client.get("/open311/v2/services/T0001.json")).json()
    assert definition["attributes"][0]["datatype"] == "multivaluelist"
    reply = await hub.client.post(
        "/open311/v2/requests.json",
        content=b"api_key=" + hub.key.encode() + b"&service_code=T0001&lat=29.56&long=106.55"
        b"&attribute%5Bkinds%5D%5B%5D=a&attribute%5Bkinds%5D%5B%5D=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()[0]["service_notice"] == "2小时内受理，24.5小时内处置。"
    single = await post(hub, "json", service_code="T0001", **{"attribute[kinds]": "b"}, **POINT)
    assert single.status_code == 201
    async with runtime.sessions() as session:
        answers = (
            await session.scalars(select(Event.attributes).order_by(Event.received_at))
        ).all()
    assert answers == [{"kinds": ["a", "b"]}, {"kinds": ["b"]}]
    wrong = await post(hub, "json", service_code="T0001", **{"attribute[kinds][]": "z"}, **POINT)
    assert_error(wrong, "json", 400, "kinds")


BAD_POSTS: list[tuple[dict[str, str], int, str]] = [
    ({"api_key": ""}, 403, "api_key"),
    ({"api_key": "chk_not-a-real-key"}, 403, "api_key"),
    ({"service_code": ""}, 400, "service_code"),
    ({"service_code": "X9999"}, 404, "X9999"),
    ({"service_code": "S0101"}, 404, "S0101"),
    ({"lat": "", "long": ""}, 400, "location"),
    ({"long": ""}, 400, "lat and long"),
    ({"lat": "north"}, 400, "lat"),
    ({"lat": "91"}, 400, "lat"),
    ({"long": "-180.5"}, 400, "long"),
    ({"long": "nan"}, 400, "long"),
    ({"description": "长" * 4001}, 400, "description"),
    ({"attribute[cover_type]": "gold"}, 400, "cover_type"),
    ({"attribute[colour]": "red"}, 400, "colour"),
    ({"attribute[cover_type][]": "water", "attribute[cover_type]": "storm"}, 400, "one value"),
    ({"media_url": "not a url"}, 400, "media_url"),
    ({"external_id": "x" * 101}, 400, "external_id"),
    ({"phone": "1" * 51}, 400, "phone"),
]


@pytest.mark.parametrize(("change", "code", "needle"), BAD_POSTS)
async def test_bad_posts_are_open311_errors(
    hub: Hub, change: dict[str, str], code: int, needle: str
) -> None:
    sensor = next(c.code for c in runtime_of(hub.app).catalogue if c.group == "sensor")
    change = {k: (sensor if v == "S0101" else v) for k, v in change.items()}
    needle = sensor if needle == "S0101" else needle
    form = {"api_key": hub.key, "service_code": "C0104", **POINT, **change}
    for fmt in FORMATS:
        reply = await hub.client.post(f"/open311/v2/requests.{fmt}", data=form)
        assert_error(reply, fmt, code, needle)
    async with runtime_of(hub.app).sessions() as session:
        assert (await session.scalars(select(Event.id))).all() == []


@pytest.mark.parametrize("fmt", FORMATS)
async def test_required_attributes_and_numbers(hub: Hub, fmt: str) -> None:
    missing = await post(hub, fmt, service_code="E0405", **POINT)
    assert_error(missing, fmt, 400, "time_of_day")
    not_a_number = await post(
        hub, fmt, service_code="E0501", **{"attribute[depth_cm]": "deep"}, **POINT
    )
    assert_error(not_a_number, fmt, 400, "depth_cm")
    ok = await post(hub, fmt, service_code="E0501", **{"attribute[depth_cm]": "12.5"}, **POINT)
    assert ok.status_code == 201
    async with runtime_of(hub.app).sessions() as session:
        assert (await session.scalars(select(Event.attributes))).all() == [{"depth_cm": 12.5}]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_framework_errors_keep_the_open311_shape(hub: Hub, fmt: str) -> None:
    broken = await hub.client.post(
        f"/open311/v2/requests.{fmt}",
        content=b"--x\r\nnot really multipart",
        headers={"content-type": "multipart/form-data", "X-API-Key": hub.key},
    )
    assert_error(broken, fmt, 400)
    assert_error(await hub.client.get(f"/open311/v2/nothing.{fmt}"), fmt, 404)
    assert_error(await hub.client.delete(f"/open311/v2/requests.{fmt}"), fmt, 405)
    assert_error(await hub.client.get("/open311/v2/services.csv"), "json", 404, "csv")
    # the rest of the API keeps its own error format
    other = await hub.client.post("/api/v1/events", json={}, headers={"X-API-Key": hub.key})
    assert other.status_code == 422 and "detail" in other.json()


# ---- GET requests ----------------------------------------------------------------------------


async def event_via_api(hub: Hub, reported_at: datetime, category: str = "路灯不亮") -> str:
    body = {
        "source": "api",
        "category": category,
        "location": {"lon": 106.5516, "lat": 29.5630},
        "reported_at": reported_at.isoformat(),
    }
    reply = await hub.client.post("/api/v1/events", json=body, headers={"X-API-Key": hub.key})
    assert reply.status_code == 201, reply.text
    event_id: str = reply.json()["id"]
    return event_id


async def ticket_for(hub: Hub, request_id: str) -> uuid.UUID:
    runtime = runtime_of(hub.app)

    async def probe() -> uuid.UUID | None:
        async with runtime.sessions() as session:
            return await session.scalar(
                select(TicketEvent.ticket_id).where(TicketEvent.event_id == uuid.UUID(request_id))
            )

    ticket_id = await wait_for(probe)
    assert ticket_id is not None
    return ticket_id


async def set_ticket_status(hub: Hub, ticket_id: uuid.UUID, status: str) -> datetime:
    changed = datetime(2026, 11, 21, 7, 4, 5, tzinfo=UTC)
    async with runtime_of(hub.app).sessions() as session, session.begin():
        await session.execute(
            update(Ticket).where(Ticket.id == ticket_id).values(status=status, updated_at=changed)
        )
    return changed


@pytest.mark.parametrize("fmt", FORMATS)
async def test_one_request_has_every_field(hub: Hub, fmt: str) -> None:
    request_id = await created_id(
        hub,
        service_code="C0104",
        description="井盖丢失",
        address_string="解放碑",
        media_url="https://photos.example.org/1.jpg",
        **POINT,
        **REPORTER,
    )
    reply = await hub.client.get(f"/open311/v2/requests/{request_id}.{fmt}")
    assert reply.status_code == 200
    requests = read(reply, fmt, "service_requests")
    assert len(requests) == 1
    item = requests[0]
    assert list(item) == REQUEST_FIELDS
    async with runtime_of(hub.app).sessions() as session:
        event = await session.get(Event, uuid.UUID(request_id))
    assert event is not None
    requested = datetime.fromisoformat(item["requested_datetime"])
    assert requested == event.reported_at.replace(microsecond=0)
    assert datetime.fromisoformat(item["expected_datetime"]) == requested + timedelta(hours=4)
    for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert ISO_CST.match(item[name]), item[name]
    assert {k: v for k, v in item.items() if not k.endswith("_datetime")} == {
        "service_request_id": request_id,
        "status": "open",
        "status_notes": item["status_notes"],  # "" until dispatch ran, then the ticket's state
        "service_name": "井盖缺失",
        "service_code": "C0104",
        "description": "井盖丢失",
        "agency_responsible": "",
        "service_notice": "1小时内受理，4小时内处置。",
        "address": "解放碑",
        "address_id": "",
        "zipcode": "",
        "lat": "29.563",
        "long": "106.5516",
        "media_url": "https://photos.example.org/1.jpg",
    }
    if fmt == "json":
        data = reply.json()[0]
        assert (data["lat"], data["long"]) == (29.563, 106.5516)
        assert data["zipcode"] is None and data["address_id"] is None
    english = await hub.client.get(f"/open311/v2/requests/{request_id}.{fmt}?lang=en")
    english_item = read(english, fmt, "service_requests")[0]
    assert english_item["service_name"] == "Missing manhole cover"
    assert english_item["service_notice"] == "Accepted within 1 h and handled within 4 h."


@pytest.mark.parametrize("fmt", FORMATS)
async def test_unknown_request_is_404(hub: Hub, fmt: str) -> None:
    for text in (str(uuid.uuid4()), "12345", "not-an-id"):
        assert_error(await hub.client.get(f"/open311/v2/requests/{text}.{fmt}"), fmt, 404, text)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_status_follows_the_ticket(hub: Hub, fmt: str) -> None:
    request_id = await created_id(hub, service_code="C0201", **POINT)
    ticket_id = await ticket_for(hub, request_id)
    url = f"/open311/v2/requests/{request_id}.{fmt}"
    item = read(await hub.client.get(url), fmt, "service_requests")[0]
    # C0201 has a routing rule, so its ticket was dispatched on creation.
    assert (item["status"], item["status_notes"]) == ("open", "已派遣至处置部门")
    assert item["agency_responsible"]
    changed = await set_ticket_status(hub, ticket_id, "closed")
    item = read(await hub.client.get(url), fmt, "service_requests")[0]
    assert (item["status"], item["status_notes"]) == ("closed", "已办结")
    assert item["updated_datetime"] == "2026-11-21T15:04:05+08:00"
    assert datetime.fromisoformat(item["updated_datetime"]) == changed
    english = read(await hub.client.get(url + "?lang=en"), fmt, "service_requests")[0]
    assert english["status_notes"] == "closed"
    await set_ticket_status(hub, ticket_id, "rejected")
    item = read(await hub.client.get(url), fmt, "service_requests")[0]
    assert (item["status"], item["status_notes"]) == ("closed", "不予受理")


async def test_status_filter(hub: Hub) -> None:
    closed_id = await created_id(hub, service_code="C0201", **POINT)
    elsewhere = {"lat": "29.60", "long": "106.50"}  # another place and class: never one ticket
    open_with_ticket = await created_id(hub, service_code="C0104", **elsewhere)
    await ticket_for(hub, open_with_ticket)
    await set_ticket_status(hub, await ticket_for(hub, closed_id), "closed")

    async def ids(query: str) -> list[str]:
        reply = await hub.client.get(f"/open311/v2/requests.json?{query}")
        assert reply.status_code == 200, reply.text
        return [r["service_request_id"] for r in reply.json()]

    assert await ids("status=closed") == [closed_id]
    assert await ids("status=open") == [open_with_ticket]
    assert set(await ids("status=open,closed")) == {closed_id, open_with_ticket}
    assert set(await ids("")) == {closed_id, open_with_ticket}
    for fmt in FORMATS:
        reply = await hub.client.get(f"/open311/v2/requests.{fmt}?status=pending")
        assert_error(reply, fmt, 400, "status")


async def test_filters_by_ids_codes_and_dates(hub: Hub) -> None:
    now = datetime.now(UTC)
    lamp_new = await event_via_api(hub, now - timedelta(days=1))
    lamp_old = await event_via_api(hub, now - timedelta(days=30))
    cover = await event_via_api(hub, now - timedelta(days=2), "C0104")
    ancient = await event_via_api(hub, now - timedelta(days=100))

    async def ids(query: str) -> list[str]:
        reply = await hub.client.get("/open311/v2/requests.json", params=query)
        assert reply.status_code == 200, reply.text
        return [r["service_request_id"] for r in reply.json()]

    assert await ids("") == [lamp_new, cover, lamp_old]  # newest first, last 90 days
    assert await ids("service_code=C0201") == [lamp_new, lamp_old]
    assert await ids("service_code=C0104,C0201") == [lamp_new, cover, lamp_old]
    assert await ids("service_code=C9999") == []
    # ids override every other filter, the 90-day default included
    assert await ids(f"service_request_id={ancient},{cover}&service_code=C0201&status=closed") == [
        cover,
        ancient,
    ]
    assert await ids(f"service_request_id={ancient}, nonsense") == [ancient]
    day = (now - timedelta(days=2)).astimezone(UTC)
    start = (day - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    end = (day + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert await ids(f"start_date={start}&end_date={end}") == [cover]
    assert await ids(f"start_date={(now - timedelta(days=125)).isoformat()}") == [ancient]
    assert await ids(f"end_date={(now - timedelta(days=20)).isoformat()}") == [lamp_old, ancient]
    # an unencoded "+08:00" arrives as " 08:00": still understood
    local = (
        (now - timedelta(days=3))
        .astimezone(timezone(timedelta(hours=8)))
        .isoformat(timespec="seconds")
    )
    raw = await hub.client.get("/open311/v2/requests.json?start_date=" + local)
    assert {r["service_request_id"] for r in raw.json()} == {lamp_new, cover}


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("start_date=yesterday", "start_date"),
        ("end_date=2026-01-01T00:00:00", "time zone"),
        ("start_date=2026-01-01", "time zone"),
        ("start_date=2026-03-01T00:00:00Z&end_date=2026-02-01T00:00:00Z", "before"),
        ("start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", "90 days"),
        ("page_size=1001", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=ten", "page_size"),
        ("page=0", "page"),
        ("service_request_id=" + ",".join(["x"] * 1001), "at most 1000"),
    ],
)
async def test_bad_queries_are_400(hub: Hub, query: str, needle: str) -> None:
    for fmt in FORMATS:
        reply = await hub.client.get(f"/open311/v2/requests.{fmt}?{query}")
        assert_error(reply, fmt, 400, needle)


async def test_paging(hub: Hub) -> None:
    now = datetime.now(UTC)
    made = [await event_via_api(hub, now - timedelta(hours=h)) for h in range(5)]

    async def page(query: str) -> list[str]:
        reply = await hub.client.get(f"/open311/v2/requests.json?{query}")
        assert reply.status_code == 200, reply.text
        return [r["service_request_id"] for r in reply.json()]

    assert await page("page_size=2") == made[:2]
    assert await page("page_size=2&page=2") == made[2:4]
    assert await page("page_size=2&page=3") == made[4:]
    assert await page("page_size=2&page=4") == []
    assert await page("page_size=1000") == made


@pytest.mark.parametrize("fmt", FORMATS)
async def test_reporters_never_appear_in_gets(hub: Hub, fmt: str) -> None:
    request_id = await created_id(hub, service_code="C0201", **POINT, **REPORTER)
    await ticket_for(hub, request_id)
    replies = [
        await hub.client.get(f"/open311/v2/requests.{fmt}"),
        await hub.client.get(f"/open311/v2/requests.{fmt}?service_request_id={request_id}"),
        await hub.client.get(f"/open311/v2/requests/{request_id}.{fmt}"),
    ]
    for reply in replies:
        assert reply.status_code == 200
        assert request_id in reply.text
        for secret in (*REPORTER.values(), "张三", "zhang.san"):
            assert secret not in reply.text, secret
