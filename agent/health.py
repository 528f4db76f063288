"""The agent host's health: its Docker Engine, free disk under the sessions root, memory, load.

:class:`HealthMonitor` checks periodically (``health_interval``) and whenever it is
kicked (the Docker event stream was lost or restored), and keeps the last result, so
Ping and the heartbeat read a cached value and never wait on the engine. Listeners hear
of every change of what matters (engine up/down, disk low or not), at once.

:func:`require_free_space` is the up-front "disk full" check of every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.runtime import ContainerRuntime
from common.domain import HostHealth
from common.errors import ResourceExhaustedError, UnavailableError
from common.logging import get_logger
from common.tasks import TaskSet

__all__ = ["DiskThresholds", "HealthMonitor", "disk_space", "memory", "require_free_space"]

log = get_logger(__name__)
CHECK_TIMEOUT = 3.0


@dataclass(frozen=True)
class DiskThresholds:
    """The disk is "nearly full" below ``low_bytes`` free or below ``low_percent`` of its size."""

    low_bytes: int = 1024**3
    low_percent: float = 5.0

    def low(self, free: int, total: int) -> bool:
        """True if ``free`` of ``total`` bytes is nearly full."""
        return free < self.low_bytes or (total > 0 and 100.0 * free / total < self.low_percent)


def disk_space(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the filesystem holding ``path`` (free as an unprivileged user sees it)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def memory(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    """(available, total) bytes of memory; (0, 0) when unreadable."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        for line in meminfo.read_text(encoding="ascii").splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemAvailable", "MemTotal"):
                values[key] = int(rest.split()[0]) * 1024
    return values.get("MemAvailable", 0), values.get("MemTotal", 0)


def require_free_space(root: Path, min_free: int) -> None:
    """Refuse a write under ``root`` when less than ``min_free`` bytes are free.

    Raises:
        ResourceExhaustedError: one line, "disk full" and what to do.
    """
    try:
        free, _ = disk_space(root)
    except OSError:
        return  # the write itself will tell
    if free < min_free:
        raise ResourceExhaustedError(
            f"disk full on this agent ({free // 1024} KiB free under {root}): "
            "free space there and retry; nothing was changed"
        )


class HealthMonitor:
    """The cached health of this agent host (see the module docstring).

    Args:
        runtime: the container engine.
        sessions_root: whose filesystem's free space counts.
        interval: seconds between periodic checks.
        thresholds: when the disk counts as nearly full.
    """

    def __init__(self, runtime: ContainerRuntime, sessions_root: Path, *, interval: float = 5.0,
                 thresholds: DiskThresholds | None = None) -> None:
        self.runtime = runtime
        self.sessions_root = sessions_root
        self.interval = interval
        self.thresholds = thresholds or DiskThresholds()
        self.current = HostHealth(engine_up=False, engine_error="not checked yet")
        self._listeners: list[Callable[[HostHealth], None]] = []
        self._kick = asyncio.Event()
        self._tasks = TaskSet("health")
        self._lock = asyncio.Lock()

    def add_listener(self, listener: Callable[[HostHealth], None]) -> None:
        """Call ``listener(health)`` whenever the engine's state or the disk's low flag changes."""
        self._listeners.append(listener)

    async def check(self) -> HostHealth:
        """Check now (bounded by :data:`CHECK_TIMEOUT`), keep and return the result."""
        async with self._lock:
            version, error = "", ""
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    version = await self.runtime.engine_version()
            except UnavailableError as e:
                error = str(e)
            except TimeoutError:
                error = (f"the Docker Engine did not answer within {CHECK_TIMEOUT:g} s: "
                         "check it with `systemctl status docker`")
            try:
                free, total = await asyncio.to_thread(disk_space, self.sessions_root)
            except OSError:
                free, total = 0, 0
            available, mem_total = await asyncio.to_thread(memory)
            health = HostHealth(
                engine_up=not error, engine_version=version, engine_error=error,
                checked_at=datetime.now(UTC), disk_free_bytes=free, disk_total_bytes=total,
                disk_low=total > 0 and self.thresholds.low(free, total),
                mem_available_bytes=available, mem_total_bytes=mem_total,
                load1=os.getloadavg()[0], cpus=os.cpu_count() or 0,
            )
            before, self.current = self.current, health
        if (before.engine_up, before.disk_low) != (health.engine_up, health.disk_low):
            if health.engine_up:
                log.info("docker engine up", version=version, disk_low=health.disk_low)
            else:
                log.warning("docker engine down", error=error)
            for listener in list(self._listeners):
                try:
                    listener(health)
                except Exception:
                    log.exception("health listener failed")
        return health

    def kick(self) -> None:
        """Check now instead of at the next interval (e.g. the event stream was lost)."""
        self._kick.set()

    async def start(self) -> None:
        """Check once, then keep checking in the background."""
        await self.check()
        self._tasks.create_task(self._loop(), name="health")

    async def close(self) -> None:
        """Stop checking."""
        await self._tasks.aclose()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout keeps cancellations
                async with asyncio.timeout(self.interval):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.check()
            except Exception:  # a failed check must not end the checking
                log.exception("health check failed")
