"""The request id: taken from a caller's `X-Request-ID` (when it is safe to repeat) or made here,
held in a context variable for the request's task, stamped on the bus messages the request causes
and on every log line written meanwhile (`RequestIdFilter`)."""

from __future__ import annotations

import contextvars
import logging
import os
import re
from collections.abc import Iterator, MutableSequence
from contextlib import contextmanager
from typing import TypeVar

from shared.messages import Message

HEADER = "x-request-id"
MAX_LENGTH = 128  # characters; longer ids are replaced, never cut (a cut id matches nothing)
# Letters, digits and . _ : - only: safe in a header, a log line and a Prometheus exemplar.
_SAFE = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % MAX_LENGTH)

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

M = TypeVar("M", bound=Message)


def new_request_id() -> str:
    """A fresh id: 32 hex digits (128 random bits, like a UUID without dashes)."""
    return os.urandom(16).hex()


def valid_request_id(raw: bytes | str | None) -> str | None:
    """`raw` as an id when it is 1–128 safe characters, else None (the caller makes one)."""
    if raw is None:
        return None
    data = raw.encode("latin-1", "replace") if isinstance(raw, str) else raw
    return data.decode("ascii") if _SAFE.fullmatch(data) else None


def current_request_id() -> str | None:
    """The id of the request (or bus message) being handled, if any."""
    return _current.get()


@contextmanager
def request_scope(request_id: str | None) -> Iterator[None]:
    """Make `request_id` current inside the block (None: no id), restoring the outer one after."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def bind_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    """Make `request_id` current until `unbind_request_id(token)` (for ASGI middleware)."""
    return _current.set(request_id)


def unbind_request_id(token: contextvars.Token[str | None]) -> None:
    """Restore the id that was current before `bind_request_id`."""
    _current.reset(token)


def with_request_id(message: M, request_id: str | None = None) -> M:
    """`message` carrying `request_id` (default: the current one) when its model has the field
    and none is set yet; otherwise `message` itself."""
    request_id = request_id or _current.get()
    if (
        request_id is None
        or "request_id" not in type(message).model_fields
        or getattr(message, "request_id", None) is not None
    ):
        return message
    return message.model_copy(update={"request_id": request_id})


def tag_messages(messages: MutableSequence[Message], start: int, request_id: str | None) -> None:
    """Give the messages from index `start` on `request_id` (those whose model carries one)."""
    if request_id is not None:
        for i in range(start, len(messages)):
            messages[i] = with_request_id(messages[i], request_id)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to a record written while a request id is current (an explicit
    `extra={"request_id": ...}` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = _current.get()
            if request_id is not None:
                record.request_id = request_id
        return True
