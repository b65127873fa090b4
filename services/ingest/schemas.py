"""Request and response models of the ingest API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.catalogue import Priority
from shared.params import Moment

Source = Literal["hotline", "sensor", "grid", "api"]
MAX_DESCRIPTION = 4_000  # characters, as Open311 deployments commonly cap it
MAX_ATTACHMENTS = 5
# A photo or document: an http(s) URL, or a file the hub stored itself (served under /files/).
Attachment = Annotated[
    str,
    StringConstraints(pattern=r"^(https?://\S+|/files/[0-9a-f]{64}\.(jpg|png))$", max_length=2000),
]


class Location(BaseModel):
    """A WGS84 point."""

    model_config = ConfigDict(extra="forbid")

    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)


class Reporter(BaseModel):
    """Who reported it; never shown by public APIs."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    account: str | None = Field(default=None, max_length=200)


class EventCreate(BaseModel):
    """An event as a sender submits it."""

    model_config = ConfigDict(extra="forbid")

    source: Source = "api"
    source_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The sender's own id; with `source` it makes the submission idempotent.",
    )
    category: str = Field(
        min_length=1, max_length=100, description="A catalogue code, or its Chinese or English name"
    )
    priority: Priority | None = Field(default=None, description="Defaults to the category's.")
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    location: Location | None = None
    address: str | None = Field(default=None, max_length=500)
    reported_at: Moment | None = None  # bounded: a year-1 report overflowed the merge window
    reporter: Reporter | None = None
    attributes: dict[str, str | float | list[str]] = Field(
        default_factory=dict, description="Answers to the category's extra questions."
    )
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)


class GeotagRead(BaseModel):
    """Where the hub located an event and how."""

    street: str | None
    district: str | None
    city: str | None
    method: Literal["point", "nearest", "address", "none"]


class EventRead(BaseModel):
    """A stored event (the reporter is left out)."""

    id: uuid.UUID
    source: Source
    source_ref: str | None
    category: str
    priority: str | None
    description: str
    location: Location | None
    address: str | None
    attributes: dict[str, str | float | list[str]]
    attachments: list[str]
    geotag: GeotagRead
    reported_at: datetime
    received_at: datetime
    ticket_id: uuid.UUID | None = Field(
        default=None, description="The ticket this event opened or joined, once dispatch ran."
    )


MAX_BATCH = 1_000  # events per batch request


class EventBatch(BaseModel):
    """Up to 1,000 events; each is validated and answered on its own."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, object]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItemResult(BaseModel):
    """The outcome of one event of a batch: 201 created, 200 duplicate, 422 refused."""

    index: int
    status: int
    event: EventRead | None = None
    error: str | None = None


class BatchResult(BaseModel):
    """Per-event outcomes, in request order, with totals."""

    created: int
    duplicates: int
    rejected: int
    results: list[BatchItemResult]
