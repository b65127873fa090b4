"""Bus messages → alerts (pure): which transitions raise which alerts, where they are placed,
how severe they are, and that ids depend only on the message and the kind."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from services.metrics.alerts import ALERT_KINDS, Alert, Names, alert_id, alerts_of
from shared.messages import (
    AlertRaisedV1,
    EmergencyChangedV1,
    EventIngestedV1,
    GeotagInfo,
    TicketChangedV2,
    TicketSummary,
    TransitionInfo,
)

CITY, DISTRICT, STREET = "500000", "500103", "500103001"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
AREAS = {
    CITY: ("重庆市", "city"),
    DISTRICT: ("渝中区", "district"),
    STREET: ("七星岗街道", "street"),
}
NAMES = Names(
    area=lambda code: AREAS[code][0] if code in AREAS else None,
    area_level=lambda code: AREAS[code][1] if code in AREAS else None,
    category=lambda code: ("违章停车", "Illegal parking") if code == "E0403" else None,
)


def ticket(**fields: Any) -> TicketSummary:
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "category": "E0403", "priority": "normal", "status": "dispatched",
        "source": "hotline", "owner_tier": "district", "owner_code": DISTRICT,
        "department": None, "street": STREET, "district": DISTRICT, "city": CITY, "lon": 106.5,
        "lat": 29.5, "report_count": 1, "overdue": True, "rework_count": 0,
        "created_at": NOW - timedelta(hours=2), "updated_at": NOW,
    }  # fmt: skip
    row.update(fields)
    return TicketSummary(**row)


def change(
    action: str, data: dict[str, Any], actor: str = "system", **fields: Any
) -> TicketChangedV2:
    step = TransitionInfo(
        seq=3, at=NOW, actor=actor, action=action, from_status="dispatched",
        to_status="dispatched", note="", data=data,
    )  # fmt: skip
    return TicketChangedV2(change=action, ticket=ticket(**fields), transition=step, colour="red")


def only(alerts: list[Alert]) -> Alert:
    assert len(alerts) == 1, alerts
    return alerts[0]


def test_a_breach_is_placed_in_the_tickets_street_and_names_the_deadline() -> None:
    message = change("overdue", {"timer_id": 7, "timer": "accept_due", "due_at": NOW.isoformat()})
    alert = only(alerts_of(message, NAMES))
    assert (alert.kind, alert.severity, alert.district, alert.street) == (
        "breach", "warning", DISTRICT, STREET
    )  # fmt: skip
    assert (alert.ticket_id, alert.at, alert.source_id) == (message.ticket.id, NOW, message.id)
    assert alert.title == "工单超时：违章停车（受理时限已过）"
    assert alert.title_en == "Ticket overdue: Illegal parking (accept deadline passed)"
    assert alert.details["phase"] == "accept" and alert.details["due_at"] == NOW.isoformat()
    urgent = only(alerts_of(change("overdue", {"timer": "handle_due"}, priority="critical")))
    assert (urgent.severity, urgent.details["phase"]) == ("critical", "handle")
    assert urgent.title_en == "Ticket overdue: E0403 (handle deadline passed)"  # no names: codes


def test_supervision_and_escalation_by_the_scheduler_and_by_hand() -> None:
    supervise = change("supervise", {"order_id": "o-1", "to_tier": "district", "to_code": DISTRICT})
    alert = only(alerts_of(supervise, NAMES))
    assert (alert.kind, alert.street, alert.title) == (
        "supervision", STREET, "督办：违章停车工单超时，由渝中区督办"
    )  # fmt: skip
    assert (alert.details["order_id"], alert.details["supervisor"]) == ("o-1", DISTRICT)

    by_timer = change("escalate", {"from_tier": "street", "from_code": STREET,
                                   "to_tier": "district", "to_code": DISTRICT,
                                   "next_due_at": None})  # fmt: skip
    alert = only(alerts_of(by_timer, NAMES))
    assert (alert.kind, alert.title) == ("escalation", "工单升级：违章停车（街道→区）")
    assert (alert.details["from_code"], alert.details["by_breach"]) == (STREET, True)
    by_hand = change("escalate", {"from": f"street:{STREET}", "to": f"district:{DISTRICT}"},
                     actor="desk")  # fmt: skip
    alert = only(alerts_of(by_hand, NAMES))
    assert (alert.details["from_tier"], alert.details["from_code"]) == ("street", STREET)
    assert alert.details["by_breach"] is False


@pytest.mark.parametrize("action", ["warning", "dispatch", "accept", "resolve", "comment"])
def test_other_ticket_changes_raise_nothing(action: str) -> None:
    assert alerts_of(change(action, {}), NAMES) == []
    no_step = TicketChangedV2(change="created", ticket=ticket())
    assert alerts_of(no_step, NAMES) == []


def test_an_unlocated_tickets_alerts_belong_to_the_city() -> None:
    alert = only(alerts_of(change("overdue", {}, street=None, district=None, city=None)))
    assert (alert.district, alert.street) == (None, None)


def emergency(area: str, switch: Literal["started", "ended"] = "started") -> EmergencyChangedV1:
    return EmergencyChangedV1(
        emergency_id=uuid.uuid4(), change=switch, area=area, incident="防汛",
        categories=["E0501"], deadline_factor=0.5, at=NOW, by="desk",
    )  # fmt: skip


def test_emergency_switches_belong_to_their_district_or_the_city() -> None:
    started = only(alerts_of(emergency(DISTRICT), NAMES))
    assert (started.kind, started.severity, started.district, started.street) == (
        "emergency_started", "critical", DISTRICT, None
    )  # fmt: skip
    assert started.title == "渝中区启动应急模式：防汛"
    ended = only(alerts_of(emergency(CITY, "ended"), NAMES))
    assert (ended.kind, ended.severity, ended.district, ended.street) == (
        "emergency_ended", "info", None, None
    )  # fmt: skip
    assert ended.title_en == "Emergency mode ended in the city: 防汛"


def test_ingest_alerts_keep_their_area_and_facts() -> None:
    offline = AlertRaisedV1(alert="sensor_offline", at=NOW, district=DISTRICT, street=STREET,
                            sensor_id="wl-1", integrator="acme",
                            details={"alarm_id": "a-1"})  # fmt: skip
    alert = only(alerts_of(offline, NAMES))
    assert (alert.kind, alert.severity, alert.district, alert.street, alert.title) == (
        "sensor_offline", "warning", DISTRICT, STREET, "设备离线：wl-1"
    )  # fmt: skip
    assert alert.details == {"sensor_id": "wl-1", "integrator": "acme", "alarm_id": "a-1"}
    spike = AlertRaisedV1(alert="dead_letter_spike", at=NOW, integrator="acme",
                          details={"refused": 51, "window_s": 60.0})  # fmt: skip
    alert = only(alerts_of(spike, NAMES))
    assert (alert.district, alert.street) == (None, None)
    assert alert.title_en == "Dead-letter spike: 51 MQTT messages from acme refused in 60 s"


def test_ids_depend_on_the_message_and_the_kind_only() -> None:
    message = change("overdue", {"timer": "accept_due"})
    again = TicketChangedV2.model_validate_json(message.model_dump_json())  # a redelivery
    assert only(alerts_of(message)).id == only(alerts_of(again, NAMES)).id
    assert alert_id(message.id, "breach") != alert_id(message.id, "supervision")
    assert alert_id(message.id, "breach") != alert_id(uuid.uuid4(), "breach")


def test_other_messages_raise_nothing() -> None:
    event = EventIngestedV1(event_id=uuid.uuid4(), source="api", category="E0403",
                            geotag=GeotagInfo(), reported_at=NOW)  # fmt: skip
    assert alerts_of(event) == []


def test_data_and_live_item_carry_what_screens_need() -> None:
    alert = only(alerts_of(change("overdue", {"timer": "accept_due"}), NAMES))
    data = json.loads(json.dumps(alert.data(), ensure_ascii=False))  # JSON-ready
    assert set(data) == {"id", "kind", "severity", "title", "title_en", "district", "street",
                         "ticket_id", "at", "details"}  # fmt: skip
    assert (data["id"], data["ticket_id"], data["at"]) == (
        str(alert.id), str(alert.ticket_id), NOW.isoformat()
    )  # fmt: skip
    item = alert.live_item()
    assert (item.stream, item.type, item.district, item.street, item.data) == (
        "alerts", "alert.breach", DISTRICT, STREET, alert.data()
    )  # fmt: skip
    assert len(set(ALERT_KINDS)) == 8
