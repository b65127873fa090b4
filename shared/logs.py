"""Process logging: one JSON object per line (or readable text in a terminal), the level from
`CITYHUB_LOG_LEVEL`, the current request id on every line, chatty libraries kept quiet."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

from shared.telemetry.request_id import RequestIdFilter

LogFormat = Literal["json", "text"]

# Libraries that log at INFO for every request, connection or state change (httpx: a line per
# simulated call; amqtt and its `transitions` state machine: several lines per MQTT client). Their
# details are for debugging: shown only at CITYHUB_LOG_LEVEL=debug.
CHATTY_LOGGERS = ("httpx", "httpcore", "amqtt", "transitions", "uvicorn.access")
# A JSON line's fixed keys (record attribute → key); `extra={...}` fields follow them.
JSON_FIELDS = {"levelname": "level", "name": "logger", "message": "message"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HubHandler(logging.StreamHandler[TextIO]):
    """The one handler `configure_logging` installs on the root logger (and replaces)."""


class TextFormatter(logging.Formatter):
    """The readable line, ending in `[request_id=…]` when a request id is current."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return line if request_id is None else f"{line} [request_id={request_id}]"


class JsonFormatter(OrjsonFormatter):
    """`{"timestamp", "level", "logger", "message", <extra fields>, "request_id"}` per line (UTC
    ISO 8601 timestamp); a traceback goes in `exc_info` as one string, so a line stays a line."""

    def __init__(self) -> None:
        super().__init__(list(JSON_FIELDS), rename_fields=dict(JSON_FIELDS), timestamp=True)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {"timestamp": log_data.pop("timestamp"), **log_data}  # first, for people too


def choose_format(log_format: LogFormat | None, stream: TextIO) -> LogFormat:
    """`log_format` when set (CITYHUB_LOG_FORMAT); else text for a person at a terminal, JSON for
    anything else (a service manager, a container runtime, a file)."""
    if log_format is not None:
        return log_format
    return "text" if stream.isatty() else "json"


def configure_logging(
    level: str, log_format: LogFormat | None = None, *, stream: TextIO | None = None
) -> logging.Handler:
    """Log at `level` (a logging level name) to `stream` (stderr) through one handler; chatty
    libraries only from WARNING unless debugging. Returns the handler (tests remove it)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    out = stream or sys.stderr
    handler = HubHandler(out)
    if choose_format(log_format, out) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, HubHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet = numeric > logging.DEBUG
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    return handler


def is_debug(level: str) -> bool:
    """True when `level` asks for debugging details."""
    return logging.getLevelNamesMapping()[level.upper()] <= logging.DEBUG
