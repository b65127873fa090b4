"""The bridge between a stored event row and the message that announces it."""

from __future__ import annotations

from shared.db.models import Event
from shared.messages import EventIngestedV1, GeotagInfo


def ingested_message(event: Event) -> EventIngestedV1:
    """The `events.ingested` message for a stored event (ingest publishes it; sweeps re-send it)."""
    return EventIngestedV1(
        event_id=event.id,
        source=event.source,
        source_ref=event.source_ref,
        category=event.category,
        priority=event.priority,
        description=event.description,
        lon=event.lon,
        lat=event.lat,
        address=event.address,
        geotag=GeotagInfo(
            street=event.street_code,
            district=event.district_code,
            city=event.city_code,
            method=event.geotag_method,
        ),
        reported_at=event.reported_at,
    )
