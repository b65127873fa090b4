"""SQLAlchemy 2 models of every table; schema changes go through Alembic (shared/migrations).

One database, tables grouped by the service that writes them: areas and identity (gateway/CLI),
events and the outbox (ingest), tickets and the inbox (dispatch).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class AreaRow(Base):
    """One area of the city / district / street hierarchy; geometry as WKB in WGS84."""

    __tablename__ = "areas"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), index=True)
    parent: Mapped[str | None] = mapped_column(String(32), index=True)
    geometry: Mapped[bytes] = mapped_column(LargeBinary)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class CategoryRow(Base):
    """One category of the catalogue, as JSON (validated by `shared.catalogue.Category`)."""

    __tablename__ = "categories"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who signs in: role, scope and (for field staff) department."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An integrator's API key; only its SHA-256 is stored (keys are long and random)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="integrator")
    scope: Mapped[str] = mapped_column(String(64), default="city")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    # The key hashed the way Mosquitto's password file wants it (PBKDF2-SHA512, `$7$`), so
    # `cityhub mqtt export-auth` can write one; None for keys made before MQTT intake existed.
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(200))


class Event(Base):
    """A normalised, geotagged event as ingest accepted it."""

    __tablename__ = "events"
    # Idempotency key: a sender's own reference, per channel (another sender may reuse it).
    __table_args__ = (
        UniqueConstraint("submitted_by", "source", "source_ref", name="uq_events_sender_ref"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(Text)
    street_code: Mapped[str | None] = mapped_column(String(32), index=True)
    district_code: Mapped[str | None] = mapped_column(String(32), index=True)
    city_code: Mapped[str | None] = mapped_column(String(32))
    geotag_method: Mapped[str] = mapped_column(String(16))
    reported_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_by: Mapped[str | None] = mapped_column(String(100))
    # Who reported it (name/phone/account): kept for call-backs, never shown by public APIs.
    reporter: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attachments: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxMessage(Base):
    """A bus message committed with the change it announces; the relay publishes and deletes it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboxMessage(Base):
    """A bus message a consumer has applied, recorded in the same transaction as its effect."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


# Statuses of a ticket that still needs work (services.dispatch.lifecycle.OPEN_STATUSES).
OPEN_TICKET_SQL = "status IN ('new', 'dispatched', 'accepted', 'in_progress', 'resolved', 'parked')"


class Ticket(Base):
    """A case to handle, owned by one centre (tier + code)."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_owner", "owner_tier", "owner_code"),
        Index("ix_tickets_status_category", "status", "category"),
        # Merge candidates: open tickets of a category inside a lon/lat box, created recently.
        # Partial, so its size follows the open backlog, not every ticket ever opened.
        Index(
            "ix_tickets_open_place",
            "category",
            "lon",
            "lat",
            "created_at",
            sqlite_where=text(OPEN_TICKET_SQL),
            postgresql_where=text(OPEN_TICKET_SQL),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    category: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="new")
    owner_tier: Mapped[str] = mapped_column(String(16))
    owner_code: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    street_code: Mapped[str | None] = mapped_column(String(32), index=True)
    district_code: Mapped[str | None] = mapped_column(String(32), index=True)
    city_code: Mapped[str | None] = mapped_column(String(32))
    geotag_method: Mapped[str] = mapped_column(String(16))
    report_count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Routing and handling (dispatch issue): who handles it, by when, how it went.
    source: Mapped[str] = mapped_column(String(16), server_default="api", index=True)
    department: Mapped[str | None] = mapped_column(String(64), index=True)
    sensor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    accept_due_at: Mapped[datetime | None]
    handle_due_at: Mapped[datetime | None]
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    rework_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    merged_into: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    emergency: Mapped[str | None] = mapped_column(String(200))  # incident it was opened under
    dispatched_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    # Hash of the latest timeline entry: an audit notices entries deleted from the end.
    timeline_head: Mapped[str | None] = mapped_column(String(64))


class TicketEvent(Base):
    """Links an event to the ticket it opened or was merged into (each event to one ticket)."""

    __tablename__ = "ticket_events"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class HeldEvent(Base):
    """An event dispatch could not turn into a ticket, set aside with why; retried with back-off
    (services/dispatch/held.py) and deleted once the event has its ticket."""

    __tablename__ = "held_events"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)  # the last failure, bounded in length
    attempts: Mapped[int] = mapped_column(Integer)  # failed tries so far
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    retry_at: Mapped[datetime]  # the sweep leaves the event alone until then


