"""systemd notifications (READY, STOPPING, WATCHDOG) over ``$NOTIFY_SOCKET``, stdlib only.

Without ``NOTIFY_SOCKET`` (not under a Type=notify unit) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket

from common.logging import get_logger

__all__ = ["notify", "watchdog_interval", "watchdog_loop"]

log = get_logger(__name__)


def notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; return True if it was sent."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("systemd notify failed", state=state, error=str(e))
        return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (how often to ping), or None if not enabled."""
    e = env if env is not None else os.environ
    usec = e.get("WATCHDOG_USEC", "")
    pid = e.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


async def watchdog_loop(interval: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds; the loop running proves liveness."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
