"""Settings come from CITYHUB_* variables; unset backends mean embedded mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.embedded
    assert settings.sqlalchemy_url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'cityhub.sqlite3'}"
    assert settings.mqtt_endpoint == ("127.0.0.1", 1883)
    assert settings.http_port == 8000


def test_environment_selects_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_DATABASE_URL", "postgresql://hub@db:5432/hub")
    monkeypatch.setenv("CITYHUB_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("CITYHUB_MQTT_URL", "mqtt://broker:1884")
    monkeypatch.setenv("CITYHUB_HTTP_PORT", "9000")
    settings = Settings()
    assert not settings.embedded
    assert settings.sqlalchemy_url == "postgresql+asyncpg://hub@db:5432/hub"
    assert settings.mqtt_endpoint == ("broker", 1884)
    assert settings.http_port == 9000


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_DATABASE_URL", "")
    monkeypatch.setenv("CITYHUB_REDIS_URL", "")
    assert Settings().embedded