class Sensor(Base):
    """A registered IoT sensor: who owns it, where it is, how often it reports, its alarm rules."""

    __tablename__ = "sensors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    integrator: Mapped[str] = mapped_column(String(100), index=True)  # an api_keys.name
    name: Mapped[str | None] = mapped_column(String(200))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    interval_s: Mapped[int] = mapped_column(Integer)
    # Category of alarms the device raises itself (the alarms topic).
    alarm_category: Mapped[str] = mapped_column(String(64))
    # Threshold rules as the API takes them (validated by services.ingest.sensors.schemas).
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Flushed from ingest's memory in batches, for offline detection across restarts.
    last_seen_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SensorAlarm(Base):
    """One alarm of one sensor, from raise to clear: a threshold rule, a device alarm or offline."""

    __tablename__ = "sensor_alarms"
    __table_args__ = (
        # At most one open alarm per sensor and rule, whichever process raised it.
        Index(
            "uq_sensor_alarms_open",
            "sensor_id",
            "rule_key",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    sensor_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sensors.id", ondelete="CASCADE"), index=True
    )
    rule_key: Mapped[str] = mapped_column(String(100))  # "water_level_cm>30", "device:leak", ...
    kind: Mapped[str] = mapped_column(String(16))  # threshold | device | offline
    category: Mapped[str] = mapped_column(String(64))
    # The event's source_ref: deterministic, so a redelivered message never raises twice.
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)  # dispatch's way in
    metric: Mapped[str | None] = mapped_column(String(64))
    threshold: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    raised_at: Mapped[datetime]
    value: Mapped[float | None] = mapped_column(Float)  # the reading that raised it
    count: Mapped[int] = mapped_column(Integer, default=1)  # raising reading + repeats
    last_value: Mapped[float | None] = mapped_column(Float)
    last_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    clear_value: Mapped[float | None] = mapped_column(Float)
    clear_reason: Mapped[str | None] = mapped_column(String(16))


