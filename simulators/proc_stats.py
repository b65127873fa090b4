"""CPU and resident memory of processes, read from /proc (Linux), for the benchmarks: what each
process of a run used while it was measured, and what the machine did meanwhile."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SAMPLE_S = 1.0  # sampling period
MACHINE = "machine"  # the group name of the whole machine (every core)
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process used so far; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def rss_mb(pid: int) -> float | None:
    """A process's resident memory (VmRSS) in MiB; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling or waiting for I/O, since boot."""
    # cpu: user nice system idle iowait irq softirq steal
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICK


@dataclass
class Sampler:
    """CPU (% of one core) and resident memory of named process groups, sampled each second;
    the machine's CPU is sampled as the group `machine` (up to 100 % × cores)."""

    groups: dict[str, Callable[[], Sequence[int]]]  # name → its pids now
    no_rss: frozenset[str] = frozenset()  # groups whose RSS sum means nothing (shared buffers)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[float]] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)  # CPU seconds over the samples

    async def run(self, start: float, end: float) -> None:
        """Sample from `start` to `end` (POSIX times)."""
        await asyncio.sleep(max(start - time.time(), 0))
        last = self._read()
        while time.time() < end - SAMPLE_S / 2:
            await asyncio.sleep(SAMPLE_S)
            now = self._read()
            elapsed = now["_wall"][0] - last["_wall"][0]
            for name, seen in now.items():
                if name == "_wall":
                    continue
                before = last.get(name, {})
                used = sum(cpu - before[pid] for pid, cpu in seen.items() if pid in before)
                self.cpu.setdefault(name, []).append(100 * used / elapsed)
                self.used[name] = self.used.get(name, 0.0) + used
            for name, pids in self.groups.items():
                if name not in self.no_rss:
                    rss = sum(rss_mb(pid) or 0.0 for pid in pids())
                    self.rss.setdefault(name, []).append(rss)
            last = now

    def _read(self) -> dict[str, dict[int, float]]:
        found: dict[str, dict[int, float]] = {"_wall": {0: time.monotonic()}}
        for name, pids in self.groups.items():
            found[name] = {pid: cpu for pid in pids() if (cpu := cpu_seconds(pid)) is not None}
        found[MACHINE] = {0: machine_busy_seconds()}
        return found

    def summary(self) -> dict[str, dict[str, float]]:
        """Median and max CPU %, and median and max RSS (MiB), per group."""
        out = {}
        for name, values in self.cpu.items():
            row = {"cpu_median": statistics.median(values), "cpu_max": max(values)}
            if self.rss.get(name):
                row["rss_median_mb"] = statistics.median(self.rss[name])
                row["rss_max_mb"] = max(self.rss[name])
            out[name] = {k: round(v, 1) for k, v in row.items()}
        return out


def machine_facts(load_before: tuple[float, float, float], started_at: datetime) -> dict[str, Any]:
    """The machine, and how busy it was around a run (other work may share it)."""
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "system": platform.platform(),
        "python": platform.python_version(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "started_at": started_at.isoformat(timespec="seconds"),
    }
