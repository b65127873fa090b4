"""Run `cityhub` commands and services as real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from shared.settings import Settings

CLI = [sys.executable, "-m", "services"]
START_TIMEOUT_S = 60.0


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run one `cityhub` command to completion."""
    return subprocess.run(
        [*CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@contextmanager
def service(env: dict[str, str], *args: str, health_url: str) -> Iterator[subprocess.Popen[str]]:
    """Start `cityhub ARGS` and wait until `health_url` answers 200; stop it afterwards."""
    proc = subprocess.Popen(
        [*CLI, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"`cityhub {' '.join(args)}` exited early:\n{output}")
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{health_url} not healthy after {START_TIMEOUT_S} s")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        if proc.stdout:
            proc.stdout.close()


def production_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of `cityhub` processes on the test's PostgreSQL, Redis and bus prefix."""
    assert settings.database_url and settings.redis_url and settings.jwt_secret
    return {
        "CITYHUB_DATABASE_URL": settings.database_url,
        "CITYHUB_REDIS_URL": settings.redis_url,
        "CITYHUB_BUS_PREFIX": settings.bus_prefix,
        "CITYHUB_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "CITYHUB_DATA_DIR": str(settings.data_dir),
        "CITYHUB_MQTT_URL": "mqtt://127.0.0.1:1",  # unused by these services; never embedded
        **extra,
    }
