"""Versioned bus messages: the contract between services.

Every message carries a unique `id` (consumers record what they applied, so redelivery is harmless),
a `kind` naming the model and a `version`. A consumer decodes with `decode()`, which refuses unknown
kinds or versions; a breaking change adds a new version instead of editing one in place.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

# Stream names; the bus prefixes them (see Settings.bus_prefix).
EVENTS_INGESTED = "events.ingested"
TICKETS_CHANGED = "tickets.changed"
KPIS_UPDATED = "kpis.updated"
NOTIFICATIONS_REQUESTED = "notifications.requested"
EMERGENCY_CHANGED = "emergency.changed"
ALERTS_RAISED = "alerts.raised"
STREAMS = (
    EVENTS_INGESTED, TICKETS_CHANGED, KPIS_UPDATED, NOTIFICATIONS_REQUESTED, EMERGENCY_CHANGED,
    ALERTS_RAISED,
)  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


def _request_id() -> Any:
    """The optional `request_id` of a message caused by an HTTP request (X-Request-ID): left out
    of the encoded message when unset, so messages without one are exactly what they were and
    stay readable by consumers that predate the field (docs/decisions/0018-observability.md)."""
    return Field(default=None, max_length=128, exclude_if=lambda value: value is None)


class Message(BaseModel):
    """Base of every bus message."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stream: ClassVar[str]

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    version: int = 1
    created_at: datetime = Field(default_factory=_now)


class GeotagInfo(BaseModel):
    """Where an event was located and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    street: str | None = None
    district: str | None = None
    city: str | None = None
    method: Literal["point", "nearest", "address", "none"] = "none"


class EventIngestedV1(Message):
    """An event was stored by ingest and awaits a ticket."""

    stream: ClassVar[str] = EVENTS_INGESTED
    kind: Literal["event.ingested"] = "event.ingested"
    version: Literal[1] = 1
    event_id: uuid.UUID
    source: str
    source_ref: str | None = None
    category: str
    priority: str | None = None
    description: str = ""
    lon: float | None = None
    lat: float | None = None
    address: str | None = None
    geotag: GeotagInfo
    reported_at: datetime
    request_id: str | None = _request_id()  # the X-Request-ID of the request that sent it


class TicketChangedV1(Message):
    """A ticket was created or changed (published after commit)."""

    stream: ClassVar[str] = TICKETS_CHANGED
    kind: Literal["ticket.changed"] = "ticket.changed"
    version: Literal[1] = 1
    ticket_id: uuid.UUID
    change: str
    status: str
    category: str
    owner_tier: str
    owner_code: str
    street: str | None = None
    district: str | None = None
    city: str | None = None


class TicketSummary(BaseModel):
    """A ticket as the screens and KPIs need it (no reporter details)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    category: str
    priority: str | None
    status: str
    source: str
    owner_tier: str
    owner_code: str
    department: str | None
    street: str | None
    district: str | None
    city: str | None
    lon: float | None
    lat: float | None
    report_count: int
    overdue: bool
    rework_count: int
    sensor_id: str | None = None
    merged_into: uuid.UUID | None = None
    emergency: str | None = None
    accept_due_at: datetime | None = None
    handle_due_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    satisfaction: int | None = None


class TransitionInfo(BaseModel):
    """The timeline entry a change wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    note: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class TicketChangedV2(Message):
    """A ticket was created or changed: the whole ticket after the change, and the transition."""

    stream: ClassVar[str] = TICKETS_CHANGED
    kind: Literal["ticket.changed"] = "ticket.changed"
    version: Literal[2] = 2
    change: str  # "created", "report" (an event joined), or the action's name
    ticket: TicketSummary
    transition: TransitionInfo | None = None
    # The 5-level warning colour (red/orange/yellow/blue/green) when the sender computed it.
    colour: Literal["red", "orange", "yellow", "blue", "green"] | None = None
    request_id: str | None = _request_id()  # of the request or ingested event that changed it


class ReportersToNotifyV1(Message):
    """A ticket ended (closed or rejected): tell the reporters of these events (call-back)."""

    stream: ClassVar[str] = NOTIFICATIONS_REQUESTED
    kind: Literal["reporters.notify"] = "reporters.notify"
    version: Literal[1] = 1
    ticket_id: uuid.UUID
    outcome: str  # closed | rejected
    note: str = ""
    event_ids: list[uuid.UUID]  # events whose reporter left contact details


class EmergencyChangedV1(Message):
    """平急转换: emergency mode started or ended for an area (district or the whole city)."""

    stream: ClassVar[str] = EMERGENCY_CHANGED
    kind: Literal["emergency.changed"] = "emergency.changed"
    version: Literal[1] = 1
    emergency_id: uuid.UUID
    change: Literal["started", "ended"]
    area: str
    incident: str
    categories: list[str]
    deadline_factor: float
    at: datetime
    by: str


class AlertRaisedV1(Message):
    """Ingest noticed something screens must hear of (a sensor went offline or came back, an
    integrator's MQTT input is refused in bulk); metrics turns it into an alert (docs/alerts.md).

    Published through the outbox with the fact it reports; its `id` is derived from that fact,
    so the same fact always makes the same message.
    """

    stream: ClassVar[str] = ALERTS_RAISED
    kind: Literal["alert.raised"] = "alert.raised"
    version: Literal[1] = 1
    alert: Literal["sensor_offline", "sensor_online", "dead_letter_spike"]
    at: datetime  # when it happened
    # Where: the sensor's street and district; both None for the whole city.
    district: str | None = None
    street: str | None = None
    sensor_id: str | None = None
    integrator: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)  # JSON-ready facts of the alert


def _tag(value: Any) -> str:
    """`kind@version`: messages are told apart by both (a new version keeps its kind)."""
    if isinstance(value, dict):
        return f"{value.get('kind')}@{value.get('version', 1)}"
    return f"{getattr(value, 'kind', None)}@{getattr(value, 'version', 1)}"


AnyMessageType = (
    EventIngestedV1
    | TicketChangedV1
    | TicketChangedV2
    | ReportersToNotifyV1
    | EmergencyChangedV1
    | AlertRaisedV1
)
AnyMessage = Annotated[
    Annotated[EventIngestedV1, Tag("event.ingested@1")]
    | Annotated[TicketChangedV1, Tag("ticket.changed@1")]
    | Annotated[TicketChangedV2, Tag("ticket.changed@2")]
    | Annotated[ReportersToNotifyV1, Tag("reporters.notify@1")]
    | Annotated[EmergencyChangedV1, Tag("emergency.changed@1")]
    | Annotated[AlertRaisedV1, Tag("alert.raised@1")],
    Discriminator(_tag),
]
_adapter: TypeAdapter[AnyMessageType] = TypeAdapter(AnyMessage)


def encode(message: Message) -> bytes:
    """Serialise a message for the wire."""
    return message.model_dump_json().encode()


def decode(raw: bytes | str) -> AnyMessageType:
    """Parse a message from the wire; raises `pydantic.ValidationError` for anything unknown."""
    return _adapter.validate_json(raw)
