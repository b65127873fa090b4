"""Auth primitives: scopes, passwords, API keys, tokens and the signing-secret policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.auth import (
    Principal,
    Scope,
    hash_api_key,
    hash_password,
    issue_token,
    new_api_key,
    owner_limit,
    read_token,
    resolve_jwt_secret,
    verify_password,
)
from shared.errors import ConfigError, HubError
from shared.settings import Settings

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "level", "code"),
    [
        ("city", "city", None),
        ("district:500103", "district", "500103"),
        ("street:500103001", "street", "500103001"),
        ("district:LJXQ", "district", "LJXQ"),
    ],
)
def test_scope_parse_round_trips(text: str, level: str, code: str | None) -> None:
    scope = Scope.parse(text)
    assert (scope.level, scope.code, str(scope)) == (level, code, text)


@pytest.mark.parametrize("text", ["", "town:1", "district:", "street", "City"])
def test_scope_parse_refuses_garbage(text: str) -> None:
    with pytest.raises(HubError) as err:
        Scope.parse(text)
    assert err.value.status_code == 422


def test_scope_covers() -> None:
    assert Scope.parse("city").covers(None, None)
    district = Scope.parse("district:500103")
    assert district.covers("500103", "500103001")
    assert not district.covers("500104", "500104001")
    assert not district.covers(None, None)
    street = Scope.parse("street:500103001")
    assert street.covers("500103", "500103001")
    assert not street.covers("500103", "500103002")


def test_passwords_hash_with_argon2() -> None:
    stored = hash_password("correct-horse")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct-horse")
    assert not verify_password(stored, "wrong-horse")
    assert not verify_password("not-a-hash", "correct-horse")


def test_api_keys_are_random_and_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b and a.startswith("chk_") and len(a) > 40
    assert hash_api_key(a) == hash_api_key(a) != hash_api_key(b)
    assert a not in hash_api_key(a)


def test_token_round_trip_and_expiry() -> None:
    who = Principal("ana", "dispatcher", Scope.parse("district:500103"))
    token = issue_token(who, SECRET, ttl_s=60)
    assert read_token(token, SECRET) == who
    with pytest.raises(HubError) as wrong:
        read_token(token, SECRET + "x")
    assert wrong.value.status_code == 401
    old = issue_token(who, SECRET, ttl_s=60, now=datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(HubError, match="expired"):
        read_token(old, SECRET)


def test_integrators_hold_no_tokens() -> None:
    token = issue_token(Principal("crm", "integrator", Scope.parse("city")), SECRET, ttl_s=60)
    with pytest.raises(HubError, match="API key") as refused:
        read_token(token, SECRET)
    assert refused.value.status_code == 401


def test_integrators_read_only_their_own_whatever_their_scope() -> None:
    key = Principal("crm", "integrator", Scope.parse("city"), via="api_key")
    assert owner_limit(key) == "crm"
    assert owner_limit(Principal("crm", "integrator", Scope.parse("street:500103001"))) == "crm"
    for role in ("admin", "dispatcher", "field_staff", "manager"):
        assert owner_limit(Principal("ana", role, Scope.parse("city"))) is None  # scope decides


def test_embedded_mode_generates_and_keeps_a_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = resolve_jwt_secret(settings)
    assert len(first) == 64
    assert resolve_jwt_secret(settings) == first
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


def test_production_refuses_missing_or_placeholder_secret(tmp_path: Path) -> None:
    prod = {"data_dir": tmp_path, "database_url": "postgresql://x/y", "redis_url": "redis://x"}
    with pytest.raises(ConfigError, match="CITYHUB_JWT_SECRET is not set"):
        resolve_jwt_secret(Settings(**prod))  # type: ignore[arg-type]
    for weak in ("changeme", "secret", "short"):
        with pytest.raises(ConfigError, match="placeholder or shorter"):
            resolve_jwt_secret(Settings(**prod, jwt_secret=weak))  # type: ignore[arg-type]
    assert resolve_jwt_secret(Settings(**prod, jwt_secret=SECRET)) == SECRET  # type: ignore[arg-type]
