"""CPU of idle sessions against bare containers of the same image, in the same run.

Three sets of N containers of the offline session image, side by side:

* sessions: the image's own entrypoint (the session command, a shell, waiting in tmux);
* the old entrypoint's loop: the same tmux session, polled with ``tmux has-session``
  every 0.2 s (what the entrypoint did before it blocked on ``tmux wait-for``);
* the baseline: ``sleep`` as the container's only process.

CPU is each container's ``cpuacct.usage`` (cgroup v1) over a window after a settling time.
The containers run as ``docker run`` of the image, so the figure is the entrypoint's own
cost; the agent adds nothing to an idle session.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

from benchmarks.report import QUICK
from tests.support.agent_proc import remove_labelled_containers
from tests.support.images import ensure_offline_image

__all__ = ["IdleCpu", "cgroup_dir", "cgroup_rss_bytes", "cpu_usage_ns", "measure", "shim_rss_mib"]

N = 5 if QUICK.on else 20
WINDOW = 4.0 if QUICK.on else 10.0
SETTLE = 2.0
OLD_LOOP = ("tmux new-session -d -s claude -x 80 -y 24 -- /usr/local/bin/claude || exit 1; "
            "while tmux has-session -t claude 2>/dev/null; do sleep 0.2; done")


class IdleCpu:
    """CPU share (percent of one core) of each set, summed over its N containers."""

    def __init__(self, n: int, window: float, shares: dict[str, float], rss_mib: dict[str, float]) -> None:
        self.n, self.window, self.shares = n, window, shares
        self.rss_mib = rss_mib   # mean resident memory of one container of each set (cgroup rss)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def cgroup_dir(container: str, controller: str) -> Path:
    pid = _docker("inspect", "-f", "{{.State.Pid}}", container).strip()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}")
    raise RuntimeError(f"no {controller} cgroup for {container}")


def cpu_usage_ns(container: str) -> int:
    """CPU the container has used so far (cgroup v1 ``cpuacct.usage``), in ns."""
    return int((cgroup_dir(container, "cpuacct") / "cpuacct.usage").read_text())


def shim_rss_mib(container: str) -> float:
    """Resident memory of the container's containerd-shim (outside its cgroup, paid per container)."""
    pid = _docker("inspect", "-f", "{{.State.Pid}}", container).strip()
    ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    for line in Path(f"/proc/{ppid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cgroup_rss_bytes(container: str) -> int:
    """The container cgroup's anonymous memory (``total_rss`` of cgroup v1 ``memory.stat``)."""
    for line in (cgroup_dir(container, "memory") / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "total_rss":
            return int(value)
    return 0


def _measure_sync() -> IdleCpu:
    image = ensure_offline_image()
    label = f"convocate.bench=idle-{uuid.uuid4().hex[:8]}"
    sets: dict[str, list[str]] = {
        "sessions (tmux, blocking entrypoint)": [],
        "old entrypoint loop (tmux, polled every 0.2 s)": [],
        "bare containers running sleep (baseline)": [],
    }
    try:
        for _ in range(N):
            names = list(sets)
            sets[names[0]].append(_docker("run", "-d", "--label", label, "-e", "TERM=screen", image).strip())
            sets[names[1]].append(_docker("run", "-d", "--label", label, "-e", "TERM=screen", "-u", "1337",
                                          "--entrypoint", "/bin/sh", image, "-c", OLD_LOOP).strip())
            sets[names[2]].append(_docker("run", "-d", "--label", label, "--entrypoint", "/bin/sleep",
                                          image, "3600").strip())
        time.sleep(SETTLE)   # let start-up work finish; nothing to wait on but time
        before = {c: cpu_usage_ns(c) for ids in sets.values() for c in ids}
        t0 = time.monotonic()
        time.sleep(WINDOW)
        after = {c: cpu_usage_ns(c) for ids in sets.values() for c in ids}
        seconds = time.monotonic() - t0
        rss = {name: sum(cgroup_rss_bytes(c) for c in ids) / len(ids) / 2**20 for name, ids in sets.items()}
        rss["containerd-shim per container"] = shim_rss_mib(next(iter(sets.values()))[0])
    finally:
        remove_labelled_containers(label)
    shares = {name: sum(after[c] - before[c] for c in ids) / 1e9 / seconds * 100
              for name, ids in sets.items()}
    return IdleCpu(N, seconds, shares, rss)


async def measure() -> IdleCpu:
    """Run the measurement in a thread (it only waits on docker and the clock)."""
    return await asyncio.to_thread(_measure_sync)
