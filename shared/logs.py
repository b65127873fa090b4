"""Process logging: one format, the level from `CITYHUB_LOG_LEVEL`, chatty libraries kept quiet."""

from __future__ import annotations

import logging

# Libraries that log at INFO for every request, connection or state change (httpx: a line per
# simulated call; amqtt and its `transitions` state machine: several lines per MQTT client). Their
# details are for debugging: shown only at CITYHUB_LOG_LEVEL=debug.
CHATTY_LOGGERS = ("httpx", "httpcore", "amqtt", "transitions", "uvicorn.access")


def configure_logging(level: str) -> None:
    """Log at `level` (a logging level name); chatty libraries only from WARNING unless debug."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(level=numeric, format="%(levelname)s %(name)s: %(message)s")
    quiet = numeric > logging.DEBUG
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)


def is_debug(level: str) -> bool:
    """True when `level` asks for debugging details."""
    return logging.getLevelNamesMapping()[level.upper()] <= logging.DEBUG
