"""The one way an event enters the hub, whatever the channel (JSON API, Open311, grid, MQTT)."""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest import store
from services.ingest.logic import normalise
from services.ingest.schemas import EventCreate
from services.ingest.writer import WRITER_KEY, EventWriter
from shared.catalogue import Category
from shared.db.models import Event
from shared.errors import HubError
from shared.events import NewEvent
from shared.messages import Message
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


async def submit(
    runtime: Runtime, payload: EventCreate, submitted_by: str
) -> tuple[NewEvent | Event, bool]:
    """Store and announce an event, in a transaction shared with concurrent submissions (group
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


Stored = tuple[NewEvent | Event, bool]  # (the event, True) when new, (the original, False) if not


async def submit_many(
    runtime: Runtime, payloads: Sequence[EventCreate], submitted_by: str
) -> list[Stored | HubError]:
    """Like `submit` for many events at once, answered in order: (event, created) or the error
    refusing it. Whatever is new is stored in one transaction (a database failure raises, and
    none is stored). The answers are those of taking the events one by one: a source_ref seen
    earlier in `payloads` gets that event's answer as a duplicate; one refused (e.g. an unknown
    category) is still a duplicate if the sender stored it before this call."""
    answers: list[Stored | HubError | None] = [None] * len(payloads)
    first: dict[tuple[str, str], int] = {}  # key → the position that stores it
    copies: list[tuple[int, int]] = []  # (position, position of the same key's first)
    refused: list[int] = []  # refused positions with a key: may still be a duplicate
    new: list[tuple[NewEvent, Message]] = []
    for at, payload in enumerate(payloads):
        key = None if payload.source_ref is None else (payload.source, payload.source_ref)
        if key is not None and key in first:
            copies.append((at, first[key]))
            continue
        try:
            category = resolve_category(runtime, payload.category)
            event, message = normalise(payload, category, runtime.geotagger, submitted_by)
        except HubError as exc:
            answers[at] = exc
            if key is not None:
                refused.append(at)
            continue
        if key is not None:
            first[key] = at
        new.append((event, message))
        answers[at] = (event, True)
    writer: EventWriter = runtime.extras[WRITER_KEY]
    created = await writer.store_many(new)  # ids created by the whole transaction
    # One read, after the commit, for every original this call needs (none in the usual case).
    taken = [at for at in first.values() if _event(answers[at]).id not in created]
    keys = {_key(payloads[at]) for at in (*taken, *refused)}
    if keys:
        async with runtime.sessions() as session:
            originals = await store.find_by_source_refs(session, submitted_by, keys)
        for at in taken:
            original = originals.get(_key(payloads[at]))
            if original is None:  # pragma: no cover - the constraint said it exists
                raise HubError("duplicate event vanished; retry", 503)
            answers[at] = (original, False)
        ours = {event.id for event, _ in new}
        for at in refused:
            original = originals.get(_key(payloads[at]))
            # Stored by a later item of this call: taken one by one, this one came first.
            if original is not None and original.id not in ours:
                answers[at] = (original, False)
    for at, source in copies:
        answers[at] = (_event(answers[source]), False)
    done = [answer for answer in answers if answer is not None]
    assert len(done) == len(payloads)  # every position was answered
    return done


def _key(payload: EventCreate) -> tuple[str, str]:
    assert payload.source_ref is not None
    return payload.source, payload.source_ref


def _event(answer: Stored | HubError | None) -> NewEvent | Event:
    assert isinstance(answer, tuple)
    return answer[0]
