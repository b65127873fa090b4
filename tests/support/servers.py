"""Find or start the real servers the tests need: PostgreSQL, Redis and Mosquitto.

Order for each: an explicit `CITYHUB_TEST_*_URL`; the server on its standard local port; else the
installed binary started on a free port in a temporary directory for this test session. When none of
these works the session stops with a message naming what to install. Set
`CITYHUB_TEST_START_SERVERS=1` to skip the standard ports and always start private servers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0


class ServerUnavailableError(RuntimeError):
    """No server could be found or started; the message says what to install."""


@dataclass
class Servers:
    """The servers of one test session, and the processes it started (stopped at the end)."""

    postgres_url: str = ""
    redis_url: str = ""
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 0
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _dirs: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)


def _force_private() -> bool:
    return os.environ.get("CITYHUB_TEST_START_SERVERS") == "1"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return
        if proc.poll() is not None:
            raise ServerUnavailableError(f"{what} exited with code {proc.returncode} on start")
        time.sleep(0.05)
    raise ServerUnavailableError(f"{what} did not open port {port} in {START_TIMEOUT_S:.0f} s")


def _which(name: str, *extra_globs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


def _postgres(servers: Servers) -> str:
    if url := os.environ.get("CITYHUB_TEST_DATABASE_URL"):
        return url
    if not _force_private() and port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    initdb = _which("initdb", "/usr/lib/postgresql/*/bin/initdb")
    if initdb is None:
        raise ServerUnavailableError(
            "PostgreSQL is needed for the tests: install it (apt-get install postgresql) "
            "or set CITYHUB_TEST_DATABASE_URL=postgresql://user@host:port/db"
        )
    bindir = Path(initdb).parent
    datadir = tempfile.mkdtemp(prefix="cityhub-pg-")
    servers._dirs.append(datadir)
    # PostgreSQL refuses to run as root: run it as the `postgres` system user when we are root.
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", datadir, "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            datadir,
            "-p",
            str(port),
            "-k",
            datadir,
            "-h",
            "127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers._procs.append(proc)
    _wait_port(port, proc, "postgres")
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _redis(servers: Servers) -> str:
    if url := os.environ.get("CITYHUB_TEST_REDIS_URL"):
        return url
    if not _force_private() and port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    binary = _which("redis-server")
    if binary is None:
        raise ServerUnavailableError(
            "Redis is needed for the tests: install it (apt-get install redis-server) "
            "or set CITYHUB_TEST_REDIS_URL=redis://host:port/0"
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers._procs.append(proc)
    _wait_port(port, proc, "redis-server")
    return f"redis://127.0.0.1:{port}/0"


def _mosquitto(servers: Servers) -> tuple[str, int]:
    if url := os.environ.get("CITYHUB_TEST_MQTT_URL"):
        host, _, given = url.removeprefix("mqtt://").partition(":")
        return host, int(given or 1883)
    if not _force_private() and port_open("127.0.0.1", 1883):
        return "127.0.0.1", 1883
    port = free_port()
    confdir = tempfile.mkdtemp(prefix="cityhub-mqtt-")
    servers._dirs.append(confdir)
    servers._procs.append(start_mosquitto(port, Path(confdir)))
    return "127.0.0.1", port


def start_mosquitto(port: int, confdir: Path) -> subprocess.Popen[bytes]:
    """An anonymous Mosquitto without persistence on 127.0.0.1:port, once it listens."""
    binary = _which("mosquitto", "/usr/sbin/mosquitto")
    if binary is None:
        raise ServerUnavailableError(
            "Mosquitto is needed for the tests: install it (apt-get install mosquitto) "
            "or set CITYHUB_TEST_MQTT_URL=mqtt://host:port"
        )
    conf = confdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, proc, "mosquitto")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@contextlib.contextmanager
def running_servers() -> Iterator[Servers]:
    """Yield reachable PostgreSQL, Redis and Mosquitto; stop whatever this call started."""
    servers = Servers()
    try:
        servers.postgres_url = _postgres(servers)
        servers.redis_url = _redis(servers)
        servers.mqtt_host, servers.mqtt_port = _mosquitto(servers)
        yield servers
    finally:
        servers.stop()
