"""Intake rules: normalise a submission, geotag it and build its bus message (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.ingest.schemas import EventCreate
from shared.areas import Geotagger
from shared.catalogue import Category
from shared.errors import HubError
from shared.events import NewEvent, ingested_message
from shared.messages import EventIngestedV1


def check_attributes(category: Category, answers: dict[str, str | float | list[str]]) -> None:
    """Refuse answers to unknown questions, missing required ones and values not in a list."""
    known = {a.code: a for a in category.attributes}
    for code in answers:
        if code not in known:
            raise HubError(f"attribute {code!r} is not defined for category {category.code}", 422)
    for attr in category.attributes:
        value = answers.get(attr.code)
        if value is None:
            if attr.required:
                raise HubError(f"attribute {attr.code!r} is required for {category.code}", 422)
            continue
        allowed = {v.key for v in attr.values}
        given = value if isinstance(value, list) else [value]
        if allowed and any(str(v) not in allowed for v in given):
            raise HubError(
                f"attribute {attr.code!r} must be one of {', '.join(sorted(allowed))}", 422
            )
        if attr.datatype == "number" and not isinstance(value, int | float):
            try:
                float(str(value))
            except ValueError:
                raise HubError(f"attribute {attr.code!r} must be a number", 422) from None


def normalise(
    payload: EventCreate,
    category: Category,
    geotagger: Geotagger,
    submitted_by: str,
    now: datetime | None = None,
) -> tuple[NewEvent, EventIngestedV1]:
    """The event to store and the message announcing it."""
    check_attributes(category, payload.attributes)
    received = now or datetime.now(UTC)
    lon = payload.location.lon if payload.location else None
    lat = payload.location.lat if payload.location else None
    tag = geotagger.tag(lon, lat, payload.address)
    codes = tag.codes()
    event = NewEvent(
        id=uuid.uuid4(),
        source=payload.source,
        source_ref=payload.source_ref,
        category=category.code,
        priority=payload.priority or category.priority,
        description=payload.description,
        lon=lon,
        lat=lat,
        address=payload.address,
        street_code=codes["street"],
        district_code=codes["district"],
        city_code=codes["city"],
        geotag_method=tag.method,
        reported_at=payload.reported_at or received,
        received_at=received,
        submitted_by=submitted_by,
        reporter=payload.reporter.model_dump(exclude_none=True) if payload.reporter else None,
        attachments=list(payload.attachments),
        attributes=payload.attributes,
        raw=payload.model_dump(mode="json", exclude={"reporter"}),
    )
    return event, ingested_message(event)
