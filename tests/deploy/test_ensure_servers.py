"""scripts/ensure-servers, which `make pytest` runs first on a fresh machine: quiet and quick
when PostgreSQL, Redis and Mosquitto are installed; otherwise, when not root, exit 1 with the one
apt-get command; as root, apt-get install (tried here with a stand-in apt-get: nothing is
installed or removed on this machine)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.files import ROOT

SCRIPT = ROOT / "scripts" / "ensure-servers"
QUICK_S = 10.0  # "quick" on a loaded machine: the script only looks at a few directories
BINARIES = ("initdb", "postgres", "redis-server", "mosquitto")


def _run(search_path: str, *, assume_not_root: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CITYHUB_SERVER_SEARCH_PATH": search_path}
    if assume_not_root:
        env["CITYHUB_ASSUME_NOT_ROOT"] = "1"
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _fake_bin(directory: Path, names: tuple[str, ...]) -> str:
    directory.mkdir()
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return str(directory)


def test_nothing_missing_exits_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _run(_fake_bin(tmp_path / "bin", BINARIES))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert time.monotonic() - started < QUICK_S


def test_this_machines_servers_are_found() -> None:
    done = _run(os.environ["PATH"] + ":/usr/sbin:" + ":".join(_postgres_bins()))
    if done.returncode != 0:
        pytest.fail(f"servers missing here although the tests run on them: {done.stderr}")


def test_missing_servers_name_the_one_command(tmp_path: Path) -> None:
    done = _run(str(tmp_path / "empty"))
    assert done.returncode == 1
    assert "sudo apt-get install -y postgresql redis-server mosquitto" in done.stderr


def test_only_what_is_missing_is_named(tmp_path: Path) -> None:
    done = _run(_fake_bin(tmp_path / "bin", ("initdb", "postgres", "redis-server")))
    assert done.returncode == 1
    assert "sudo apt-get install -y mosquitto\n" in done.stderr


def _postgres_bins() -> list[str]:
    return sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the install branch runs only as root")
def test_as_root_missing_servers_are_installed_with_apt_get(tmp_path: Path) -> None:
    """With a stand-in apt-get first on PATH (nothing is installed): the first install fails as
    on a machine with a stale package list, so the script updates the list and tries again."""
    calls = tmp_path / "calls"
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'[ "$1" = install ] && [ "$(grep -c ^update {calls})" = 0 ] && exit 100\n'
        "exit 0\n"
    )
    (fake / "apt-get").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "CITYHUB_SERVER_SEARCH_PATH": _fake_bin(tmp_path / "bin", ("redis-server",)),
    }
    done = subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["install", "update", "install"]
    assert lines[-1].endswith("--no-install-recommends postgresql mosquitto")
    assert "-y" in lines[-1].split()
