"""HTTP intake: the project's own JSON API for events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import ValidationError

from services.ingest import store
from services.ingest.intake import submit, submit_many
from services.ingest.schemas import (
    BatchItemResult,
    BatchResult,
    EventBatch,
    EventCreate,
    EventRead,
    GeotagRead,
    Location,
)
from shared.auth import Principal, owner_limit
from shared.db.models import Event
from shared.errors import HubError, NotFoundError
from shared.events import NewEvent
from shared.web import PrincipalDep, RuntimeDep, SessionDep, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["ingest"], dependencies=[Depends(require_json)])

Submitter = Annotated[
    Principal, Depends(require_roles("integrator", "admin", "dispatcher", "field_staff"))
]


def to_read(event: Event | NewEvent, ticket_id: uuid.UUID | None = None) -> EventRead:
    """The public view of a stored event."""
    location = None
    if event.lon is not None and event.lat is not None:
        location = Location(lon=event.lon, lat=event.lat)
    return EventRead(
        id=event.id,
        source=event.source,
        source_ref=event.source_ref,
        category=event.category,
        priority=event.priority,
        description=event.description,
        location=location,
        address=event.address,
        attributes=event.attributes,
        attachments=event.attachments,
        geotag=GeotagRead(
            street=event.street_code,
            district=event.district_code,
            city=event.city_code,
            method=event.geotag_method,
        ),
        reported_at=event.reported_at,
        received_at=event.received_at,
        ticket_id=ticket_id,
    )


@router.post(
    "/events",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": EventRead, "description": "Already submitted: the original."}},
)
async def create_event(
    payload: EventCreate, principal: Submitter, runtime: RuntimeDep, response: Response
) -> EventRead:
    """Accept one event: geotag, store, publish (a repeated source_ref returns the original)."""
    event, created = await submit(runtime, payload, principal.subject)
    if not created:
        response.status_code = status.HTTP_200_OK
    return to_read(event)


@router.post("/events/batch")
async def create_events(
    batch: EventBatch, principal: Submitter, runtime: RuntimeDep
) -> BatchResult:
    """Accept up to 1,000 events at once; each is answered individually (201, 200 or 422)."""
    results: list[BatchItemResult | None] = [None] * len(batch.events)
    valid: list[tuple[int, EventCreate]] = []
    for index, item in enumerate(batch.events):
        try:
            valid.append((index, EventCreate.model_validate(item)))
        except ValidationError as exc:
            results[index] = BatchItemResult(index=index, status=422, error=_first_error(exc))
    # The valid ones go to the group-commit writer together: one transaction, one INSERT.
    answers = await submit_many(runtime, [payload for _, payload in valid], principal.subject)
    for (index, _), answer in zip(valid, answers, strict=True):
        if isinstance(answer, HubError):
            results[index] = BatchItemResult(index=index, status=422, error=answer.message)
        else:
            event, created = answer
            results[index] = BatchItemResult(
                index=index, status=201 if created else 200, event=to_read(event)
            )
    answered = [r for r in results if r is not None]
    statuses = [r.status for r in answered]
    return BatchResult(
        created=statuses.count(201),
        duplicates=statuses.count(200),
        rejected=statuses.count(422),
        results=answered,
    )


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def may_read(principal: Principal, event: Event) -> bool:
    """Integrators read what they submitted; users read events located inside their scope."""
    owner = owner_limit(principal)
    if owner is not None:
        return event.submitted_by == owner
    return principal.scope.covers(event.district_code, event.street_code)


@router.get("/events/{event_id}")
async def get_event(event_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> EventRead:
    """One event and the ticket it went to (404 outside the caller's reach)."""
    event = await store.get_event(session, event_id)
    if event is None or not may_read(principal, event):
        raise NotFoundError(f"event {event_id} not found")
    return to_read(event, await store.ticket_of(session, event.id))
