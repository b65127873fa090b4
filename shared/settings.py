"""The one typed settings object, read from `CITYHUB_*` environment variables.

Unset backends mean embedded mode: SQLite under the data dir, the in-process bus and the embedded
MQTT broker. Library code takes a `Settings` (or a part of it) and never reads the environment.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["ingest", "dispatch", "metrics", "gateway"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("ingest", "dispatch", "metrics", "gateway")

# Secrets that must never sign tokens in production.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development"})


class DispatchSettings(BaseModel):
    """Tickets: merging of repeated reports and the working calendar (`CITYHUB_DISPATCH__*`)."""

    model_config = ConfigDict(frozen=True)

    # An event joins an open ticket of the same problem this close (metres) and this recent.
    merge_distance_m: float = Field(default=100.0, gt=0, le=5_000)
    merge_window_h: float = Field(default=24.0, gt=0, le=24 * 90)
    # JSON file with work periods, weekdays, holidays and make-up days; None: the shipped one
    # (services/dispatch/data/work_calendar.json, docs/decisions/0009-dispatch-rules.md).
    calendar_file: Path | None = None
    # Recovery after a restart (seconds): events no ticket links after `sweep_grace_s` are
    # re-read from the database every `sweep_every_s` (their message died with the bus), and a
    # delivery a dead replica held is taken over after `claim_idle_s`.
    sweep_grace_s: float = Field(default=30.0, gt=0)
    sweep_every_s: float = Field(default=30.0, gt=0)
    claim_idle_s: float = Field(default=30.0, gt=0)
    # Fired timer rows are deleted this many hours after firing (timelines keep what happened).
    fired_timer_retention_h: float = Field(default=168.0, gt=0)
    # `defer` may move a handling deadline at most this many days ahead of now: a deferral
    # postpones a deadline, it never switches it off.
    max_defer_days: float = Field(default=90.0, gt=0, le=3_650, allow_inf_nan=False)


class AlertSettings(BaseModel):
    """Alerts on `/ws/live` and `/api/v1/alerts` (`CITYHUB_ALERTS__*`, docs/alerts.md)."""

    model_config = ConfigDict(frozen=True)

    # More refused MQTT messages than this from one integrator within a minute is a spike.
    dead_letter_spike: int = Field(default=50, ge=1, le=1_000_000)
    # Stored alerts are deleted this many days after they happened.
    retention_days: float = Field(default=30.0, gt=0, le=3_650, allow_inf_nan=False)


class LiveSettings(BaseModel):
    """The gateway's `/ws/live` connections (`CITYHUB_LIVE__*`; docs/live.md)."""

    model_config = ConfigDict(frozen=True)

    # Frames waiting for one client; a client further behind gets `resync` and is dropped.
    queue_max: int = Field(default=2_000, ge=1, le=1_000_000)
    # A socket without a token in its URL must send {"type": "auth"} within this many seconds.
    auth_timeout_s: float = Field(default=10.0, gt=0)
    # Connections are closed (4000) after this long; clients reconnect with `since`.
    max_lifetime_s: float = Field(default=12 * 3600.0, gt=0)
    # How often a connection re-checks its user (disabled, signed out) and a send may take.
    recheck_s: float = Field(default=2.0, gt=0)
    send_timeout_s: float = Field(default=30.0, gt=0)


class RateLimitSettings(BaseModel):
    """Requests a signed-in user or an API key may make through the gateway
    (`CITYHUB_RATE_LIMITS__*`; docs/decisions/0019-rate-limits-and-shutdown.md).

    A sustained rate per caller (requests a second) and a burst: a caller that was quiet may send
    `burst_s` seconds' worth at once (at least one request). Over it, 429 with `Retry-After`.
    Shared by gateway replicas through Redis in production, in-process when embedded. 0 = off.
    """

    model_config = ConfigDict(frozen=True)

    # Per user name (bearer tokens): people and their screens, far below this.
    per_user: float = Field(default=100.0, ge=0, le=1_000_000, allow_inf_nan=False)
    # Per API key name: integrators' platforms (the intake benchmarks post 1,000s a second).
    per_key: float = Field(default=10_000.0, ge=0, le=1_000_000, allow_inf_nan=False)
    burst_s: float = Field(default=5.0, gt=0, le=3_600, allow_inf_nan=False)


