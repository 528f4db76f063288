"""Child daemons of a test (sshd, rsyslogd, ...): start with a log file, wait, stop.

Every wait is bounded, and a daemon that exits early is reported with the tail of its log.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

__all__ = ["spawn_logged", "stop_process", "wait_listening"]


def spawn_logged(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stderr to ``log`` (stdin and stdout closed); the parent keeps no fd."""
    with log.open("wb") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_listening(proc: subprocess.Popen[bytes], host: str, port: int, log: Path, what: str,
                   timeout: float = 15) -> None:
    """Wait until ``host:port`` accepts a connection; stop ``proc`` and raise if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            msg = f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError(f"{what} did not listen on {host}:{port}") from None
            time.sleep(0.05)  # polling a port: there is nothing to wait on
