"""Bus messages → alerts (pure: no I/O). Which messages raise which alerts, how severe, where,
and how they are worded; docs/alerts.md lists them.

- `tickets.changed` (version 2) whose transition is `overdue` (a deadline passed), `supervise`
  (督办, written by the scheduler with every breach) or `escalate` (a breach moving ownership
  up, or a dispatcher escalating by hand): one alert each, in the ticket's district and street.
  Warnings (80 % of a deadline) are no alert: every ticket message carries the warning colour.
- `emergency.changed`: an emergency mode started or ended, in its district (None for the city).
- `alerts.raised` (from ingest): a sensor went offline or came back, a dead-letter spike.

An alert's id is derived from the message's id and the alert's kind, so a redelivered message
maps to the same ids (and the store keeps the first).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from shared.live import LiveItem, LiveStream
from shared.messages import (
    AlertRaisedV1,
    AnyMessageType,
    EmergencyChangedV1,
    TicketChangedV2,
    TransitionInfo,
)

AlertKind = Literal[
    "breach",  # a ticket's accept or handling deadline passed
    "supervision",  # 督办: a supervision order to the centre one tier up
    "escalation",  # ownership moved one tier up
    "emergency_started",  # 平急转换: emergency mode on for a district or the city
    "emergency_ended",  # … and back to normal rules
    "sensor_offline",  # a sensor fell silent or its connection dropped
    "sensor_online",  # … and reported again
    "dead_letter_spike",  # many refused MQTT messages from one integrator within a minute
]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
LIVE_STREAM: LiveStream = "alerts"

# uuid5 namespace of alert ids (id = uuid5(NAMESPACE, f"{message id}:{kind}")).
NAMESPACE = uuid.UUID("0c7f4c8e-5a43-4b8e-9a54-2f0d1a6e3b10")
TICKET_ACTIONS: dict[str, AlertKind] = {
    "overdue": "breach",
    "supervise": "supervision",
    "escalate": "escalation",
}
URGENT_PRIORITIES = frozenset({"urgent", "critical"})  # their breaches are critical
PHASE_ZH = {"accept": "受理", "handle": "处置"}
TIER_ZH = {"street": "街道", "district": "区", "city": "市"}


@dataclass(frozen=True, slots=True)
class Names:
    """How areas and categories are named in titles (the hierarchy's and catalogue's names);
    the defaults name nothing, and titles fall back to codes."""

    area: Callable[[str], str | None] = lambda _code: None
    area_level: Callable[[str], str | None] = lambda _code: None  # city | district | street
    category: Callable[[str], tuple[str, str] | None] = lambda _code: None  # (zh, en)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what, how severe, where (for scope filtering), and its facts."""

    id: uuid.UUID
    kind: AlertKind
    severity: Severity
    title: str  # Chinese
    title_en: str
    at: datetime  # when it happened
    district: str | None
    street: str | None
    ticket_id: uuid.UUID | None
    source_id: uuid.UUID  # the bus message it came from
    details: dict[str, Any] = field(default_factory=dict)  # JSON-ready

    def data(self) -> dict[str, Any]:
        """The alert as `/api/v1/alerts` lists it and `/ws/live` streams it (JSON-ready)."""
        return {
            "id": str(self.id),
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "title_en": self.title_en,
            "district": self.district,
            "street": self.street,
            "ticket_id": None if self.ticket_id is None else str(self.ticket_id),
            "at": self.at.isoformat(),
            "details": self.details,
        }

    def live_item(self) -> LiveItem:
        """The `alerts` live message, placed in the alert's district and street."""
        return LiveItem(
            stream=LIVE_STREAM,
            type=f"alert.{self.kind}",
            at=self.at,
            data=self.data(),
            district=self.district,
            street=self.street,
        )


def alert_id(message_id: uuid.UUID, kind: AlertKind) -> uuid.UUID:
    """The id of the alert of `kind` a message raises: the same for every delivery of it."""
    return uuid.uuid5(NAMESPACE, f"{message_id}:{kind}")


def alerts_of(message: AnyMessageType, names: Names | None = None) -> list[Alert]:
    """The alerts a bus message raises (most raise none)."""
    names = names or Names()
    if isinstance(message, TicketChangedV2):
        return _ticket_alerts(message, names)
    if isinstance(message, EmergencyChangedV1):
        return [_emergency_alert(message, names)]
    if isinstance(message, AlertRaisedV1):
        return [_ingest_alert(message, names)]
    return []


def _category(code: str, names: Names) -> tuple[str, str]:
    named = names.category(code)
    return named if named is not None else (code, code)


def _area(code: str | None, names: Names) -> str:
    if code is None:
        return "全市"
    return names.area(code) or code


def _area_en(code: str | None, names: Names) -> str:
    if code is None:
        return "the city"
    return names.area(code) or code


