"""The one way an event enters the hub, whatever the channel (JSON API, Open311, grid, MQTT)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest import store
from services.ingest.logic import normalise
from services.ingest.schemas import EventCreate
from services.ingest.writer import WRITER_KEY, EventWriter
from shared.catalogue import Category
from shared.db.models import Event
from shared.errors import HubError
from shared.events import NewEvent
from shared.runtime import Runtime


class UnknownCategoryError(HubError):
    """The category is not in the catalogue."""

    def __init__(self, category: str) -> None:
        super().__init__(f"unknown category {category!r}: see GET /api/v1/categories", 422)
        self.category = category


def resolve_category(runtime: Runtime, text: str) -> Category:
    """The catalogue entry for a code or name, or an `UnknownCategoryError`."""
    category = runtime.catalogue.resolve(text)
    if category is None:
        raise UnknownCategoryError(text)
    return category


async def accept(
    session: AsyncSession, runtime: Runtime, payload: EventCreate, submitted_by: str
) -> tuple[Event, bool]:
    """Store (in the caller's transaction) and announce an event; (event, True) when new, or
    (the original, False) when this sender already sent this source_ref on this channel."""
    if payload.source_ref is not None:
        existing = await store.find_by_source_ref(
            session, submitted_by, payload.source, payload.source_ref
        )
        if existing is not None:
            return existing, False
    category = resolve_category(runtime, payload.category)
    event, message = normalise(payload, category, runtime.geotagger, submitted_by)
    return await store.insert_event(session, event, message)


async def submit(
    runtime: Runtime, payload: EventCreate, submitted_by: str
) -> tuple[NewEvent | Event, bool]:
    """Like `accept`, in a transaction of its own shared with concurrent submissions (group
    commit): (event, True) when new, (the original, False) for a repeated source_ref."""
    category = resolve_category(runtime, payload.category)
    event, message = normalise(payload, category, runtime.geotagger, submitted_by)
    writer: EventWriter = runtime.extras[WRITER_KEY]
    if await writer.store(event, message):
        return event, True
    assert event.source_ref is not None  # only a source_ref can collide
    async with runtime.sessions() as session:
        original = await store.find_by_source_ref(
            session, event.submitted_by, event.source, event.source_ref
        )
    if original is None:  # pragma: no cover - the constraint said it exists
        raise HubError("duplicate event vanished; retry", 503)
    return original, False
