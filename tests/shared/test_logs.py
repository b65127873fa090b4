"""Process logging: quiet libraries by default, their details at debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared.logs import CHATTY_LOGGERS, configure_logging, is_debug
from shared.settings import Settings


@pytest.fixture
def restore_levels() -> Iterator[None]:
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    saved_root = root.level
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    root.setLevel(saved_root)


def test_chatty_libraries_are_quiet_unless_debugging(restore_levels: None) -> None:
    configure_logging("info")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("amqtt.broker").isEnabledFor(logging.INFO)
    assert logging.getLogger("amqtt.broker").isEnabledFor(logging.WARNING)
    configure_logging("DEBUG")
    logging.getLogger().setLevel(logging.DEBUG)
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("transitions.core").isEnabledFor(logging.DEBUG)


def test_log_level_setting_takes_any_case_and_refuses_nonsense() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"
    assert is_debug(Settings(log_level="debug").log_level)
    assert not is_debug(Settings().log_level)
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="loud")
