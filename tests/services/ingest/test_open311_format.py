"""Pure Open311 rules: parsing, date windows, XML shape, error rendering of framework errors."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from services.ingest import open311_format as fmt
from services.ingest.open311 import Open311Route
from services.ingest.open311_format import Open311Error
from shared.catalogue import Attribute, AttributeValue, Category
from shared.db.models import Event, Ticket

NOW = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)


def category(**attributes: Attribute) -> Category:
    return Category(
        code="T0001",
        group="event",
        major="T00",
        major_zh="测试",
        major_en="Test",
        name_zh="测试类",
        name_en="Test class",
        department="cgj",
        priority="normal",
        accept_hours=1.5,
        handle_hours=8,
        attributes=tuple(attributes.values()),
    )


def test_iso_is_china_standard_time_to_the_second() -> None:
    assert fmt.iso(datetime(2026, 11, 21, 7, 4, 5, 999, tzinfo=UTC)) == "2026-11-21T15:04:05+08:00"
    minus_five = timezone(timedelta(hours=-5))
    assert fmt.iso(datetime(2026, 1, 1, 0, 0, tzinfo=minus_five)) == "2026-01-01T13:00:00+08:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T15:04:05+08:00", datetime(2026, 11, 21, 7, 4, 5, tzinfo=UTC)),
        ("2026-11-21T07:04:05Z", datetime(2026, 11, 21, 7, 4, 5, tzinfo=UTC)),
        ("2026-11-21T02:04:05-05:00", datetime(2026, 11, 21, 7, 4, 5, tzinfo=UTC)),
        ("2026-11-21T15:04:05 08:00", datetime(2026, 11, 21, 7, 4, 5, tzinfo=UTC)),
        ("2026-11-21T15:04:05.250 0800", datetime(2026, 11, 21, 7, 4, 5, 250000, tzinfo=UTC)),
        ("", None),
        (None, None),
    ],
)
def test_parse_datetime_accepts_any_offset(text: str | None, expected: datetime | None) -> None:
    assert fmt.parse_datetime(text, "start_date") == expected


@pytest.mark.parametrize("text", ["2026-11-21T15:04:05", "2026-11-21", "yesterday", "15:04"])
def test_parse_datetime_refuses_naive_or_malformed(text: str) -> None:
    with pytest.raises(Open311Error) as caught:
        fmt.parse_datetime(text, "end_date")
    assert caught.value.code == 400 and "end_date" in caught.value.descriptions[0]


def test_date_window_defaults_and_limits() -> None:
    day = timedelta(days=1)
    assert fmt.date_window(None, None, NOW) == (NOW - 90 * day, NOW)
    assert fmt.date_window(NOW - 10 * day, None, NOW) == (NOW - 10 * day, NOW + 80 * day)
    assert fmt.date_window(None, NOW - day, NOW) == (NOW - 91 * day, NOW - day)
    assert fmt.date_window(NOW - 90 * day, NOW, NOW) == (NOW - 90 * day, NOW)
    for start, end in ((NOW, NOW - day), (NOW - 91 * day, NOW)):
        with pytest.raises(Open311Error):
            fmt.date_window(start, end, NOW)


def test_status_and_paging_parameters() -> None:
    assert fmt.parse_status(None) is None
    assert fmt.parse_status("open") is False
    assert fmt.parse_status("Closed") is True
    assert fmt.parse_status("open, closed") is None
    with pytest.raises(Open311Error):
        fmt.parse_status("open,pending")
    assert fmt.parse_positive_int(None, "page", 1, 10) == 1
    assert fmt.parse_positive_int(" 7 ", "page", 1, 10) == 7
    for bad in ("0", "11", "-1", "x", "1.5"):
        with pytest.raises(Open311Error):
            fmt.parse_positive_int(bad, "page", 1, 10)


def test_formats_and_resources() -> None:
    assert fmt.parse_format(None) == "json"
    assert fmt.parse_format("XML") == "xml"
    with pytest.raises(Open311Error) as caught:
        fmt.parse_format("csv")
    assert caught.value.code == 404
    assert fmt.split_resource("C0101.xml") == ("C0101", "xml")
    assert fmt.split_resource("A.1.json") == ("A.1", "json")
    assert fmt.split_resource("A.1") == ("A.1", "json")
    assert fmt.format_of_path("/open311/v2/requests.XML") == "xml"
    assert fmt.parse_lang("en-US") == "en" and fmt.parse_lang("zh-CN") == "zh"
    assert fmt.parse_lang(None) == "zh"


def test_place() -> None:
    assert fmt.parse_place("29.5", "106.5", None, None) == fmt.Place(29.5, 106.5, None)
    assert fmt.parse_place(" ", "", "解放碑", "A-1") == fmt.Place(None, None, "解放碑")
    assert fmt.parse_place(None, None, None, "A-1") == fmt.Place(None, None, "A-1")
    for lat, lon in (("29.5", None), (None, None), ("90.1", "0"), ("0", "inf"), ("x", "0")):
        with pytest.raises(Open311Error) as caught:
            fmt.parse_place(lat, lon, None, None)
        assert caught.value.code == 400


def test_attributes_are_collected_and_shaped() -> None:
    fields = [
        ("attribute[kinds][]", "a"),
        ("attribute[kinds][]", "b"),
        ("attribute[depth]", "12"),
        ("attribute[note]", "  "),
        ("attribute[]", "x"),
        ("attributes[x]", "y"),
        ("description", "d"),
    ]
    collected = fmt.collect_attributes(fields)
    assert collected == {"kinds": ["a", "b"], "depth": ["12"]}
    kinds = Attribute(
        code="kinds",
        datatype="multivaluelist",
        description="k",
        values=(AttributeValue(key="a", name="甲"), AttributeValue(key="b", name="乙")),
    )
    depth = Attribute(code="depth", datatype="number", description="d")
    test = category(kinds=kinds, depth=depth)
    assert fmt.shape_attributes(test, collected) == {"kinds": ["a", "b"], "depth": 12.0}
    assert fmt.shape_attributes(test, {"kinds": ["a"]}) == {"kinds": ["a"]}
    assert fmt.shape_attributes(test, {"other": ["x"]}) == {"other": "x"}
    for bad in ({"depth": ["deep"]}, {"depth": ["nan"]}, {"other": ["x", "y"]}):
        with pytest.raises(Open311Error):
            fmt.shape_attributes(test, bad)


def test_reporter_names() -> None:
    assert fmt.reporter_name("三", "张") == "张三"
    assert fmt.reporter_name("Ana", "Silva") == "Ana Silva"
    assert fmt.reporter_name(None, "张") == "张"
    assert fmt.reporter_name(" ", None) is None


def test_xml_mirrors_json_with_item_elements() -> None:
    body = fmt.errors(400, "one", "两")
    xml = fmt.render("errors", body, "xml")
    assert xml.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<errors><error><code>400</code>'
    )
    root = ET.fromstring(xml)
    assert [(e.findtext("code"), e.findtext("description")) for e in root] == [
        ("400", "one"),
        ("400", "两"),
    ]
    assert fmt.render("errors", body, "json").decode() == (
        '[{"code":400,"description":"one"},{"code":400,"description":"两"}]'
    )
    definition = fmt.render("service_definition", fmt.service_definition(category()), "xml")
    assert b"<attributes></attributes>" in definition  # empty elements spelled out
    hostile = fmt.render("errors", fmt.errors(400, "<b>&</b>"), "xml")
    assert ET.fromstring(hostile).findtext("error/description") == "<b>&</b>"


def test_service_request_view_without_a_ticket_or_category() -> None:
    event = Event(
        id=uuid.uuid4(),
        category="GONE",
        description="",
        lon=None,
        lat=None,
        address=None,
        reported_at=NOW,
        received_at=NOW + timedelta(seconds=3),
        attachments=[],
        reporter={"name": "secret"},
    )
    view = fmt.service_request(event, None, None)
    assert view["status"] == "open" and view["status_notes"] is None
    assert (view["service_name"], view["service_notice"], view["expected_datetime"]) == (
        "GONE",
        None,
        None,
    )
    assert view["updated_datetime"] == "2026-11-21T15:00:03+08:00"
    assert "secret" not in str(view)
    ticket = Ticket(status="in_progress", updated_at=NOW + timedelta(hours=1))
    with_ticket = fmt.service_request(event, ticket, category(), "en")
    assert (with_ticket["status"], with_ticket["status_notes"]) == ("open", "being handled")
    assert with_ticket["expected_datetime"] == "2026-11-21T23:00:00+08:00"
    assert with_ticket["agency_responsible"] is None
    assert with_ticket["service_notice"] == "Accepted within 1.5 h and handled within 8 h."
    assert fmt.status_notes(Ticket(status="escalated")) == "escalated"


async def test_framework_validation_errors_use_the_open311_format() -> None:
    router = APIRouter(route_class=Open311Route)

    @router.get("/open311/v2/things/{number}.xml")
    async def thing(number: int) -> dict[str, int]:
        return {"number": number}

    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        reply = await client.get("/open311/v2/things/seven.xml")
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"
    error = ET.fromstring(reply.content).find("error")
    assert error is not None and error.findtext("code") == "400"
    assert "number" in (error.findtext("description") or "")