class DeadLetter(Base):
    """Input the hub could not accept, kept for the sender to see why (payload truncated)."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    payload_bytes: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    sensor_id: Mapped[str | None] = mapped_column(String(64))
    integrator: Mapped[str | None] = mapped_column(String(100), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TicketTransition(Base):
    """One entry of a ticket's append-only timeline, chained to the previous one by hash."""

    __tablename__ = "ticket_transitions"
    __table_args__ = (UniqueConstraint("ticket_id", "seq", name="uq_ticket_transitions_seq"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, … within the ticket
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Timer(Base):
    """A deadline to watch: fired once by whichever scheduler locks it first."""

    __tablename__ = "timers"
    __table_args__ = (
        # Only unfired timers are ever scanned, in due order: work per tick ∝ timers due.
        Index(
            "ix_timers_pending",
            "due_at",
            sqlite_where=text("fired_at IS NULL"),
            postgresql_where=text("fired_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # accept_warn accept_due handle_warn handle_due
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    fired_by: Mapped[str | None] = mapped_column(String(100))


class RoutingRuleRow(Base):
    """A routing rule (services.dispatch.routing.RoutingRule), in table order."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    position: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(64), index=True)
    district: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(16))
    department: Mapped[str] = mapped_column(String(64))


class SupervisionOrder(Base):
    """督办: a late ticket flagged to the centre one tier up."""

    __tablename__ = "supervision_orders"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(Text)
    from_tier: Mapped[str] = mapped_column(String(16))
    from_code: Mapped[str] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(16))
    to_code: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class EmergencyMode(Base):
    """平急转换: a district (or the city) switched to emergency handling for an incident."""

    __tablename__ = "emergency_modes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    area: Mapped[str] = mapped_column(String(32), index=True)  # district code or the city's
    incident: Mapped[str] = mapped_column(String(200))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    deadline_factor: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_by: Mapped[str] = mapped_column(String(100))
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(100))


# --- sign-in sessions (issue 8: refresh tokens, logins, failed-login limits) ---


class Login(Base):
    """One sign-in of a user (decision 0014): its refresh tokens rotate within it, its access
    tokens name it (`sid`), and revoking it (sign-out, a reused refresh token, a new password,
    the user disabled) ends them all. Deleted once its last refresh token has expired."""

    __tablename__ = "logins"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(
        String(100), ForeignKey("users.username", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))  # logout, reuse, password...


class RefreshToken(Base):
    """A refresh token of a login, stored as its SHA-256 (it carries 256 random bits). Used
    ones stay until they expire: presenting one again revokes the login (reuse detection)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    login_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("logins.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]  # set once, by the refresh that rotated it


class LoginAttempt(Base):
    """A sign-in attempt not known to have succeeded, counted against a user name or a client
    address (`key`: SHA-256 of which, so typed passwords never rest here in clear). Written
    before the password is checked and deleted when it proves right; pruned after the window."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_key_at", "key", "attempted_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(index=True)


# --- KPI facts (issue 8: the metrics service) ---
# Derived by services/metrics/facts.py from bus messages (incremental) or from events, tickets and
# their timelines (`cityhub kpis recompute`); `touched_at` is bookkeeping for the live push, not a
# fact. Statuses counted as open, as in OPEN_TICKET_SQL.
KPI_OPEN_SQL = OPEN_TICKET_SQL


class KpiEvent(Base):
    """One event as the KPIs count it (intake, merge ratio, categories, hotspots)."""

    __tablename__ = "kpi_events"
    __table_args__ = (
        Index("ix_kpi_events_received_at", "received_at"),
        Index("ix_kpi_events_touched_at", "touched_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # None while only the ticket side is known (the event's own message not handled yet).
    received_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(64))
    district: Mapped[str | None] = mapped_column(String(32))
    street: Mapped[str | None] = mapped_column(String(32))
    joined: Mapped[bool] = mapped_column(Boolean, default=False)  # joined an existing ticket
    touched_at: Mapped[datetime]


class KpiTicket(Base):
    """One ticket as the KPIs count it: its latest state (by timeline seq) and what its timeline
    accumulated (deferred, first acceptance, earliest missed handling deadline)."""

    __tablename__ = "kpi_tickets"
    __table_args__ = (
        Index("ix_kpi_tickets_filed_at", "filed_at"),
        Index("ix_kpi_tickets_deadline", "deadline"),
        Index("ix_kpi_tickets_closed_at", "closed_at"),
        Index("ix_kpi_tickets_first_accepted_at", "first_accepted_at"),
        Index("ix_kpi_tickets_touched_at", "touched_at"),
        # "Now" figures (backlog, parked, overdue) read only open tickets.
        Index(
            "ix_kpi_tickets_open",
            "district",
            "street",
            sqlite_where=text(KPI_OPEN_SQL),
            postgresql_where=text(KPI_OPEN_SQL),
        ),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)  # timeline seq of the state stored
    status: Mapped[str] = mapped_column(String(16))
    merged: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str] = mapped_column(String(64))
    district: Mapped[str | None] = mapped_column(String(32))
    street: Mapped[str | None] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(64))
    filed_at: Mapped[datetime]
    accept_due_at: Mapped[datetime | None]
    handle_due_at: Mapped[datetime | None]
    breached: Mapped[bool] = mapped_column(Boolean)  # a deadline breach was recorded
    closed_at: Mapped[datetime | None]
    close_ms: Mapped[int | None] = mapped_column(BigInteger)  # filed → closed (not merged)
    deferred: Mapped[bool] = mapped_column(Boolean)
    missed_due_at: Mapped[datetime | None]
    first_accepted_at: Mapped[datetime | None]
    accept_ms: Mapped[int | None] = mapped_column(BigInteger)  # filed → first accepted
    # The KPI deadline: the earliest missed handling deadline, else the current one.
    deadline: Mapped[datetime | None]
    touched_at: Mapped[datetime]


class KpiTransition(Base):
    """A timeline entry the KPIs count on its own: a verification (返工 when failed) or a
    call-back with its satisfaction score."""

    __tablename__ = "kpi_transitions"
    __table_args__ = (Index("ix_kpi_transitions_at", "at"),)

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # verify | callback
    at: Mapped[datetime]
    passed: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[int | None] = mapped_column(Integer)
    district: Mapped[str | None] = mapped_column(String(32))
    street: Mapped[str | None] = mapped_column(String(32))


# --- alerts (issue 8) ---


class AlertRow(Base):
    """An alert for the screens (breach, 督办, escalation, emergency switch, sensor offline or
    back, dead-letter spike). Its id is derived from the bus message that reported it and the
    alert's kind, so a redelivered message stores nothing new (services/metrics/alerts.py)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # A scope's recent alerts, newest first (the city's use `ix_alerts_at`).
        Index("ix_alerts_district_at", "district", "at"),
        Index("ix_alerts_street_at", "street", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)  # Chinese
    title_en: Mapped[str] = mapped_column(Text)
    # Where (scope filtering): both None for the whole city.
    district: Mapped[str | None] = mapped_column(String(32))
    street: Mapped[str | None] = mapped_column(String(32))
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    at: Mapped[datetime] = mapped_column(index=True)  # when it happened
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # the bus message that reported it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it was appended to the live log; None: stored, not streamed yet (a crash between
    # commit and append streams it when the message is redelivered).
    streamed_at: Mapped[datetime | None]


# --- idempotent actions (issue 9) ---


class ActionRequestRecord(Base):
    """A lifecycle action sent with an `Idempotency-Key`: stored with the answer it got, in the
    action's own transaction, so a retry with the same key replays that answer instead of acting
    twice (services/dispatch/idempotency.py). Pruned after a week."""

    __tablename__ = "action_requests"
    __table_args__ = (
        # Keys are the client's, so they are unique per user; this constraint decides races.
        UniqueConstraint("subject", "key", name="uq_action_requests_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subject: Mapped[str] = mapped_column(String(100))  # the user who sent it
    key: Mapped[str] = mapped_column(String(200))
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of ticket id and body
    # The answer, set in the transaction that claimed the key (no one else sees it unset).
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