class KpiWeights(BaseModel):
    """Weights of the 综合评价 score (`CITYHUB_KPI__WEIGHTS__*`; docs/kpis.md): each rate counts in
    proportion to its weight, and a rate without data drops out (the rest are re-weighted)."""

    model_config = ConfigDict(frozen=True)

    on_time_close: float = Field(default=40.0, ge=0, le=1_000, allow_inf_nan=False)
    close: float = Field(default=20.0, ge=0, le=1_000, allow_inf_nan=False)
    no_rework: float = Field(default=20.0, ge=0, le=1_000, allow_inf_nan=False)
    satisfaction: float = Field(default=20.0, ge=0, le=1_000, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_weight(self) -> KpiWeights:
        if self.on_time_close + self.close + self.no_rework + self.satisfaction <= 0:
            raise ValueError("at least one KPI weight must be above 0")
        return self


class KpiSettings(BaseModel):
    """KPIs of the metrics service (`CITYHUB_KPI__*`; docs/kpis.md)."""

    model_config = ConfigDict(frozen=True)

    weights: KpiWeights = Field(default_factory=KpiWeights)


class Settings(BaseSettings):
    """Everything configurable about a cityhub process."""

    model_config = SettingsConfigDict(
        env_prefix="CITYHUB_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    data_dir: Path = Path("./var")
    database_url: str | None = None
    redis_url: str | None = None
    mqtt_url: str | None = None
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    # MQTT intake (docs/decisions/0007-mqtt-intake.md). Topics live under the root, so tests and
    # several hubs can share one broker.
    mqtt_topic_root: str = Field(
        default="cityhub/v1", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
    )
    # Ingest's own login on an external broker (the embedded broker gets one generated per start).
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # Stable, so the broker keeps ingest's session (and queues QoS 1 messages) while it is down;
    # every ingest replica needs its own.
    mqtt_client_id: str = Field(default="cityhub-ingest", min_length=1, max_length=64)
    # Replicas on Mosquitto share the work through `$share/<group>/...` (unset: plain subscription).
    mqtt_shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    # Dead letters (refused input, kept to show integrators what went wrong) live this long.
    dead_letter_retention_h: float = Field(default=720.0, gt=0)
    # JSON file of plausible sensor value ranges whose entries replace the shipped ones
    # (services/ingest/sensors/data/plausible_ranges.json); None: the shipped ranges only.
    sensor_ranges_file: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    # Streams and keys are prefixed so several hubs (or test runs) can share one Redis.
    bus_prefix: str = "cityhub:"
    geotag_tolerance_m: float = Field(default=500.0, ge=0)
    jwt_secret: SecretStr | None = None
    token_ttl_s: int = Field(default=900, gt=0)
    # Sign-in sessions (docs/decisions/0014-sign-in-sessions.md): a refresh token lives this long
    # from its issue (each refresh issues the next one); failed sign-ins count per user name and
    # per client address within the window, and past a limit sign-in answers 429 until the window
    # has let enough of them go. The address limit is higher: one office (or a proxy without
    # forwarded headers) shares an address, and 5 typos there must not lock out everyone.
    refresh_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)
    login_window_s: int = Field(default=900, gt=0, le=24 * 3600)
    login_failures_per_user: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=20, ge=1)
    # Where the gateway forwards each service's routes in production mode.
    ingest_url: str = "http://127.0.0.1:8001"
    dispatch_url: str = "http://127.0.0.1:8002"
    metrics_url: str = "http://127.0.0.1:8003"
    log_level: LogLevel = "INFO"  # CITYHUB_LOG_LEVEL, any case; DEBUG adds library details
    # CITYHUB_LOG_FORMAT: json (one object per line) or text; unset: text on a terminal, else json
    log_format: Literal["json", "text"] | None = None
    # CITYHUB_METRICS_TOKEN: when set, /metrics asks for `Authorization: Bearer <it>` (a scraper's
    # credential), so a gateway reachable from outside does not publish its figures to anyone.
    metrics_token: SecretStr | None = None
    access_log: bool | None = None  # a line per HTTP request; unset: only at DEBUG
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    # Local time of the city: KPI windows named `today` start at its midnight (CITYHUB_TIMEZONE).
    timezone: str = "Asia/Shanghai"
    kpi: KpiSettings = Field(default_factory=KpiSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    # After SIGTERM a `cityhub serve` or `cityhub run` process stops taking work, finishes what
    # it holds and exits within this many seconds; past it, it exits anyway (code 1).
    shutdown_grace_s: float = Field(default=15.0, gt=0, le=3_600, allow_inf_nan=False)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Asia/Shanghai)"
            ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "database_url", "redis_url", "mqtt_url", "mqtt_username", "mqtt_shared_group", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def embedded(self) -> bool:
        """True when no external backend is configured (SQLite, in-process bus, own broker)."""
        return self.database_url is None and self.redis_url is None

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: the configured one, or a SQLite file in the data dir."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'cityhub.sqlite3').resolve()}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        return url

    @cached_property
    def mqtt_endpoint(self) -> tuple[str, int]:
        """Host and port of the MQTT broker the hub talks to (its own one when embedded)."""
        if self.mqtt_url is None:
            return ("127.0.0.1", self.mqtt_port)
        parts = urlsplit(self.mqtt_url if "://" in self.mqtt_url else f"mqtt://{self.mqtt_url}")
        return (parts.hostname or "127.0.0.1", parts.port or 1883)

    def service_url(self, service: ServiceName) -> str:
        """Base URL of a service as the gateway reaches it in production mode."""
        return {
            "ingest": self.ingest_url,
            "dispatch": self.dispatch_url,
            "metrics": self.metrics_url,
            "gateway": f"http://{self.http_host}:{self.http_port}",
        }[service]
