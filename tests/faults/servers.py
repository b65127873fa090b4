"""Private PostgreSQL, Redis and Mosquitto for the fault tests, each one stoppable (cleanly or with
SIGKILL) and startable again on the same port over the same data: PostgreSQL keeps its data
directory, Redis appends to an AOF, Mosquitto persists its sessions and queued QoS 1 messages.

The machine's own servers (tests/support/servers.py finds them first) are shared with everybody
and cannot be restarted, so a fault test always starts its own from the installed binaries.
"""

from __future__ import annotations

import abc
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import (
    ServerUnavailableError,
    _wait_port,
    _which,
    free_port,
    port_open,
)

STOP_TIMEOUT_S = 30.0  # for a clean shutdown, then SIGKILL
GONE_TIMEOUT_S = 30.0  # for every process of a killed server to be gone and its port closed


class PrivateServer(abc.ABC):
    """One server process on a fixed port over a data directory that outlives the process."""

    name = "server"
    clean_signal = signal.SIGTERM  # the signal that asks for a clean shutdown

    def __init__(self, base: Path) -> None:
        self.base = base
        base.chmod(0o755)  # servers that drop to their own user must reach their data below
        self.data = base / "data"
        self.data.mkdir()
        self.port = free_port()
        self.log_path = base / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    def popen_options(self) -> dict[str, Any]:
        """Extra `Popen` arguments (the user to run as)."""
        return {}

    @property
    def running(self) -> bool:
        """True while its process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (again) on the same port and data; returns once the port accepts connections."""
        if self.running:
            return
        if port_open("127.0.0.1", self.port):
            raise ServerUnavailableError(
                f"{self.name}: port {self.port} is taken by another process"
            )
        with self.log_path.open("ab") as log:
            # A session of its own: a kill reaches every process of the server (postgres' backends).
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.popen_options(),
            )
        try:
            _wait_port(self.port, self.proc, self.name)
        except ServerUnavailableError as exc:
            raise ServerUnavailableError(f"{exc}\n{self.tail()}") from None
        self.starts += 1

    def stop(self, *, kill: bool = False) -> None:
        """Stop: a clean shutdown, or SIGKILL to every process of the server (`kill`)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if kill:
                _signal_group(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(self.clean_signal)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        # Killed postgres backends outlive their postmaster for a moment; start() needs them
        # gone (shared memory) and the port free.
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while _group_alive(proc.pid) or port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise ServerUnavailableError(f"{self.name} still running after it was stopped")
            time.sleep(0.05)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again at once."""
        self.stop(kill=kill)
        self.start()

    def tail(self, lines: int = 20) -> str:
        """The end of its log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Stop it for good (SIGKILL: nothing is kept) and remove its directory."""
        with contextlib.suppress(ServerUnavailableError):
            self.stop(kill=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process belongs to process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields after the command name (which may hold spaces): state, ppid, pgrp, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _as_user(name: str) -> dict[str, Any]:
    """Popen options that run a child as system user `name` when we are root, else nothing."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _own(path: Path, user: str) -> None:
    """Give `path` and what it holds to `user` when we are root (servers refuse to run as root
    or drop to their own user)."""
    if os.geteuid() != 0:
        return
    for item in [path, *path.rglob("*")]:
        shutil.chown(item, user, user)


class PostgresServer(PrivateServer):
    """PostgreSQL over a data directory made once by initdb; trust authentication."""

    name = "postgres"
    clean_signal = signal.SIGINT  # "fast" shutdown: ends the sessions instead of waiting for them

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        initdb = _which("initdb", "/usr/lib/postgresql/*/bin/initdb")
        if initdb is None:
            raise ServerUnavailableError(
                "the fault tests need PostgreSQL's binaries: apt-get install postgresql"
            )
        self.bindir = Path(initdb).parent
        _own(base, "postgres")
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
            **self.popen_options(),
        )

    @property
    def url(self) -> str:
        """The maintenance database's URL."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def popen_options(self) -> dict[str, Any]:
        return _as_user("postgres")

    def command(self) -> list[str]:
        return [
            str(self.bindir / "postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.base),
            "-h", "127.0.0.1",
            # Durable against a killed server (the kernel still has the pages), not a lost machine.
            "-c", "fsync=off",
            "-c", "max_connections=200",
        ]  # fmt: skip


class RedisServer(PrivateServer):
    """Redis with an append-only file: streams, groups and pending entries survive a restart."""

    name = "redis"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        binary = _which("redis-server")
        if binary is None:
            raise ServerUnavailableError("the fault tests need Redis: apt-get install redis-server")
        self.binary = binary

    @property
    def url(self) -> str:
        """Its URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data),
            "--save", "",
            "--appendonly", "yes",
            # Every write reaches the file (the kernel) before Redis answers; a killed server
            # loses nothing, only a lost machine the last second.
            "--appendfsync", "everysec",
        ]  # fmt: skip

    def forget(self) -> None:
        """Delete what it persisted (while stopped): the next start begins empty, like a Redis
        without persistence that restarted."""
        assert not self.running, "stop it first"
        shutil.rmtree(self.data)
        self.data.mkdir()


class MosquittoServer(PrivateServer):
    """Mosquitto, anonymous, persisting sessions and queued QoS 1 messages to its data directory
    (on a clean stop, and every second)."""

    name = "mosquitto"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        binary = _which("mosquitto", "/usr/sbin/mosquitto")
        if binary is None:
            raise ServerUnavailableError(
                "the fault tests need Mosquitto: apt-get install mosquitto"
            )
        self.binary = binary
        self.conf = base / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.data}/\n"
            "autosave_interval 1\n"
            # As deploy/ does: the default 1,000 would drop QoS 1 messages of a long outage.
            "max_queued_messages 1000000\n"
        )
        # Run as root, Mosquitto drops to its own user, which must be able to write the data.
        with contextlib.suppress(KeyError):
            _own(self.data, "mosquitto")

    @property
    def url(self) -> str:
        """Its URL, as `CITYHUB_MQTT_URL` takes it."""
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf)]


@dataclass
class FaultServers:
    """The three servers of a fault test."""

    postgres: PostgresServer
    redis: RedisServer
    mosquitto: MosquittoServer

    def close(self) -> None:
        """Stop all three and remove their data."""
        for server in (self.mosquitto, self.redis, self.postgres):
            server.close()


def _base(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"cityhub-fault-{name}-"))


@contextlib.contextmanager
def private_servers() -> Iterator[FaultServers]:
    """Start a private PostgreSQL, Redis and Mosquitto; stop them and remove their data after."""
    made: list[PrivateServer] = []
    try:
        postgres = PostgresServer(_base("postgres"))
        made.append(postgres)
        redis = RedisServer(_base("redis"))
        made.append(redis)
        mosquitto = MosquittoServer(_base("mosquitto"))
        made.append(mosquitto)
        for server in made:
            server.start()
        yield FaultServers(postgres, redis, mosquitto)
    finally:
        for server in reversed(made):
            server.close()
