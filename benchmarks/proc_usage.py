"""Where a machine's CPU goes over a window: per-command CPU time from /proc, and resident memory.

Every process's utime + stime (``/proc/PID/stat``) is read at the start and the end of a
window and summed by command name (``comm``), so the table shows which programs used the
cores (dockerd, containerd-shim, tmux, the agents, ...). Processes that start or end
inside the window count with what they used while visible. The machine's idle share comes
from ``/proc/stat``.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

__all__ = ["CpuSnapshot", "cgroup_cpu_ns", "cpu_by_command", "machine_shares", "machine_ticks", "rss_mib",
           "snapshot"]

_TICK = os.sysconf("SC_CLK_TCK")

CpuSnapshot = dict[int, tuple[str, int]]   # pid -> (comm, utime + stime in clock ticks)


def snapshot() -> CpuSnapshot:
    """Every visible process's command name and CPU ticks so far."""
    out: CpuSnapshot = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def cpu_by_command(before: CpuSnapshot, after: CpuSnapshot, seconds: float,
                   names: dict[int, str] | None = None) -> Counter[str]:
    """Percent of one core per command name over the window between two snapshots.

    ``names`` labels known processes (pid -> label) instead of their command name.
    """
    used: Counter[str] = Counter()
    for pid, (comm, ticks) in after.items():
        start = before.get(pid)
        base = start[1] if start is not None and start[0] == comm else 0
        used[(names or {}).get(pid, comm)] += ticks - base
    return Counter({comm: t / _TICK / seconds * 100 for comm, t in used.items() if t > 0})


def machine_ticks() -> dict[str, int]:
    """Clock ticks of all CPUs since boot: busy (all but idle and iowait), irq (hard + soft), steal."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return {"busy": f[0] + f[1] + f[2] + f[5] + f[6] + f[7], "irq": f[5] + f[6], "steal": f[7],
            "idle": f[3] + f[4]}


def machine_shares(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Percent of one core of each :func:`machine_ticks` figure over the window."""
    return {k: (after[k] - before[k]) / _TICK / seconds * 100 for k in before}


def cgroup_cpu_ns() -> dict[str, int]:
    """CPU nanoseconds of every task (the root cgroup) and of all containers (``docker``), cgroup v1.

    Unlike per-process figures these include processes that ended; empty when not available.
    """
    root = Path("/sys/fs/cgroup/cpuacct")
    out: dict[str, int] = {}
    for name, path in (("all tasks", root), ("all containers", root / "docker")):
        with contextlib.suppress(OSError, ValueError):
            out[name] = int((path / "cpuacct.usage").read_text())
    return out


def rss_mib(pid: int) -> float:
    """A process's resident memory (VmRSS) in MiB; NaN when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
