"""Mosquitto password-file hashes (`mosquitto_passwd` format `$7$`: PBKDF2-HMAC-SHA512)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's default; keys are 256-bit random, not passwords
SALT_BYTES = 12  # as mosquitto_passwd


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = 0) -> str:
    """`$7$<iterations>$<base64 salt>$<base64 hash>`, as Mosquitto 2's password file wants."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    rounds = iterations or MOSQUITTO_ITERATIONS
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${rounds}${encoded_salt}${base64.b64encode(digest).decode()}"


def mosquitto_verify(password: str, stored: str) -> bool:
    """True when `password` matches a `$7$` hash."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        rounds = int(parts[2])
    except ValueError:
        return False
    return hmac.compare_digest(mosquitto_hash(password, salt=salt, iterations=rounds), stored)
