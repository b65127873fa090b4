"""Process logging: quiet libraries by default, their details at debug; one JSON object per line
(or readable text) with the current request id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.logs import CHATTY_LOGGERS, HubHandler, choose_format, configure_logging, is_debug
from shared.settings import Settings
from shared.telemetry.request_id import request_scope

logger = logging.getLogger("cityhub.test")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_levels() -> Iterator[None]:
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    saved_root = root.level
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    root.setLevel(saved_root)
    for handler in [h for h in root.handlers if isinstance(h, HubHandler)]:
        root.removeHandler(handler)


def test_chatty_libraries_are_quiet_unless_debugging(restore_levels: None) -> None:
    configure_logging("info", stream=io.StringIO())
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("amqtt.broker").isEnabledFor(logging.INFO)
    assert logging.getLogger("amqtt.broker").isEnabledFor(logging.WARNING)
    configure_logging("DEBUG", stream=io.StringIO())
    logging.getLogger().setLevel(logging.DEBUG)
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("transitions.core").isEnabledFor(logging.DEBUG)


def test_log_level_setting_takes_any_case_and_refuses_nonsense() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"
    assert is_debug(Settings(log_level="debug").log_level)
    assert not is_debug(Settings().log_level)
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="loud")


def test_json_lines_carry_level_logger_message_context_and_request_id(
    restore_levels: None,
) -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logger.info("event %s stored", "e-1", extra={"event_id": "e-1"})
    with request_scope("req-9"):
        logger.warning("两行\nin one line")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    logger.debug("not at info")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3  # a traceback and a newline stay inside their line
    first, second, third = lines
    assert list(first)[:4] == ["timestamp", "level", "logger", "message"]
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "cityhub.test",
        "event e-1 stored",
    )
    assert first["event_id"] == "e-1" and "request_id" not in first
    assert (second["message"], second["request_id"]) == ("两行\nin one line", "req-9")
    assert third["request_id"] == "req-9" and "RuntimeError: boom" in third["exc_info"]


def test_text_lines_name_the_request_id(restore_levels: None) -> None:
    out = io.StringIO()
    configure_logging("info", "text", stream=out)
    with request_scope("req-7"):
        logger.info("hello")
    logger.info("outside")
    inside, outside = out.getvalue().splitlines()
    assert inside.endswith("INFO cityhub.test: hello [request_id=req-7]")
    assert outside.endswith("INFO cityhub.test: outside")


def test_format_defaults_to_text_on_a_terminal_and_json_elsewhere(restore_levels: None) -> None:
    assert choose_format(None, Terminal()) == "text"
    assert choose_format(None, io.StringIO()) == "json"
    assert choose_format("json", Terminal()) == "json"
    assert Settings(log_format="text").log_format == "text"
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="xml")
    configure_logging("info", stream=io.StringIO())
    configure_logging("info", stream=io.StringIO())
    root = logging.getLogger()
    assert sum(isinstance(h, HubHandler) for h in root.handlers) == 1  # replaced, not added