def _ticket_alerts(message: TicketChangedV2, names: Names) -> list[Alert]:
    step = message.transition
    if step is None:
        return []
    kind = TICKET_ACTIONS.get(step.action)
    if kind is None:
        return []
    t = message.ticket
    zh, en = _category(t.category, names)
    severity: Severity = "warning"
    details: dict[str, Any] = {
        "category": t.category,
        "priority": t.priority,
        "status": t.status,
        "owner_tier": t.owner_tier,
        "owner_code": t.owner_code,
        "department": t.department,
        "colour": message.colour,
        "actor": step.actor,
        "note": step.note,
        "seq": step.seq,
    }
    if kind == "breach":
        phase = _phase(step)
        details.update(phase=phase, due_at=step.data.get("due_at"))
        if (t.priority or "") in URGENT_PRIORITIES:
            severity = "critical"
        title = f"工单超时：{zh}（{PHASE_ZH.get(phase, phase)}时限已过）"
        title_en = f"Ticket overdue: {en} ({phase} deadline passed)"
    elif kind == "supervision":
        to_tier, to_code = str(step.data.get("to_tier", "")), str(step.data.get("to_code", ""))
        details.update(
            order_id=step.data.get("order_id"), supervisor_tier=to_tier, supervisor=to_code
        )
        title = f"督办：{zh}工单超时，由{_area(to_code or None, names)}督办"
        title_en = f"Supervision order (督办): {en} ticket overdue, supervised by {to_code}"
    else:
        from_tier, from_code = _escalated_from(step)
        details.update(from_tier=from_tier, from_code=from_code, by_breach=step.actor == "system")
        if "next_due_at" in step.data:
            details["next_due_at"] = step.data["next_due_at"]
        to = TIER_ZH.get(t.owner_tier, t.owner_tier)
        title = f"工单升级：{zh}（{TIER_ZH.get(from_tier, from_tier)}→{to}）"
        title_en = f"Ticket escalated: {en} ({from_tier} → {t.owner_tier})"
    return [
        Alert(
            id=alert_id(message.id, kind),
            kind=kind,
            severity=severity,
            title=title,
            title_en=title_en,
            at=step.at,
            district=t.district,
            street=t.street,
            ticket_id=t.id,
            source_id=message.id,
            details=details,
        )
    ]


def _phase(step: TransitionInfo) -> str:
    """Which deadline passed: the scheduler names the timer (`accept_due`, `handle_due`)."""
    timer = str(step.data.get("timer", ""))
    return "accept" if timer.startswith("accept") else "handle"


def _escalated_from(step: TransitionInfo) -> tuple[str, str]:
    """(tier, code) before an escalation: the scheduler writes `from_tier`/`from_code`, the
    escalate action `from` as `tier:code`."""
    data = step.data
    if "from_tier" in data:
        return str(data["from_tier"]), str(data.get("from_code", ""))
    tier, _, code = str(data.get("from", "")).partition(":")
    return tier, code


def _emergency_alert(message: EmergencyChangedV1, names: Names) -> Alert:
    # A district's mode belongs to the district; the city's (or an unknown area's) to the city.
    district = message.area if names.area_level(message.area) == "district" else None
    started = message.change == "started"
    kind: AlertKind = "emergency_started" if started else "emergency_ended"
    where, where_en = _area(district, names), _area_en(district, names)
    if started:
        title = f"{where}启动应急模式：{message.incident}"
        title_en = f"Emergency mode started in {where_en}: {message.incident}"
    else:
        title = f"{where}解除应急模式：{message.incident}"
        title_en = f"Emergency mode ended in {where_en}: {message.incident}"
    return Alert(
        id=alert_id(message.id, kind),
        kind=kind,
        severity="critical" if started else "info",
        title=title,
        title_en=title_en,
        at=message.at,
        district=district,
        street=None,
        ticket_id=None,
        source_id=message.id,
        details={
            "emergency_id": str(message.emergency_id),
            "area": message.area,
            "incident": message.incident,
            "categories": list(message.categories),
            "deadline_factor": message.deadline_factor,
            "by": message.by,
        },
    )


def _ingest_alert(message: AlertRaisedV1, names: Names) -> Alert:
    kind: AlertKind = message.alert
    details = {"sensor_id": message.sensor_id, "integrator": message.integrator}
    details.update(message.details)
    sensor = message.sensor_id or "?"
    severity: Severity = "warning"
    if kind == "sensor_offline":
        title, title_en = f"设备离线：{sensor}", f"Sensor offline: {sensor}"
    elif kind == "sensor_online":
        severity = "info"
        title, title_en = f"设备恢复在线：{sensor}", f"Sensor back online: {sensor}"
    else:
        refused = _number(message.details.get("refused", "?"))
        window = _number(message.details.get("window_s", 60))
        who = message.integrator or "?"
        title = f"MQTT拒收激增：{who} {window}秒内{refused}条消息被拒"
        title_en = f"Dead-letter spike: {refused} MQTT messages from {who} refused in {window} s"
    return Alert(
        id=alert_id(message.id, kind),
        kind=kind,
        severity=severity,
        title=title,
        title_en=title_en,
        at=message.at,
        district=message.district,
        street=message.street,
        ticket_id=None,
        source_id=message.id,
        details=details,
    )


def _number(value: Any) -> str:
    """A figure from a message's details as titles show it (60.0 → "60")."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)
