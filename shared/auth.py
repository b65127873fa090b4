"""Auth primitives: roles, scopes, password and API-key hashing, JWTs (no web or database here)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import ConfigError, HubError
from shared.settings import PLACEHOLDER_SECRETS, Settings

Role = Literal["admin", "dispatcher", "field_staff", "manager", "integrator"]
ROLES: tuple[Role, ...] = get_args(Role)
ScopeLevel = Literal["city", "district", "street"]
# Integrators authenticate only with their API keys, never with a password or a token
# (docs/decisions/0011-integrator-identity.md).
KEY_ONLY_ROLES: frozenset[Role] = frozenset({"integrator"})
JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "chk_"  # makes leaked keys easy to recognise in logs and secret scanners
REFRESH_TOKEN_PREFIX = "chr_"  # the same for refresh tokens (docs/decisions/0014)
MIN_PASSWORD_LENGTH = 10  # characters, for every new password (API, CLI, password change)
MAX_PASSWORD_LENGTH = 1_000  # characters: a passphrase, not a payload to hash

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a user may see and act: the whole city, one district centre or one street."""

    level: ScopeLevel
    code: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse `city`, `district:<centre_id>` or `street:<code>`."""
        if text == "city":
            return cls("city")
        level, _, code = text.partition(":")
        if level in ("district", "street") and code:
            return cls(level, code)  # type: ignore[arg-type]  # narrowed by the check above
        raise HubError(f"invalid scope {text!r}: use city, district:<code> or street:<code>", 422)

    def __str__(self) -> str:
        return self.level if self.code is None else f"{self.level}:{self.code}"

    def covers(self, district: str | None, street: str | None) -> bool:
        """True when a thing located in (district, street) lies inside this scope."""
        if self.level == "city":
            return True
        if self.level == "district":
            return district == self.code
        return street == self.code


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a signed-in user or an integrator's API key."""

    subject: str  # username or key name
    role: Role
    scope: Scope
    department: str | None = None
    via: Literal["token", "api_key"] = "token"
    login: str | None = None  # the sign-in a token belongs to (claim `sid`); None for keys


def owner_limit(principal: Principal) -> str | None:
    """The owner an integrator's reads are limited to (its own name: the events it submitted,
    the sensors it owns); None for users, whom their role and scope limit instead."""
    return principal.subject if principal.role in KEY_ONLY_ROLES else None


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches the stored argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_new_password(password: str) -> None:
    """Refuse (422) a new password shorter than `MIN_PASSWORD_LENGTH` or absurdly long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise HubError(f"password must have at least {MIN_PASSWORD_LENGTH} characters", 422)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise HubError(f"password must have at most {MAX_PASSWORD_LENGTH} characters", 422)
    try:
        password.encode()  # JSON may carry lone surrogates, which UTF-8 (and argon2) cannot
    except UnicodeEncodeError as exc:
        raise HubError("password must be Unicode text (a lone surrogate is not)", 422) from exc


def new_api_key() -> str:
    """A fresh random API key (shown once, stored only as its hash)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """SHA-256 of a key: keys carry 256 random bits, so a slow hash adds nothing but latency."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_refresh_token() -> str:
    """A fresh opaque refresh token (stored only as its `hash_api_key` digest)."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_token(
    principal: Principal,
    secret: str,
    ttl_s: int,
    now: datetime | None = None,
    login: str | None = None,
) -> str:
    """A signed short-lived JWT for a user; `login` (claim `sid`) names its sign-in session."""
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": principal.subject,
        "role": principal.role,
        "scope": str(principal.scope),
        "dept": principal.department,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_s),
        "jti": uuid.uuid4().hex,
    }
    if login is not None:
        claims["sid"] = login
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def read_token(token: str, secret: str) -> Principal:
    """Verify a JWT and return its principal; raises a 401 `HubError` when invalid or expired."""
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp"]})
        role = claims["role"]
        if role not in ROLES:
            raise HubError("invalid token role", 401)
        if role in KEY_ONLY_ROLES:  # a token issued before integrators lost password sign-in
            raise HubError(f"a {role} authenticates with its API key (X-API-Key), not a token", 401)
        login = claims.get("sid")
        if login is not None and not isinstance(login, str):
            raise HubError("invalid token session", 401)
        return Principal(
            claims["sub"], role, Scope.parse(claims["scope"]), claims.get("dept"), login=login
        )
    except (jwt.PyJWTError, KeyError) as exc:
        raise HubError(f"invalid or expired token: {exc}", 401) from exc


def resolve_jwt_secret(settings: Settings) -> str:
    """The signing secret: configured (required outside embedded mode) or kept in the data dir."""
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
        if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < 16:
            raise ConfigError(
                "CITYHUB_JWT_SECRET is a placeholder or shorter than 16 characters: "
                "set a long random value (e.g. `openssl rand -hex 32`)"
            )
        return secret
    if not settings.embedded:
        raise ConfigError(
            "CITYHUB_JWT_SECRET is not set: production mode needs a signing secret "
            "(e.g. `openssl rand -hex 32`)"
        )
    path: Path = settings.data_dir / "jwt_secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()
